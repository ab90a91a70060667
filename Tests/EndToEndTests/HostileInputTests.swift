import Crypto
import Foundation
import Testing

/// Hostile input against the real binary: scripts/testing/hostile_input.py sends the raw bytes
/// (HTTP/1.1 framing and smuggling, paths, headers, JSON, JWT, basic auth, API keys, rate-limit
/// spoofing, HTTP/2 frames, gRPC) and checks each exact answer, that the process stays alive, and
/// that its RSS and descriptors come back to the baseline.
@Suite(.timeLimit(.minutes(6))) struct HostileInputTests {
    static let jwtSecret = "hostile-suite-secret-of-32-bytes!!"

    static func config(upstream: Int, htpasswd: String, jwks: String, schema: String) -> String {
        """
        listeners:
          - { name: main, address: "127.0.0.1:{PORT}", idle_timeout: 3s, max_header_bytes: 8KiB }
        admin: { address: "127.0.0.1:{ADMIN_PORT}" }
        grpc: { address: "127.0.0.1:{GRPC_PORT}", idle_timeout: 3s, max_connections: 200, max_message_bytes: 32KiB }
        policies:
          - name: no-secrets
            authz:
              default: allow
              rules: [{ deny: { path_prefixes: [/static/secret] } }]
          - name: keys
            api_key:
              keys: [{ client: hostile, sha256: \(SHA256.hash(data: Array("hostile-key".utf8)).map { String(format: "%02x", $0) }.joined()) }]
          - name: tokens
            jwt:
              issuer: https://issuer.test
              audiences: [sluice]
              algorithms: [HS256, RS256]
              jwks_file: "\(jwks)"
              hmac_keys: [{ kid: hs, secret: { env: JWT_SECRET } }]
          - name: users
            basic_auth: { htpasswd_file: "\(htpasswd)" }
          - name: per-ip
            rate_limit: { key: source_ip, rate: 1/h, burst: 3 }
        upstreams:
          - name: app
            endpoints: ["127.0.0.1:\(upstream)"]
            outlier_detection: { consecutive_failures: 2, base_ejection_time: 60s, max_ejection_percent: 100 }
        sinks:
          - name: events
            file: { directory: ./events }
        routes:
          - name: static
            match: { path_prefix: /static/ }
            policies: [no-secrets]
            proxy: { upstream: app, path_rewrite: / }
          - name: events
            match: { path: "/v1/events/{topic}", methods: [POST] }
            ingest: { sink: events, topic: "{topic}", max_event_bytes: 1KiB }
          - name: keyed
            match: { path: "/v1/keyed/{topic}", methods: [POST] }
            ingest: { sink: events, topic: "{topic}", key: "json:/k" }
          - name: api-key
            match: { path: "/v1/key/{topic}" }
            policies: [keys]
            ingest: { sink: events, topic: "{topic}" }
          - name: jwt
            match: { path: "/v1/jwt/{topic}" }
            policies: [tokens]
            ingest: { sink: events, topic: "{topic}" }
          - name: basic
            match: { path: "/v1/basic/{topic}" }
            policies: [users]
            ingest: { sink: events, topic: "{topic}" }
          - name: limited
            match: { path: "/v1/limited/{topic}" }
            policies: [per-ip]
            ingest: { sink: events, topic: "{topic}" }
          - name: checked
            match: { path: "/v1/checked/{topic}", methods: [POST] }
            ingest: { sink: events, topic: "{topic}", schema: { json_schema_file: "\(schema)" } }
          - name: once
            match: { path: "/v1/once/{topic}", methods: [POST] }
            ingest: { sink: events, topic: "{topic}" }
            idempotency: { window: 1h, max_keys: 100 }
          - name: grpc
            match: { grpc_service: sluice.v1.Ingest }
            ingest: { sink: events, topic: "{topic}" }
        """
    }

    @Test func everyHostileInputGetsItsExactAnswerAndLeavesNothingBehind() async throws {
        let upstream = try await ProxyTests.upstream("hostile")
        let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("sluice-hostile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        // An htpasswd -B entry ($2y$, "correct horse"), and an RSA key with its JWKS.
        let htpasswd = directory.appendingPathComponent("htpasswd").path
        try "apache:$2y$05$3NZH.ijqdULpAJokzL/FW.bDCeGVgVedi2/n0Jx2oQMym.iwNtUlC\n".write(toFile: htpasswd, atomically: true, encoding: .utf8)
        let keys = try await runProgram(
            "python3",
            [
                "-c",
                """
                import base64, json, sys
                from cryptography.hazmat.primitives import serialization
                from cryptography.hazmat.primitives.asymmetric import rsa
                d = sys.argv[1]
                key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                open(d + "/rsa.pem", "wb").write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
                open(d + "/rsa.pub.pem", "wb").write(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
                n = key.public_key().public_numbers()
                b = lambda i: base64.urlsafe_b64encode(i.to_bytes((i.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()
                json.dump({"keys": [{"kty": "RSA", "kid": "rsa", "alg": "RS256", "use": "sig", "n": b(n.n), "e": b(n.e)}]}, open(d + "/jwks.json", "w"))
                """,
                directory.path,
            ])
        #expect(keys.status == 0, "\(keys.stderr)")
        let schema = directory.appendingPathComponent("event.json").path
        try #"{"type": "object", "properties": {"n": {"type": "number", "maximum": 10}, "s": {"type": "string", "maxLength": 3}}}"#
            .write(toFile: schema, atomically: true, encoding: .utf8)
        let sluice = try await SluiceProcess(
            config: Self.config(upstream: upstream.port, htpasswd: htpasswd, jwks: directory.appendingPathComponent("jwks.json").path, schema: schema),
            environment: ["JWT_SECRET": Self.jwtSecret])
        let pid = sluice.process.processIdentifier
        let (port, adminPort, grpcPort, events) = (sluice.port, sluice.adminPort, sluice.grpcPort, sluice.workDirectory.appendingPathComponent("events").path)
        let suite = try await runProgram(
            "python3",
            [
                packageRoot.appendingPathComponent("scripts/testing/hostile_input.py").path,
                "--pid", String(pid), "--port", String(port), "--admin", String(adminPort),
                "--grpc", String(grpcPort), "--upstream-control", upstream.endpoint,
                "--events-dir", events, "--jwt-secret", Self.jwtSecret,
                "--rsa-public-pem", directory.appendingPathComponent("rsa.pub.pem").path,
                "--rsa-private-pem", directory.appendingPathComponent("rsa.pem").path,
            ])
        let failures = suite.stdout.split(separator: "\n").filter { $0.hasPrefix("FAIL") }
        #expect(suite.status == 0, "hostile input suite failed:\n\(failures.joined(separator: "\n"))\n\(suite.stderr.suffix(2000))")
        // At least 60 cases ran (the closing line counts them).
        let closing = suite.stdout.split(separator: "\n").last { $0.hasPrefix("hostile input:") } ?? ""
        let passed = closing.split(separator: " ").dropFirst(2).first.flatMap { Int($0) } ?? 0
        print("hostile input suite: \(closing.dropFirst("hostile input: ".count))")
        #expect(passed >= 60, "\(closing)")
        #expect(sluice.process.isRunning, "sluice died:\n\(sluice.log.suffix(4000))")
        #expect(!sluice.log.contains("Fatal error"), "\(sluice.log.suffix(4000))")
    }

    /// Connection floods under a low descriptor limit: the gRPC listener's max_connections keeps
    /// room for HTTP clients, the process-wide reserve keeps the admin port answering when every
    /// data port is flooded, and idle gRPC connections are closed after idle_timeout.
    @Test func connectionFloodsCannotTakeTheAdminPortDown() async throws {
        let config = """
            listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
            admin: { address: "127.0.0.1:{ADMIN_PORT}" }
            grpc: { address: "127.0.0.1:{GRPC_PORT}", idle_timeout: 3s, max_connections: 600 }
            process: { descriptor_reserve: 200 }
            sinks: [{ name: events, file: { directory: ./events } }]
            routes:
              - { name: events, match: { path: "/v1/events/{topic}" }, ingest: { sink: events, topic: "{topic}" } }
              - { name: grpc, match: { grpc_service: sluice.v1.Ingest }, ingest: { sink: events, topic: "{topic}" } }
            """
        let sluice = try await SluiceProcess(config: config, launcher: ["prlimit", "--nofile=1024:1024", "--"])
        #expect(sluice.log.contains("client_connections_max=824"), "\(sluice.log.suffix(2000))")
        // The connections are held by a helper process: the test runner must stay far below
        // 1024 descriptors (Foundation's Process cannot spawn above that).
        let arguments = [
            packageRoot.appendingPathComponent("scripts/testing/connection_flood.py").path, "--pid", String(sluice.process.processIdentifier),
            "--port", String(sluice.port), "--admin", String(sluice.adminPort), "--grpc", String(sluice.grpcPort), "--grpc-max", "600",
            "--idle", "3",
        ]
        let flood = try await runProgram("python3", arguments)
        #expect(flood.status == 0, "\(flood.stdout)\n\(flood.stderr.suffix(2000))")
        #expect(sluice.process.isRunning)
    }
}
