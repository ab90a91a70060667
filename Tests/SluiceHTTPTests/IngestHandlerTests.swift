import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import SluiceConfig
import SluiceCore
@testable import SluiceHTTP
import Testing

/// A sink whose behaviour each test sets: deliver, fail some events, or refuse (full queue).
final class ScriptedSink: Sink, @unchecked Sendable {
    let name: String
    var isReady: Bool { true }
    var settleTimeout: Duration? { nil }
    let budget = InFlightBudget(maxBytes: 1 << 20, maxEvents: 1000)
    private let lock = NIOLock()
    private var _received: [(topic: String, event: Event)] = []
    /// Decides the fate of the n-th event received (0-based, across requests).
    let fate: @Sendable (Int) -> DeliveryResult
    /// Accept at most this many events per enqueue call before reporting the queue full.
    let capacity: Int
    /// How long each enqueue call takes (a sink waiting for room).
    let delay: Duration
    private var _waitAllowed: [Duration] = []

    init(
        name: String = "scripted", capacity: Int = .max, delay: Duration = .zero,
        fate: @escaping @Sendable (Int) -> DeliveryResult = { .delivered(DeliveryReceipt(partition: 0, offset: Int64($0))) }
    ) {
        self.name = name
        self.capacity = capacity
        self.delay = delay
        self.fate = fate
    }

    /// For each enqueue call, how long it was allowed to wait (deadline minus call time).
    var waitAllowed: [Duration] { self.lock.withLock { self._waitAllowed } }

    var received: [(topic: String, event: Event)] { self.lock.withLock { self._received } }

    func enqueue(_ events: [Event], topic: String, tracker: DeliveryTracker, firstIndex: Int, deadline: ContinuousClock.Instant) async -> Int {
        self.lock.withLock { self._waitAllowed.append(deadline - .now) }
        if self.delay > .zero { try? await Task.sleep(for: self.delay) }
        let taken = min(events.count, self.capacity)
        for (i, event) in events.enumerated() {
            if i < taken {
                let n = self.lock.withLock {
                    self._received.append((topic, event))
                    return self._received.count - 1
                }
                tracker.complete(firstIndex + i, with: self.fate(n))
            } else {
                tracker.complete(firstIndex + i, with: .failed(.queueFull(sink: self.name)))
            }
        }
        return taken
    }
}

@Suite struct IngestHandlerTests {
    static func config(_ tweak: (inout IngestConfig) -> Void = { _ in }) -> IngestConfig {
        var config = IngestConfig(
            sink: "scripted", topic: try! ParameterTemplate.parse("{topic}").get(), topicsAllowed: ["orders", "clicks"],
            key: .header("x-event-key"), ack: .sink, headersToKafka: ["X-Tenant"], maxBodyBytes: 1 << 20, maxEvents: 100,
            maxEventBytes: 1000, maxWait: .seconds(1))
        tweak(&config)
        return config
    }

    static func post(
        _ handler: IngestHandler, topic: String = "orders", contentType: String = "application/x-ndjson",
        headers: [(String, String)] = [], chunks: [String]
    ) async -> (HTTPResponseStatus, String, HTTPHeaders) {
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: "/v1/events/\(topic)")
        head.headers.add(name: "content-type", value: contentType)
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        var body = RequestBody(chunks: chunks.map { ByteBuffer(string: $0) })
        let response = await handler.handle(HTTPRequest(head: head, isHTTP2: false), parameters: ["topic": topic], body: &body).response
        return (response.status, String(buffer: response.body), response.headers)
    }

    @Test func answers200WithEveryEventsResultInOrderAndCopiesKeyAndHeaders() async {
        let sink = ScriptedSink()
        let handler = IngestHandler(routeName: "r", config: Self.config(), sink: sink, logger: Logger(label: "t"))
        let (status, body, _) = await Self.post(
            handler, headers: [("X-Event-Key", "k1"), ("X-Tenant", "acme"), ("X-Other", "no")], chunks: ["{\"a\":1}\n{\"a\"", ":2}\n"])
        #expect(status == .ok)
        #expect(body == #"{"accepted":2,"results":[{"partition":0,"offset":0},{"partition":0,"offset":1}]}"#)
        #expect(sink.received.map { String(buffer: $0.event.value) } == [#"{"a":1}"#, #"{"a":2}"#])
        #expect(sink.received.allSatisfy { $0.topic == "orders" && $0.event.key.map { String(buffer: $0) } == "k1" })
        #expect(sink.received[0].event.headers == [EventHeader(name: "X-Tenant", value: "acme")])
    }

    @Test func aRetryableFailureMakesTheResponse503WithRetryAfterAndListsEachEvent() async {
        let sink = ScriptedSink { n in
            n == 1 ? .failed(DeliveryFailure(code: "kafka_msg_timed_out", message: "timed out", isRetryable: true)) : .delivered(DeliveryReceipt(partition: 0, offset: Int64(n)))
        }
        let handler = IngestHandler(routeName: "r", config: Self.config(), sink: sink, logger: Logger(label: "t"))
        let (status, body, headers) = await Self.post(handler, chunks: ["1\n2\n3\n"])
        #expect(status == .serviceUnavailable)
        #expect(headers["retry-after"] == ["1"])
        #expect(body.contains(#""accepted":2,"failed":1"#))
        #expect(body.contains(#"{"error":{"code":"kafka_msg_timed_out","message":"timed out","retryable":true}}"#))
    }

    @Test func aPermanentFailureUsesItsOwnStatus() async {
        let sink = ScriptedSink { _ in .failed(DeliveryFailure(code: "kafka_msg_size_too_large", message: "too large", isRetryable: false, httpStatus: 413)) }
        let handler = IngestHandler(routeName: "r", config: Self.config(), sink: sink, logger: Logger(label: "t"))
        let (status, _, headers) = await Self.post(handler, chunks: ["1\n"])
        #expect(status == .payloadTooLarge)
        #expect(headers["retry-after"].isEmpty)
    }

    @Test func aSaturatedSinkGives503NamingTheSink() async {
        let sink = ScriptedSink(capacity: 1)
        let handler = IngestHandler(routeName: "r", config: Self.config(), sink: sink, logger: Logger(label: "t"))
        let (status, body, headers) = await Self.post(handler, chunks: ["1\n2\n"])
        #expect(status == .serviceUnavailable)
        #expect(headers["retry-after"] == ["1"])
        #expect(body.contains(#""code":"sink_saturated""#))
        #expect(body.contains(#""sink":"scripted""#))
        #expect(body.contains(#""accepted":1,"failed":1"#))
    }

    @Test func maxWaitBoundsEachWaitNotTheWholeRequest() async {
        // Each enqueue takes 300 ms; with max_wait 500 ms a per-request deadline would leave the
        // third call no time at all.
        let sink = ScriptedSink(delay: .milliseconds(300))
        let handler = IngestHandler(routeName: "r", config: Self.config { $0.maxWait = .milliseconds(500) }, sink: sink, logger: Logger(label: "t"))
        let (status, _, _) = await Self.post(handler, chunks: ["1\n", "2\n", "3\n"])
        #expect(status == .ok)
        #expect(sink.waitAllowed.count == 3)
        #expect(sink.waitAllowed.allSatisfy { $0 > .milliseconds(400) }, "\(sink.waitAllowed)")
    }

    @Test func topicsOutsideTheAllowListAre404AndInvalidNames400() async {
        let handler = IngestHandler(routeName: "r", config: Self.config(), sink: ScriptedSink(), logger: Logger(label: "t"))
        #expect(await Self.post(handler, topic: "payments", chunks: ["1\n"]).0 == .notFound)
        let open = IngestHandler(routeName: "r", config: Self.config { $0.topicsAllowed = nil }, sink: ScriptedSink(), logger: Logger(label: "t"))
        #expect(await Self.post(open, topic: "bad topic", chunks: ["1\n"]).0 == .badRequest)
    }

    @Test func limitsGive413WithTheLimitNamed() async {
        let handler = IngestHandler(
            routeName: "r", config: Self.config { $0.maxEvents = 2; $0.maxBodyBytes = 64 }, sink: ScriptedSink(), logger: Logger(label: "t"))
        let (tooMany, manyBody, _) = await Self.post(handler, chunks: ["1\n2\n3\n"])
        #expect(tooMany == .payloadTooLarge)
        #expect(manyBody.contains("max_events (2)"))
        let (tooBig, bigBody, _) = await Self.post(handler, chunks: [String(repeating: "1", count: 40) + "\n", String(repeating: "2", count: 40) + "\n"])
        #expect(tooBig == .payloadTooLarge)
        #expect(bigBody.contains("max_body_bytes (64 bytes)"))
    }

    /// Every line before the bad one is sent and answered, whichever read it came in: line 2
    /// shares its read with the bad line 3.
    @Test func badJSONIs400NamingTheLineAndEveryLineBeforeItIsSentAndAnswered() async {
        let sink = ScriptedSink()
        let handler = IngestHandler(routeName: "r", config: Self.config(), sink: sink, logger: Logger(label: "t"))
        let (status, body, _) = await Self.post(handler, chunks: ["{\"ok\":1}\n", "{\"ok\":2}\n{oops}\n{\"ok\":4}\n"])
        #expect(status == .badRequest)
        #expect(body.contains(#""code":"invalid_json","message":"line 3, column 2: expected a string key in object""#))
        #expect(body.contains(#""accepted":2,"results":[{"partition":0,"offset":0},{"partition":0,"offset":1}]"#), "\(body)")
        #expect(sink.received.map { String(buffer: $0.event.value) } == [#"{"ok":1}"#, #"{"ok":2}"#])
    }

    @Test func jsonPointerKeysComeFromEachEvent() async {
        let sink = ScriptedSink()
        let handler = IngestHandler(routeName: "r", config: Self.config { $0.key = .jsonPointer(["user"]) }, sink: sink, logger: Logger(label: "t"))
        let (status, _, _) = await Self.post(handler, contentType: "application/json", chunks: [#"[{"user":"a"},{"user":7},{"x":1}]"#])
        #expect(status == .ok)
        #expect(sink.received.map { $0.event.key.map { String(buffer: $0) } } == ["a", "7", nil])
        let (bad, body, _) = await Self.post(handler, contentType: "application/json", chunks: [#"[{"user":{"id":1}}]"#])
        #expect(bad == .badRequest)
        #expect(body.contains("invalid_key"))
        let (raw, _, _) = await Self.post(handler, contentType: "text/plain", chunks: ["x"])
        #expect(raw == .unsupportedMediaType)
    }

    @Test func ackAcceptedReportsHowManyWereQueuedWhenTheSinkIsSaturated() async {
        let handler = IngestHandler(routeName: "r", config: Self.config { $0.ack = .accepted }, sink: ScriptedSink(capacity: 2), logger: Logger(label: "t"))
        let (status, body, headers) = await Self.post(handler, chunks: ["1\n2\n3\n"])
        #expect(status == .serviceUnavailable)
        #expect(headers["retry-after"] == ["1"])
        #expect(body.contains(#""accepted":2,"not_accepted":1"#))
        #expect(body.contains(#""code":"sink_saturated""#))
    }

    @Test func ackAcceptedAnswers202AndAnEmptyBodyIs400() async {
        let handler = IngestHandler(routeName: "r", config: Self.config { $0.ack = .accepted }, sink: ScriptedSink(), logger: Logger(label: "t"))
        let (status, body, _) = await Self.post(handler, contentType: "application/octet-stream", chunks: ["binary\u{0}data"])
        #expect(status == .accepted)
        #expect(body == #"{"accepted":1}"#)
        #expect(await Self.post(handler, chunks: ["\n\n"]).0 == .badRequest)
        #expect(await Self.post(handler, contentType: "text/plain", chunks: []).0 == .badRequest)
    }
}
