import CoreMetrics
import SluiceCore
import SluiceHTTP
import SluiceObservability

/// Gauges read from the running sinks and upstreams when scraped, rather than kept up to date
/// on every event: in-flight budgets, waiting requests, readiness, endpoint states.
enum ResourceGauges {
    static func register(on exporter: PrometheusExporter, sinks: [any Sink], upstreams: [Upstream]) {
        let factory = exporter.factory
        struct SinkGauges {
            let sink: any Sink
            let inFlightEvents, inFlightBytes, maxEvents, maxBytes, waiting, ready: Gauge
        }
        let sinkGauges = sinks.map { sink in
            SinkGauges(
                sink: sink,
                inFlightEvents: MetricCatalogue.sinkInFlightEvents.gauge(sink.name, factory: factory),
                inFlightBytes: MetricCatalogue.sinkInFlightBytes.gauge(sink.name, factory: factory),
                maxEvents: MetricCatalogue.sinkMaxInFlightEvents.gauge(sink.name, factory: factory),
                maxBytes: MetricCatalogue.sinkMaxInFlightBytes.gauge(sink.name, factory: factory),
                waiting: MetricCatalogue.sinkWaitingRequests.gauge(sink.name, factory: factory),
                ready: MetricCatalogue.sinkReady.gauge(sink.name, factory: factory))
        }
        let states = ["in_service", "unhealthy", "ejected"]
        let upstreamGauges = upstreams.map { upstream in
            (upstream, states.map { MetricCatalogue.upstreamEndpoints.gauge(upstream.name, $0, factory: factory) })
        }
        exporter.beforeScrape {
            for gauges in sinkGauges {
                let budget = gauges.sink.budget
                let inFlight = budget.inFlight
                gauges.inFlightEvents.record(inFlight.events)
                gauges.inFlightBytes.record(inFlight.bytes)
                gauges.maxEvents.record(budget.maxEvents)
                gauges.maxBytes.record(budget.maxBytes)
                gauges.waiting.record(budget.waiting)
                gauges.ready.record(gauges.sink.isReady ? 1 : 0)
            }
            for (upstream, gauges) in upstreamGauges {
                var counts = [0, 0, 0]
                for endpoint in upstream.status.endpoints {
                    if endpoint.ejected {
                        counts[2] += 1
                    } else if !endpoint.healthy {
                        counts[1] += 1
                    } else {
                        counts[0] += 1
                    }
                }
                for (gauge, count) in zip(gauges, counts) { gauge.record(count) }
            }
        }
    }
}
