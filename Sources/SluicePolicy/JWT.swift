import AsyncHTTPClient
import Crypto
import Foundation
import JWTKit
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL

/// `jwt`: a bearer token (`Authorization: Bearer …`) verified against configured keys.
public struct JWTConfig: Sendable {
    public var issuer: String
    public var audiences: [String]
    /// Accepted `alg` values; `none` is never accepted.
    public var algorithms: Set<String>
    /// RSA / EC / OKP public keys (a JWKS document), each with a `kid`.
    public var jwks: String?
    /// HMAC secrets by key id, for HS256/384/512.
    public var hmacKeys: [String: [UInt8]]
    /// Tolerance for `exp` and `nbf`.
    public var clockSkew: Duration
    /// The claim that names the client (default `sub`).
    public var clientClaim: String
    /// Claims copied into request headers (claim -> header), for `headers_to_kafka`.
    public var claimsToHeaders: [String: String]
    /// Keys fetched from an identity provider's JWKS URL instead of (or besides) `jwks`.
    public var jwksURL: JWKSURLConfig?

    public static let supportedAlgorithms: Set<String> = [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512",
    ]

    public init(
        issuer: String, audiences: [String], algorithms: Set<String> = ["RS256", "ES256"], jwks: String? = nil,
        hmacKeys: [String: [UInt8]] = [:], clockSkew: Duration = .seconds(30), clientClaim: String = "sub",
        claimsToHeaders: [String: String] = [:]
    ) {
        self.issuer = issuer
        self.audiences = audiences
        self.algorithms = algorithms
        self.jwks = jwks
        self.hmacKeys = hmacKeys
        self.clockSkew = clockSkew
        self.clientClaim = clientClaim
        self.claimsToHeaders = claimsToHeaders
    }
}

/// `jwks_url`: where the keys are fetched, how often again, and the bounds on the fetch.
public struct JWKSURLConfig: Sendable {
    public var url: String
    /// Keys are fetched again this often (and when a token names an unknown kid, at most once
    /// per `minRefreshInterval`).
    public var refreshInterval: Duration = .seconds(300)
    public var minRefreshInterval: Duration = .seconds(30)
    public var timeout: Duration = .seconds(5)
    /// A larger document is refused.
    public var maxBytes: Int = 1024 * 1024
    /// CAs trusted for the URL's certificate; the system roots when nil.
    public var caFile: String?

    public init(url: String) {
        self.url = url
    }
}

/// One verification key: its own collection (so an unknown `kid` never falls back to another
/// key) and the algorithm family it may verify.
struct JWTVerificationKey: Sendable {
    enum Family: Sendable { case rsa, ec, okp, hmac }
    var family: Family
    /// The JWK's own `alg`, when it names one.
    var algorithm: String?
    /// The key, by the algorithm it verifies ("*": any the family allows, for RSA/EC/OKP keys).
    var collections: [String: JWTKeyCollection]

    func collection(for alg: String) -> JWTKeyCollection? {
        self.collections[alg] ?? self.collections["*"]
    }

    func accepts(_ alg: String) -> Bool {
        if let algorithm, algorithm != alg { return false }
        switch self.family {
        case .rsa: return alg.hasPrefix("RS") || alg.hasPrefix("PS")
        case .ec: return alg.hasPrefix("ES")
        case .okp: return alg == "EdDSA"
        case .hmac: return alg.hasPrefix("HS")
        }
    }
}

public struct JWTKeyError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

/// The keys of a `jwt` policy, by key id.
struct JWTKeySet: Sendable {
    var keys: [String: JWTVerificationKey]

    /// Builds the key set; throws on an unusable JWKS (config validation reports it).
    static func make(_ config: JWTConfig) async throws -> JWTKeySet {
        var keys: [String: JWTVerificationKey] = [:]
        if let text = config.jwks {
            guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
                let list = object["keys"] as? [[String: Any]]
            else { throw JWTKeyError(description: "not a JWKS document ({\"keys\": [...]})") }
            for (index, entry) in list.enumerated() {
                guard let kid = entry["kid"] as? String, !kid.isEmpty else {
                    throw JWTKeyError(description: "key \(index) has no kid")
                }
                let family: JWTVerificationKey.Family
                switch entry["kty"] as? String {
                case "RSA": family = .rsa
                case "EC": family = .ec
                case "OKP": family = .okp
                default: throw JWTKeyError(description: "key \(kid): kty must be RSA, EC or OKP (HMAC secrets go in hmac_keys)")
                }
                if entry["d"] != nil { throw JWTKeyError(description: "key \(kid) is a private key; give Sluice the public key only") }
                let data = try JSONSerialization.data(withJSONObject: ["keys": [entry]])
                let collection = JWTKeyCollection()
                do {
                    try await collection.add(jwksJSON: String(decoding: data, as: UTF8.self))
                } catch {
                    throw JWTKeyError(description: "key \(kid): \(error)")
                }
                if keys[kid] != nil { throw JWTKeyError(description: "kid \(kid) is used twice") }
                keys[kid] = JWTVerificationKey(family: family, algorithm: entry["alg"] as? String, collections: ["*": collection])
            }
        }
        for (kid, secret) in config.hmacKeys {
            if keys[kid] != nil { throw JWTKeyError(description: "kid \(kid) is used twice") }
            guard secret.count >= 32 else { throw JWTKeyError(description: "the HMAC secret of \(kid) is shorter than 32 bytes") }
            // One collection per digest: the header's alg picks it.
            var collections: [String: JWTKeyCollection] = [:]
            // RFC 7518 3.2: a key at least as long as the hash; shorter keys serve only the smaller sizes.
            for (alg, digest, bytes) in [("HS256", DigestAlgorithm.sha256, 32), ("HS384", .sha384, 48), ("HS512", .sha512, 64)]
            where secret.count >= bytes {
                let collection = JWTKeyCollection()
                await collection.add(hmac: HMACKey(from: secret), digestAlgorithm: digest)
                collections[alg] = collection
            }
            keys[kid] = JWTVerificationKey(family: .hmac, algorithm: nil, collections: collections)
        }
        return JWTKeySet(keys: keys)
    }
}

/// The claims of a verified token: the registered ones Sluice checks, and every top-level string,
/// number or boolean claim (for `authz`, rate-limit keys and `claims_to_headers`).
struct SluiceJWTClaims: JWTPayload {
    var issuer: String?
    var audiences: [String]
    var expiration: Double?
    var notBefore: Double?
    var values: [String: String]

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        var values: [String: String] = [:]
        var audiences: [String] = []
        var expiration: Double?
        var notBefore: Double?
        var issuer: String?
        for key in container.allKeys {
            switch key.stringValue {
            case "aud":
                if let one = try? container.decode(String.self, forKey: key) {
                    audiences = [one]
                } else if let many = try? container.decode([String].self, forKey: key) {
                    audiences = many
                }
            case "exp": expiration = try? container.decode(Double.self, forKey: key)
            case "nbf": notBefore = try? container.decode(Double.self, forKey: key)
            case "iss": issuer = try? container.decode(String.self, forKey: key)
            default: break
            }
            if let text = try? container.decode(String.self, forKey: key) {
                values[key.stringValue] = text
            } else if let flag = try? container.decode(Bool.self, forKey: key) {
                values[key.stringValue] = flag ? "true" : "false"
            } else if let number = try? container.decode(Int64.self, forKey: key) {
                values[key.stringValue] = String(number)
            }
        }
        self.issuer = issuer
        self.audiences = audiences
        self.expiration = expiration
        self.notBefore = notBefore
        self.values = values
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        for (key, value) in self.values { try container.encode(value, forKey: Key(stringValue: key)) }
    }

    /// Signature checked by jwt-kit; times, issuer and audience by the policy (its clock, its skew).
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// The keys a `jwt` policy verifies with: fixed (file, HMAC secrets), or refreshed from a JWKS
/// URL. A fetch that fails or brings an unusable document keeps the keys already there.
final class JWTKeyStore: Sendable {
    private let current: NIOLockedValueBox<JWTKeySet>
    private let config: JWTConfig
    private let name: String
    /// When the keys were last fetched (or tried): unknown kids refetch at most this often.
    private let lastFetch = NIOLockedValueBox<ContinuousClock.Instant?>(nil)
    private let refresher = NIOLockedValueBox<Task<Void, Never>?>(nil)
    static let logger = Logger(label: "sluice")

    init(name: String, config: JWTConfig, keys: JWTKeySet) {
        self.name = name
        self.config = config
        self.current = NIOLockedValueBox(keys)
    }

    deinit {
        self.refresher.withLockedValue { $0?.cancel() }
    }

    var keys: JWTKeySet { self.current.withLockedValue { $0 } }

    /// Fetches the URL's keys now (at start), then keeps refreshing them in the background.
    func start() async {
        guard let source = self.config.jwksURL else { return }
        let fetched = await self.fetch()
        let task = Task { [weak self] in
            var retry: Duration = fetched ? source.refreshInterval : .seconds(5)
            while !Task.isCancelled {
                do { try await Task.sleep(for: retry) } catch { return }
                guard let self else { return }
                retry = await self.fetch() ? source.refreshInterval : min(source.refreshInterval, .seconds(30))
            }
        }
        self.refresher.withLockedValue { $0 = task }
    }

    /// A token named a kid the keys do not have: the provider may have rotated its keys.
    /// Refetches unless that was done within `min_refresh_interval`; true if the keys changed.
    func refreshForUnknownKey() async -> Bool {
        guard let source = self.config.jwksURL else { return false }
        let now = ContinuousClock.now
        let due = self.lastFetch.withLockedValue { last -> Bool in
            guard last.map({ now - $0 >= source.minRefreshInterval }) ?? true else { return false }
            last = now
            return true
        }
        guard due else { return false }
        return await self.fetch()
    }

    /// One fetch; true when new keys are in place.
    @discardableResult
    func fetch() async -> Bool {
        guard let source = self.config.jwksURL else { return false }
        self.lastFetch.withLockedValue { $0 = .now }
        do {
            var request = HTTPClientRequest(url: source.url)
            request.headers.add(name: "accept", value: "application/json")
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.minimumTLSVersion = .tlsv12
            if let caFile = source.caFile { tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile)) }
            request.tlsConfiguration = tls
            let response = try await HTTPClient.shared.execute(request, timeout: TimeAmount(source.timeout))
            guard response.status == .ok else { throw JWTKeyError(description: "the JWKS URL answered \(response.status.code)") }
            let body = try await response.body.collect(upTo: source.maxBytes)
            var config = self.config
            config.jwks = String(buffer: body)
            let keys = try await JWTKeySet.make(config)
            self.current.withLockedValue { $0 = keys }
            Self.logger.info("JWKS fetched", metadata: ["policy": "\(self.name)", "keys": "\(keys.keys.count)"])
            return true
        } catch {
            Self.logger.warning("JWKS fetch failed; keeping the keys in use", metadata: ["policy": "\(self.name)", "error": "\(error)"])
            return false
        }
    }
}

struct JWTPolicy: GatePolicy {
    let config: JWTConfig
    let store: JWTKeyStore
    let now: @Sendable () -> Date
    /// Tokens verified recently, by SHA-256 of the token: a producer sends the same token with every
    /// request until it expires, and verifying it costs a signature check and two JSON decodes.
    /// An entry is used only while the token's exp (plus skew) has not passed; bounded.
    let verified = VerifiedTokenCache(capacity: 10_000)
    var stage: PolicyStage { .authentication }

    func evaluate(_ request: PolicyRequest, identity: inout PolicyIdentity) async -> PolicyRejection? {
        guard let token = request.authorization(scheme: "Bearer") else { return .unauthenticated }
        let digest = SHA256.hash(data: Array(token.utf8))
        let claims: SluiceJWTClaims
        let now = self.now().timeIntervalSince1970
        if let cached = self.verified.claims(for: digest, at: now - Double(self.config.clockSkew.components.seconds)) {
            claims = cached
        } else {
            guard let fresh = await self.verify(token), let exp = fresh.expiration else { return .unauthenticated }
            self.verified.store(fresh, for: digest, until: exp)
            claims = fresh
        }
        identity.client = claims.values[self.config.clientClaim] ?? identity.client
        identity.claims.merge(claims.values) { _, new in new }
        // A header named here carries the verified claim or nothing: never what the client sent.
        for (claim, header) in self.config.claimsToHeaders.sorted(by: { $0.key < $1.key }) {
            identity.headers.append((header, claims.values[claim]))
        }
        return nil
    }

    /// The token's claims if it is signed by a configured key with an allowed algorithm, issued by
    /// the issuer for one of the audiences, and current; nil otherwise (the reason is not told).
    func verify(_ token: String) async -> SluiceJWTClaims? {
        let parts = token.utf8.split(separator: UInt8(ascii: "."), maxSplits: 3, omittingEmptySubsequences: false)
        guard parts.count == 3, let headerData = Self.base64URL(parts[0]),
            let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any],
            let alg = header["alg"] as? String, alg != "none", self.config.algorithms.contains(alg)
        else { return nil }
        let key: JWTVerificationKey
        var keys = self.store.keys
        if let kid = header["kid"] as? String {
            if keys.keys[kid] == nil, await self.store.refreshForUnknownKey() { keys = self.store.keys }
            guard let known = keys.keys[kid] else { return nil }
            key = known
        } else if keys.keys.count == 1, let only = keys.keys.values.first {
            key = only
        } else {
            return nil
        }
        guard key.accepts(alg), let collection = key.collection(for: alg) else { return nil }
        let claims: SluiceJWTClaims
        do {
            claims = try await collection.verify(token, as: SluiceJWTClaims.self)
        } catch {
            return nil
        }
        let now = self.now().timeIntervalSince1970
        let skew = Double(self.config.clockSkew.components.seconds)
        guard let exp = claims.expiration, now < exp + skew else { return nil }
        if let nbf = claims.notBefore, now + skew < nbf { return nil }
        guard claims.issuer == self.config.issuer else { return nil }
        guard claims.audiences.contains(where: self.config.audiences.contains) else { return nil }
        return claims
    }

    /// Decodes base64url (no padding) without going through Foundation's string replacing.
    static func base64URL(_ text: some Collection<UInt8>) -> Data? {
        var bytes = [UInt8]()
        bytes.reserveCapacity(text.count + 3)
        for byte in text {
            switch byte {
            case UInt8(ascii: "-"): bytes.append(UInt8(ascii: "+"))
            case UInt8(ascii: "_"): bytes.append(UInt8(ascii: "/"))
            default: bytes.append(byte)
            }
        }
        while bytes.count % 4 != 0 { bytes.append(UInt8(ascii: "=")) }
        return Data(base64Encoded: Data(bytes))
    }
}

/// Verified tokens' claims until their expiry; cleared whole when full (the next request of each
/// producer verifies once more).
final class VerifiedTokenCache: Sendable {
    private let entries = NIOLockedValueBox<[SHA256.Digest: (claims: SluiceJWTClaims, expires: Double)]>([:])
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
    }

    /// The claims, if the token was verified and `exp` is after `time`.
    func claims(for digest: SHA256.Digest, at time: Double) -> SluiceJWTClaims? {
        self.entries.withLockedValue { entries in
            guard let entry = entries[digest] else { return nil }
            guard time < entry.expires else {
                entries[digest] = nil
                return nil
            }
            return entry.claims
        }
    }

    func store(_ claims: SluiceJWTClaims, for digest: SHA256.Digest, until expires: Double) {
        self.entries.withLockedValue { entries in
            if entries.count >= self.capacity { entries.removeAll(keepingCapacity: true) }
            entries[digest] = (claims, expires)
        }
    }

    var count: Int { self.entries.withLockedValue { $0.count } }
}
