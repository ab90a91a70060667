import Crypto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import SluiceGRPC
import Testing

/// Route policies through the real binary: API keys, authorization rules and rate limits, on HTTP
/// and gRPC ingest alike (into a file sink: no broker needed).
@Suite(.timeLimit(.minutes(6))) struct PolicyIngestTests {
    static func hash(_ key: String) -> String {
        SHA256.hash(data: Array(key.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// htpasswd with one `htpasswd -s` entry ("password") and one bcrypt entry ("U*U").
    static let htpasswd = packageRoot.appendingPathComponent("Tests/Fixtures/policy/users.htpasswd").path

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
          - name: tokens
            jwt:
              issuer: https://issuer.example
              audiences: [sluice]
              algorithms: [HS256]
              hmac_keys: [{ kid: hs-1, secret: { env: JWT_SECRET } }]
              claims_to_headers: { tenant: X-Tenant }
          - name: users
            basic_auth: { htpasswd_file: "\(htpasswd)", realm: events }
          - name: browsers
            cors:
              allow_origins: [https://app.example]
              allow_methods: [POST]
              allow_headers: [content-type, x-api-key]
              expose_headers: [retry-after]
              max_age: 10m
          - name: per-client
            rate_limit:
              key: client
              rate: 1/h
              burst: 3
              overrides: [{ value: tenant-b, rate: 1/h, burst: 5 }]
          - name: per-client-events
            rate_limit: { key: client, unit: events, rate: 1/h, burst: 10 }
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
          - name: browser
            match: { path: /browser, methods: [POST] }
            policies: [keys, browsers]
            ingest: { sink: archive, topic: browser }
          - name: basic
            match: { path: /basic }
            policies: [users]
            ingest: { sink: archive, topic: basic }
          - name: claims
            match: { path: /claims }
            policies: [tokens]
            ingest: { sink: archive, topic: claims, headers_to_kafka: [X-Tenant] }
          - name: grpc-events
            match: { grpc_service: sluice.v1.Ingest, headers: { x-route: events } }
            policies: [keys, per-client-events]
            ingest: { sink: archive, topic: grpc-events }
          - name: grpc
            match: { grpc_service: sluice.v1.Ingest }
            policies: [keys, per-client]
            ingest: { sink: archive, topic: grpc }
        """

    func post(_ sluice: SluiceProcess, _ path: String, key: String?, method: String = "POST") async throws -> CurlResponse {
        var arguments = ["-X", method, "-H", "content-type: application/json", "-d", #"{"n":1}"#, "\(sluice.baseURL)\(path)"]
        if let key { arguments += ["-H", "X-Api-Key: \(key)"] }
        return try await curl(arguments)
    }

    @Test func httpRoutesRunTheirPoliciesInStageOrder() async throws {
        let sluice = try await SluiceProcess(config: Self.config, environment: ["JWT_SECRET": Self.jwtSecret])
        await #expect(try self.post(sluice, "/open", key: nil).status == 200, "a route without policies is open")

        let missing = try await self.post(sluice, "/guarded", key: nil)
        let wrong = try await self.post(sluice, "/guarded", key: "key-z")
        #expect(missing.status == 401 && wrong.status == 401)
        #expect(missing.body == wrong.body, "missing and wrong keys get the same answer")
        #expect(!wrong.body.contains("key-z") && !wrong.body.contains("tenant"), "\(wrong.body)")

        await #expect(try self.post(sluice, "/guarded", key: "key-c").status == 403, "denied by rule")
        await #expect(try self.post(sluice, "/guarded", key: "key-a", method: "PUT").status == 403, "no rule allows PUT")

        // Rate limit per client, after authentication and authorization (the refused PUT spent
        // nothing): 3 for tenant-a, 5 for tenant-b (its own limit, not also the default 3).
        var a: [Int] = []
        for _ in 0..<5 { a.append(try await self.post(sluice, "/guarded", key: "key-a").status) }
        #expect(a == [200, 200, 200, 429, 429], "\(a)")
        var b: [Int] = []
        for _ in 0..<7 { b.append(try await self.post(sluice, "/guarded", key: "key-b").status) }
        #expect(b == [200, 200, 200, 200, 200, 429, 429], "\(b)")
        let limited = try await self.post(sluice, "/guarded", key: "key-a")
        #expect(limited.status == 429)
        #expect(limited.headers.lowercased().contains("retry-after: "), "\(limited.headers)")
        #expect(limited.headers.lowercased().contains("ratelimit-limit: 3"), "\(limited.headers)")
        #expect(limited.body.contains("rate_limited"))
        #expect(try await sluice.terminate() == 0)
    }

    static let jwtSecret = "an-hmac-secret-of-at-least-32-bytes-\(UUID().uuidString.prefix(8))"

    static func jwt(_ claims: [String: Any], secret: String = jwtSecret) -> String {
        func b64(_ data: Data) -> String {
            data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: "")
        }
        let header = try! JSONSerialization.data(withJSONObject: ["alg": "HS256", "kid": "hs-1", "typ": "JWT"])
        let payload = try! JSONSerialization.data(withJSONObject: claims)
        let input = b64(header) + "." + b64(payload)
        let mac = HMAC<SHA256>.authenticationCode(for: Data(input.utf8), using: SymmetricKey(data: Data(secret.utf8)))
        return input + "." + b64(Data(mac))
    }

    @Test func corsPreflightsAreAnsweredAndForeignOriginsRefused() async throws {
        let sluice = try await SluiceProcess(config: Self.config, environment: ["JWT_SECRET": Self.jwtSecret])
        func preflight(_ origin: String, headers: String = "content-type, x-api-key") async throws -> CurlResponse {
            try await curl([
                "-X", "OPTIONS", "-H", "Origin: \(origin)", "-H", "Access-Control-Request-Method: POST",
                "-H", "Access-Control-Request-Headers: \(headers)", "\(sluice.baseURL)/browser",
            ])
        }
        let ok = try await preflight("https://app.example")
        #expect(ok.status == 204, "a preflight needs no credentials: \(ok.body)")
        let answer = ok.headers.lowercased()
        #expect(answer.contains("access-control-allow-origin: https://app.example"))
        #expect(answer.contains("access-control-allow-methods: post"))
        #expect(answer.contains("access-control-allow-headers: content-type, x-api-key"))
        #expect(answer.contains("access-control-max-age: 600"))
        await #expect(try preflight("https://evil.example").status == 403)
        let noOrigin = try await curl(["-X", "OPTIONS", "-H", "Access-Control-Request-Method: POST", "-H", "X-Api-Key: key-a", "\(sluice.baseURL)/browser"])
        #expect(noOrigin.status == 403, "an OPTIONS request never reaches the ingest handler: \(noOrigin.body)")
        await #expect(try preflight("https://app.example", headers: "x-other").status == 403)

        func post(_ origin: String?) async throws -> CurlResponse {
            var arguments = ["-X", "POST", "-H", "content-type: application/json", "-H", "X-Api-Key: key-a", "-d", #"{"n":1}"#]
            if let origin { arguments += ["-H", "Origin: \(origin)"] }
            return try await curl(arguments + ["\(sluice.baseURL)/browser"])
        }
        let allowed = try await post("https://app.example")
        #expect(allowed.status == 200)
        #expect(allowed.headers.lowercased().contains("access-control-allow-origin: https://app.example"))
        #expect(allowed.headers.lowercased().contains("vary: origin"))
        #expect(allowed.headers.lowercased().contains("access-control-expose-headers: retry-after"))
        await #expect(try post("https://evil.example").status == 403, "a simple cross-site POST is refused, not just unreadable")
        let direct = try await post(nil)
        #expect(direct.status == 200 && !direct.headers.lowercased().contains("access-control"), "no Origin: not a browser call")
        #expect(try await sluice.terminate() == 0)
    }

    @Test func basicAuthChecksHtpasswdEntries() async throws {
        let sluice = try await SluiceProcess(config: Self.config, environment: ["JWT_SECRET": Self.jwtSecret])
        func post(_ credentials: String?) async throws -> CurlResponse {
            var arguments = ["-X", "POST", "-H", "content-type: application/json", "-d", #"{"n":1}"#, "\(sluice.baseURL)/basic"]
            if let credentials { arguments += ["-u", credentials] }
            return try await curl(arguments)
        }
        await #expect(try post("legacy:password").status == 200)
        await #expect(try post("vector:U*U").status == 200)
        let wrong = try await post("vector:U*u")
        #expect(wrong.status == 401)
        #expect(wrong.headers.lowercased().contains("www-authenticate: basic realm=\"events\""), "\(wrong.headers)")
        await #expect(try post(nil).status == 401)
        #expect(try await sluice.terminate() == 0)
    }

    @Test func verifiedClaimsBecomeRecordHeadersAndOverrideTheClients() async throws {
        let sluice = try await SluiceProcess(config: Self.config, environment: ["JWT_SECRET": Self.jwtSecret])
        let now = Date().timeIntervalSince1970
        let claims: [String: Any] = ["iss": "https://issuer.example", "aud": "sluice", "sub": "u1", "tenant": "acme", "exp": now + 300]
        func post(_ token: String) async throws -> CurlResponse {
            try await curl([
                "-X", "POST", "-H", "content-type: application/json", "-H", "Authorization: Bearer \(token)", "-H", "X-Tenant: evil",
                "-d", #"{"n":1}"#, "\(sluice.baseURL)/claims",
            ])
        }
        await #expect(try post(Self.jwt(claims)).status == 200)
        var untenanted = claims
        untenanted["tenant"] = nil
        await #expect(try post(Self.jwt(untenanted)).status == 200, "a token without the claim: the client's header is dropped")
        var splitting = claims
        splitting["tenant"] = "acme\r\nx-admin: 1"
        await #expect(try post(Self.jwt(splitting)).status == 200, "a claim no header may carry: dropped like an absent one")
        var expired = claims
        expired["exp"] = now - 3600
        await #expect(try post(Self.jwt(expired)).status == 401)
        await #expect(try post(Self.jwt(claims, secret: Self.jwtSecret + "x")).status == 401)
        #expect(try await sluice.terminate() == 0)
        let directory = sluice.workDirectory.appendingPathComponent("events")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        let text = try files.map { try String(contentsOf: directory.appendingPathComponent($0), encoding: .utf8) }.joined()
        let lines = text.split(separator: "\n").filter { $0.contains("\"claims\"") }
        #expect(lines.count == 3, "\(text)")
        #expect(lines.first?.contains(#""X-Tenant":"acme""#) == true, "the verified claim, not the client's header: \(lines)")
        #expect(lines.dropFirst().allSatisfy { !$0.contains("X-Tenant") }, "\(lines)")
        #expect(!text.contains("evil") && !text.contains("x-admin"))
    }

    /// One unary Publish of one event: nil when accepted, else the call's status.
    func publishOne(_ sluice: SluiceProcess, metadata: Metadata) async throws -> RPCError.Code? {
        try await withGRPCClient(
            transport: .http2NIOPosix(target: .ipv4(address: "127.0.0.1", port: sluice.grpcPort), transportSecurity: .plaintext)
        ) { client in
            do {
                _ = try await Sluice_V1_Ingest.Client(wrapping: client).publish(
                    .with { $0.events = [.with { $0.value = Data(#"{"n":1}"#.utf8) }] }, metadata: metadata)
                return nil
            } catch let error as RPCError {
                return error.code
            }
        }
    }

    @Test func grpcCallsRunTheSamePolicies() async throws {
        let sluice = try await SluiceProcess(config: Self.config, environment: ["JWT_SECRET": Self.jwtSecret])
        func publish(_ key: String?) async throws -> RPCError.Code? {
            var metadata = Metadata()
            if let key { metadata.addString(key, forKey: "x-api-key") }
            return try await self.publishOne(sluice, metadata: metadata)
        }
        #expect(try await publish(nil) == .unauthenticated)
        #expect(try await publish("key-z") == .unauthenticated)
        // tenant-a's bucket (burst 3) is shared with nothing else in this process.
        var codes: [RPCError.Code?] = []
        for _ in 0..<4 { codes.append(try await publish("key-a")) }
        #expect(codes == [nil, nil, nil, .resourceExhausted], "\(codes)")
        #expect(try await sluice.terminate() == 0)
    }

    /// A rate limit in events sees what a whole stream handed over, once the stream is over.
    @Test func aGRPCStreamIsChargedItsEventsWhenItEnds() async throws {
        let sluice = try await SluiceProcess(config: Self.config, environment: ["JWT_SECRET": Self.jwtSecret])
        var metadata = Metadata()
        metadata.addString("key-b", forKey: "x-api-key")
        metadata.addString("events", forKey: "x-route")
        // tenant-b's event bucket holds 10: a stream of three batches of 4 is admitted (the bucket
        // is not in debt when it opens) and leaves it 2 in debt once charged.
        let acks = try await withGRPCClient(transport: .http2NIOPosix(target: .ipv4(address: "127.0.0.1", port: sluice.grpcPort), transportSecurity: .plaintext)) { client in
            try await Sluice_V1_Ingest.Client(wrapping: client).publishStream(metadata: metadata) { writer in
                for sequence in 0..<3 {
                    try await writer.write(
                        .with {
                            $0.sequence = UInt64(sequence)
                            $0.events = (0..<4).map { i in .with { $0.value = Data(#"{"i":\#(i)}"#.utf8) } }
                        })
                }
            } onResponse: { response in
                var acks = 0
                for try await ack in response.messages where ack.durable { acks += 1 }
                return acks
            }
        }
        #expect(acks == 3)
        let refused = try await self.publishOne(sluice, metadata: metadata)
        #expect(refused == .resourceExhausted, "12 events charged against a burst of 10")
        #expect(try await sluice.terminate() == 0)
    }
}
