import CoreMetrics
import NIOConcurrencyHelpers
import SluiceCore
import SluiceHTTP
import SluiceIngest
import SluiceObservability

/// Gauges read from the running sinks and upstreams when scraped, rather than kept up to date
/// on every event: in-flight budgets, waiting requests, readiness, endpoint states. After a
/// reload `track` is told the new set: a removed sink's or upstream's gauges leave the
/// exposition.
final class ResourceGauges: Sendable {
    private struct SinkGauges {
        let sink: any Sink
        let inFlightEvents, inFlightBytes, maxEvents, maxBytes, waiting, ready: Gauge

        var all: [Gauge] { [self.inFlightEvents, self.inFlightBytes, self.maxEvents, self.maxBytes, self.waiting, self.ready] }
    }

    private struct UpstreamGauges {
        let upstream: Upstream
        /// in_service, unhealthy, ejected.
        let states: [Gauge]
    }

    /// A spool's gauges, and its forwarder's totals as counters (advanced by what changed since
    /// the last scrape).
    private struct SpoolSeries {
        let forwarder: SpoolForwarder
        let bytes, maxBytes, events, oldestAge: Gauge
        let forwarded, retried, deadLettered, dropped, replayed, possiblyDuplicated: Counter
        var seen = SpoolForwarder.Totals()
    }

    private let spools = NIOLockedValueBox<[SpoolSeries]>([])

    private let factory: DescribedPrometheusFactory
    private let tracked = NIOLockedValueBox<(sinks: [String: SinkGauges], upstreams: [String: UpstreamGauges])>(([:], [:]))

    init(exporter: PrometheusExporter) {
        self.factory = exporter.factory
        exporter.beforeScrape { [weak self] in self?.update() }
    }

    /// The sinks and upstreams running now.
    func track(sinks: [any Sink], upstreams: [Upstream]) {
        let factory = self.factory
        let removed: [Gauge] = self.tracked.withLockedValue { tracked in
            var removed: [Gauge] = []
            var nextSinks: [String: SinkGauges] = [:]
            for sink in sinks {
                if let existing = tracked.sinks[sink.name] {
                    nextSinks[sink.name] = SinkGauges(
                        sink: sink, inFlightEvents: existing.inFlightEvents, inFlightBytes: existing.inFlightBytes, maxEvents: existing.maxEvents,
                        maxBytes: existing.maxBytes, waiting: existing.waiting, ready: existing.ready)
                } else {
                    nextSinks[sink.name] = SinkGauges(
                        sink: sink,
                        inFlightEvents: MetricCatalogue.sinkInFlightEvents.gauge(sink.name, factory: factory),
                        inFlightBytes: MetricCatalogue.sinkInFlightBytes.gauge(sink.name, factory: factory),
                        maxEvents: MetricCatalogue.sinkMaxInFlightEvents.gauge(sink.name, factory: factory),
                        maxBytes: MetricCatalogue.sinkMaxInFlightBytes.gauge(sink.name, factory: factory),
                        waiting: MetricCatalogue.sinkWaitingRequests.gauge(sink.name, factory: factory),
                        ready: MetricCatalogue.sinkReady.gauge(sink.name, factory: factory))
                }
            }
            for (name, gauges) in tracked.sinks where nextSinks[name] == nil { removed += gauges.all }
            var nextUpstreams: [String: UpstreamGauges] = [:]
            for upstream in upstreams {
                let states = tracked.upstreams[upstream.name]?.states
                    ?? ["in_service", "unhealthy", "ejected"].map { MetricCatalogue.upstreamEndpoints.gauge(upstream.name, $0, factory: factory) }
                nextUpstreams[upstream.name] = UpstreamGauges(upstream: upstream, states: states)
            }
            for (name, gauges) in tracked.upstreams where nextUpstreams[name] == nil { removed += gauges.states }
            tracked = (nextSinks, nextUpstreams)
            return removed
        }
        for gauge in removed { gauge.destroy() }
    }

    /// The spool forwarders (fixed for the process's life).
    func track(spools: [SpoolForwarder]) {
        let factory = self.factory
        let series = spools.map { forwarder in
            let route = forwarder.routeName
            return SpoolSeries(
                forwarder: forwarder,
                bytes: MetricCatalogue.spoolBytes.gauge(route, factory: factory), maxBytes: MetricCatalogue.spoolMaxBytes.gauge(route, factory: factory),
                events: MetricCatalogue.spoolEvents.gauge(route, factory: factory),
                oldestAge: MetricCatalogue.spoolOldestEventAge.gauge(route, factory: factory),
                forwarded: MetricCatalogue.spoolEventsForwarded.counter(route, factory: factory),
                retried: MetricCatalogue.spoolEventsRetried.counter(route, factory: factory),
                deadLettered: MetricCatalogue.spoolEventsDeadLettered.counter(route, factory: factory),
                dropped: MetricCatalogue.spoolEventsDropped.counter(route, factory: factory),
                replayed: MetricCatalogue.spoolEventsReplayed.counter(route, factory: factory),
                possiblyDuplicated: MetricCatalogue.spoolEventsPossiblyDuplicated.counter(route, factory: factory))
        }
        self.spools.withLockedValue { $0 = series }
    }

    private func update() {
        self.spools.withLockedValue { spools in
            for index in spools.indices {
                let spool = spools[index].forwarder.spool
                spools[index].bytes.record(spool.bytesOnDisk)
                spools[index].maxBytes.record(spool.maxBytes)
                spools[index].events.record(Int64(spool.pendingRecords))
                spools[index].oldestAge.record(spool.oldestPendingAge / .seconds(1))
                let now = spools[index].forwarder.totalsSoFar
                let seen = spools[index].seen
                spools[index].forwarded.increment(by: Int64(now.forwarded - seen.forwarded))
                spools[index].retried.increment(by: Int64(now.retried - seen.retried))
                spools[index].deadLettered.increment(by: Int64(now.deadLettered - seen.deadLettered))
                spools[index].dropped.increment(by: Int64(now.dropped - seen.dropped))
                spools[index].replayed.increment(by: Int64(now.replayed - seen.replayed))
                spools[index].possiblyDuplicated.increment(by: Int64(now.possiblyDuplicated - seen.possiblyDuplicated))
                spools[index].seen = now
            }
        }
        let (sinks, upstreams) = self.tracked.withLockedValue { ($0.sinks, $0.upstreams) }
        for gauges in sinks.values {
            let budget = gauges.sink.budget
            let inFlight = budget.inFlight
            gauges.inFlightEvents.record(inFlight.events)
            gauges.inFlightBytes.record(inFlight.bytes)
            gauges.maxEvents.record(budget.maxEvents)
            gauges.maxBytes.record(budget.maxBytes)
            gauges.waiting.record(budget.waiting)
            gauges.ready.record(gauges.sink.isReady ? 1 : 0)
        }
        for gauges in upstreams.values {
            var counts = [0, 0, 0]
            for endpoint in gauges.upstream.status.endpoints {
                if endpoint.ejected {
                    counts[2] += 1
                } else if !endpoint.healthy {
                    counts[1] += 1
                } else {
                    counts[0] += 1
                }
            }
            for (gauge, count) in zip(gauges.states, counts) { gauge.record(count) }
        }
    }
}
