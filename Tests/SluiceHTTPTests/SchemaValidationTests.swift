import Logging
import NIOCore
import NIOHTTP1
import SluiceConfig
import SluiceCore
@testable import SluiceHTTP
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

    static func handler(_ sink: ScriptedSink, api: IngestAPI = .sluice) -> IngestHandler {
        var config = IngestHandlerTests.config {
            $0.schema = EventSchema(file: "order.json", schema: Self.schema)
            $0.api = api
        }
        if api != .sluice { config.key = nil }
        return IngestHandler(routeName: "r", config: config, sink: sink, logger: Logger(label: "t"), pathPrefix: api == .sluice ? nil : "/kafka")
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
}
