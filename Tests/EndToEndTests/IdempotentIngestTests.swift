import Crypto
import Foundation
import Testing

/// `Idempotency-Key` on an ingest route, through the real binary into the real broker: a retry is
/// answered from the first answer and produces nothing; keys in Redis are shared by two
/// instances and outlive both; keys in memory are this process's only.
@Suite(.timeLimit(.minutes(6))) struct IdempotentIngestTests {
    static func hash(_ key: String) -> String { SHA256.hash(data: Array(key.utf8)).map { String(format: "%02x", $0) }.joined() }

    static func config(topic: String, store: String) -> String {
        """
        listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
        admin: { address: "127.0.0.1:{ADMIN_PORT}" }
        policies:
          - name: keys
            api_key: { header: X-Api-Key, keys: [{ client: tenant-a, sha256: \(Self.hash("key-a")) }, { client: tenant-b, sha256: \(Self.hash("key-b")) }] }
        sinks:
          - name: events
            kafka: { bootstrap_servers: ["{KAFKA}"], delivery_timeout: 10s }
        routes:
          - name: orders
            match: { path: /v1/orders, methods: [POST] }
            policies: [keys]
            ingest: { sink: events, topic: \(topic) }
            idempotency: \(store)
        """
    }

    static func post(_ sluice: SluiceProcess, _ body: String, key: String, apiKey: String = "key-a") async throws -> CurlResponse {
        try await curl(
            ["-H", "content-type: application/x-ndjson", "-H", "x-api-key: \(apiKey)", "-H", "idempotency-key: \(key)", "\(sluice.baseURL)/v1/orders"],
            body: Data(body.utf8))
    }

    static let batch = (0..<3).map { #"{"order":\#($0)}"# }.joined(separator: "\n") + "\n"

    @Test func keysInRedisAreSharedByTwoInstancesAndOutliveThem() async throws {
        try await requireBroker()
        let redis = try await GlobalRateLimitTests.redis()
        let topic = uniqueTopic("idempotency")
        let config = Self.config(topic: topic, store: "{ store: redis, window: 1h, redis: { address: \"127.0.0.1:\(redis.port)\", timeout: 1s, failure_mode: closed } }")
        let first = try await SluiceProcess(config: config)
        let second = try await SluiceProcess(config: config)

        let answer = try await Self.post(first, Self.batch, key: "batch-1")
        #expect(answer.status == 200, "\(answer.body)")
        #expect(!answer.headers.lowercased().contains("idempotent-replayed"))
        let replay = try await Self.post(second, Self.batch, key: "batch-1")
        #expect(replay.status == 200)
        #expect(replay.body == answer.body, "the first answer, offsets and all")
        #expect(replay.headers.lowercased().contains("idempotent-replayed: true"))
        let reused = try await Self.post(second, #"{"order":99}"# + "\n", key: "batch-1")
        #expect(reused.status == 422 && reused.body.contains("idempotency_key_reused"), "\(reused.body)")
        // The same key from another client is another request.
        let otherTenant = try await Self.post(second, Self.batch, key: "batch-1", apiKey: "key-b")
        #expect(otherTenant.status == 200 && !otherTenant.headers.lowercased().contains("idempotent-replayed"))

        // A request still running holds its key on every instance: it has been invited to send its
        // body (so it has claimed the key) and has sent half of it.
        let held = #"{"order":"held"}"# + "\n"
        let port = first.port
        let connection = try RawConnection(port: port)
        connection.send(
            "POST /v1/orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\nX-Api-Key: key-a\r\n"
                + "Idempotency-Key: held\r\nContent-Length: \(held.utf8.count)\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        try #require(await connection.read(until: "100 Continue", timeout: .seconds(20)), "the held request is invited")
        connection.send(String(held.prefix(5)))
        let inFlight = try await Self.post(second, held, key: "held")
        #expect(inFlight.status == 409 && inFlight.body.contains("idempotency_key_in_use"), "\(inFlight.body)")
        #expect(inFlight.headers.lowercased().contains("retry-after: 1"))
        connection.send(String(held.dropFirst(5)))
        let heldAnswer = await connection.readUntilClosed(timeout: .seconds(30))
        #expect(RawHTTPResponse(heldAnswer.text)?.status == 200, "\(heldAnswer.text)")
        #expect(try await Self.post(second, held, key: "held").headers.lowercased().contains("idempotent-replayed: true"))

        // Both instances gone; a new one still knows the key.
        #expect(try await first.terminate() == 0)
        #expect(try await second.terminate() == 0)
        let third = try await SluiceProcess(config: config)
        let afterRestart = try await Self.post(third, Self.batch, key: "batch-1")
        #expect(afterRestart.status == 200 && afterRestart.body == answer.body)
        #expect(afterRestart.headers.lowercased().contains("idempotent-replayed: true"))

        // In the topic: tenant a's batch once, tenant b's once, the held event once.
        let records = try await consume(topic, expecting: 7)
        #expect(records.count == 7, "\(records.map(\.value))")
        #expect(records.filter { $0.value == #"{"order":0}"# }.count == 2)
        #expect(records.filter { $0.value == #"{"order":"held"}"# }.count == 1)
        #expect(!records.contains { $0.value.contains("99") })
        #expect(try await third.terminate() == 0)
        redis.stop()
    }

    @Test func keysInMemoryAreAnsweredOnceUntilTheProcessRestarts() async throws {
        try await requireBroker()
        let topic = uniqueTopic("idempotency-memory")
        let config = Self.config(topic: topic, store: "{ window: 1h, max_keys: 1000 }")
        let sluice = try await SluiceProcess(config: config)
        let answer = try await Self.post(sluice, Self.batch, key: "\"quoted key\"")
        #expect(answer.status == 200, "\(answer.body)")
        for _ in 0..<3 {
            let replay = try await Self.post(sluice, Self.batch, key: "\"quoted key\"")
            #expect(replay.body == answer.body && replay.headers.lowercased().contains("idempotent-replayed: true"))
        }
        let invalid = try await Self.post(sluice, Self.batch, key: "two words")
        #expect(invalid.status == 400 && invalid.body.contains("invalid_idempotency_key"))
        #expect(try await consume(topic, expecting: 3).count == 3)
        #expect(try await sluice.terminate() == 0)

        // A new process has an empty memory: the documented guarantee is per process.
        let restarted = try await SluiceProcess(config: config)
        let again = try await Self.post(restarted, Self.batch, key: "\"quoted key\"")
        #expect(again.status == 200 && !again.headers.lowercased().contains("idempotent-replayed"))
        #expect(try await consume(topic, expecting: 6).count == 6)
        #expect(try await restarted.terminate() == 0)
    }
}
