import Crypto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import SluiceGRPC
import Testing

/// Route policies through the real binary: API keys, authorization rules and rate limits, on HTTP
/// and gRPC ingest alike (into a file sink: no broker needed).
@Suite(.timeLimit(.minutes(2))) struct PolicyIngestTests {
    static func hash(_ key: String) -> String {
        SHA256.hash(data: Array(key.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    static let config = """
        listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
        admin: { address: "127.0.0.1:{ADMIN_PORT}" }
        grpc: { address: "127.0.0.1:{GRPC_PORT}" }
        policies:
          - name: keys
            api_key:
              header: X-Api-Key
              keys:
                - { client: tenant-a, sha256: \(hash("key-a")) }
                - { client: tenant-b, sha256: \(hash("key-b")) }
                - { client: tenant-c, sha256: \(hash("key-c")) }
          - name: tenants-only
            authz:
              rules:
                - deny: { clients: [tenant-c] }
                - allow: { authenticated: true, methods: [POST] }
          - name: per-client
            rate_limit:
              key: client
              rate: 1/h
              burst: 3
              overrides: [{ value: tenant-b, rate: 1/h, burst: 5 }]
        sinks:
          - name: archive
            file: { directory: ./events }
        routes:
          - name: open
            match: { path: /open }
            ingest: { sink: archive, topic: open }
          - name: guarded
            match: { path: /guarded }
            policies: [per-client, tenants-only, keys]
            ingest: { sink: archive, topic: guarded }
          - name: grpc
            match: { grpc_service: sluice.v1.Ingest }
            policies: [keys, per-client]
            ingest: { sink: archive, topic: grpc }
        """

    func post(_ sluice: SluiceProcess, _ path: String, key: String?, method: String = "POST") throws -> CurlResponse {
        var arguments = ["-X", method, "-H", "content-type: application/json", "-d", #"{"n":1}"#, "\(sluice.baseURL)\(path)"]
        if let key { arguments += ["-H", "X-Api-Key: \(key)"] }
        return try curl(arguments)
    }

    @Test func httpRoutesRunTheirPoliciesInStageOrder() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        #expect(try self.post(sluice, "/open", key: nil).status == 200, "a route without policies is open")

        let missing = try self.post(sluice, "/guarded", key: nil)
        let wrong = try self.post(sluice, "/guarded", key: "key-z")
        #expect(missing.status == 401 && wrong.status == 401)
        #expect(missing.body == wrong.body, "missing and wrong keys get the same answer")
        #expect(!wrong.body.contains("key-z") && !wrong.body.contains("tenant"), "\(wrong.body)")

        #expect(try self.post(sluice, "/guarded", key: "key-c").status == 403, "denied by rule")
        #expect(try self.post(sluice, "/guarded", key: "key-a", method: "PUT").status == 403, "no rule allows PUT")

        // Rate limit per client, after authentication and authorization (the refused PUT spent
        // nothing): 3 for tenant-a, 5 for tenant-b (its own limit, not also the default 3).
        let a = try (0..<5).map { _ in try self.post(sluice, "/guarded", key: "key-a").status }
        #expect(a == [200, 200, 200, 429, 429], "\(a)")
        let b = try (0..<7).map { _ in try self.post(sluice, "/guarded", key: "key-b").status }
        #expect(b == [200, 200, 200, 200, 200, 429, 429], "\(b)")
        let limited = try self.post(sluice, "/guarded", key: "key-a")
        #expect(limited.status == 429)
        #expect(limited.headers.lowercased().contains("retry-after: "), "\(limited.headers)")
        #expect(limited.headers.lowercased().contains("ratelimit-limit: 3"), "\(limited.headers)")
        #expect(limited.body.contains("rate_limited"))
        #expect(try await sluice.terminate() == 0)
    }

    @Test func grpcCallsRunTheSamePolicies() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        func publish(_ key: String?) async throws -> RPCError.Code? {
            try await withGRPCClient(
                transport: .http2NIOPosix(target: .ipv4(address: "127.0.0.1", port: sluice.grpcPort), transportSecurity: .plaintext)
            ) { client in
                var metadata = Metadata()
                if let key { metadata.addString(key, forKey: "x-api-key") }
                do {
                    _ = try await Sluice_V1_Ingest.Client(wrapping: client).publish(
                        .with { $0.events = [.with { $0.value = Data(#"{"n":1}"#.utf8) }] }, metadata: metadata)
                    return nil
                } catch let error as RPCError {
                    return error.code
                }
            }
        }
        #expect(try await publish(nil) == .unauthenticated)
        #expect(try await publish("key-z") == .unauthenticated)
        // tenant-a's bucket (burst 3) is shared with nothing else in this process.
        var codes: [RPCError.Code?] = []
        for _ in 0..<4 { codes.append(try await publish("key-a")) }
        #expect(codes == [nil, nil, nil, .resourceExhausted], "\(codes)")
        #expect(try await sluice.terminate() == 0)
    }
}
