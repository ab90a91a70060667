import Foundation
import Testing

/// `rate_limit` with `scope: global`: two Sluice processes share one Redis (redis-server from
/// Debian, started here) and hold one limit together; with Redis gone, `failure_mode` decides.
@Suite(.timeLimit(.minutes(6))) struct GlobalRateLimitTests {
    static func redis() async throws -> PeerProcess {
        try await PeerProcess("redis", ["redis-server", "--port", "{PORT}", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
    }

    static func config(redisPort: Int) -> String {
        """
        listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
        admin: { address: "127.0.0.1:{ADMIN_PORT}" }
        policies:
          - name: per-tenant
            rate_limit:
              key: header:X-Tenant
              rate: 1/h
              burst: 6
              scope: global
              overrides: [{ value: big, rate: 1/h, burst: 9 }]
              redis: { address: "127.0.0.1:\(redisPort)", timeout: 200ms, failure_mode: open }
          - name: events
            rate_limit:
              key: header:X-Tenant
              unit: events
              rate: 1/h
              burst: 10
              scope: global
              redis: { address: "127.0.0.1:\(redisPort)", timeout: 200ms }
          - name: strict
            rate_limit:
              key: header:X-Tenant
              rate: 100/s
              scope: global
              redis: { address: "127.0.0.1:\(redisPort)", timeout: 200ms, failure_mode: closed }
        sinks:
          - name: archive
            file: { directory: ./events }
        routes:
          - name: limited
            match: { path: /limited, methods: [POST] }
            policies: [per-tenant]
            ingest: { sink: archive, topic: limited }
          - name: counted
            match: { path: /counted, methods: [POST] }
            policies: [events]
            ingest: { sink: archive, topic: counted }
          - name: strict
            match: { path: /strict, methods: [POST] }
            policies: [strict]
            ingest: { sink: archive, topic: strict }
        """
    }

    @Test func twoInstancesShareOneLimitAndFailureModesHold() async throws {
        let redis = try await Self.redis()
        let first = try await SluiceProcess(config: Self.config(redisPort: redis.port))
        let second = try await SluiceProcess(config: Self.config(redisPort: redis.port))
        func post(_ sluice: SluiceProcess, _ path: String, tenant: String) async throws -> CurlResponse {
            try await curl(["-H", "x-tenant: \(tenant)", "-H", "content-type: application/json", "\(sluice.baseURL)\(path)"], body: Data(#"{"n":1}"#.utf8))
        }
        // Ten requests of tenant a, alternating between the instances: six pass in all.
        var statuses: [Int] = []
        for i in 0..<10 { await statuses.append(try post(i % 2 == 0 ? first : second, "/limited", tenant: "a").status) }
        #expect(statuses.filter { $0 == 200 }.count == 6, "\(statuses)")
        #expect(statuses.filter { $0 == 429 }.count == 4, "\(statuses)")
        #expect(Array(statuses.prefix(6)) == Array(repeating: 200, count: 6), "the first six pass, whichever instance took them")
        let refused = try await post(second, "/limited", tenant: "a")
        #expect(refused.status == 429)
        #expect(refused.headers.lowercased().contains("retry-after:"))
        #expect(refused.headers.lowercased().contains("ratelimit-limit: 6"))
        // Another tenant has its own bucket; an override replaces the default.
        await #expect(try post(first, "/limited", tenant: "b").status == 200)
        var big: [Int] = []
        for i in 0..<11 { await big.append(try post(i % 2 == 0 ? second : first, "/limited", tenant: "big").status) }
        #expect(big.filter { $0 == 200 }.count == 9, "\(big)")

        // Events, counted across the instances: 8 on one, 5 on the other (admitted with 2 left),
        // then the bucket is in debt for both.
        func events(_ sluice: SluiceProcess, _ count: Int) async throws -> Int {
            let body = (0..<count).map { #"{"n":\#($0)}"# }.joined(separator: "\n")
            return try await curl(["-H", "x-tenant: e", "-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/counted"], body: Data(body.utf8)).status
        }
        await #expect(try events(first, 8) == 200)
        await #expect(try events(second, 5) == 200)
        await #expect(try events(first, 1) == 429)
        await #expect(try events(second, 1) == 429)

        // Redis gone: open lets requests through, closed answers 503.
        redis.stop()
        let open = try await post(first, "/limited", tenant: "c")
        #expect(open.status == 200, "failure_mode open: \(open.body)")
        let closed = try await post(second, "/strict", tenant: "c")
        #expect(closed.status == 503, "failure_mode closed: \(closed.body)")
        #expect((closed.json["error"] as? [String: Any])?["code"] as? String == "rate_limit_unavailable")
        #expect(first.log.contains("rate limit store unavailable"))
    }
}

/// Rate limits counted in events (ingest) and bytes (proxy), through the real binary.
@Suite(.timeLimit(.minutes(6))) struct EventAndByteRateLimitTests {
    @Test func eventsAndBytesAreChargedAfterTheRequest() async throws {
        let upstream = try await ProxyTests.upstream("app")
        let sluice = try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                policies:
                  - name: events
                    rate_limit: { key: header:X-Tenant, unit: events, rate: 1/h, burst: 10 }
                  - name: bytes
                    rate_limit: { key: header:X-Tenant, unit: bytes, rate: 1/h, burst: 3000 }
                upstreams:
                  - { name: app, endpoints: ["127.0.0.1:\(upstream.port)"] }
                sinks:
                  - name: archive
                    file: { directory: ./events }
                routes:
                  - name: ingest
                    match: { path: /events, methods: [POST] }
                    policies: [events]
                    ingest: { sink: archive, topic: t }
                  - name: upload
                    match: { path_prefix: /upload/ }
                    policies: [bytes]
                    proxy: { upstream: app }
                """)
        func ingest(_ count: Int) async throws -> Int {
            let body = (0..<count).map { #"{"n":\#($0)}"# }.joined(separator: "\n")
            return try await curl(["-H", "x-tenant: a", "-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/events"], body: Data(body.utf8)).status
        }
        await #expect(try ingest(8) == 200, "10 events allowed, 8 used")
        await #expect(try ingest(5) == 200, "2 left: admitted, the bucket goes into debt")
        let refused = try await curl(["-H", "x-tenant: a", "-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/events"], body: Data(#"{"n":1}"#.utf8))
        #expect(refused.status == 429 && refused.headers.lowercased().contains("retry-after:"))

        func upload(_ bytes: Int) async throws -> Int {
            try await curl(["-H", "x-tenant: a", "-X", "POST", "\(sluice.baseURL)/upload/x"], body: Data(repeating: 0x61, count: bytes)).status
        }
        await #expect(try upload(2000) == 200)
        await #expect(try upload(2000) == 200, "1000 bytes left: admitted")
        await #expect(try upload(10) == 429, "3000 bytes moved against 3000: in debt")
        await #expect(try ProxyTests.stats(upstream).requests == 2)
    }
}
