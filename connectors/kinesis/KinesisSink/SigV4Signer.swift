import Crypto
import Foundation
import NIOConcurrencyHelpers
import SluiceCore

/// AWS credentials. The secret and the session token never appear in `description`.
public struct AWSCredentials: Sendable, Equatable, CustomStringConvertible {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?
    /// When temporary credentials stop working; nil for long-term keys.
    public var expiration: Date?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil, expiration: Date? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.expiration = expiration
    }

    public var description: String {
        "AWSCredentials(accessKeyID: \(self.accessKeyID), secretAccessKey: <redacted>"
            + (self.sessionToken == nil ? "" : ", sessionToken: <redacted>")
            + (self.expiration.map { ", expiration: \($0)" } ?? "") + ")"
    }
}

/// AWS Signature Version 4 for requests signed in the `Authorization` header.
///
/// Follows the published algorithm (and botocore, which the tests take their expected values
/// from): the canonical URI is the request path percent-encoded once more (every service but
/// S3), query parameters are encoded with only unreserved characters left bare and sorted by
/// encoded name then value, header names are lower-cased and values trimmed with inner runs of
/// whitespace collapsed, and the payload is hashed with SHA-256. `host` is always signed and
/// carries the port when it is not the scheme's default.
public struct SigV4Signer: Sendable {
    public let region: String
    public let service: String
    /// The last derived signing key: it changes only with the day or the secret.
    private let keyCache = NIOLockedValueBox<(day: String, secret: String, key: SymmetricKey)?>(nil)

    public init(region: String, service: String) {
        self.region = region
        self.service = service
    }

    /// The signing inputs and outputs, kept for tests and debugging.
    public struct Signature: Sendable {
        public var canonicalRequest: String
        public var stringToSign: String
        public var signature: String
        /// Headers to add to the request: `X-Amz-Date`, `X-Amz-Security-Token` (with temporary
        /// credentials) and `Authorization`.
        public var headers: [(name: String, value: String)]
    }

    /// Signs a request.
    /// - Parameters:
    ///   - host: the `Host` header value (with the port when it is not the scheme's default).
    ///   - path: the request path as sent, already percent-encoded (e.g. `/`).
    ///   - query: decoded query parameters.
    ///   - headers: headers to sign besides `host`, `x-amz-date` and `x-amz-security-token`.
    ///   - payloadSHA256: the hex SHA-256 of the body (`SigV4Signer.hexSHA256`).
    public func sign(
        method: String, host: String, path: String, query: [(String, String)] = [], headers: [(String, String)],
        payloadSHA256: String, credentials: AWSCredentials, date: Date
    ) -> Signature {
        let amzDate = Self.timestamp(date)
        let day = String(amzDate.prefix(8))

        var signed: [(String, String)] = headers.map { ($0.0.lowercased(), Self.normalizedHeaderValue($0.1)) }
        signed.append(("host", host))
        signed.append(("x-amz-date", amzDate))
        if let token = credentials.sessionToken { signed.append(("x-amz-security-token", token)) }
        // Same-name headers are joined with commas, in the order given.
        var merged: [String: String] = [:]
        var order: [String] = []
        for (name, value) in signed {
            if let existing = merged[name] { merged[name] = existing + "," + value } else {
                merged[name] = value
                order.append(name)
            }
        }
        let names = order.sorted()
        let canonicalHeaders = names.map { "\($0):\(merged[$0]!)\n" }.joined()
        let signedHeaders = names.joined(separator: ";")

        var encodedQuery: [(name: String, value: String)] = []
        for (name, value) in query {
            encodedQuery.append((PercentEncoding.encode(name), PercentEncoding.encode(value)))
        }
        encodedQuery.sort { a, b in a.name == b.name ? a.value < b.value : a.name < b.name }
        let canonicalQuery = encodedQuery.map { pair -> String in pair.name + "=" + pair.value }.joined(separator: "&")

        let canonicalURI: String = PercentEncoding.encode(path.isEmpty ? "/" : path, keepSlash: true)
        let lines: [String] = [method.uppercased(), canonicalURI, canonicalQuery, canonicalHeaders, signedHeaders, payloadSHA256]
        let canonicalRequest = lines.joined(separator: "\n")
        let scope = "\(day)/\(self.region)/\(self.service)/aws4_request"
        let stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, Self.hexSHA256(Data(canonicalRequest.utf8))].joined(separator: "\n")

        let key = self.signingKey(secret: credentials.secretAccessKey, day: day)
        let signature = Hex.encode(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: key))
        var added: [(name: String, value: String)] = [("X-Amz-Date", amzDate)]
        if let token = credentials.sessionToken { added.append(("X-Amz-Security-Token", token)) }
        added.append(
            ("Authorization", "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"))
        return Signature(canonicalRequest: canonicalRequest, stringToSign: stringToSign, signature: signature, headers: added)
    }

    /// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, day), region), service), "aws4_request").
    func signingKey(secret: String, day: String) -> SymmetricKey {
        if let cached = self.keyCache.withLockedValue({ $0 }), cached.day == day, cached.secret == secret { return cached.key }
        var key = SymmetricKey(data: Data("AWS4\(secret)".utf8))
        for part in [day, self.region, self.service, "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: key)))
        }
        self.keyCache.withLockedValue { $0 = (day, secret, key) }
        return key
    }

    // MARK: - Encoding helpers

    public static func hexSHA256(_ data: some DataProtocol) -> String {
        Hex.encode(SHA256.hash(data: data))
    }

    /// `yyyyMMdd'T'HHmmss'Z'` in UTC.
    static func timestamp(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(parts.tm_year + 1900)\(two(parts.tm_mon + 1))\(two(parts.tm_mday))T\(two(parts.tm_hour))\(two(parts.tm_min))\(two(parts.tm_sec))Z"
    }

    /// Trimmed, with every inner run of whitespace collapsed to one space.
    static func normalizedHeaderValue(_ value: String) -> String {
        value.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }).joined(separator: " ")
    }
}
