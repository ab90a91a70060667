import AsyncHTTPClient
import Foundation
import Testing
import ZerobusSink

/// The project's Zerobus test server (connectors/zerobus/testserver) is only worth testing Sluice
/// against if it speaks the real protocol: the official Python SDK (databricks-zerobus-ingest-sdk
/// 1.10.0, in the venv scripts/setup.sh makes) must get through OAuth, ingest, durability acks,
/// recovery after UNAVAILABLE (new stream, unacknowledged records resent) and close_stream_signal.
@Suite(.timeLimit(.minutes(6))) struct ZerobusTestServerTests {
    static let server = packageRoot.appendingPathComponent("connectors/zerobus/testserver/zerobus_test_server.py").path
    static let check = packageRoot.appendingPathComponent("scripts/testing/zerobus_sdk_check.py").path
    static let sdkPython = packageRoot.appendingPathComponent(".testbed/zerobus-sdk/bin/python").path

    @Test func theOfficialSDKIngestsThroughTheTestServer() async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.sdkPython) else {
            throw HarnessError("no SDK venv at \(Self.sdkPython); run scripts/setup.sh")
        }
        let server = try await PeerProcess(
            "zerobus", ["python3", Self.server, "--grpc-port", "{PORT}", "--http-port", "{PORT2}", "--client-id", "sdk-client",
                        "--client-secret", "sdk-secret"])
        let result = try await runProgram(
            Self.sdkPython, [Self.check, String(server.port), String(server.port2), "sdk-client", "sdk-secret", "main.default.events"])
        #expect(result.status == 0, "SDK check failed: \(result.stderr.suffix(2000))\n\(server.logText)")
        let summary = result.stdout.split(separator: "\n").last.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(summary?["missing"] as? Int == 0 && summary?["sent"] as? Int == 150, "\(result.stdout.suffix(1000))")
    }

    struct TokenRequest: Decodable {
        var basic_auth: Bool
        var scope: String?
        var resource: String?
        var tables: [String]?
    }

    struct Stats: Decodable {
        var token_requests: [TokenRequest]
    }

    @Test func sluiceGetsTokensPerTableCachesThemAndRenewsThemBeforeExpiry() async throws {
        // Tokens live 40 s; the renewal margin (60 s, at most half a token's life) renews 20 s after
        // the request for it started. The provider's clock is moved by hand: in the full parallel
        // suite one token request has taken over 13 s of wall time.
        let server = try await PeerProcess(
            "zerobus", ["python3", Self.server, "--grpc-port", "{PORT}", "--http-port", "{PORT2}", "--client-id", "sluice-client",
                        "--client-secret", "sluice-secret", "--token-ttl", "40"])
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            try await self.checkTokens(server: server, client: client)
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }

    func checkTokens(server: PeerProcess, client: HTTPClient) async throws {
        // The token endpoint answers before the first timed call (the server binds it before
        // its gRPC port, which PeerProcess waits for; check anyway).
        #expect(try await curl(["http://127.0.0.1:\(server.port2)/_stats"]).status == 200)
        func stats() async throws -> Stats {
            try JSONDecoder().decode(Stats.self, from: Data(try await curl(["http://127.0.0.1:\(server.port2)/_stats"]).body.utf8))
        }
        let clock = ManualClock()
        let tokens = ZerobusTokenProvider(
            workspaceURL: URL(string: "http://127.0.0.1:\(server.port2)")!, workspaceID: "1234567890", clientID: "sluice-client",
            clientSecret: "sluice-secret", httpClient: client, now: { clock.now })
        let first = try await tokens.token(for: "main.sales.orders")
        #expect(try await tokens.token(for: "main.sales.orders") == first, "cached")
        let other = try await tokens.token(for: "main.sales.refunds")
        #expect(other != first, "one token per table")
        var requests = try await stats().token_requests
        #expect(requests.count == 2)
        #expect(requests.allSatisfy { $0.basic_auth && $0.scope == "all-apis" })
        #expect(requests.first?.resource == "api://databricks/workspaces/1234567890/zerobusDirectWriteApi")
        #expect(requests.map { $0.tables ?? [] } == [["main.sales.orders"], ["main.sales.refunds"]], "the server granted each table")

        clock.advance(by: .seconds(19))
        #expect(try await tokens.token(for: "main.sales.orders") == first, "still within its first 20 s")
        clock.advance(by: .seconds(2))
        let renewed = try await tokens.token(for: "main.sales.orders")
        #expect(renewed != first, "renewed before expiry")
        requests = try await stats().token_requests
        #expect(requests.count == 3)

        // Concurrent callers for a table without a token share one request.
        async let a = tokens.token(for: "main.sales.returns")
        async let b = tokens.token(for: "main.sales.returns")
        let (tokenA, tokenB) = try await (a, b)
        #expect(tokenA == tokenB)
        await #expect(try stats().token_requests.count == 4)

        // A wrong secret is refused for good, and says so without the secret.
        let wrong = ZerobusTokenProvider(
            workspaceURL: URL(string: "http://127.0.0.1:\(server.port2)")!, workspaceID: "1", clientID: "sluice-client",
            clientSecret: "not-the-secret", httpClient: client)
        do {
            _ = try await wrong.token(for: "main.sales.orders")
            Issue.record("a wrong secret must be refused")
        } catch let error as ZerobusTokenError {
            #expect(error.isPermanent && "\(error)".contains("invalid_client") && !"\(error)".contains("not-the-secret"))
        }
    }
}

/// A clock that moves only when told to.
final class ManualClock: @unchecked Sendable {
    private let lock = NSLock()
    private var offset = Duration.zero
    private let start = ContinuousClock.now
    var now: ContinuousClock.Instant { self.lock.withLock { self.start + self.offset } }
    func advance(by duration: Duration) { self.lock.withLock { self.offset += duration } }
}
