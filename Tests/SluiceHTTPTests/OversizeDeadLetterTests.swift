import Logging
import NIOCore
import NIOHTTP1
import SluiceConfig
import SluiceCore
@testable import SluiceHTTP
import Testing

/// With a `dead_letter`, an event past max_event_bytes is not refused (nor does it stop an
/// NDJSON body): it is read whole — up to max_body_bytes — and dead-lettered in its place.
@Suite struct OversizeDeadLetterTests {
    static func handler(_ sink: ScriptedSink, deadLetters: ScriptedSink?) -> IngestHandler {
        let config = IngestHandlerTests.config {
            $0.maxEventBytes = 40
            $0.maxBodyBytes = 4096
            if deadLetters != nil { $0.deadLetter = DeadLetterConfig(sink: "letters", topic: "orders.dlq", envelope: false) }
        }
        return IngestHandler(routeName: "r", config: config, sink: sink, deadLetterSink: deadLetters, logger: Logger(label: "t"))
    }

    static let large = #"{"id":"b","note":""# + String(repeating: "x", count: 80) + #""}"#

    @Test func anOverLongNDJSONLineIsDeadLetteredWholeAndTheLinesAfterItAreDelivered() async {
        let sink = ScriptedSink()
        let letters = ScriptedSink { .delivered(DeliveryReceipt(partition: 0, offset: Int64(9 + $0))) }
        // The long line arrives in three chunks, so the decoder carries it past max_event_bytes.
        let body = #"{"id":"a"}"# + "\n" + Self.large + "\n" + #"{"id":"c"}"# + "\n"
        let chunks = [String(body.prefix(30)), String(body.dropFirst(30).prefix(40)), String(body.dropFirst(70))]
        let (status, text, _) = await IngestHandlerTests.post(Self.handler(sink, deadLetters: letters), chunks: chunks)
        #expect(status == .ok, "\(text)")
        #expect(
            text
                == #"{"accepted":3,"results":[{"partition":0,"offset":0},{"dead_letter":{"sink":"scripted","topic":"orders.dlq","partition":0,"offset":9,"error":{"code":"event_too_large","message":"line 2 is 100 bytes, more than max_event_bytes (40)"}}},{"partition":0,"offset":1}]}"#
        )
        #expect(sink.received.map { String(buffer: $0.event.value) } == [#"{"id":"a"}"#, #"{"id":"c"}"#])
        #expect(letters.received.map { String(buffer: $0.event.value) } == [Self.large])
        #expect(letters.received.first?.event.headers.contains(EventHeader(name: "sluice-error-code", value: "event_too_large")) == true)
        #expect(letters.received.first?.topic == "orders.dlq")
    }

    @Test func aJSONArrayElementAndARawBodyPastTheLimitAreDeadLettered() async {
        let letters = ScriptedSink()
        let (status, text, _) = await IngestHandlerTests.post(
            Self.handler(ScriptedSink(), deadLetters: letters), contentType: "application/json", chunks: ["[" + #"{"id":"a"}"# + "," + Self.large + "]"])
        #expect(status == .ok, "\(text)")
        #expect(text.contains(#""message":"event 1 is 100 bytes, more than max_event_bytes (40)""#), "\(text)")

        let raw = String(repeating: "r", count: 300)
        let (rawStatus, rawText, _) = await IngestHandlerTests.post(
            Self.handler(ScriptedSink(), deadLetters: letters), contentType: "text/plain", chunks: [raw])
        #expect(rawStatus == .ok, "\(rawText)")
        #expect(letters.received.map { String(buffer: $0.event.value) } == [Self.large, raw])
    }

    @Test func withoutADeadLetterAnOverLongLineStillStopsTheBodyWhereItIs() async {
        let sink = ScriptedSink()
        let body = #"{"id":"a"}"# + "\n" + Self.large + "\n" + #"{"id":"c"}"# + "\n"
        let (status, text, _) = await IngestHandlerTests.post(Self.handler(sink, deadLetters: nil), chunks: [body])
        #expect(status == .payloadTooLarge, "\(text)")
        #expect(text.contains("line 2 is longer than max_event_bytes (40 bytes)"), "\(text)")
        #expect(sink.received.count == 1)
    }

    @Test func aLinePastMaxBodyBytesIsStillRefused() async {
        let letters = ScriptedSink()
        let huge = #"{"x":""# + String(repeating: "y", count: 5000) + #""}"#
        let (status, text, _) = await IngestHandlerTests.post(
            Self.handler(ScriptedSink(), deadLetters: letters), chunks: [String(huge.prefix(2000)), String(huge.dropFirst(2000))])
        #expect(status == .payloadTooLarge, "\(text)")
        #expect(letters.received.isEmpty)
    }
}
