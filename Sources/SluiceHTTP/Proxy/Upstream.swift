import AsyncHTTPClient
import CoreMetrics
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import ServiceLifecycle
import SluiceConfig
import SluiceCore

/// A running upstream: its endpoints with their health, the pooled HTTP client that reaches
/// them, load balancing, circuit breaking (request slots and a bounded wait for them), active
/// health checks and outlier ejection.
///
/// As a Service it runs the health checks and, on shutdown, closes the pooled connections.
public final class Upstream: Service, Sendable {
    public let name: String
    let config: UpstreamConfig
    let client: HTTPClient
    /// Cleartext upstreams: HTTP/1.1 on the client's event loop (AsyncHTTPClient serves TLS
    /// HTTP/1.1 upstreams, and health checks and mirrors of HTTP/1.1 upstreams).
    let http1: HTTP1UpstreamClient?
    /// Upstreams with `http2`: h2c with prior knowledge, or h2 by ALPN over TLS, on the
    /// client's event loop.
    let http2: HTTP2UpstreamClient?
    let eventLoopGroup: any EventLoopGroup
    /// TLS for upgrade tunnels (HTTP/1.1 by ALPN), with the client's trust and identity.
    let tunnelTLS: NIOSSLContext?
    let scheme: String
    private let logger: Logger
    private let state: NIOLockedValueBox<State>
    /// Request slots (circuit breaking): the requests in progress and those waiting for one.
    private let slots: ConcurrencySlots
    private let now: @Sendable () -> ContinuousClock.Instant
    /// The upstream's request, retry and overflow series.
    let metrics: UpstreamMetrics

    struct Endpoint {
        let address: SocketAddressConfig
        /// The `scheme://host:port` prefix of request URLs.
        let origin: String
        var active = 0
        /// Active health checks: out while false.
        var healthy = true
        var checkSuccesses = 0
        var checkFailures = 0
        /// Outlier detection.
        var consecutiveFailures = 0
        var ejectedUntil: ContinuousClock.Instant?
        var ejections = 0
    }

    struct State {
        var endpoints: [Endpoint]
        var roundRobin = 0
        var activeRetries = 0
        var random = SystemRandomNumberGenerator()
    }

    public init(
        config: UpstreamConfig, logger: Logger, eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        now: @escaping @Sendable () -> ContinuousClock.Instant = { .now }, metrics: any MetricsFactory = NOOPMetricsHandler.instance
    ) throws {
        self.name = config.name
        self.metrics = UpstreamMetrics(upstream: config.name, factory: metrics)
        self.config = config
        self.now = now
        var logger = logger
        logger[metadataKey: "upstream"] = "\(config.name)"
        self.logger = logger
        self.scheme = config.tls == nil ? "http" : "https"
        let scheme = self.scheme
        self.state = NIOLockedValueBox(
            State(endpoints: config.endpoints.map { Endpoint(address: $0, origin: "\(scheme)://\($0)") }))
        self.slots = ConcurrencySlots(max: config.limits.maxRequests)

        var client = HTTPClient.Configuration()
        client.redirectConfiguration = .disallow
        // ProxyHandler makes the client span of each attempt (current conventions, no query
        // string, the upstream's name); the client's own would be a second one.
        client.tracing.tracer = nil
        client.decompression = .disabled
        client.timeout = .init(connect: TimeAmount(config.timeouts.connect), read: TimeAmount(config.timeouts.read))
        client.connectionPool = .init(
            idleTimeout: TimeAmount(config.timeouts.idle), concurrentHTTP1ConnectionsPerHostSoftLimit: config.limits.maxConnections)
        // Sluice decides itself whether and where to try again (another endpoint, within the
        // retry budget); the client's own connect retries would hide a dead endpoint.
        client.connectionPool.retryConnectionEstablishment = false
        client.httpVersion = config.http2 ? .automatic : .http1Only
        var http2TLS: NIOSSLContext?
        if let tls = config.tls {
            var tlsConfiguration = TLSConfiguration.makeClientConfiguration()
            tlsConfiguration.minimumTLSVersion = .tlsv12
            if let caFile = tls.caFile {
                tlsConfiguration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
            }
            if let certificateFile = tls.certificateFile, let keyFile = tls.keyFile {
                tlsConfiguration.certificateChain = try NIOSSLCertificate.fromPEMFile(certificateFile).map { .certificate($0) }
                tlsConfiguration.privateKey = .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem))
            }
            var http2Configuration = tlsConfiguration
            http2Configuration.applicationProtocols = ["h2"]
            http2TLS = try NIOSSLContext(configuration: http2Configuration)
            var tunnelConfiguration = tlsConfiguration
            tunnelConfiguration.applicationProtocols = ["http/1.1"]
            self.tunnelTLS = try NIOSSLContext(configuration: tunnelConfiguration)
            tlsConfiguration.applicationProtocols = config.http2 ? ["h2", "http/1.1"] : ["http/1.1"]
            client.tlsConfiguration = tlsConfiguration
        } else {
            self.tunnelTLS = nil
        }
        self.client = HTTPClient(eventLoopGroupProvider: .shared(eventLoopGroup), configuration: client)
        self.eventLoopGroup = eventLoopGroup
        self.http2 =
            config.http2
            ? HTTP2UpstreamClient(
                settings: .init(
                    maxConnections: config.limits.maxConnections, connectTimeout: TimeAmount(config.timeouts.connect),
                    idleTimeout: TimeAmount(config.timeouts.idle), readTimeout: TimeAmount(config.timeouts.read), tls: http2TLS))
            : nil
        self.http1 =
            config.tls == nil && !config.http2
            ? HTTP1UpstreamClient(
                settings: .init(
                    maxConnections: config.limits.maxConnections, connectTimeout: TimeAmount(config.timeouts.connect),
                    idleTimeout: TimeAmount(config.timeouts.idle), readTimeout: TimeAmount(config.timeouts.read),
                    wholeAnswerBytes: ProxyHandler.wholeAnswerLimit))
            : nil
    }

    // MARK: - Choosing an endpoint

    /// An endpoint for one attempt, counted as active until `finished` is called; nil when no
    /// endpoint is healthy. Endpoints in `excluding` (tried already) are avoided while others remain.
    func pick(hashKey: String?, excluding: Set<Int>) -> (index: Int, origin: String)? {
        let now = self.now()
        return self.state.withLockedValue { state -> (Int, String)? in
            var candidates: [Int] = []
            candidates.reserveCapacity(state.endpoints.count)
            for (index, endpoint) in state.endpoints.enumerated() where endpoint.healthy && !Self.isEjected(endpoint, now) {
                candidates.append(index)
            }
            if candidates.count > 1 || !excluding.isEmpty {
                let fresh = candidates.filter { !excluding.contains($0) }
                if !fresh.isEmpty { candidates = fresh }
            }
            guard !candidates.isEmpty else { return nil }
            let chosen: Int
            switch self.config.loadBalancing {
            case .roundRobin:
                chosen = Self.roundRobin(&state, candidates)
            case .leastRequest:
                if candidates.count == 1 {
                    chosen = candidates[0]
                } else {
                    let a = Int.random(in: 0..<candidates.count, using: &state.random)
                    var b = Int.random(in: 0..<(candidates.count - 1), using: &state.random)
                    if b >= a { b += 1 }
                    let (ea, eb) = (candidates[a], candidates[b])
                    chosen = state.endpoints[ea].active <= state.endpoints[eb].active ? ea : eb
                }
            case .consistentHash:
                if let hashKey {
                    chosen = candidates.max { Self.score(hashKey, state.endpoints[$0].address) < Self.score(hashKey, state.endpoints[$1].address) }!
                } else {
                    chosen = Self.roundRobin(&state, candidates)
                }
            }
            state.endpoints[chosen].active += 1
            return (chosen, state.endpoints[chosen].origin)
        }
    }

    private static func roundRobin(_ state: inout State, _ candidates: [Int]) -> Int {
        state.roundRobin &+= 1
        return candidates[Int(UInt(bitPattern: state.roundRobin) % UInt(candidates.count))]
    }

    private static func isEjected(_ endpoint: Endpoint, _ now: ContinuousClock.Instant) -> Bool {
        endpoint.ejectedUntil.map { now < $0 } ?? false
    }

    /// Rendezvous (highest random weight) hashing: FNV-1a of key and endpoint, so every Sluice
    /// instance maps a key to the same endpoint, and losing an endpoint moves only its keys.
    static func score(_ key: String, _ address: SocketAddressConfig) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in key.utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        hash = (hash ^ 0xff) &* 0x100_0000_01b3
        for byte in address.description.utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        // A final mix: FNV's low bits alone separate similar endpoint names poorly.
        hash ^= hash >> 33
        hash &*= 0xff51_afd7_ed55_8ccd
        hash ^= hash >> 33
        return hash
    }

    /// The address of an endpoint `pick` gave.
    func address(of index: Int) -> SocketAddressConfig {
        self.state.withLockedValue { $0.endpoints[index].address }
    }

    /// Ends an attempt on an endpoint; `failed` feeds outlier detection (connect failures,
    /// resets, timeouts and 5xx answers count).
    func finished(_ index: Int, failed: Bool) {
        let now = self.now()
        let outlier = self.config.outlierDetection
        let ejected: (SocketAddressConfig, Duration)? = self.state.withLockedValue { state in
            state.endpoints[index].active -= 1
            guard failed else {
                state.endpoints[index].consecutiveFailures = 0
                return nil
            }
            state.endpoints[index].consecutiveFailures += 1
            guard outlier.consecutiveFailures > 0, state.endpoints[index].consecutiveFailures >= outlier.consecutiveFailures,
                !Self.isEjected(state.endpoints[index], now)
            else { return nil }
            let total = state.endpoints.count
            let ejectedNow = state.endpoints.filter { Self.isEjected($0, now) }.count
            var allowed = total * outlier.maxEjectionPercent / 100
            if outlier.maxEjectionPercent < 100 { allowed = min(allowed, total - 1) }
            guard ejectedNow < allowed else { return nil }
            state.endpoints[index].ejections += 1
            state.endpoints[index].consecutiveFailures = 0
            let time = min(outlier.baseEjectionTime * state.endpoints[index].ejections, outlier.maxEjectionTime)
            state.endpoints[index].ejectedUntil = now + time
            return (state.endpoints[index].address, time)
        }
        if let (address, time) = ejected {
            self.logger.warning("endpoint ejected after consecutive failures", metadata: ["endpoint": "\(address)", "for": "\(time)"])
        }
    }

    // MARK: - Circuit breaking

    /// A request slot: at most `max_requests` in progress; past it a request waits up to
    /// `pending_timeout` among at most `max_pending` others. False: the upstream is saturated.
    func acquireSlot() async -> Bool {
        let limits = self.config.limits
        let taken = await self.slots.take(deadline: .now + limits.pendingTimeout, maxWaiting: limits.maxPending)
        if !taken { self.metrics.overflows.increment() }
        return taken
    }

    /// Gives a slot back (to the longest waiter, if any).
    func releaseSlot() {
        self.slots.give()
    }

    /// A retry is allowed while retries in progress stay within the budget: `budgetPercent` of
    /// the requests in progress, or `minConcurrency`, whichever is more.
    func acquireRetry(_ retries: RetryConfig) -> Bool {
        let active = self.slots.active
        let allowed = self.state.withLockedValue { state in
            let budget = max(retries.minRetryConcurrency, active * retries.budgetPercent / 100)
            guard state.activeRetries < budget else { return false }
            state.activeRetries += 1
            return true
        }
        if allowed { self.metrics.retries.increment() }
        return allowed
    }

    func releaseRetry() {
        self.state.withLockedValue { $0.activeRetries -= 1 }
    }

    // MARK: - Health

    /// Each endpoint's state, for the admin API: in service or why not, requests in progress.
    public struct EndpointStatus: Sendable {
        public var address: String
        public var healthy: Bool
        public var ejected: Bool
        public var active: Int
        public var ejections: Int
    }

    public var status: (endpoints: [EndpointStatus], requestsInProgress: Int, waiting: Int) {
        let now = self.now()
        let endpoints = self.state.withLockedValue { state in
            state.endpoints.map {
                    EndpointStatus(
                        address: $0.address.description, healthy: $0.healthy, ejected: Self.isEjected($0, now), active: $0.active,
                        ejections: $0.ejections)
            }
        }
        return (endpoints, self.slots.active, self.slots.waiting)
    }

    public func run() async throws {
        if let check = self.config.healthCheck {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    while !Task.isCancelled {
                        await self.checkAll(check)
                        do { try await Task.sleep(for: check.interval) } catch { return }
                    }
                }
                group.addTask { try? await gracefulShutdown() }
                await group.next()
                group.cancelAll()
            }
        } else {
            try? await gracefulShutdown()
        }
        await self.shutdown()
    }

    /// Closes the pooled connections (at the end of `run`; or for an upstream that never ran).
    public func shutdown() async {
        self.http1?.shutdown()
        self.http2?.shutdown()
        try? await self.client.shutdown()
    }

    private func checkAll(_ check: HealthCheckConfig) async {
        let origins = self.state.withLockedValue { $0.endpoints.map(\.origin) }
        await withTaskGroup(of: (Int, Bool).self) { group in
            for (index, origin) in origins.enumerated() {
                group.addTask {
                    if self.http2 != nil {
                        let head = HTTPRequestHead(
                            version: .http1_1, method: .GET, uri: check.path,
                            headers: ["host": self.address(of: index).description, "user-agent": "sluice-health-check"])
                        let status = try? await self.wholeExchange(head, body: nil, endpoint: index, timeout: TimeAmount(check.timeout))
                        return (index, status.map { check.expectedStatuses.contains($0) } ?? false)
                    }
                    var request = HTTPClientRequest(url: origin + check.path)
                    request.headers.add(name: "user-agent", value: "sluice-health-check")
                    do {
                        let response = try await self.client.execute(request, timeout: TimeAmount(check.timeout))
                        // Read (and drop) the body so the connection can be reused.
                        _ = try await response.body.collect(upTo: 64 * 1024)
                        return (index, check.expectedStatuses.contains(Int(response.status.code)))
                    } catch {
                        return (index, false)
                    }
                }
            }
            for await (index, passed) in group {
                self.recordCheck(index, passed: passed, check)
            }
        }
    }

    /// One exchange over the h2c client, the answer's body read and dropped (health checks,
    /// mirror copies): its status.
    func wholeExchange(_ head: HTTPRequestHead, body: ByteBuffer?, endpoint: Int, timeout: TimeAmount) async throws -> Int {
        guard let http2 = self.http2 else { throw HTTP1UpstreamError.shutDown }
        let address = self.address(of: endpoint)
        let deadline = NIODeadline.now() + timeout
        let exchange = try await http2.open(
            head, endpoint: endpoint, host: address.host, port: address.port, on: self.eventLoopGroup.next(), answerDeadline: deadline,
            streamDeadline: deadline)
        if let body, body.readableBytes > 0 { exchange.write(.body(.byteBuffer(body))) }
        exchange.finish(trailers: nil)
        let answer = try await exchange.answer()
        _ = try await HTTP2UpstreamBody(exchange: exchange).collect(upTo: 1 << 20)
        return Int(answer.status.code)
    }

    private func recordCheck(_ index: Int, passed: Bool, _ check: HealthCheckConfig) {
        let change: (SocketAddressConfig, Bool)? = self.state.withLockedValue { state in
            var endpoint = state.endpoints[index]
            defer { state.endpoints[index] = endpoint }
            if passed {
                endpoint.checkFailures = 0
                endpoint.checkSuccesses += 1
                if !endpoint.healthy, endpoint.checkSuccesses >= check.healthyThreshold {
                    endpoint.healthy = true
                    return (endpoint.address, true)
                }
            } else {
                endpoint.checkSuccesses = 0
                endpoint.checkFailures += 1
                if endpoint.healthy, endpoint.checkFailures >= check.unhealthyThreshold {
                    endpoint.healthy = false
                    return (endpoint.address, false)
                }
            }
            return nil
        }
        if let (address, healthy) = change {
            if healthy {
                self.logger.info("endpoint healthy again", metadata: ["endpoint": "\(address)"])
            } else {
                self.logger.warning("endpoint failed its health checks", metadata: ["endpoint": "\(address)"])
            }
        }
    }
}

/// One upstream's series: every attempt by status code (or `error`) and time to the response
/// head, retries, circuit-breaker overflows. Endpoint states are read when scraped.
final class UpstreamMetrics: Sendable {
    private let upstream: String
    private let factory: any MetricsFactory
    let duration: Timer
    let retries: Counter
    let overflows: Counter
    private let requests = NIOLockedValueBox<[String: Counter]>([:])

    init(upstream: String, factory: any MetricsFactory) {
        self.upstream = upstream
        self.factory = factory
        self.duration = MetricCatalogue.upstreamRequestDuration.timer(upstream, factory: factory)
        self.retries = MetricCatalogue.upstreamRetries.counter(upstream, factory: factory)
        self.overflows = MetricCatalogue.upstreamOverflows.counter(upstream, factory: factory)
    }

    /// One attempt ended: with a response head of `status`, or (nil) without one.
    func attempt(status: UInt, after duration: Duration) {
        let code = status == 0 ? "error" : String(status)
        let counter = self.requests.withLockedValue { requests in
            if let counter = requests[code] { return counter }
            let counter = MetricCatalogue.upstreamRequests.counter(self.upstream, code, factory: self.factory)
            requests[code] = counter
            return counter
        }
        counter.increment()
        self.duration.record(duration)
    }
}
