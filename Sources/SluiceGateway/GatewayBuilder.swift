import CoreMetrics
import Logging
import SluiceConfig
import SluiceConfigReader
import SluiceCore
import SluiceGRPC
import SluiceHTTP
import SluiceIngest
import SluicePolicy
import SluiceSpool
import ServiceLifecycle

/// Why a configuration could not be put to work (a sink that cannot start, certificates that do
/// not load): said with the configuration path it concerns.
public struct GatewayBuildError: Error, CustomStringConvertible {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// The running things a snapshot's routes are bound to: sinks, upstreams, policies.
public struct GatewayResources: Sendable {
    /// A running sink and the configuration it was built from.
    public struct BuiltSink: Sendable {
        public let sink: any RunnableSink
        public let config: SinkConfig
        let flushTimeout: Duration
        /// Its running totals (the admin API, console and `sluice top` read them).
        public let stats: SinkLiveStats
    }

    /// A running upstream and the configuration it was built from.
    public struct BuiltUpstream: Sendable {
        public let upstream: Upstream
        public let config: UpstreamConfig
    }

    public var sinks: [String: BuiltSink]
    public var upstreams: [String: BuiltUpstream]
    public var policies: PolicyRegistry
    /// Each route's idempotency key store, by route name, with the configuration it was made for.
    public var idempotencyStores: [String: (config: IdempotencyConfig, store: any IdempotencyStore)] = [:]
    /// Each `ack: spooled` route's spool and its forwarder, by route name: opened when the
    /// gateway starts and kept for its life (a reload may not change them).
    public var spools: [String: SpoolForwarder] = [:]
    /// The sinks and upstreams this build made (rather than kept from the previous one), by name.
    public var made: (sinks: [String], upstreams: [String])

    public var runningSinks: [String: any Sink] { self.sinks.mapValues { $0.sink } }
    public var runningUpstreams: [String: Upstream] { self.upstreams.mapValues { $0.upstream } }
}

/// Builds what a configuration needs to run: sinks (through the kinds the connectors register),
/// upstreams and policies, then the route tables that bind routes to them. Given the resources of
/// the configuration running now, it keeps every sink and upstream whose entry is unchanged
/// (same kind, same YAML, same flush timeout) instead of building a second one — the step a
/// reload takes.
public struct GatewayBuilder: Sendable {
    public let sinkKinds: [SinkKind]
    public let logger: Logger
    /// For secrets named by `{ env: VARIABLE }`.
    public let environment: [String: String]
    /// Where every sink, upstream and route this builder makes keeps its series; the no-op
    /// factory when metrics are off (then sinks measure no latencies at all).
    public let metrics: any MetricsFactory

    public init(
        sinkKinds: [SinkKind], logger: Logger, environment: [String: String], metrics: any MetricsFactory = NOOPMetricsHandler.instance
    ) {
        self.sinkKinds = sinkKinds
        self.logger = logger
        self.environment = environment
        self.metrics = metrics
    }

    var exportsMetrics: Bool { !(self.metrics is NOOPMetricsHandler) }

    /// The sinks, upstreams and policies of `config`; those of `previous` whose entries did not
    /// change are kept. Sinks and upstreams of `previous` that are not kept (changed or gone) are
    /// the caller's to stop once no snapshot routes to them; `made` names the new ones.
    /// `rebuilding` names sinks to build anew even when their entries are unchanged (an operator
    /// retuned them; a reload returns them to their entries). When a sink or upstream cannot be
    /// built, those already made are stopped before the error is thrown.
    public func resources(
        for config: SluiceConfiguration, reusing previous: GatewayResources? = nil, rebuilding: Set<String> = []
    ) async throws(GatewayBuildError) -> GatewayResources {
        var made: [any Service] = []
        do throws(GatewayBuildError) {
            return try await self.build(config, reusing: previous, rebuilding: rebuilding, made: &made)
        } catch {
            await Gateway.stop(made.map { ServiceHandle($0, name: "discarded", logger: self.logger) })
            throw error
        }
    }

    private func build(
        _ config: SluiceConfiguration, reusing previous: GatewayResources?, rebuilding: Set<String>, made: inout [any Service]
    ) async throws(GatewayBuildError) -> GatewayResources {
        var sinks: [String: GatewayResources.BuiltSink] = [:]
        var madeSinks: [String] = []
        let flushTimeout = config.shutdown.flushTimeout
        for sinkConfig in config.sinks {
            if let kept = previous?.sinks[sinkConfig.name], !rebuilding.contains(sinkConfig.name),
                Self.unchanged(kept, sinkConfig, flushTimeout: flushTimeout)
            {
                sinks[sinkConfig.name] = kept
                continue
            }
            guard let kind = self.sinkKinds.first(where: { $0.key == sinkConfig.kind }) else {
                preconditionFailure("sink \(sinkConfig.name) has kind \(sinkConfig.kind), which the parser was not given")
            }
            let context = SinkContext(
                name: sinkConfig.name,
                budget: InFlightBudget(maxBytes: sinkConfig.maxInFlightBytes, maxEvents: sinkConfig.maxInFlightEvents),
                flushTimeout: flushTimeout, logger: self.logger, environment: self.environment,
                recorder: self.exportsMetrics ? SinkDeliveryMetrics(sink: sinkConfig.name, factory: self.metrics) : nil,
                metrics: self.metrics, liveStats: SinkLiveStats(measuresLatency: self.exportsMetrics))
            do {
                let sink = try kind.make(sinkConfig.settings, context)
                sinks[sinkConfig.name] = .init(sink: sink, config: sinkConfig, flushTimeout: flushTimeout, stats: context.liveStats)
                madeSinks.append(sinkConfig.name)
                made.append(sink)
            } catch {
                throw GatewayBuildError("sinks: \(sinkConfig.name): cannot start: \(error)")
            }
        }

        let policies: PolicyRegistry
        do {
            policies = try await PolicyRegistry.build(config.policies, reusing: previous?.policies)
        } catch {
            throw GatewayBuildError("\(error)")
        }

        var upstreams: [String: GatewayResources.BuiltUpstream] = [:]
        var madeUpstreams: [String] = []
        for upstreamConfig in config.upstreams {
            if let kept = previous?.upstreams[upstreamConfig.name], let source = upstreamConfig.source, kept.config.source == source {
                upstreams[upstreamConfig.name] = kept
                continue
            }
            do {
                let upstream = try Upstream(config: upstreamConfig, logger: self.logger, metrics: self.metrics)
                upstreams[upstreamConfig.name] = .init(upstream: upstream, config: upstreamConfig)
                madeUpstreams.append(upstreamConfig.name)
                made.append(upstream)
            } catch {
                throw GatewayBuildError("upstreams: \(upstreamConfig.name): cannot start: \(error)")
            }
        }
        var resources = GatewayResources(sinks: sinks, upstreams: upstreams, policies: policies, made: (madeSinks, madeUpstreams))
        resources.idempotencyStores = Self.idempotencyStores(config, reusing: previous)
        resources.spools = try self.spools(config, sinks: resources.runningSinks, reusing: previous)
        return resources
    }

    /// A spool and its forwarder per `ack: spooled` route: the running ones (told the route's
    /// sinks as this configuration has them), or opened now.
    func spools(
        _ config: SluiceConfiguration, sinks: [String: any Sink], reusing previous: GatewayResources?
    ) throws(GatewayBuildError) -> [String: SpoolForwarder] {
        var forwarders: [String: SpoolForwarder] = [:]
        for route in config.routes {
            guard case .ingest(let ingest) = route.action, let spoolConfig = ingest.spool, let sink = RouteSinks.sink(for: ingest, among: sinks)
            else { continue }
            let deadLetters = ingest.deadLetter.flatMap { sinks[$0.sink] }
            if let kept = previous?.spools[route.name] {
                kept.update(IngestPipeline(routeName: route.name, config: ingest, sink: sink, deadLetterSink: deadLetters, spool: kept.spool, logger: self.logger))
                forwarders[route.name] = kept
                continue
            }
            let spool: Spool
            do {
                // A record is one event: at most a body, with its key and headers.
                spool = try Spool(
                    directory: spoolConfig.directory, maxBytes: spoolConfig.maxBytes, segmentBytes: spoolConfig.segmentBytes,
                    maxRecordBytes: ingest.maxBodyBytes + (1 << 20))
            } catch {
                throw GatewayBuildError("routes: \(route.name): spool: cannot open \(spoolConfig.directory): \(error)")
            }
            let pipeline = IngestPipeline(routeName: route.name, config: ingest, sink: sink, deadLetterSink: deadLetters, spool: spool, logger: self.logger)
            forwarders[route.name] = SpoolForwarder(spool: spool, pipeline: pipeline, drainTimeout: config.shutdown.flushTimeout, logger: self.logger)
        }
        return forwarders
    }

    /// A key store per route with `idempotency`; a route whose idempotency is unchanged keeps
    /// its store (and the keys in it) across a reload.
    static func idempotencyStores(
        _ config: SluiceConfiguration, reusing previous: GatewayResources?
    ) -> [String: (config: IdempotencyConfig, store: any IdempotencyStore)] {
        var stores: [String: (config: IdempotencyConfig, store: any IdempotencyStore)] = [:]
        for route in config.routes {
            guard let idempotency = route.idempotency else { continue }
            if let kept = previous?.idempotencyStores[route.name], kept.config == idempotency {
                stores[route.name] = kept
                continue
            }
            let store: any IdempotencyStore
            switch idempotency.store {
            case .memory:
                store = MemoryIdempotencyStore(window: idempotency.window, maxKeys: idempotency.maxKeys, maxBytes: idempotency.maxBytes)
            case .redis(let redis):
                store = RedisIdempotencyStore(config: redis, window: idempotency.window, inFlightTimeout: idempotency.inFlightTimeout)
            }
            stores[route.name] = (idempotency, store)
        }
        return stores
    }

    static func unchanged(_ kept: GatewayResources.BuiltSink, _ config: SinkConfig, flushTimeout: Duration) -> Bool {
        guard let source = config.source else { return false }
        return kept.config.kind == config.kind && kept.config.source == source && kept.flushTimeout == flushTimeout
    }

    /// The route tables of `config`, bound to `resources`.
    public func snapshot(for config: SluiceConfiguration, resources: GatewayResources, generation: Int) -> GatewaySnapshot {
        let sinks = resources.runningSinks
        let leases = SnapshotLeases()
        let http = HTTPRouteTable(
            config: config, sinks: sinks, upstreams: resources.runningUpstreams, policies: resources.policies,
            idempotencyStores: resources.idempotencyStores.mapValues(\.store), spools: resources.spools.mapValues(\.spool), leases: leases,
            logger: self.logger)
        let grpcRoutes = config.routes.compactMap { route -> GRPCIngestRoute? in
            guard route.match.grpc != nil, case .ingest(let ingest) = route.action, let sink = RouteSinks.sink(for: ingest, among: sinks) else {
                return nil
            }
            return GRPCIngestRoute(
                name: route.name, match: route.match, ingest: ingest, sink: sink, deadLetterSink: ingest.deadLetter.flatMap { sinks[$0.sink] },
                mirrorSink: ingest.mirror.flatMap { sinks[$0.sink] },
                policies: resources.policies.chain(route.policies), logger: self.logger)
        }
        return GatewaySnapshot(generation: generation, http: http, grpc: GRPCRouteTable(routes: grpcRoutes, leases: leases))
    }
}
