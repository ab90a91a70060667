import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import SluiceGRPC
import Testing

/// TLS on listeners through the real binary, with curl and openssl as clients: certificates by
/// SNI, ALPN h2, TLS 1.2 at least, client certificates required or optional (and their names
/// in authorization rules), and certificates replaced on disk while running.
@Suite(.timeLimit(.minutes(6))) struct ListenerTLSTests {
    /// The subject of the certificate a TLS listener presents for `serverName`.
    static func presentedSubject(port: Int, serverName: String) async throws -> String {
        let result = try await runProgram(
            "sh", ["-c", "openssl s_client -connect 127.0.0.1:\(port) -servername \(serverName) </dev/null 2>/dev/null | openssl x509 -noout -subject"])
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func listenersServeTLSWithSNIALPNClientCertificatesAndReload() async throws {
        let pki = try await TLSFixtures(in: URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("sluice-pki-\(UUID().uuidString)"))
        defer { try? FileManager.default.removeItem(at: pki.directory) }
        // The listener's files, replaced during the test.
        let liveCertificate = pki.path("live.pem")
        let liveKey = pki.path("live.key")
        try FileManager.default.copyItem(atPath: pki.serverCertificate, toPath: liveCertificate)
        try FileManager.default.copyItem(atPath: pki.serverKey, toPath: liveKey)
        let upstream = try await ProxyTests.upstream("app")
        let requiredPort = try freePort()
        let optionalPort = try freePort()
        let sluice = try await SluiceProcess(
            config: """
                listeners:
                  - name: public
                    address: "127.0.0.1:{PORT}"
                    tls:
                      certificates:
                        - { certificate_file: \(liveCertificate), key_file: \(liveKey) }
                        - { certificate_file: \(pki.path("other.pem")), key_file: \(pki.path("other.key")), server_names: [other.test] }
                      reload_interval: 200ms
                  - name: mutual
                    address: "127.0.0.1:\(requiredPort)"
                    tls:
                      certificates: [{ certificate_file: \(pki.serverCertificate), key_file: \(pki.serverKey) }]
                      client_certificates: required
                      client_ca_file: \(pki.caCertificate)
                  - name: mixed
                    address: "127.0.0.1:\(optionalPort)"
                    tls:
                      certificates: [{ certificate_file: \(pki.serverCertificate), key_file: \(pki.serverKey) }]
                      client_certificates: optional
                      client_ca_file: \(pki.caCertificate)
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                policies:
                  - name: workload-a
                    authz:
                      rules: [{ allow: { tls_principals: ["spiffe://sluice.test/client-a"] } }]
                upstreams:
                  - { name: app, endpoints: ["127.0.0.1:\(upstream.port)"] }
                routes:
                  - name: guarded
                    match: { path_prefix: /guarded/ }
                    policies: [workload-a]
                    proxy: { upstream: app }
                  - name: open
                    match: { path_prefix: / }
                    proxy: { upstream: app }
                """)
        let base = "https://127.0.0.1:\(sluice.port)"
        let trust = ["--cacert", pki.caCertificate]

        for version in ["--http1.1", "--http2"] {
            let response = try await curl(trust + [version, "\(base)/hello"])
            #expect(response.status == 200, "\(version): \(response.body)")
            #expect(response.httpVersion == (version == "--http2" ? "2" : "1.1"), "ALPN chose \(response.httpVersion)")
            #expect((response.json["headers"] as? [String: String])?["x-forwarded-proto"] == "https")
        }
        // SNI: other.test gets its own certificate (curl checks the name against it).
        let sni = try await curl(trust + ["--resolve", "other.test:\(sluice.port):127.0.0.1", "https://other.test:\(sluice.port)/sni"])
        #expect(sni.status == 200)
        #expect(try await Self.presentedSubject(port: sluice.port, serverName: "other.test").contains("CN = other.test"))
        #expect(try await Self.presentedSubject(port: sluice.port, serverName: "unknown.test").contains("CN = 127.0.0.1"), "the default for other names")
        // A client that half-closes (its close_notify after two pipelined requests) still gets
        // both answers, as over cleartext with a FIN.
        let requests = pki.path("half-close-requests.txt")
        try "GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n".write(toFile: requests, atomically: true, encoding: .utf8)
        let halfClosed = try await runProgram(
            "python3", [packageRoot.appendingPathComponent("scripts/testing/tls_half_close.py").path, "--port", String(sluice.port), "--ca", pki.caCertificate,
                "--request-file", requests])
        #expect(halfClosed.status == 0, "\(halfClosed.stderr)")
        #expect(halfClosed.stdout.components(separatedBy: "HTTP/1.1 200 OK").count == 3, "\(halfClosed.stdout)")
        let first = try #require(halfClosed.stdout.range(of: "/first")), second = try #require(halfClosed.stdout.range(of: "/second"))
        #expect(first.lowerBound < second.lowerBound, "answers in the order asked")
        // A client whose TCP input ends without a close_notify (many just close) is closed at once:
        // no TLS shutdown begun (its close_notify, then a wait for the client's that cannot come).
        let ragged = try await runProgram(
            "python3", [packageRoot.appendingPathComponent("scripts/testing/tls_half_close.py").path, "--port", String(sluice.port), "--ca", pki.caCertificate,
                "--ragged"])
        #expect(ragged.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0 eof", "\(ragged.stdout) \(ragged.stderr)")
        // Below TLS 1.2, and cleartext, get nothing.
        #expect(try await runProgram("curl", ["-sS", "--max-time", "10"] + trust + ["--tlsv1.0", "--tls-max", "1.1", "\(base)/old"]).status != 0)
        #expect((try? await curl(["http://127.0.0.1:\(sluice.port)/plain"]))?.status != 200)

        // Client certificates: required refuses a client without one at the handshake.
        let mutual = "https://127.0.0.1:\(requiredPort)/m"
        #expect(try await runProgram("curl", ["-sS", "--max-time", "10"] + trust + [mutual]).status != 0)
        let withCertificate = try await curl(trust + ["--cert", pki.clientCertificate, "--key", pki.clientKey, mutual])
        #expect(withCertificate.status == 200)
        // Optional: anyone connects, and the authorization rule wants the certificate's SPIFFE ID.
        let mixed = "https://127.0.0.1:\(optionalPort)"
        #expect(try await curl(trust + ["\(mixed)/open"]).status == 200)
        #expect(try await curl(trust + ["\(mixed)/guarded/x"]).status == 403)
        #expect(try await curl(trust + ["--cert", pki.clientCertificate, "--key", pki.clientKey, "\(mixed)/guarded/x"]).status == 200)
        // The same rule on a listener without client certificates: no names, refused.
        #expect(try await curl(trust + ["\(base)/guarded/x"]).status == 403)

        // Replace the certificate on disk: new connections get the new one, without a restart.
        try FileManager.default.removeItem(atPath: liveKey)
        try FileManager.default.copyItem(atPath: pki.path("renewed.key"), toPath: liveKey)
        try FileManager.default.removeItem(atPath: liveCertificate)
        try FileManager.default.copyItem(atPath: pki.path("renewed.pem"), toPath: liveCertificate)
        var subject = ""
        for _ in 0..<50 {
            try await Task.sleep(for: .milliseconds(100))
            subject = try await Self.presentedSubject(port: sluice.port, serverName: "127.0.0.1")
            if subject.contains("renewed-server") { break }
        }
        #expect(subject.contains("CN = renewed-server"), "\(subject)")
        #expect(try await curl(trust + ["\(base)/after-reload"]).status == 200)
        #expect(sluice.log.contains("TLS certificates reloaded"))
    }

    @Test func theGRPCListenerServesTLSAndRequiresClientCertificates() async throws {
        let pki = try await TLSFixtures(in: URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("sluice-pki-\(UUID().uuidString)"))
        defer { try? FileManager.default.removeItem(at: pki.directory) }
        let sluice = try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                grpc:
                  address: "127.0.0.1:{GRPC_PORT}"
                  tls:
                    certificates: [{ certificate_file: \(pki.serverCertificate), key_file: \(pki.serverKey) }]
                    client_certificates: required
                    client_ca_file: \(pki.caCertificate)
                policies:
                  - name: workload-a
                    authz: { rules: [{ allow: { tls_principals: ["spiffe://sluice.test/client-a"] } }] }
                  - name: workload-b
                    authz: { rules: [{ allow: { tls_principals: ["spiffe://sluice.test/client-b"] } }] }
                sinks:
                  - name: archive
                    file: { directory: ./events }
                routes:
                  - name: for-b
                    match: { grpc_service: sluice.v1.Ingest, headers: { x-route: b } }
                    policies: [workload-b]
                    ingest: { sink: archive, topic: grpc-b }
                  - name: grpc
                    match: { grpc_service: sluice.v1.Ingest }
                    policies: [workload-a]
                    ingest: { sink: archive, topic: grpc }
                """)
        /// Events accepted, or nil with the call's error code (when the call got that far).
        let refusals = Counter()
        func publish(_ security: HTTP2ClientTransport.Posix.TransportSecurity, route: String = "a") async -> Int? {
            do {
                return try await withGRPCClient(
                    transport: .http2NIOPosix(target: .ipv4(address: "127.0.0.1", port: sluice.grpcPort), transportSecurity: security)
                ) { client in
                    // Generous: blocking helpers of other tests (curl, openssl) can hold this
                    // process's few concurrency threads for seconds; only a hang should fail it.
                    var options = CallOptions.defaults
                    options.timeout = .seconds(90)
                    let response = try await Sluice_V1_Ingest.Client(wrapping: client).publish(
                        .with { $0.events = [.with { $0.value = Data(#"{"n":1}"#.utf8) }] }, metadata: ["x-route": .string(route)], options: options)
                    return response.results.count
                }
            } catch {
                if let error = error as? RPCError, error.code == .permissionDenied { refusals.increment() }
                print("gRPC TLS publish failed: \(error)")
                return nil
            }
        }
        let trusted: (inout HTTP2ClientTransport.Posix.TransportSecurity.TLS) -> Void = { config in
            config.trustRoots = .certificates([.file(path: pki.caCertificate, format: .pem)])
        }
        let clientA: HTTP2ClientTransport.Posix.TransportSecurity = .mTLS(
            certificateChain: [.file(path: pki.clientCertificate, format: .pem)], privateKey: .file(path: pki.clientKey, format: .pem),
            configure: trusted)
        let withCertificate = await publish(clientA)
        // The certificate's SPIFFE ID reaches the policies: client-a may not use route b.
        #expect(await publish(clientA, route: "b") == nil, "the rule for client-b refuses client-a's certificate")
        #expect(refusals.value == 1, "refused by the policy (PERMISSION_DENIED), not by the handshake")
        #expect(withCertificate == 1, "a client with a certificate from the CA publishes; log:\n\(sluice.log.suffix(4000))")
        #expect(await publish(.tls(configure: trusted)) == nil, "no client certificate: refused at the handshake")
        #expect(await publish(.plaintext) == nil, "no TLS: refused")
    }
}
