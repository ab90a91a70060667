import Logging
import NIOCore
import NIOHTTP1
import SluiceConfig
import SluiceCore
@testable import SluiceHTTP
import SluicePolicy
import Testing

/// `idempotency` on an ingest route, in process: the guard around the real ingest handler, a
/// scripted sink counting what it was given.
@Suite struct IdempotencyGuardTests {
    struct Route {
        let sink: ScriptedSink
        let handler: IngestHandler
        let store: MemoryIdempotencyStore
        let guard_: IdempotencyGuard

        init(
            api: IngestAPI = .sluice, required: Bool = false, maxResponseBytes: Int = 64 * 1024,
            fate: @escaping @Sendable (Int) -> DeliveryResult = { .delivered(DeliveryReceipt(partition: 0, offset: Int64($0))) }
        ) {
            self.sink = ScriptedSink(fate: fate)
            var config = IngestHandlerTests.config { $0.api = api }
            if api != .sluice { config.key = nil }
            self.handler = IngestHandler(
                routeName: "events", config: config, sink: self.sink, logger: Logger(label: "test"), pathPrefix: api == .sluice ? nil : "/kafka")
            self.store = MemoryIdempotencyStore(window: .seconds(3600), maxKeys: 100, maxBytes: 1 << 20)
            let idempotency = IdempotencyConfig(maxResponseBytes: maxResponseBytes, required: required)
            self.guard_ = IdempotencyGuard(routeName: "events", config: idempotency, store: self.store, logger: Logger(label: "test"))
        }

        func post(
            _ body: String, key: String? = "order-1", identity: String? = nil, path: String = "/v1/events/orders",
            contentType: String = "application/x-ndjson", headers: [(String, String)] = [], chunks: Int = 1
        ) async -> HTTPResponse {
            var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: path)
            head.headers.add(name: "content-type", value: contentType)
            if let key { head.headers.add(name: "idempotency-key", value: key) }
            for (name, value) in headers { head.headers.add(name: name, value: value) }
            let bytes = Array(body.utf8)
            let size = max(1, (bytes.count + chunks - 1) / chunks)
            let parts = stride(from: 0, to: bytes.count, by: size).map { ByteBuffer(bytes: bytes[$0..<min(bytes.count, $0 + size)]) }
            var requestBody = RequestBody(chunks: parts)
            let request = HTTPRequest(head: head, isHTTP2: false)
            let handler = self.handler
            return await self.guard_.handle(request, identity: identity, body: &requestBody, handler: handler) { body in
                await handler.handle(request, parameters: ["topic": "orders"], body: &body)
            }.response
        }
    }

    static let events = "{\"n\":1}\n{\"n\":2}\n"

    @Test func aRetryGetsTheFirstAnswerAgainAndNothingIsProducedTwice() async {
        let route = Route()
        let first = await route.post(Self.events)
        #expect(first.status == .ok)
        #expect(first.headers[IdempotencyGuard.replayedHeader].isEmpty)
        let retry = await route.post(Self.events, headers: [("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")], chunks: 3)
        #expect(retry.status == .ok)
        #expect(String(buffer: retry.body) == String(buffer: first.body), "the same body, offsets and all")
        #expect(retry.headers.first(name: "idempotent-replayed") == "true")
        #expect(retry.headers.first(name: "content-type") == "application/json")
        #expect(route.sink.received.count == 2, "the retry produced nothing")
        // Another key is another request.
        #expect(await route.post(Self.events, key: "order-2").status == .ok)
        #expect(route.sink.received.count == 4)
    }

    @Test func theSameKeyForAnotherRequestIs422AndProducesNothing() async {
        let route = Route()
        #expect(await route.post(Self.events).status == .ok)
        for (body, headers, path) in [
            ("{\"n\":1}\n", [(String, String)](), "/v1/events/orders"),
            (Self.events, [("x-event-key", "other")], "/v1/events/orders"),
            (Self.events, [("x-tenant", "t2")], "/v1/events/orders"),
            (Self.events, [], "/v1/events/orders?x=1"),
        ] {
            let reused = await route.post(body, path: path, headers: headers)
            #expect(reused.status == .unprocessableEntity, "\(body) \(headers) \(path)")
            #expect(String(buffer: reused.body).contains("idempotency_key_reused"))
        }
        #expect(route.sink.received.count == 2)
    }

    @Test func aKeyInFlightIs409WithRetryAfter() async throws {
        let route = Route()
        // The first request holds the key (claimed, not answered yet).
        guard case .claimed(let ticket) = await route.store.claim("events\u{0}\u{0}order-1") else {
            Issue.record("claimed")
            return
        }
        let second = await route.post(Self.events)
        #expect(second.status == .conflict)
        #expect(second.headers.first(name: "retry-after") == "1")
        #expect(String(buffer: second.body).contains("idempotency_key_in_use"))
        #expect(route.sink.received.isEmpty)
        await route.store.release(ticket)
        #expect(await route.post(Self.events).status == .ok)
    }

    @Test func keysAreScopedByTheCallersIdentity() async {
        let route = Route()
        #expect(await route.post(Self.events, identity: "tenant-a").status == .ok)
        let other = await route.post(Self.events, identity: "tenant-b")
        #expect(other.status == .ok)
        #expect(other.headers[IdempotencyGuard.replayedHeader].isEmpty, "tenant b's key is its own")
        #expect(await route.post(Self.events, identity: "tenant-a").headers.first(name: "idempotent-replayed") == "true")
        #expect(route.sink.received.count == 4)
    }

    @Test func aRetryableAnswerIsNotKeptSoTheRetryRunsAgain() async {
        let route = Route { n in n == 0 ? .failed(DeliveryFailure(.sinkSaturated, "busy")) : .delivered(DeliveryReceipt(partition: 0, offset: Int64(n))) }
        let first = await route.post("{\"n\":1}\n")
        #expect(first.status == .serviceUnavailable)
        let retry = await route.post("{\"n\":1}\n")
        #expect(retry.status == .ok)
        #expect(retry.headers[IdempotencyGuard.replayedHeader].isEmpty)
        #expect(route.sink.received.count == 2)
        #expect(await route.post("{\"n\":1}\n").headers.first(name: "idempotent-replayed") == "true")
    }

    @Test func aPermanentPartialFailureIsKeptAndReplayed() async {
        let route = Route { n in n == 1 ? .failed(DeliveryFailure(.eventTooLarge, "too big")) : .delivered(DeliveryReceipt(partition: 0, offset: Int64(n))) }
        let first = await route.post(Self.events)
        #expect(first.status == .payloadTooLarge)
        let retry = await route.post(Self.events)
        #expect(retry.status == first.status)
        #expect(String(buffer: retry.body) == String(buffer: first.body))
        #expect(route.sink.received.count == 2)
    }

    @Test func anAnswerOverMaxResponseBytesIsReplayedAsItsStatus() async {
        let route = Route(maxResponseBytes: 10)
        #expect(await route.post(Self.events).status == .ok)
        let retry = await route.post(Self.events)
        #expect(retry.status == .ok)
        #expect(retry.headers.first(name: "idempotent-replayed") == "true")
        #expect(String(buffer: retry.body).contains("\"idempotent_replay\":{\"status\":200"))
        #expect(route.sink.received.count == 2)
    }

    @Test func missingInvalidAndUnsupportedKeysAreRefusedBeforeAnythingIsProduced() async {
        #expect(await Route().post(Self.events, key: nil).status == .ok, "no key: runs unprotected")
        let required = Route(required: true)
        let missing = await required.post(Self.events, key: nil)
        #expect(missing.status == .badRequest)
        #expect(String(buffer: missing.body).contains("idempotency_key_missing"))
        let invalid = await required.post(Self.events, key: "two words")
        #expect(invalid.status == .badRequest)
        #expect(String(buffer: invalid.body).contains("invalid_idempotency_key"))
        #expect(required.sink.received.isEmpty)

        // REST Proxy v3 streaming mode answers record by record: no key there, in REST Proxy's dialect.
        let v3 = Route(api: .confluentV3)
        let streamed = await v3.post(
            #"{"value":{"type":"JSON","data":1}}"#, path: "/kafka/v3/clusters/sluice/topics/orders/records", contentType: "application/json")
        #expect(streamed.status == .badRequest)
        #expect(String(buffer: streamed.body).hasPrefix(#"{"error_code":400,"#))
        #expect(v3.sink.received.isEmpty)
    }
}
