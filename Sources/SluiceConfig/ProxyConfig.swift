import SluiceConfigReader

/// An upstream: a named set of HTTP endpoints that proxy routes send requests to.
public struct UpstreamConfig: Sendable {
    public var name: String
    /// The upstream's entry as canonical YAML: a new configuration whose entry reads the same can
    /// keep the running upstream (its pool, health and ejections). nil: never kept.
    public var source: String?
    /// `host:port` of each endpoint.
    public var endpoints: [SocketAddressConfig]
    /// HTTPS to the endpoints when set.
    public var tls: UpstreamTLSConfig?
    /// HTTP/2: offered by ALPN `h2` over TLS, or cleartext with prior knowledge (h2c) without
    /// TLS; HTTP/1.1 otherwise.
    public var http2: Bool
    public var loadBalancing: LoadBalancing
    public var timeouts: UpstreamTimeouts
    public var limits: UpstreamLimits
    public var healthCheck: HealthCheckConfig?
    public var outlierDetection: OutlierDetectionConfig

    public enum LoadBalancing: Sendable, Equatable {
        case roundRobin
        /// The less busy of two endpoints picked at random.
        case leastRequest
        /// Rendezvous hashing on a header's value: one value keeps its endpoint while that
        /// endpoint is healthy. Requests without the header are spread round robin.
        case consistentHash(header: String)
    }

    public init(name: String, endpoints: [SocketAddressConfig]) {
        self.name = name
        self.endpoints = endpoints
        self.tls = nil
        self.http2 = false
        self.loadBalancing = .roundRobin
        self.timeouts = UpstreamTimeouts()
        self.limits = UpstreamLimits()
        self.healthCheck = nil
        self.outlierDetection = OutlierDetectionConfig()
    }
}

public struct UpstreamTLSConfig: Sendable {
    /// PEM bundle of CAs trusted for the endpoints' certificates; the system roots when nil.
    public var caFile: String?
    /// Client certificate and key (PEM) for upstreams that require mTLS.
    public var certificateFile: String?
    public var keyFile: String?
}

public struct UpstreamTimeouts: Sendable {
    /// Establishing a connection (TCP and TLS).
    public var connect: Duration = .seconds(2)
    /// From sending the request until the response head arrives (per attempt).
    public var request: Duration = .seconds(30)
    /// Longest gap between bytes of a response body.
    public var read: Duration = .seconds(30)
    /// A pooled connection unused this long is closed.
    public var idle: Duration = .seconds(60)

    public init() {}
}

/// Circuit breaking: how much one upstream may be asked at once.
public struct UpstreamLimits: Sendable {
    /// Connections per endpoint (HTTP/1.1; an HTTP/2 connection carries many requests).
    public var maxConnections: Int = 64
    /// Requests in progress across the upstream; past it requests wait (up to `maxPending`).
    public var maxRequests: Int = 1024
    /// Requests waiting for a slot; past it the answer is 503 at once.
    public var maxPending: Int = 1024
    /// How long a request may wait for a slot.
    public var pendingTimeout: Duration = .seconds(5)

    public init() {}
}

public struct HealthCheckConfig: Sendable {
    public var path: String = "/healthz"
    public var interval: Duration = .seconds(5)
    public var timeout: Duration = .seconds(1)
    /// Consecutive failures that take a healthy endpoint out.
    public var unhealthyThreshold: Int = 3
    /// Consecutive successes that bring an unhealthy endpoint back.
    public var healthyThreshold: Int = 2
    /// Statuses that count as healthy.
    public var expectedStatuses: ClosedRange<Int> = 200...299

    public init() {}
}

/// Passive health: endpoints that keep failing real requests are ejected for a while.
public struct OutlierDetectionConfig: Sendable {
    /// Consecutive failures (connect errors, resets, timeouts, 5xx) that eject an endpoint; 0: off.
    public var consecutiveFailures: Int = 5
    /// First ejection lasts this long; each further ejection of the same endpoint one more.
    public var baseEjectionTime: Duration = .seconds(30)
    /// Longest ejection.
    public var maxEjectionTime: Duration = .seconds(300)
    /// At most this share of the endpoints is ejected at once (at least one stays unless 100).
    public var maxEjectionPercent: Int = 50

    public init() {}
}

/// A route's `proxy:` action.
public struct ProxyConfig: Sendable {
    /// Where requests go: one upstream, or several by weight (canary, blue/green).
    public var splits: [(upstream: String, weight: Int)]
    /// A copy of each request (bodies up to `maxBodyBytes`) sent to another upstream; its
    /// answer is discarded.
    public var mirror: MirrorConfig?
    /// Replaces the route's matched path prefix.
    public var pathRewrite: String?
    public var requestHeaders: HeaderRewrite
    public var responseHeaders: HeaderRewrite
    public var retries: RetryConfig
    /// Largest request body forwarded (413 beyond).
    public var maxBodyBytes: Int
    /// HTTP/1.1 `Upgrade` requests (WebSocket) passed through to the upstream; nil: none
    /// (an `Upgrade` header is dropped as hop-by-hop, as before).
    public var upgrade: UpgradeConfig? = nil

    public init(upstream: String) {
        self.splits = [(upstream, 1)]
        self.mirror = nil
        self.pathRewrite = nil
        self.requestHeaders = HeaderRewrite()
        self.responseHeaders = HeaderRewrite()
        self.retries = RetryConfig()
        self.maxBodyBytes = 16 * 1024 * 1024
    }

    public var upstreamNames: [String] {
        self.splits.map(\.upstream) + (self.mirror.map { [$0.upstream] } ?? [])
    }
}

/// `upgrade: { protocols: [websocket], idle_timeout: 5m }` on a proxy route.
public struct UpgradeConfig: Sendable, Equatable {
    /// The protocols (`Upgrade` tokens, lower case, without a version) passed through.
    public var protocols: [String]
    /// A tunnel with no bytes either way for this long is closed.
    public var idleTimeout: Duration = .seconds(300)

    public init(protocols: [String]) {
        self.protocols = protocols
    }
}

public struct MirrorConfig: Sendable {
    public var upstream: String
    /// Share of requests mirrored, 0...100.
    public var percent: Int = 100
    /// Requests with larger bodies are not mirrored (a mirror needs its own copy).
    public var maxBodyBytes: Int = 64 * 1024
    /// Mirrored requests in flight; past it copies are skipped, never queued.
    public var maxInFlight: Int = 64
}

public struct HeaderRewrite: Sendable {
    /// Set (replacing any value of the same name).
    public var set: [(name: String, value: String)] = []
    /// Removed (lower-case names).
    public var remove: [String] = []

    public init() {}
}

public struct RetryConfig: Sendable {
    /// Further attempts after the first; 0: no retries.
    public var attempts: Int = 0
    public var on: Set<RetryCondition> = [.connectFailure]
    /// Statuses retried besides those `on` names.
    public var statuses: Set<Int> = []
    /// Retries in progress may be at most this share of the upstream's requests in progress…
    public var budgetPercent: Int = 20
    /// …but this many are always allowed.
    public var minRetryConcurrency: Int = 3
    /// Bodies up to this size are kept so they can be sent again; a larger body is retried
    /// only if it never left Sluice (connect failures).
    public var maxBufferedBodyBytes: Int = 64 * 1024
    /// Pause before a retry: full jitter on base * 2^attempt.
    public var backoff: Duration = .milliseconds(25)

    public init() {}
}

public enum RetryCondition: String, Sendable, CaseIterable {
    /// The connection could not be made (refused, connect timeout): the upstream saw nothing.
    case connectFailure = "connect_failure"
    /// The connection failed after the request was sent, before the response head.
    case reset
    /// No response head within the request timeout.
    case timeout
    /// 502, 503, 504.
    case gatewayError = "gateway_error"
    /// Any 5xx.
    case serverError = "5xx"
}
