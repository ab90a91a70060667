/// A named policy as configured (`policies:`), attached to routes by name.
public struct PolicyConfig: Sendable {
    public var name: String
    public var kind: Kind
    /// The entry as written, in a canonical form (nil when built in code): a reload keeps a
    /// rate limit whose entry is unchanged, with its buckets.
    public var source: String?

    public init(name: String, kind: Kind, source: String? = nil) {
        self.name = name
        self.kind = kind
        self.source = source
    }

    public enum Kind: Sendable {
        case apiKey(APIKeyConfig)
        case jwt(JWTConfig)
        case basicAuth(BasicAuthConfig)
        case cors(CORSConfig)
        case authz(AuthzConfig)
        case rateLimit(RateLimitConfig)
    }

    /// The stage the policy runs in; a route's policies run by stage, whatever their listed order.
    public var stage: PolicyStage {
        switch self.kind {
        case .cors: return .cors
        case .apiKey, .jwt, .basicAuth: return .authentication
        case .authz: return .authorization
        case .rateLimit: return .rateLimit
        }
    }
}

/// The fixed order policies run in: may a browser page call at all, who the client is, whether
/// it may, how much it may.
public enum PolicyStage: Int, Sendable, Comparable {
    case cors = 0
    case authentication = 1
    case authorization = 2
    case rateLimit = 3

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// `api_key`: a key from a header or a query parameter, stored only as its SHA-256.
public struct APIKeyConfig: Sendable {
    public enum Source: Sendable, Equatable {
        case header(String)
        case query(String)
    }
    public var source: Source
    /// Hex SHA-256 of each key -> the client identity it stands for.
    public var keys: [String: String]

    public init(source: Source, keys: [String: String]) {
        self.source = source
        self.keys = keys
    }
}

/// `authz`: rules tried in order, the first that matches decides; else `default`.
public struct AuthzConfig: Sendable {
    public struct Rule: Sendable {
        public var allow: Bool
        public var condition: Condition

        public init(allow: Bool, condition: Condition) {
            self.allow = allow
            self.condition = condition
        }
    }

    /// Every field that is set must match (absent: anything).
    public struct Condition: Sendable {
        public var clients: Set<String>?
        public var sourceCIDRs: [CIDR]?
        public var methods: Set<String>?
        public var pathPrefixes: [String]?
        /// Claim name -> accepted values (claims come from authentication).
        public var claims: [String: Set<String>]?
        /// Requests with (true) or without (false) an authenticated client.
        public var authenticated: Bool?
        /// Names one of which the client's verified TLS certificate must carry (common name or
        /// a subject alternative name: DNS, URI such as a SPIFFE ID, e-mail, IP).
        public var tlsPrincipals: Set<String>?

        public init(
            clients: Set<String>? = nil, sourceCIDRs: [CIDR]? = nil, methods: Set<String>? = nil, pathPrefixes: [String]? = nil,
            claims: [String: Set<String>]? = nil, authenticated: Bool? = nil
        ) {
            self.clients = clients
            self.sourceCIDRs = sourceCIDRs
            self.methods = methods
            self.pathPrefixes = pathPrefixes
            self.claims = claims
            self.authenticated = authenticated
        }
    }

    public var rules: [Rule]
    public var allowByDefault: Bool

    public init(rules: [Rule], allowByDefault: Bool = false) {
        self.rules = rules
        self.allowByDefault = allowByDefault
    }
}

/// `rate_limit`: token buckets, one per value of `key`.
public struct RateLimitConfig: Sendable {
    public enum Key: Sendable, Equatable {
        case sourceIP
        case header(String)
        case client
        case claim(String)
    }
    public enum Unit: String, Sendable {
        /// One token per request, taken before the handler runs.
        case requests
        /// One token per event the request handed to a sink / per request body byte, charged
        /// once the handler is done; a request is admitted while its bucket is not in debt.
        case events, bytes
    }
    public struct Limit: Sendable, Equatable {
        /// Tokens added per second.
        public var perSecond: Double
        /// Bucket size: the most spent at once.
        public var burst: Int
        /// The rate as written ("100/s"), for headers and messages.
        public var text: String

        public init(perSecond: Double, burst: Int, text: String) {
            self.perSecond = perSecond
            self.burst = burst
            self.text = text
        }
    }

    public var key: Key
    public var unit: Unit
    public var limit: Limit
    /// Key values with their own limit (instead of, not on top of, the default).
    public var overrides: [String: Limit]
    /// Buckets kept at once; full (idle) buckets are dropped first when more are needed.
    public var maxKeys: Int
    /// `scope: global`: the buckets live in Redis, shared by every instance.
    public var global: Global?

    /// The Redis a `scope: global` limit keeps its buckets in.
    public typealias Global = RedisConfig

    public init(key: Key, unit: Unit = .requests, limit: Limit, overrides: [String: Limit] = [:], maxKeys: Int = 100_000) {
        self.key = key
        self.unit = unit
        self.limit = limit
        self.overrides = overrides
        self.maxKeys = maxKeys
    }
}

/// A Redis server Sluice keeps shared state in (global rate limits, idempotency keys):
/// `redis: { address, password, timeout, failure_mode, key_prefix }`.
public struct RedisConfig: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var password: String?
    /// Longest wait for Redis (connecting, or one answer).
    public var timeout: Duration
    /// When Redis cannot answer: go on without it (true) or answer 503.
    public var failOpen: Bool
    public var keyPrefix: String

    public init(host: String, port: Int, password: String? = nil, timeout: Duration = .milliseconds(100), failOpen: Bool = true, keyPrefix: String = "sluice") {
        self.host = host
        self.port = port
        self.password = password
        self.timeout = timeout
        self.failOpen = failOpen
        self.keyPrefix = keyPrefix
    }
}
