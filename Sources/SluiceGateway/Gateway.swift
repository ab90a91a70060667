import CoreMetrics
import Crypto
import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle
import SluiceAdmin
import SluiceConfig
import SluiceConfigReader
import SluiceConnections
import SluiceCore
import SluiceGRPC
import SluiceHTTP
import SluiceObservability
import SluiceTLS

/// Where the running configuration came from, read again on every reload.
public struct ConfigurationSource: Sendable {
    /// The file, for logs and `GET /config`; nil for the embedded quickstart configuration.
    public var path: String?
    /// Reads and validates the source now: the configuration and its text, or every error.
    public var load: @Sendable () -> Result<LoadedConfiguration, ConfigValidationError>

    public init(path: String?, load: @escaping @Sendable () -> Result<LoadedConfiguration, ConfigValidationError>) {
        self.path = path
        self.load = load
    }

    /// A YAML file, read and validated with `sinkKinds`.
    public static func file(_ path: String, sinkKinds: [SinkKind], environment: [String: String]) -> ConfigurationSource {
        ConfigurationSource(path: path) {
            guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
                return .failure(ConfigValidationError(errors: [ConfigError(path: "", message: "cannot read config file \(path) as UTF-8 text")]))
            }
            do throws(ConfigValidationError) {
                return .success(
                    LoadedConfiguration(
                        configuration: try SluiceConfiguration.parse(yaml: text, environment: environment, sinkKinds: sinkKinds), text: text))
            } catch {
                return .failure(error)
            }
        }
    }
}

/// A validated configuration and the text it was read from.
public struct LoadedConfiguration: Sendable {
    public var configuration: SluiceConfiguration
    public var text: String

    public init(configuration: SluiceConfiguration, text: String) {
        self.configuration = configuration
        self.text = text
    }

    /// `sha256:` and the hex SHA-256 of the text.
    public var hash: String {
        "sha256:" + SHA256.hash(data: Data(self.text.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}

/// The running gateway: its listeners, gRPC server, sinks and upstreams, and the snapshot box
/// every request reads its routes from. As a `Service` it runs them all and, on graceful
/// shutdown, stops them in order: listeners drain first, then upstreams close and sinks flush.
///
/// `reload` applies a new configuration while requests flow (see "Operating Sluice" in the
/// README): unchanged sinks, upstreams, rate limits and listeners are kept; the snapshot is
/// swapped whole; what the new configuration no longer uses is drained and closed once no
/// request runs on the old snapshot.
public final class Gateway: Service, GatewayControl, Sendable {
    /// The routes requests are served by now.
    public let snapshot: SluiceCore.AtomicBox<GatewaySnapshot>
    /// Run them in a `ServiceGroup`: the admin listener (first, so it stops last and answers
    /// `/ready` with 503 until the very end), then the gateway itself.
    public let services: [any Service]

    let builder: GatewayBuilder
    let connectionCap: ClientConnectionCap
    let exporter: PrometheusExporter?
    let observer: (any ExchangeObserver)?
    let accessLog: AccessLog?
    let source: ConfigurationSource?
    let logger: Logger
    let state: NIOLockedValueBox<State>
    /// One reload (or tuning, or shutdown) at a time.
    let serial = SerialGate()
    let resourceGauges: ResourceGauges?
    /// How the admin listener and the reload triggers reach the gateway (weakly).
    let control = ControlReference()
    /// Requests, events and errors per route and upstream, for the console and `sluice top`.
    let liveExchanges = LiveExchangeStats()
    /// The last minutes of samples the console charts.
    let history = LiveHistory()

    /// Whether the gateway runs, and what it runs.
    struct State {
        enum Phase {
            case notStarted, running, stopping
        }
        var phase = Phase.notStarted
        var configuration: SluiceConfiguration
        var resources: GatewayResources
        var document: LoadedDocument
        var listeners: [RunningListener]
        var grpc: RunningGRPC?
        /// Handles of the running sinks and upstreams, by object identity.
        var handles: [ObjectIdentifier: ServiceHandle] = [:]
        /// Handles of the spool forwarders (stopped after the listeners, before the sinks).
        var forwarders: [ServiceHandle] = []
        /// Drains of what reloads replaced, still under way (shutdown waits for them).
        var retiring: [Task<Void, Never>] = []
        /// Operators' runtime changes to sinks since the configuration was loaded.
        var overrides: [String: [String: SinkOverride]] = [:]
    }

    struct LoadedDocument {
        var hash: String?
        var loadedAt: Date
        /// The configuration as redacted JSON (nil for one built in code).
        var json: [UInt8]?
        var path: String?
    }

    struct RunningListener {
        var config: ListenerConfig
        var server: HTTPServer
        var handle: ServiceHandle?
    }

    struct RunningGRPC {
        var config: GRPCListenerConfig
        var server: GRPCIngestServer
        var handle: ServiceHandle?
    }

    /// A setting an operator changed with `PATCH /sinks/{name}`.
    struct SinkOverride {
        var value: String
        var configured: String
        var by: String
        var at: Date
    }

    /// Builds everything `configuration` names (nothing runs until `run`).
    /// - Parameters:
    ///   - loaded: the text `configuration` was read from (its hash and redacted copy are what
    ///     `GET /config` shows); nil for a configuration built in code.
    ///   - source: where `reload` reads the configuration again; nil: reloads are refused.
    ///   - connectionCap: the process-wide cap on client connections (descriptors).
    ///   - exporter: where metrics are kept and scraped from (`GET /metrics` on the admin
    ///     listener); the builder must make its sinks and upstreams with `exporter.factory`. nil:
    ///     no metrics.
    public init(
        configuration: SluiceConfiguration, loaded: LoadedConfiguration? = nil, source: ConfigurationSource? = nil, builder: GatewayBuilder,
        connectionCap: ClientConnectionCap, exporter: PrometheusExporter? = nil
    ) async throws(GatewayBuildError) {
        let logger = builder.logger
        self.logger = logger
        self.builder = builder
        self.connectionCap = connectionCap
        self.exporter = exporter
        self.source = source
        let resources = try await builder.resources(for: configuration)
        let snapshot = SluiceCore.AtomicBox(builder.snapshot(for: configuration, resources: resources, generation: 1))
        self.snapshot = snapshot
        var observers: [any ExchangeObserver] = [self.liveExchanges]
        if let exporter { observers.append(ExchangeMetrics(factory: exporter.factory)) }
        var accessLog: AccessLog?
        if let config = configuration.accessLog {
            do {
                accessLog = try AccessLog(
                    destination: config.path.map { .file($0) } ?? .stdout, maxQueuedLines: config.maxQueuedLines,
                    metrics: exporter?.factory ?? NOOPMetricsHandler.instance)
                observers.append(accessLog!)
            } catch {
                throw GatewayBuildError("access_log.path: \(error)")
            }
        }
        self.accessLog = accessLog
        self.observer =
            switch observers.count {
            case 0: nil
            case 1: observers[0]
            default: ExchangeObservers(observers)
            }

        let document = LoadedDocument(
            hash: loaded?.hash, loadedAt: Date(), json: loaded.flatMap { ConfigDocument.redactedJSON(yaml: $0.text) }, path: source?.path)
        self.state = NIOLockedValueBox(
            State(configuration: configuration, resources: resources, document: document, listeners: [], grpc: nil))
        self.resourceGauges = exporter.map { ResourceGauges(exporter: $0) }

        var services: [any Service] = []
        let control = self.control
        if let admin = configuration.admin {
            var scrape: (@Sendable () -> [UInt8])?
            if let exporter { scrape = { exporter.scrape() } }
            let token: String?
            let tls: ListenerTLS?
            do {
                token = try admin.bearerToken?.read(what: "admin bearer token", environment: builder.environment)
            } catch {
                throw GatewayBuildError("admin.auth.bearer_token: \(error)")
            }
            do {
                tls = try admin.tls.map { try ListenerTLS(config: $0) }
            } catch {
                throw GatewayBuildError("admin.tls: cannot load TLS certificates: \(error)")
            }
            let loopback = ["127.0.0.1", "::1", "localhost"].contains(admin.address.host)
            if !loopback, token == nil, admin.tls?.clientCertificates != .required {
                logger.warning(
                    "the admin listener is reachable beyond this host without authentication: set admin.auth.bearer_token or mTLS",
                    metadata: ["address": "\(admin.address)"])
            }
            services.append(
                HTTPServer(
                    name: "admin", host: admin.address.host, port: admin.address.port,
                    responder: AdminResponder(control: { control.gateway }, metrics: scrape, bearerToken: token), tls: tls,
                    drainTimeout: .seconds(1), logger: logger))
        }
        self.services = services + [ControlledService(control: control)]

        var listeners: [RunningListener] = []
        for listener in configuration.listeners {
            listeners.append(RunningListener(config: listener, server: try self.makeListener(listener, configuration: configuration), handle: nil))
        }
        var grpc: RunningGRPC?
        if let config = configuration.grpc {
            grpc = RunningGRPC(config: config, server: try self.makeGRPCServer(config, configuration: configuration), handle: nil)
        }
        self.state.withLockedValue {
            $0.listeners = listeners
            $0.grpc = grpc
        }

        control.gateway = self
        self.resourceGauges?.track(sinks: self.sinks, upstreams: self.upstreams)
        self.resourceGauges?.track(spools: Array(resources.spools.values))
    }

    /// The sinks and upstreams running now (and the policies they were built with).
    public var resources: GatewayResources { self.state.withLockedValue { $0.resources } }

    func makeListener(_ listener: ListenerConfig, configuration: SluiceConfiguration) throws(GatewayBuildError) -> HTTPServer {
        var tls: ListenerTLS?
        if let tlsConfig = listener.tls {
            do {
                tls = try ListenerTLS(config: tlsConfig)
            } catch {
                throw GatewayBuildError("listeners: \(listener.name): cannot load TLS certificates: \(error)")
            }
        }
        let snapshot = self.snapshot
        return HTTPServer(
            name: listener.name, host: listener.address.host, port: listener.address.port,
            responder: GatewayResponder(routes: { snapshot.load().http }), limits: listener.limits, tls: tls,
            h2cUpgrade: listener.h2cUpgrade, drainTimeout: configuration.shutdown.drainTimeout, connectionCap: self.connectionCap, observer: self.observer, logger: self.logger)
    }

    func makeGRPCServer(_ grpc: GRPCListenerConfig, configuration: SluiceConfiguration) throws(GatewayBuildError) -> GRPCIngestServer {
        let snapshot = self.snapshot
        let health = HealthService { [weak self] in
            guard let self else { return ([], []) }
            let served = snapshot.load().grpc.routes.flatMap { (route: GRPCIngestRoute) in route.sink.sinkNames }
            return (self.sinks, Set(served))
        }
        do {
            return try GRPCIngestServer(
                config: grpc, tls: try grpc.tls.map { try ListenerTLS(config: $0) }, connectionCap: self.connectionCap,
                drainTimeout: configuration.shutdown.drainTimeout, service: IngestService(routes: { snapshot.load().grpc }, logger: self.logger),
                health: health, observer: self.observer, logger: self.logger)
        } catch {
            throw GatewayBuildError("grpc: cannot load TLS certificates: \(error)")
        }
    }

    // MARK: GatewayControl (what the admin listener reads)

    public var listeners: [any Listening] {
        self.state.withLockedValue { state in
            state.listeners.map { $0.server as any Listening } + (state.grpc.map { [$0.server as any Listening] } ?? [])
        }
    }

    public var sinks: [any Sink] {
        self.state.withLockedValue { state in
            state.configuration.sinks.compactMap { state.resources.sinks[$0.name]?.sink as (any Sink)? }
        }
    }

    public var upstreams: [Upstream] {
        self.state.withLockedValue { state in
            state.configuration.upstreams.compactMap { state.resources.upstreams[$0.name]?.upstream }
        }
    }

    public func statsJSON(after sequence: Int) -> JSONWriter {
        self.history.json(after: sequence)
    }

    public var generation: Int { self.snapshot.load().generation }

    // MARK: Running

    public func run() async throws {
        let (listeners, grpc) = self.state.withLockedValue { state -> ([HTTPServer], GRPCIngestServer?) in
            state.phase = .running
            for built in state.resources.sinks.values {
                state.handles[ObjectIdentifier(built.sink as AnyObject)] = ServiceHandle(built.sink, name: "sink \(built.config.name)", logger: self.logger)
            }
            for built in state.resources.upstreams.values {
                state.handles[ObjectIdentifier(built.upstream)] = ServiceHandle(built.upstream, name: "upstream \(built.config.name)", logger: self.logger)
            }
            for (route, forwarder) in state.resources.spools {
                state.forwarders.append(ServiceHandle(forwarder, name: "spool forwarder \(route)", logger: self.logger))
            }
            for index in state.listeners.indices {
                let server = state.listeners[index].server
                state.listeners[index].handle = ServiceHandle(server, name: "listener \(server.name)", logger: self.logger)
            }
            if let server = state.grpc?.server {
                state.grpc?.handle = ServiceHandle(server, name: "grpc", logger: self.logger)
            }
            return (state.listeners.map(\.server), state.grpc?.server)
        }
        var failed: [String] = []
        for listener in listeners where await listener.waitUntilBound() == nil {
            failed.append("listeners: \(listener.name): cannot listen")
        }
        if let grpc, await !grpc.waitUntilBound() { failed.append("grpc: cannot listen") }
        if !failed.isEmpty {
            await self.stopAll()
            throw GatewayBuildError(failed.joined(separator: "; "))
        }
        let handles = self.state.withLockedValue { state in
            Array(state.handles.values) + state.forwarders + state.listeners.compactMap(\.handle) + [state.grpc?.handle].compactMap { $0 }
        }
        await withTaskCancellationHandler {
            // One sample a second for the console and `sluice top`, until shutdown begins.
            try? await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    try await Task.sleep(for: LiveHistory.interval)
                    self.history.sample(self)
                }
            }
        } onCancel: {
            for handle in handles { handle.cancel() }
        }
        await self.stopAll()
    }

    /// Stops everything in order: listeners drain (in-flight requests finish), drains of earlier
    /// reloads finish, spool forwarders forward what they can, upstreams close and sinks flush,
    /// then the access log is written out.
    func stopAll() async {
        await self.serial.acquire()
        defer { self.serial.release() }
        let (listenerHandles, retiring, forwarders, resourceHandles) = self.state.withLockedValue { state in
            state.phase = .stopping
            let listenerHandles = state.listeners.compactMap(\.handle) + [state.grpc?.handle].compactMap { $0 }
            return (listenerHandles, state.retiring, state.forwarders, Array(state.handles.values))
        }
        await Self.stop(listenerHandles)
        for task in retiring { await task.value }
        // What is spooled goes on to the sinks (for up to the flush timeout) before they flush.
        await Self.stop(forwarders)
        await Self.stop(resourceHandles)
        if let accessLog = self.accessLog {
            // close() blocks (up to its timeout) on the writer thread: not on a pool thread.
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                Thread {
                    accessLog.close()
                    continuation.resume()
                }.start()
            }
        }
        self.logger.info("gateway stopped")
    }

    /// Stops `handles` at once and waits for all of them.
    static func stop(_ handles: [ServiceHandle]) async {
        await withTaskGroup(of: Void.self) { group in
            for handle in handles { group.addTask { await handle.stop() } }
        }
    }
}

/// The gateway as the admin listener reaches it (set once the gateway is built; weak, so the
/// two do not keep each other alive).
final class ControlReference: Sendable {
    private let box = NIOLockedValueBox<WeakGateway>(WeakGateway())

    struct WeakGateway {
        weak var gateway: Gateway?
    }

    var gateway: Gateway? {
        get { self.box.withLockedValue { $0.gateway } }
        set { self.box.withLockedValue { $0.gateway = newValue } }
    }
}

/// Runs the gateway as the last of `Gateway.services` (it holds it strongly while it runs).
struct ControlledService: Service {
    let control: ControlReference

    func run() async throws {
        guard let gateway = self.control.gateway else { return }
        try await gateway.run()
    }
}

/// Lets one task at a time through, in arrival order (reloads, tunings and shutdown never
/// overlap).
final class SerialGate: Sendable {
    private let state = NIOLockedValueBox<(busy: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = self.state.withLockedValue { state -> Bool in
                if state.busy {
                    state.waiters.append(continuation)
                    return false
                }
                state.busy = true
                return true
            }
            if now { continuation.resume() }
        }
    }

    func release() {
        let next = self.state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.busy = false
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}
