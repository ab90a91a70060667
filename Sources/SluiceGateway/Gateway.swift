import CoreMetrics
import Foundation
import Logging
import ServiceLifecycle
import SluiceObservability
import SluiceAdmin
import SluiceConfig
import SluiceConnections
import SluiceCore
import SluiceGRPC
import SluiceHTTP
import SluiceTLS

/// A configured gateway, ready to run: its listeners, gRPC server, admin listener, sinks and
/// upstreams as services in shutdown order, and the snapshot box every request reads its routes
/// from.
public struct Gateway: Sendable {
    /// The routes requests are served by now.
    public let snapshot: AtomicBox<GatewaySnapshot>
    public let resources: GatewayResources
    /// Run them in a `ServiceGroup`, which stops them in reverse: listeners drain first, then
    /// upstreams close and sinks flush, and the admin listener (first) answers `/ready` with 503
    /// until the very end.
    public let services: [any Service]

    /// Builds everything `configuration` names.
    /// - Parameters:
    ///   - connectionCap: the process-wide cap on client connections (descriptors).
    ///   - exporter: where metrics are kept and scraped from (`GET /metrics` on the admin
    ///     listener); the builder must make its sinks and upstreams with `exporter.factory`. nil:
    ///     no metrics.
    public init(
        configuration: SluiceConfiguration, builder: GatewayBuilder, connectionCap: ClientConnectionCap, exporter: PrometheusExporter? = nil
    ) async throws(GatewayBuildError) {
        let logger = builder.logger
        let resources = try await builder.resources(for: configuration)
        let snapshot = AtomicBox(builder.snapshot(for: configuration, resources: resources, generation: 1))
        let drainTimeout = configuration.shutdown.drainTimeout
        var observers: [any ExchangeObserver] = []
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
        let observer: (any ExchangeObserver)? =
            switch observers.count {
            case 0: nil
            case 1: observers[0]
            default: ExchangeObservers(observers)
            }

        let responder = GatewayResponder(routes: { snapshot.load().http })
        var listeners: [HTTPServer] = []
        for listener in configuration.listeners {
            var tls: ListenerTLS?
            if let tlsConfig = listener.tls {
                do {
                    tls = try ListenerTLS(config: tlsConfig)
                } catch {
                    throw GatewayBuildError("listeners: \(listener.name): cannot load TLS certificates: \(error)")
                }
            }
            listeners.append(
                HTTPServer(
                    name: listener.name, host: listener.address.host, port: listener.address.port, responder: responder,
                    limits: listener.limits, tls: tls, drainTimeout: drainTimeout, connectionCap: connectionCap, observer: observer,
                    logger: logger))
        }

        let orderedSinks = configuration.sinks.compactMap { resources.sinks[$0.name]?.sink }
        let orderedUpstreams = configuration.upstreams.compactMap { resources.upstreams[$0.name]?.upstream }
        var grpcServer: GRPCIngestServer?
        if let grpc = configuration.grpc {
            let servedByGRPC = Set(snapshot.load().grpc.routes.map(\.sink.name))
            let health = HealthService(sinks: orderedSinks.map { $0 as any Sink }, servedByGRPC: servedByGRPC)
            do {
                grpcServer = try GRPCIngestServer(
                    config: grpc, tls: try grpc.tls.map { try ListenerTLS(config: $0) }, connectionCap: connectionCap,
                    drainTimeout: drainTimeout, service: IngestService(routes: { snapshot.load().grpc }, logger: logger), health: health,
                    observer: observer, logger: logger)
            } catch {
                throw GatewayBuildError("grpc: cannot load TLS certificates: \(error)")
            }
        }
        var allListeners: [any Listening] = listeners
        if let grpcServer { allListeners.append(grpcServer) }

        var services: [any Service] = []
        if let admin = configuration.admin {
            var scrape: (@Sendable () -> [UInt8])?
            if let exporter { scrape = { exporter.scrape() } }
            services.append(
                HTTPServer(
                    name: "admin", host: admin.address.host, port: admin.address.port,
                    responder: AdminResponder(
                        listeners: allListeners, sinks: orderedSinks.map { $0 as any Sink }, upstreams: orderedUpstreams,
                        metrics: scrape),
                    drainTimeout: .seconds(1), logger: logger))
        }
        // Stopped after the listeners: every request's line is queued by then.
        if let accessLog { services.append(AccessLogService(log: accessLog)) }
        services.append(contentsOf: orderedSinks.map { $0 as any Service })
        services.append(contentsOf: orderedUpstreams.map { $0 as any Service })
        if let grpcServer { services.append(grpcServer) }
        services.append(contentsOf: listeners.map { $0 as any Service })

        if let exporter {
            let sinks = orderedSinks.map { $0 as any Sink }
            ResourceGauges.register(on: exporter, sinks: sinks, upstreams: orderedUpstreams)
        }
        self.snapshot = snapshot
        self.resources = resources
        self.services = services
    }
}

/// Keeps the access log open while the gateway runs; at shutdown (after the listeners have
/// drained) writes what is queued and closes it.
struct AccessLogService: Service {
    let log: AccessLog

    func run() async throws {
        try? await gracefulShutdown()
        let log = self.log
        // close() blocks (up to its timeout) on the writer thread: not on a pool thread.
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread {
                log.close()
                continuation.resume()
            }.start()
        }
    }
}
