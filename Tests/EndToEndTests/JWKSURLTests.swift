import Crypto
import Foundation
import Testing

/// `jwt` with `jwks_url`: keys fetched over HTTPS from nginx (test CA), refetched when a token
/// names a key Sluice does not have (a rotation), and a provider that cannot be reached at start
/// does not stop Sluice.
@Suite(.timeLimit(.minutes(6))) struct JWKSURLTests {
    static func b64(_ data: some DataProtocol) -> String {
        Data(data).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func jwk(_ key: P256.Signing.PrivateKey, kid: String) -> String {
        let point = Array(key.publicKey.x963Representation)
        return #"{"kty":"EC","crv":"P-256","alg":"ES256","kid":"\#(kid)","x":"\#(b64(point[1..<33]))","y":"\#(b64(point[33..<65]))"}"#
    }

    static func token(_ key: P256.Signing.PrivateKey, kid: String) throws -> String {
        let header = b64(Data(#"{"alg":"ES256","typ":"JWT","kid":"\#(kid)"}"#.utf8))
        let exp = Int(Date().timeIntervalSince1970) + 600
        let claims = b64(Data(#"{"iss":"https://idp.test","aud":"sluice","sub":"producer-1","exp":\#(exp)}"#.utf8))
        let signature = try key.signature(for: Data("\(header).\(claims)".utf8)).rawRepresentation
        return "\(header).\(claims).\(b64(signature))"
    }

    @Test func keysComeFromAnHTTPSURLAndFollowARotation() async throws {
        let pki = try await TLSFixtures(in: URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("sluice-pki-\(UUID().uuidString)"))
        defer { try? FileManager.default.removeItem(at: pki.directory) }
        let first = P256.Signing.PrivateKey()
        let second = P256.Signing.PrivateKey()
        let jwksPath = pki.path("jwks.json")
        try #"{"keys":[\#(Self.jwk(first, kid: "k1"))]}"#.write(toFile: jwksPath, atomically: true, encoding: .utf8)
        let idp = try await startNginx("nginx-idp") { port in
            """
            listen 127.0.0.1:\(port) ssl;
            ssl_certificate \(pki.serverCertificate);
            ssl_certificate_key \(pki.serverKey);
            location = /jwks.json { default_type application/json; alias \(jwksPath); }
            """
        }
        let unreachable = try freePort()
        let sluice = try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                policies:
                  - name: idp
                    jwt:
                      issuer: https://idp.test
                      audiences: [sluice]
                      algorithms: [ES256]
                      jwks_url: { url: "https://127.0.0.1:\(idp.port)/jwks.json", ca_file: \(pki.caCertificate), min_refresh_interval: 200ms }
                  - name: gone
                    jwt:
                      issuer: https://idp.test
                      audiences: [sluice]
                      algorithms: [ES256]
                      jwks_url: { url: "https://127.0.0.1:\(unreachable)/jwks.json", timeout: 500ms }
                sinks:
                  - name: archive
                    file: { directory: ./events }
                routes:
                  - name: guarded
                    match: { path: /guarded, methods: [POST] }
                    policies: [idp]
                    ingest: { sink: archive, topic: guarded }
                  - name: orphan
                    match: { path: /orphan, methods: [POST] }
                    policies: [gone]
                    ingest: { sink: archive, topic: orphan }
                """)
        func post(_ path: String, _ token: String) async throws -> Int {
            try await curl(["-H", "authorization: Bearer \(token)", "-H", "content-type: application/json", "\(sluice.baseURL)\(path)"], body: Data("{}".utf8)).status
        }
        await #expect(try post("/guarded", Self.token(first, kid: "k1")) == 200)
        await #expect(try post("/guarded", Self.token(second, kid: "k2")) == 401, "k2 is not published yet")

        // The provider rotates: k2 replaces k1.
        try #"{"keys":[\#(Self.jwk(second, kid: "k2"))]}"#.write(toFile: jwksPath, atomically: true, encoding: .utf8)
        try await Task.sleep(for: .milliseconds(300))
        await #expect(try post("/guarded", Self.token(second, kid: "k2")) == 200, "an unknown kid makes Sluice fetch the keys again")
        await #expect(try post("/guarded", Self.token(first, kid: "k1")) == 401, "a key the provider dropped is dropped")

        // A provider that never answered: Sluice runs, and its tokens are refused.
        await #expect(try post("/orphan", Self.token(first, kid: "k1")) == 401)
        #expect(sluice.log.contains("JWKS fetch failed"))
    }
}
