import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import SluiceConfig
import SluiceCore
@testable import SluiceHTTP
import SluiceIngest
import SluiceSchema
import Testing

/// An ingest route with a JSON Schema: each event is validated as the body streams; a bad one
/// fails alone with `schema_violation` naming the pointers and keywords, the good ones go out.
@Suite struct SchemaValidationTests {
    static let schema = try! JSONSchema.compile(
        try! JSONParser.parse(
            #"""
            {"type": "object", "required": ["id", "amount"],
             "properties": {"id": {"type": "string", "minLength": 1}, "amount": {"type": "number", "minimum": 0}},
             "additionalProperties": false}
            """#))

    static func handler(
        _ sink: ScriptedSink, api: IngestAPI = .sluice, deadLetters: ScriptedSink? = nil, envelope: Bool = false
    ) -> IngestHandler {
        var config = IngestHandlerTests.config {
            $0.schema = EventSchema(file: "order.json", schema: Self.schema)
            $0.api = api
            if deadLetters != nil { $0.deadLetter = DeadLetterConfig(sink: "scripted", topic: "orders.dlq", envelope: envelope) }
        }
        if api != .sluice { config.key = nil }
        return IngestHandler(
            routeName: "r", config: config, sink: sink, deadLetterSink: deadLetters, logger: Logger(label: "t"),
            pathPrefix: api == .sluice ? nil : "/kafka")
    }

    @Test func withADeadLetterDestinationABadEventIsSettledThereAndSaysSo() async {
        let sink = ScriptedSink()
        let letters = ScriptedSink { .delivered(DeliveryReceipt(partition: 2, offset: Int64(40 + $0))) }
        let (status, text, _) = await IngestHandlerTests.post(
            Self.handler(sink, deadLetters: letters), headers: [("X-Tenant", "acme"), ("X-Event-Key", "k")],
            chunks: [#"{"id":"a","amount":1}"# + "\n" + #"{"id":"b","amount":-1}"# + "\n"])
        #expect(status == .ok, "\(text)")
        #expect(text == #"{"accepted":2,"results":[{"partition":0,"offset":0},{"dead_letter":{"sink":"scripted","topic":"orders.dlq","partition":2,"offset":40,"error":{"code":"schema_violation","message":"line 2: /amount: minimum: less than 0.0"}}}]}"#)
        #expect(sink.received.count == 1)
        guard let letter = letters.received.first else {
            Issue.record("a dead letter")
            return
        }
        #expect(letter.topic == "orders.dlq")
        #expect(String(buffer: letter.event.value) == #"{"id":"b","amount":-1}"#)
        #expect(letter.event.key.map { String(buffer: $0) } == "k")
        #expect(letter.event.headers == [
            EventHeader(name: "X-Tenant", value: "acme"), EventHeader(name: "sluice-error-code", value: "schema_violation"),
            EventHeader(name: "sluice-error-message", value: "line 2: /amount: minimum: less than 0.0"),
            EventHeader(name: "sluice-original-topic", value: "orders"), EventHeader(name: "sluice-route", value: "r"),
        ])
    }

    @Test func anEventTheSinkRefusesForGoodIsDeadLetteredAndARetryableFailureIsNot() async {
        let sink = ScriptedSink { n in
            switch n {
            case 1: .failed(DeliveryFailure(code: "kafka_msg_size_too_large", message: "too large for the broker", isRetryable: false, httpStatus: 413))
            case 2: .failed(DeliveryFailure(code: "kafka_msg_timed_out", message: "timed out", isRetryable: true))
            default: .delivered(DeliveryReceipt(partition: 0, offset: Int64(n)))
            }
        }
        let letters = ScriptedSink { .delivered(DeliveryReceipt(partition: 1, offset: Int64(70 + $0))) }
        let body = [#"{"id":"a","amount":1}"#, #"{"id":"b","amount":2}"#, #"{"id":"c","amount":3}"#].joined(separator: "\n")
        let (status, text, _) = await IngestHandlerTests.post(Self.handler(sink, deadLetters: letters), chunks: [body])
        #expect(status == .serviceUnavailable, "the timed-out event is to be retried: \(text)")
        #expect(text.contains(#"{"dead_letter":{"sink":"scripted","topic":"orders.dlq","partition":1,"offset":70,"error":{"code":"kafka_msg_size_too_large","message":"too large for the broker"}}}"#), "\(text)")
        #expect(text.contains(#"{"error":{"code":"kafka_msg_timed_out""#))
        #expect(letters.received.map { String(buffer: $0.event.value) } == [#"{"id":"b","amount":2}"#])
        #expect(letters.received.first?.event.headers.contains(EventHeader(name: "sluice-error-code", value: "kafka_msg_size_too_large")) == true)
    }

    @Test func aSinkWithoutHeadersGetsAnEnvelopeAndAFailedDeadLetterKeepsTheFailure() async {
        let letters = ScriptedSink()
        let (_, _, _) = await IngestHandlerTests.post(Self.handler(ScriptedSink(), deadLetters: letters, envelope: true), chunks: [#"{"id":7}"# + "\n"])
        #expect(letters.received.map { String(buffer: $0.event.value) } == [
            #"{"sluice_dead_letter":{"error_code":"schema_violation","error_message":"line 1: /id: type: expected string, got number; /: required: missing required property \"amount\"","original_topic":"orders","route":"r"},"value":{"id":7}}"#
        ])
        #expect(letters.received.first?.event.headers.isEmpty == true)

        let refusing = ScriptedSink { _ in .failed(DeliveryFailure(code: "kafka_topic_authorization_failed", message: "not allowed", isRetryable: false, httpStatus: 403)) }
        let (status, text, _) = await IngestHandlerTests.post(Self.handler(ScriptedSink(), deadLetters: refusing), chunks: [#"{"id":7}"# + "\n"])
        #expect(status == .unprocessableEntity)
        #expect(text.contains(#"(and the dead-letter sink did not take it: not allowed)"#), "\(text)")
    }

    @Test func aBadEventFailsAloneNamingWhereAndWhyAndTheRestAreDelivered() async {
        let sink = ScriptedSink()
        let body = """
            {"id":"a","amount":1}
            {"id":"","amount":-2,"extra":true}
            ["not", "an", "object"]
            {"id":"b","amount":2}

            """
        let (status, text, _) = await IngestHandlerTests.post(Self.handler(sink), chunks: [String(body.prefix(30)), String(body.dropFirst(30))])
        #expect(status == .unprocessableEntity)
        #expect(sink.received.map { String(buffer: $0.event.value) } == [#"{"id":"a","amount":1}"#, #"{"id":"b","amount":2}"#])
        #expect(text.contains(#""accepted":2,"failed":2"#), "\(text)")
        #expect(text.contains(#"{"error":{"code":"schema_violation","message":"line 2: /id: minLength: shorter than 1 characters; /amount: minimum: less than 0.0; /extra: additionalProperties: not allowed here","retryable":false}}"#), "\(text)")
        #expect(text.contains(#""message":"line 3: /: type: expected object, got array""#), "\(text)")
        // Results in request order: delivered, failed, failed, delivered.
        #expect(text.contains(#""results":[{"partition":0,"offset":0},{"error":"#))
        #expect(text.hasSuffix(#"{"partition":0,"offset":1}]}"#))
    }

    @Test func aJSONArrayIsValidatedPerElement() async {
        let sink = ScriptedSink()
        let (status, text, _) = await IngestHandlerTests.post(
            Self.handler(sink), contentType: "application/json", chunks: [#"[{"id":"a","amount":1},{"amount":"x"}]"#])
        #expect(status == .unprocessableEntity)
        #expect(sink.received.count == 1)
        #expect(text.contains(#"event 1: /amount: type: expected number, got string; /: required: missing required property \"id\""#), "\(text)")
    }

    @Test func aRawEventThatIsNotJSONFailsAsSuch() async {
        let sink = ScriptedSink()
        let (status, text, _) = await IngestHandlerTests.post(Self.handler(sink), contentType: "text/plain", chunks: ["plain text"])
        #expect(status == .unprocessableEntity)
        #expect(sink.received.isEmpty)
        #expect(text.contains("event 0: the route's schema needs a JSON event; this one is not JSON"), "\(text)")
    }

    @Test func allGoodIs200() async {
        let sink = ScriptedSink()
        let (status, _, _) = await IngestHandlerTests.post(Self.handler(sink), chunks: [#"{"id":"a","amount":1}"# + "\n"])
        #expect(status == .ok)
        #expect(sink.received.count == 1)
    }

    /// `schema: { avro_file, registry }`: the id that frames the values comes from the
    /// registry (looked up once for the request's subject); without one, nothing is sent and
    /// the answer says to retry.
    @Test func avroValuesAreFramedWithTheIdTheRegistryGivesAndNothingGoesWithoutOne() async throws {
        let avro = try AvroSchema.compile(try JSONParser.parse(#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}"#))
        let answers = NIOLockedValueBox<[(Int, String)]>([(200, #"{"id":258}"#), (404, #"{"error_code":40403,"message":"Schema not found"}"#)])
        let calls = NIOLockedValueBox<[String]>([])
        func handler(_ sink: ScriptedSink, topic: String = "orders") -> IngestHandler {
            let config = IngestHandlerTests.config {
                var schema = EventSchema(file: "order.avsc", avro: avro)
                schema.registry = SchemaRegistryConfig(url: "http://registry", schemaType: "AVRO", schema: "{}")
                $0.schema = schema
            }
            let pipeline = IngestPipeline(
                routeName: "r", config: config, sink: sink, logger: Logger(label: "t"),
                registryTransport: { url, _ in
                    calls.withLockedValue { $0.append(url) }
                    let (status, body) = answers.withLockedValue { $0.removeFirst() }
                    return (status, Array(body.utf8))
                })
            return IngestHandler(pipeline: pipeline)
        }
        let sink = ScriptedSink()
        let (status, text, _) = await IngestHandlerTests.post(handler(sink), chunks: [#"{"id":"a"}"# + "\n" + #"{"id":"b"}"# + "\n"])
        #expect(status == .ok, "\(text)")
        #expect(sink.received.map { Array($0.event.value.readableBytesView) } == [[0, 0, 0, 1, 2, 2, 0x61], [0, 0, 0, 1, 2, 2, 0x62]])
        #expect(calls.withLockedValue { $0 } == ["http://registry/subjects/orders-value"], "one lookup for the request")

        let none = ScriptedSink()
        let (refused, body, headers) = await IngestHandlerTests.post(handler(none), chunks: [#"{"id":"a"}"# + "\n"])
        #expect(refused == .serviceUnavailable, "\(body)")
        #expect(body.contains(#""code":"schema_not_registered""#), "\(body)")
        #expect(headers.first(name: "retry-after") != nil)
        #expect(none.received.isEmpty)
    }
}
