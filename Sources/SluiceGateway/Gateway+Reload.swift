import CoreMetrics
import Foundation
import SluiceAdmin
import SluiceConfig
import SluiceConfigReader
import SluiceCore
import SluiceGRPC
import SluiceHTTP

extension Gateway {
    /// Reads the configuration source again and applies it.
    public func reload(trigger: String) async -> ReloadOutcome {
        guard let source = self.source else {
            return self.finish(.refused(["the gateway runs the embedded configuration: start it with --config FILE to reload"]), trigger: trigger)
        }
        switch source.load() {
        case .failure(let error):
            return self.finish(.refused(error.errors.map(\.description)), trigger: trigger)
        case .success(let loaded):
            return await self.apply(loaded, trigger: trigger)
        }
    }

    /// Applies `loaded` as one change: everything a request consults is swapped at once, and
    /// the running configuration serves on untouched when any part cannot be applied.
    public func apply(_ loaded: LoadedConfiguration, trigger: String) async -> ReloadOutcome {
        await self.serial.acquire()
        defer { self.serial.release() }
        return self.finish(await self.applyLocked(loaded), trigger: trigger)
    }

    /// Counts and logs a reload's outcome.
    private func finish(_ outcome: ReloadOutcome, trigger: String) -> ReloadOutcome {
        let factory = self.exporter?.factory
        switch outcome {
        case .applied(let summary):
            if let factory { MetricCatalogue.configReloads.counter("success", factory: factory).increment() }
            self.logger.notice("configuration reloaded", metadata: ["trigger": "\(trigger)", "generation": "\(summary.generation)", "changes": "\(summary.description)"])
        case .refused(let problems):
            if let factory { MetricCatalogue.configReloads.counter("failure", factory: factory).increment() }
            self.logger.error("configuration reload refused; the running configuration serves on", metadata: ["trigger": "\(trigger)"])
            for problem in problems { self.logger.error("reload: \(problem)") }
        case .failed(let reason):
            if let factory { MetricCatalogue.configReloads.counter("failure", factory: factory).increment() }
            self.logger.error(
                "configuration reload failed; the running configuration serves on", metadata: ["trigger": "\(trigger)", "reason": "\(reason)"])
        }
        return outcome
    }

    private func applyLocked(_ loaded: LoadedConfiguration) async -> ReloadOutcome {
        let new = loaded.configuration
        let (phase, current, running, overridden) = self.state.withLockedValue { state in
            (
                state.phase, state.configuration, state.resources,
                Set(state.overrides.filter { $0.value.keys.contains { !Gateway.budgetSettings.contains($0) } }.keys)
            )
        }
        guard phase == .running else {
            return .failed(phase == .stopping ? "the gateway is shutting down" : "the gateway is not running yet")
        }
        let problems = Self.restartOnlyChanges(from: current, to: new)
        guard problems.isEmpty else { return .refused(problems) }

        // Sinks and upstreams: the unchanged ones are kept; the rest are built (and started)
        // before any request can reach them.
        let resources: GatewayResources
        do {
            resources = try await self.builder.resources(for: new, reusing: running, rebuilding: overridden)
        } catch {
            return .failed(error.description)
        }
        var started: [ServiceHandle] = []
        for name in resources.made.sinks {
            guard let built = resources.sinks[name] else { continue }
            started.append(ServiceHandle(built.sink, name: "sink \(name)", logger: self.logger))
        }
        for name in resources.made.upstreams {
            guard let built = resources.upstreams[name] else { continue }
            started.append(ServiceHandle(built.upstream, name: "upstream \(name)", logger: self.logger))
        }

        // Listeners: an address already served keeps its socket and connections; a new one is
        // bound before the swap (an address in use fails the reload, nothing changed).
        let (runningListeners, runningGRPC) = self.state.withLockedValue { ($0.listeners, $0.grpc) }
        var listeners: [RunningListener] = []
        var startedListeners: [ServiceHandle] = []
        var failure: String?
        for config in new.listeners {
            if let kept = runningListeners.first(where: { $0.config.address == config.address }) {
                listeners.append(kept)
                continue
            }
            do {
                let server = try self.makeListener(config, configuration: new)
                let handle = ServiceHandle(server, name: "listener \(config.name)", logger: self.logger)
                startedListeners.append(handle)
                listeners.append(RunningListener(config: config, server: server, handle: handle))
                if await server.waitUntilBound() == nil {
                    failure = "listeners: \(config.name): cannot listen on \(config.address)"
                    break
                }
            } catch {
                failure = error.description
                break
            }
        }
        var grpc = runningGRPC
        if failure == nil, new.grpc?.address != runningGRPC?.config.address {
            grpc = nil
            if let config = new.grpc {
                do {
                    let server = try self.makeGRPCServer(config, configuration: new)
                    let handle = ServiceHandle(server, name: "grpc", logger: self.logger)
                    startedListeners.append(handle)
                    grpc = RunningGRPC(config: config, server: server, handle: handle)
                    if await !server.waitUntilBound() { failure = "grpc: cannot listen on \(config.address)" }
                } catch {
                    failure = error.description
                }
            }
        }
        if let failure {
            await Self.stop(startedListeners + started)
            return .failed(failure)
        }

        // The swap: from the next request on, everything runs on the new snapshot.
        let generation = self.snapshot.load().generation + 1
        let previous = self.snapshot.exchange(self.builder.snapshot(for: new, resources: resources, generation: generation))

        let keptSinks = Set(resources.sinks.values.map { ObjectIdentifier($0.sink as AnyObject) })
        let keptUpstreams = Set(resources.upstreams.values.map { ObjectIdentifier($0.upstream) })
        let retiredSinks = running.sinks.values.filter { !keptSinks.contains(ObjectIdentifier($0.sink as AnyObject)) }
        let retiredUpstreams = running.upstreams.values.filter { !keptUpstreams.contains(ObjectIdentifier($0.upstream)) }
        let retiredListeners = runningListeners.filter { old in !listeners.contains { $0.server === old.server } }
        let retiredGRPC = runningGRPC.flatMap { old in grpc?.server === old.server ? nil : old }

        let (retiredSinkHandles, retiredUpstreamHandles) = self.state.withLockedValue { state in
            state.configuration = new
            state.resources = resources
            state.listeners = listeners
            state.grpc = grpc
            state.document = LoadedDocument(
                hash: loaded.hash, loadedAt: Date(), json: ConfigDocument.redactedJSON(yaml: loaded.text), path: state.document.path)
            // A reload returns every sink to its entry: operators' overrides end here.
            state.overrides = [:]
            for name in resources.made.sinks {
                guard let built = resources.sinks[name], let handle = started.first(where: { $0.name == "sink \(name)" }) else { continue }
                state.handles[ObjectIdentifier(built.sink as AnyObject)] = handle
            }
            for name in resources.made.upstreams {
                guard let built = resources.upstreams[name], let handle = started.first(where: { $0.name == "upstream \(name)" }) else { continue }
                state.handles[ObjectIdentifier(built.upstream)] = handle
            }
            let sinkHandles = retiredSinks.compactMap { state.handles.removeValue(forKey: ObjectIdentifier($0.sink as AnyObject)) }
            let upstreamHandles = retiredUpstreams.compactMap { state.handles.removeValue(forKey: ObjectIdentifier($0.upstream)) }
            return (sinkHandles, upstreamHandles)
        }
        // Kept sinks go back to their entry's limits (a tuned one was rebuilt above).
        for sinkConfig in new.sinks {
            guard let built = resources.sinks[sinkConfig.name], !resources.made.sinks.contains(sinkConfig.name) else { continue }
            built.sink.budget.setLimits(maxBytes: sinkConfig.maxInFlightBytes, maxEvents: sinkConfig.maxInFlightEvents)
            built.sink.budget.maxWaitOverride = nil
        }
        self.resourceGauges?.track(sinks: self.sinks, upstreams: self.upstreams)

        // Drain what the new configuration no longer uses, in the background: removed listeners
        // stop accepting now and finish their requests within drain_timeout; replaced sinks and
        // upstreams close once no request runs on the old snapshot (bounded by drain_timeout),
        // sinks flushing what they hold so every accepted event is delivered and answered.
        let drainTimeout = current.shutdown.drainTimeout
        let logger = self.logger
        let retiredListenerHandles = retiredListeners.compactMap(\.handle) + [retiredGRPC?.handle].compactMap { $0 }
        let retiredUpstreamList = retiredUpstreams.map(\.upstream)
        let retiring = Task {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await Self.stop(retiredListenerHandles) }
                group.addTask {
                    let deadline = ContinuousClock.now + drainTimeout
                    if await !previous.leases.waitUntilUnused(deadline: deadline) {
                        logger.warning(
                            "requests still running on the previous configuration after drain_timeout; closing what it alone used",
                            metadata: ["requests": "\(previous.leases.active)"])
                    }
                    // A proxied response streams after its handler returned: wait for those too.
                    for upstream in retiredUpstreamList {
                        while upstream.status.requestsInProgress > 0, ContinuousClock.now < deadline {
                            try? await Task.sleep(for: .milliseconds(20))
                        }
                    }
                    await Self.stop(retiredUpstreamHandles + retiredSinkHandles)
                }
            }
        }
        self.state.withLockedValue { $0.retiring.append(retiring) }
        return .applied(Self.summary(generation: generation, from: current, to: new, running: running, resources: resources,
            listeners: (kept: listeners.filter { l in runningListeners.contains { $0.server === l.server } }.map(\.config.name),
                        added: listeners.filter { l in !runningListeners.contains { $0.server === l.server } }.map(\.config.name),
                        removed: retiredListeners.map(\.config.name))))
    }

    /// What differs between `current` and `new` that only a restart can change, each as
    /// `path: message`.
    static func restartOnlyChanges(from current: SluiceConfiguration, to new: SluiceConfiguration) -> [String] {
        var problems: [String] = []
        let restart = "changes only with a restart (the running value stays)"
        if current.admin != new.admin { problems.append("admin: the admin listener \(restart)") }
        if current.accessLog != new.accessLog { problems.append("access_log: \(restart)") }
        if current.tracing != new.tracing { problems.append("tracing: \(restart)") }
        if current.process != new.process { problems.append("process: \(restart)") }
        if current.shutdown != new.shutdown { problems.append("shutdown: \(restart)") }
        for (index, listener) in new.listeners.enumerated() {
            guard let running = current.listeners.first(where: { $0.address == listener.address }), running != listener else { continue }
            problems.append(
                "listeners[\(index)]: \(listener.address) is served by the running listener \(running.name); its name, limits and TLS settings "
                    + "\(restart); to change them, move it to another address")
        }
        // Spools are opened at start and owned for the process's life (one owner per directory).
        func spooled(_ config: SluiceConfiguration) -> [String: (spool: SpoolConfig, sink: String, targets: IngestTargets?)] {
            var spools: [String: (spool: SpoolConfig, sink: String, targets: IngestTargets?)] = [:]
            for route in config.routes {
                if case .ingest(let ingest) = route.action, let spool = ingest.spool { spools[route.name] = (spool, ingest.sink, ingest.targets) }
            }
            return spools
        }
        let (runningSpools, newSpools) = (spooled(current), spooled(new))
        for name in Set(runningSpools.keys).union(newSpools.keys).sorted() {
            let running = runningSpools[name]
            let wanted = newSpools[name]
            guard running?.spool != wanted?.spool || running?.sink != wanted?.sink || running?.targets != wanted?.targets else { continue }
            problems.append(
                "routes: \(name): a route's ack: spooled, its spool and its sinks \(restart) (spools are opened when the gateway starts)")
        }
        if let grpc = new.grpc, let running = current.grpc, grpc.address == running.address, grpc != running {
            problems.append("grpc: the gRPC listener's settings at \(grpc.address) \(restart); to change them, move it to another address")
        }
        return problems
    }

    static func summary(
        generation: Int, from current: SluiceConfiguration, to new: SluiceConfiguration, running: GatewayResources, resources: GatewayResources,
        listeners: (kept: [String], added: [String], removed: [String])
    ) -> ReloadSummary {
        func changes<T>(_ kind: String, _ old: [T], _ new: [T], name: (T) -> String, kept: (String) -> Bool) -> ReloadSummary.Changes {
            var result = ReloadSummary.Changes(kind: kind)
            let oldNames = Set(old.map(name))
            let newNames = Set(new.map(name))
            for item in new {
                let itemName = name(item)
                if !oldNames.contains(itemName) {
                    result.added.append(itemName)
                } else if kept(itemName) {
                    result.kept.append(itemName)
                } else {
                    result.changed.append(itemName)
                }
            }
            result.removed = old.map(name).filter { !newNames.contains($0) }
            return result
        }
        var listenerChanges = ReloadSummary.Changes(kind: "listeners")
        listenerChanges.added = listeners.added
        listenerChanges.kept = listeners.kept
        listenerChanges.removed = listeners.removed
        let oldRoutes = Dictionary(current.routes.map { ($0.name, $0.source) }, uniquingKeysWith: { a, _ in a })
        return ReloadSummary(
            generation: generation,
            changes: [
                changes("sinks", current.sinks, new.sinks, name: \.name) { !resources.made.sinks.contains($0) },
                changes("upstreams", current.upstreams, new.upstreams, name: \.name) { !resources.made.upstreams.contains($0) },
                changes("routes", current.routes, new.routes, name: \.name) { name in
                    let source = new.routes.first { $0.name == name }?.source
                    return source != nil && oldRoutes[name] == source
                },
                changes("policies", current.policies, new.policies, name: \.name) { resources.policies.kept.contains($0) },
                listenerChanges,
            ])
    }
}
