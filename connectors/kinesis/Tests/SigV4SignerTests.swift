import Foundation
import NIOCore
import Testing

@testable import KinesisSink

/// The signer against botocore: Fixtures/sigv4.json holds botocore's canonical request, string
/// to sign and signature for each case (regenerate with scripts/testing/sigv4_fixtures.py).
struct SigV4SignerTests {
    struct Fixture: Decodable, CustomTestStringConvertible {
        var name: String
        var method: String
        var url: String
        var params: [[String]]
        var headers: [[String]]
        var body: String
        var region: String
        var service: String
        var session_token: String?
        var access_key_id: String
        var secret_access_key: String
        var timestamp: String
        var canonical_request: String
        var string_to_sign: String
        var signature: String
        var authorization: String

        var testDescription: String { self.name }
    }

    static let fixtures: [Fixture] = {
        struct File: Decodable { var cases: [Fixture] }
        let url = Bundle.module.url(forResource: "sigv4", withExtension: "json", subdirectory: "Fixtures")!
        return try! JSONDecoder().decode(File.self, from: Data(contentsOf: url)).cases
    }()

    static func date(_ timestamp: String) -> Date {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return formatter.date(from: timestamp)!
    }

    @Test func everyBotocoreCaseIsCovered() {
        let names = Set(Self.fixtures.map(\.name))
        #expect(
            names.isSuperset(of: ["host-with-port", "empty-body", "query-string-encoding", "header-value-whitespace", "session-token"]))
    }

    @Test(arguments: fixtures) func matchesBotocore(_ fixture: Fixture) throws {
        let url = try #require(URL(string: fixture.url))
        let scheme = url.scheme ?? "https"
        let host = url.port.map { $0 == (scheme == "https" ? 443 : 80) ? url.host! : "\(url.host!):\($0)" } ?? url.host!
        let path = String(fixture.url.dropFirst("\(scheme)://\(url.host!)".count + (url.port.map { ":\($0)".count } ?? 0)))
        let signer = SigV4Signer(region: fixture.region, service: fixture.service)
        let credentials = AWSCredentials(
            accessKeyID: fixture.access_key_id, secretAccessKey: fixture.secret_access_key, sessionToken: fixture.session_token)
        let signed = signer.sign(
            method: fixture.method, host: host, path: path, query: fixture.params.map { ($0[0], $0[1]) },
            headers: fixture.headers.map { ($0[0], $0[1]) }, payloadSHA256: SigV4Signer.hexSHA256(Data(fixture.body.utf8)),
            credentials: credentials, date: Self.date(fixture.timestamp))
        #expect(signed.canonicalRequest == fixture.canonical_request)
        #expect(signed.stringToSign == fixture.string_to_sign)
        #expect(signed.signature == fixture.signature)
        #expect(signed.headers.first { $0.name == "Authorization" }?.value == fixture.authorization)
        #expect(signed.headers.first { $0.name == "X-Amz-Date" }?.value == fixture.timestamp)
        #expect(signed.headers.first { $0.name == "X-Amz-Security-Token" }?.value == fixture.session_token)
    }

    @Test func aChangedSecretChangesTheSignature() {
        let signer = SigV4Signer(region: "us-east-1", service: "kinesis")
        func signature(_ secret: String) -> String {
            signer.sign(
                method: "POST", host: "h", path: "/", headers: [], payloadSHA256: SigV4Signer.hexSHA256(Data()),
                credentials: AWSCredentials(accessKeyID: "AKID", secretAccessKey: secret), date: Date(timeIntervalSince1970: 0)
            ).signature
        }
        #expect(signature("a") != signature("b"))
    }

    @Test func credentialsNeverPrintTheirSecrets() {
        let credentials = AWSCredentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "SECRETVALUE", sessionToken: "TOKENVALUE")
        let text = "\(credentials) \(String(reflecting: credentials))"
        #expect(!text.contains("SECRETVALUE") && !text.contains("TOKENVALUE"))
        #expect(text.contains("AKIDEXAMPLE"))
    }
}
