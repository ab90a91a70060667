import Crypto
import Foundation
import HummingbirdBcrypt
import NIOConcurrencyHelpers
import NIOPosix

/// `basic_auth`: `Authorization: Basic` checked against htpasswd entries (bcrypt `$2a$/$2b$/$2y$`,
/// or `{SHA}` base64 SHA-1 as `htpasswd -s` writes). The user becomes the client identity.
public struct BasicAuthConfig: Sendable {
    /// User -> the stored hash.
    public var users: [String: String]
    /// Realm in `WWW-Authenticate`.
    public var realm: String

    public init(users: [String: String], realm: String = "sluice") {
        self.users = users
        self.realm = realm
    }

    /// `$2y$` (PHP, htpasswd -B) and `$2b$` (OpenBSD) name the same, correct algorithm; the
    /// bcrypt implementation knows only `$2a$`/`$2b$`, so `$2y$` is checked as `$2b$`.
    static func bcryptForVerification(_ hash: String) -> String {
        hash.hasPrefix("$2y$") ? "$2b$" + hash.dropFirst(4) : hash
    }

    /// Why `hash` is not a supported htpasswd hash, or nil.
    public static func hashProblem(_ hash: String) -> String? {
        if hash.hasPrefix("$2a$") || hash.hasPrefix("$2b$") || hash.hasPrefix("$2y$") {
            return hash.utf8.count == 60 ? nil : "a bcrypt hash has 60 characters"
        }
        if hash.hasPrefix("{SHA}") {
            return Data(base64Encoded: String(hash.dropFirst(5)))?.count == 20 ? nil : "a {SHA} hash is base64 of 20 bytes"
        }
        if hash.hasPrefix("$apr1$") || hash.hasPrefix("$1$") { return "MD5 hashes are not accepted: use bcrypt (htpasswd -B)" }
        if hash.hasPrefix("$2x$") || hash.hasPrefix("$2$") {
            return "\(hash.prefix(4)) is a legacy bcrypt variant with known flaws: rehash with htpasswd -B ($2y$)"
        }
        return "expected a bcrypt ($2y$…, htpasswd -B) or {SHA} hash; plain passwords are not accepted"
    }
}

final class BasicAuthPolicy: GatePolicy {
    let config: BasicAuthConfig
    /// SHA-256 of verified "user:password" pairs: bcrypt is slow by design (tens of milliseconds),
    /// and a producer sends the same credentials with every request. Bounded.
    private let verified = NIOLockedValueBox<Set<SHA256.Digest>>([])
    static let maxCached = 10_000
    var stage: PolicyStage { .authentication }

    init(config: BasicAuthConfig) {
        self.config = config
    }

    func evaluate(_ request: PolicyRequest, identity: inout PolicyIdentity) async -> PolicyRejection? {
        let challenge = ["www-authenticate": "Basic realm=\"\(self.config.realm)\", charset=\"UTF-8\""]
        var refused = PolicyRejection.unauthenticated
        refused.headers = challenge
        guard let credentials = request.authorization(scheme: "Basic"), let decoded = Data(base64Encoded: credentials),
            let pair = String(data: decoded, encoding: .utf8), let colon = pair.firstIndex(of: ":")
        else { return refused }
        let user = String(pair[..<colon])
        let password = String(pair[pair.index(after: colon)...])
        guard let stored = self.config.users[user] else { return refused }
        let digest = SHA256.hash(data: Array(pair.utf8))
        if self.verified.withLockedValue({ $0.contains(digest) }) {
            identity.client = user
            return nil
        }
        let ok: Bool
        if stored.hasPrefix("{SHA}") {
            let sha1 = Data(Insecure.SHA1.hash(data: Array(password.utf8))).base64EncodedString()
            ok = sha1 == String(stored.dropFirst(5))
        } else {
            // Tens of milliseconds of CPU by design: on the blocking pool, not a Swift concurrency thread.
            let hash = BasicAuthConfig.bcryptForVerification(stored)
            ok = (try? await NIOThreadPool.singleton.runIfActive { Bcrypt.verify(password, hash: hash) }) ?? false
        }
        guard ok else { return refused }
        self.verified.withLockedValue { cache in
            if cache.count >= Self.maxCached { cache.removeAll(keepingCapacity: true) }
            cache.insert(digest)
        }
        identity.client = user
        return nil
    }
}
