import Logging
import NIOCore
import NIOHTTP1
import SluiceConfig
import SluiceConfigReader
import SluiceCore
@testable import SluiceHTTP
import SluiceIngest
import Testing

/// `mirror`: copies of the events the route's sink takes go to a second sink, all or a random
/// fraction, without waiting; a mirror with no room drops (and counts) its copies, and the
/// response is the route's own.
@Suite struct MirrorTests {
    static func handler(_ sink: ScriptedSink, mirror: ScriptedSink, fraction: Double = 1) -> IngestHandler {
        let config = IngestHandlerTests.config {
            $0.maxEvents = 5000
            $0.mirror = IngestMirrorConfig(sink: "mirror", topic: try! ParameterTemplate.parse("copy.{topic}").get(), fraction: fraction)
        }
        return IngestHandler(pipeline: IngestPipeline(routeName: "r", config: config, sink: sink, mirrorSink: mirror, logger: Logger(label: "t")))
    }

    static func post(_ handler: IngestHandler, _ count: Int) async -> (HTTPResponseStatus, ExchangeFacts) {
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: "/v1/events/orders")
        head.headers.add(name: "content-type", value: "application/x-ndjson")
        var body = RequestBody(chunks: [ByteBuffer(string: (0..<count).map { #"{"n":\#($0)}"# }.joined(separator: "\n"))])
        let response = await handler.handle(HTTPRequest(head: head, isHTTP2: false), parameters: ["topic": "orders"], body: &body).response
        return (response.status, response.facts)
    }

    @Test func everyEventTheSinkTakesIsOfferedToTheMirrorUnderItsTopic() async {
        let sink = ScriptedSink()
        let mirror = ScriptedSink()
        let (status, facts) = await Self.post(Self.handler(sink, mirror: mirror), 3)
        #expect(status == .ok)
        #expect(mirror.received.map(\.topic) == ["copy.orders", "copy.orders", "copy.orders"])
        #expect(mirror.received.map { String(buffer: $0.event.value) } == sink.received.map { String(buffer: $0.event.value) })
        #expect(facts.mirrored == ["queued": 3])
    }

    @Test func aMirrorWithoutRoomDropsItsCopiesAndTheResponseIsTheRoutes() async {
        let sink = ScriptedSink()
        let full = ScriptedSink(capacity: 0)
        let (status, facts) = await Self.post(Self.handler(sink, mirror: full), 4)
        #expect(status == .ok)
        #expect(sink.received.count == 4 && full.received.isEmpty)
        #expect(facts.mirrored == ["dropped": 4])
    }

    @Test func aFractionMirrorsAboutThatShare() async {
        let mirror = ScriptedSink()
        let (status, facts) = await Self.post(Self.handler(ScriptedSink(), mirror: mirror, fraction: 0.25), 2000)
        #expect(status == .ok)
        // 2000 draws at 0.25: mean 500, standard deviation ~19; 400...600 is over five of them.
        #expect((400...600).contains(mirror.received.count), "\(mirror.received.count)")
        #expect(facts.mirrored["queued"] == mirror.received.count)
    }
}
