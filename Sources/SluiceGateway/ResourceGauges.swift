import CoreMetrics
import NIOConcurrencyHelpers
import SluiceCore
import SluiceHTTP
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

    private func update() {
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
