import Foundation
import Crypto
import NIOConcurrencyHelpers
import SluiceCore

/// What the policies see of a request (HTTP or gRPC).
public struct PolicyRequest: Sendable {
    public var method: String
    public var path: String
    public var query: Substring?
    /// The peer's IP address (textual), when known.
    public var sourceIP: String?
    /// The first value of a header / metadata entry (names case-insensitive).
    public var header: @Sendable (String) -> String?
    /// The names of the client's verified TLS certificate (common name and subject alternative
    /// names), when the listener checked one.
    public var tlsPrincipals: [String]

    public init(
        method: String, path: String, query: Substring? = nil, sourceIP: String?, tlsPrincipals: [String] = [],
        header: @escaping @Sendable (String) -> String?
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.sourceIP = sourceIP
        self.tlsPrincipals = tlsPrincipals
        self.header = header
    }

    /// The credentials of `Authorization: <scheme> <credentials>` (scheme case-insensitive, blanks
    /// around the credentials trimmed), or nil. Byte-wise: Foundation's string searching showed in
    /// profiles of the JWT path.
    public func authorization(scheme: String) -> String? {
        guard let header = self.header("authorization") else { return nil }
        let bytes = Array(header.utf8)
        let name = Array(scheme.utf8)
        func lower(_ byte: UInt8) -> UInt8 { byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte }
        guard bytes.count > name.count + 1, zip(bytes, name).allSatisfy({ lower($0) == lower($1) }), bytes[name.count] == 0x20 else {
            return nil
        }
        var start = name.count + 1
        var end = bytes.count
        while start < end, bytes[start] == 0x20 || bytes[start] == 0x09 { start += 1 }
        while end > start, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 { end -= 1 }
        guard start < end else { return nil }
        return String(decoding: bytes[start..<end], as: UTF8.self)
    }

    /// The first value of a query parameter, read as the route reads it (`QueryString`).
    public func queryParameter(_ name: String) -> String? {
        self.query.flatMap { QueryString.firstValue(of: name, in: $0) }
    }
}

/// Who the request comes from, as authentication established it: the context each policy hands
/// on to the next, and the handler gets at the end of the chain.
public struct PolicyIdentity: Sendable, Equatable {
    /// The client identity (an API key's client, later a JWT subject or a certificate's subject).
    public var client: String?
    public var claims: [String: String]
    /// Request headers to set before the handler runs (a JWT policy's `claims_to_headers`); nil
    /// removes the header the client sent.
    public var headers: [(String, String?)]

    public init(client: String? = nil, claims: [String: String] = [:], headers: [(String, String?)] = []) {
        self.client = client
        self.claims = claims
        self.headers = headers
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.client == b.client && a.claims == b.claims && a.headers.elementsEqual(b.headers) { $0 == $1 }
    }
}

/// What policies see of, and may add to, a handled request's response, whatever the transport.
public protocol PolicyResponse: Sendable {
    /// Runs `body` with what the request handed over — the events a sink accepted and the bytes
    /// read — once the handler is done with it: at once for a request handled whole, after the
    /// last message for a stream. (What a rate limit in events or bytes charges.)
    func whenFinished(_ body: @escaping @Sendable (_ events: Int, _ bytes: Int) async -> Void) async
    /// Sets a response header (CORS), replacing one of that name.
    mutating func setHeader(name: String, value: String)
}

/// A request's answer as the policies see it: a policy answered it early (a refusal, or a CORS
/// preflight's 204), or the handler ran.
public enum PolicyOutcome<Response: PolicyResponse>: Sendable {
    case answered(PolicyRejection)
    case handled(Response)
}

/// A request a policy answered early. Says as little as it must.
public struct PolicyRejection: Error, Sendable, Equatable {
    public var status: Int
    public var code: String
    public var message: String
    public var headers: [String: String]
    /// The name of the policy that answered, and the client the policies before it had
    /// established (set by the chain; metrics and the access log say them).
    public var policy: String?
    public var client: String?

    public init(status: Int, code: String, message: String, headers: [String: String] = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
    }

    /// A refusal of a kind in the catalogue, answered with its HTTP status.
    public init(_ code: ErrorCode, message: String, headers: [String: String] = [:]) {
        self.init(status: code.httpStatus, code: code.code, message: message, headers: headers)
    }

    /// Equal as answers: the same status, code, message and headers, whichever policy gave it.
    public static func == (a: Self, b: Self) -> Bool {
        a.status == b.status && a.code == b.code && a.message == b.message && a.headers == b.headers
    }

    static let unauthenticated = PolicyRejection(.unauthenticated, message: "missing or invalid credentials")
    static let forbidden = PolicyRejection(.forbidden, message: "not allowed")
}

/// A route's policies, run in stage order (CORS, authentication, authorization, rate limit); the
/// first rejection (or early answer, such as a CORS preflight's 204) answers the request.
public struct PolicyChain: Sendable {
    let policies: [any Policy]
    /// Each policy's name in the configuration, in the order of `policies`.
    let names: [String]

    public static let empty = PolicyChain(policies: [])

    public var isEmpty: Bool { self.policies.isEmpty }

    /// Whether the chain answers CORS preflights (the router then routes `OPTIONS` by the method
    /// the preflight asks for).
    public var answersPreflights: Bool { self.policies.contains { $0 is CORSPolicy } }

    init(policies: [any Policy], names: [String]? = nil) {
        let named = zip(policies, names ?? policies.map { _ in "" }).sorted { $0.0.stage < $1.0.stage }
        self.policies = named.map(\.0)
        self.names = named.map(\.1)
    }

    /// Runs the request through the policies and, if none answers it, `handler` with the identity
    /// they established. Each policy wraps the rest of the chain, so it acts before and after the
    /// handler (a rate limit in events charges what was accepted; CORS sets its headers).
    public func handle<Response: PolicyResponse>(
        _ request: PolicyRequest, handler: (PolicyRequest, PolicyIdentity) async -> PolicyOutcome<Response>
    ) async -> PolicyOutcome<Response> {
        await self.run(from: 0, request, PolicyIdentity(), handler: handler)
    }

    private func run<Response: PolicyResponse>(
        from index: Int, _ request: PolicyRequest, _ identity: PolicyIdentity,
        handler: (PolicyRequest, PolicyIdentity) async -> PolicyOutcome<Response>
    ) async -> PolicyOutcome<Response> {
        guard index < self.policies.count else { return await handler(request, identity) }
        let outcome = await self.policies[index].handle(request, identity) { request, identity in
            await self.run(from: index + 1, request, identity, handler: handler)
        }
        // A refusal from further in keeps the name it was given there.
        if case .answered(var rejection) = outcome, rejection.policy == nil {
            rejection.policy = self.names[index]
            rejection.client = identity.client
            return .answered(rejection)
        }
        return outcome
    }
}

/// The running policies, built once from the configuration; routes share them by name (so a rate
/// limit attached to two routes is one set of buckets).
public final class PolicyRegistry: Sendable {
    private let byName: [String: any Policy]
    /// Each policy's entry as written (for reloads to compare).
    private let sources: [String: String]

    /// Builds the running policies; JWT key sets are imported here (an unusable key is an error).
    /// - Parameters:
    ///   - now: the clock rate limits run on (tests pass a hand-moved one).
    ///   - wallClock: the time tokens' `exp` and `nbf` are judged by.
    /// - Parameter previous: the running registry, when reloading: each local rate limit whose
    ///   entry is unchanged is kept, buckets and all. Other policies are built anew (they hold no
    ///   state worth keeping, and a key file may have changed under an unchanged entry).
    public static func build(
        _ configs: [PolicyConfig], reusing previous: PolicyRegistry? = nil, now: @escaping @Sendable () -> Duration = PolicyRegistry.monotonicNow,
        wallClock: @escaping @Sendable () -> Date = { Date() }
    ) async throws -> PolicyRegistry {
        var keySets: [String: JWTKeyStore] = [:]
        for config in configs {
            guard case .jwt(let jwt) = config.kind else { continue }
            do {
                let store = JWTKeyStore(name: config.name, config: jwt, keys: try await JWTKeySet.make(jwt))
                await store.start()
                keySets[config.name] = store
            } catch {
                throw JWTKeyError(description: "policies: \(config.name): \(error)")
            }
        }
        return PolicyRegistry(configs, jwtKeys: keySets, reusing: previous, now: now, wallClock: wallClock)
    }

    /// The names of the policies `self` kept from the registry it was built reusing.
    public let kept: [String]

    /// For policies without JWT (or with their key sets already built by `build`).
    public convenience init(_ configs: [PolicyConfig], now: @escaping @Sendable () -> Duration = PolicyRegistry.monotonicNow) {
        self.init(configs, jwtKeys: [:], now: now, wallClock: { Date() })
    }

    init(
        _ configs: [PolicyConfig], jwtKeys: [String: JWTKeyStore], reusing previous: PolicyRegistry? = nil,
        now: @escaping @Sendable () -> Duration, wallClock: @escaping @Sendable () -> Date
    ) {
        var byName: [String: any Policy] = [:]
        var sources: [String: String] = [:]
        var kept: [String] = []
        for config in configs {
            if let source = config.source { sources[config.name] = source }
            if case .rateLimit(let limit) = config.kind, limit.global == nil, let source = config.source, let previous,
                previous.sources[config.name] == source, let running = previous.byName[config.name]
            {
                byName[config.name] = running
                kept.append(config.name)
                continue
            }
            switch config.kind {
            case .apiKey(let apiKey): byName[config.name] = APIKeyPolicy(config: apiKey)
            case .jwt(let jwt):
                guard let keys = jwtKeys[config.name] else { preconditionFailure("JWT policy \(config.name) without keys: use build") }
                byName[config.name] = JWTPolicy(config: jwt, store: keys, now: wallClock)
            case .basicAuth(let basic): byName[config.name] = BasicAuthPolicy(config: basic)
            case .cors(let cors): byName[config.name] = CORSPolicy(config: cors)
            case .authz(let authz): byName[config.name] = AuthzPolicy(config: authz)
            case .rateLimit(let limit):
                if let global = limit.global {
                    byName[config.name] = GlobalRateLimitPolicy(name: config.name, config: limit, global: global)
                } else {
                    byName[config.name] = RateLimitPolicy(name: config.name, config: limit, now: now)
                }
            }
        }
        self.byName = byName
        self.sources = sources
        self.kept = kept
    }

    /// The chain for a route's `policies:` (names checked by validation; unknown names are skipped).
    public func chain(_ names: [String]) -> PolicyChain {
        let known = names.filter { self.byName[$0] != nil }
        return PolicyChain(policies: known.map { self.byName[$0]! }, names: known)
    }

    public static let monotonicNow: @Sendable () -> Duration = {
        let start = ContinuousClock.now
        return { ContinuousClock.now - start }
    }()
}

/// A policy: middleware around the rest of the chain and the handler.
protocol Policy: Sendable {
    var stage: PolicyStage { get }
    /// Answers the request itself, or calls `next` (with what it established added to
    /// `identity`) and returns its outcome, acting on it if it must.
    func handle<Response: PolicyResponse>(
        _ request: PolicyRequest, _ identity: PolicyIdentity,
        next: (PolicyRequest, PolicyIdentity) async -> PolicyOutcome<Response>
    ) async -> PolicyOutcome<Response>
}

/// A policy that only decides whether a request goes on (authentication, authorization).
protocol GatePolicy: Policy {
    /// nil to go on (possibly having added to `identity`), or the answer.
    func evaluate(_ request: PolicyRequest, identity: inout PolicyIdentity) async -> PolicyRejection?
}

extension GatePolicy {
    func handle<Response: PolicyResponse>(
        _ request: PolicyRequest, _ identity: PolicyIdentity,
        next: (PolicyRequest, PolicyIdentity) async -> PolicyOutcome<Response>
    ) async -> PolicyOutcome<Response> {
        var identity = identity
        if let rejection = await self.evaluate(request, identity: &identity) { return .answered(rejection) }
        return await next(request, identity)
    }
}

struct APIKeyPolicy: GatePolicy {
    let config: APIKeyConfig
    var stage: PolicyStage { .authentication }

    func evaluate(_ request: PolicyRequest, identity: inout PolicyIdentity) -> PolicyRejection? {
        let presented: String?
        switch self.config.source {
        case .header(let name): presented = request.header(name)
        case .query(let name): presented = request.queryParameter(name)
        }
        guard let presented, !presented.isEmpty else { return .unauthenticated }
        let digest = Hex.encode(SHA256.hash(data: Array(presented.utf8)))
        guard let client = self.config.keys[digest] else { return .unauthenticated }
        identity.client = client
        return nil
    }
}

struct AuthzPolicy: GatePolicy {
    let config: AuthzConfig
    var stage: PolicyStage { .authorization }

    func evaluate(_ request: PolicyRequest, identity: inout PolicyIdentity) -> PolicyRejection? {
        for rule in self.config.rules where Self.matches(rule.condition, request, identity) {
            return rule.allow ? nil : .forbidden
        }
        return self.config.allowByDefault ? nil : .forbidden
    }

    static func matches(_ condition: AuthzConfig.Condition, _ request: PolicyRequest, _ identity: PolicyIdentity) -> Bool {
        if let authenticated = condition.authenticated, (identity.client != nil) != authenticated { return false }
        if let clients = condition.clients, !(identity.client.map(clients.contains) ?? false) { return false }
        if let principals = condition.tlsPrincipals, !request.tlsPrincipals.contains(where: principals.contains) { return false }
        if let methods = condition.methods, !methods.contains(request.method.uppercased()) { return false }
        if let prefixes = condition.pathPrefixes, !prefixes.contains(where: { request.path.hasPrefix($0) }) { return false }
        if let cidrs = condition.sourceCIDRs {
            guard let ip = request.sourceIP, cidrs.contains(where: { $0.contains(ip) }) else { return false }
        }
        if let claims = condition.claims {
            for (name, values) in claims {
                guard let value = identity.claims[name], values.contains(value) else { return false }
            }
        }
        return true
    }
}
