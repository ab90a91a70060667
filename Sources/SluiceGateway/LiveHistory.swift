import Foundation
import NIOConcurrencyHelpers
import SluiceCore
import SluiceHTTP
import SluiceObservability

/// The last few minutes of what every sink, route and upstream did, one sample a second: what
/// the ops console charts and `sluice top` shows (`GET /stats`). Rates are per second over the
/// sample's second; latency percentiles are of the acks settled in it. Bounded: `capacity`
/// samples, each with one entry per configured sink, route and upstream.
final class LiveHistory: Sendable {
    static let interval = Duration.seconds(1)
    /// Five minutes of samples.
    static let capacity = 300

    struct SinkSample {
        var eventsPerSecond: Double
        var bytesPerSecond: Double
        var errorsPerSecond: Double
        var latencyP50: Double?
        var latencyP99: Double?
        var inFlightEvents: Int
        var maxInFlightEvents: Int
        var inFlightBytes: Int
        var maxInFlightBytes: Int
        var waiting: Int
        var ready: Bool
    }

    struct FlowSample {
        var requestsPerSecond: Double
        var eventsPerSecond: Double
        var bytesPerSecond: Double
        var errorsPerSecond: Double
    }

    struct UpstreamSample {
        var flow: FlowSample
        var inProgress: Int
        var waiting: Int
        var endpointsInService: Int
        var endpoints: Int
    }

    struct Sample {
        var sequence: Int
        var time: Date
        var sinks: [(String, SinkSample)]
        var routes: [(String, FlowSample)]
        var upstreams: [(String, UpstreamSample)]
    }

    private struct Baseline {
        var time = ContinuousClock.now
        var sinks: [String: (ObjectIdentifier, SinkLiveStats.Snapshot)] = [:]
        var exchanges: (routes: [String: LiveExchangeStats.Totals], upstreams: [String: LiveExchangeStats.Totals]) = ([:], [:])
    }

    private let state = NIOLockedValueBox<(samples: [Sample], next: Int, baseline: Baseline)>(([], 1, Baseline()))

    /// Takes one sample of `gateway`'s sinks, routes and upstreams.
    func sample(_ gateway: Gateway) {
        let now = ContinuousClock.now
        let (sinkStats, routeNames, upstreams) = gateway.state.withLockedValue { state in
            (
                state.configuration.sinks.compactMap { config in state.resources.sinks[config.name].map { (config.name, $0) } },
                state.configuration.routes.map(\.name),
                state.configuration.upstreams.compactMap { config in state.resources.upstreams[config.name].map { (config.name, $0.upstream) } }
            )
        }
        let exchanges = gateway.liveExchanges.snapshot
        self.state.withLockedValue { state in
            let baseline = state.baseline
            let seconds = max(0.001, Double((now - baseline.time).components.attoseconds) / 1e18 + Double((now - baseline.time).components.seconds))
            var next = Baseline(time: now, sinks: [:], exchanges: exchanges)
            var sinks: [(String, SinkSample)] = []
            for (name, built) in sinkStats {
                let identity = ObjectIdentifier(built.stats)
                let snapshot = built.stats.snapshot
                next.sinks[name] = (identity, snapshot)
                let delta: SinkLiveStats.Snapshot
                if let (earlierIdentity, earlier) = baseline.sinks[name], earlierIdentity == identity {
                    delta = snapshot.since(earlier)
                } else {
                    delta = snapshot
                }
                let budget = built.sink.budget
                let inFlight = budget.inFlight
                sinks.append(
                    (
                        name,
                        SinkSample(
                            eventsPerSecond: Double(delta.delivered) / seconds, bytesPerSecond: Double(delta.deliveredBytes) / seconds,
                            errorsPerSecond: Double(delta.failed) / seconds,
                            latencyP50: SinkLiveStats.Snapshot.latencyQuantile(0.5, counts: delta.latencyCounts),
                            latencyP99: SinkLiveStats.Snapshot.latencyQuantile(0.99, counts: delta.latencyCounts), inFlightEvents: inFlight.events,
                            maxInFlightEvents: budget.maxEvents, inFlightBytes: inFlight.bytes, maxInFlightBytes: budget.maxBytes, waiting: budget.waiting,
                            ready: built.sink.isReady)
                    ))
            }
            func flow(_ now: LiveExchangeStats.Totals?, _ earlier: LiveExchangeStats.Totals?) -> FlowSample {
                let delta = (now ?? .init()).since(earlier ?? .init())
                return FlowSample(
                    requestsPerSecond: Double(delta.requests) / seconds, eventsPerSecond: Double(delta.events) / seconds,
                    bytesPerSecond: Double(delta.bytes) / seconds, errorsPerSecond: Double(delta.errors) / seconds)
            }
            let routes = routeNames.map { ($0, flow(exchanges.routes[$0], baseline.exchanges.routes[$0])) }
            let upstreamSamples = upstreams.map { name, upstream in
                let status = upstream.status
                return (
                    name,
                    UpstreamSample(
                        flow: flow(exchanges.upstreams[name], baseline.exchanges.upstreams[name]), inProgress: status.requestsInProgress,
                        waiting: status.waiting, endpointsInService: status.endpoints.filter { $0.healthy && !$0.ejected }.count,
                        endpoints: status.endpoints.count)
                )
            }
            state.samples.append(Sample(sequence: state.next, time: Date(), sinks: sinks, routes: routes, upstreams: upstreamSamples))
            state.next += 1
            if state.samples.count > Self.capacity { state.samples.removeFirst(state.samples.count - Self.capacity) }
            state.baseline = next
        }
    }

    /// The samples after `sequence` (all kept ones for 0), as `GET /stats` answers.
    func json(after sequence: Int) -> JSONWriter {
        let samples = self.state.withLockedValue { state in state.samples.filter { $0.sequence > sequence } }
        var json = JSONWriter()
        json.object { json in
            json.field("interval_seconds", 1)
            json.field("latest", samples.last?.sequence ?? sequence)
            json.key("samples")
            json.array { json in
                for sample in samples {
                    json.object { json in
                        json.field("sequence", sample.sequence)
                        json.field("time", sample.time.timeIntervalSince1970)
                        json.key("sinks")
                        json.object { json in
                            for (name, sink) in sample.sinks {
                                json.key(name)
                                json.object {
                                    $0.field("events_per_second", sink.eventsPerSecond)
                                    $0.field("bytes_per_second", sink.bytesPerSecond)
                                    $0.field("errors_per_second", sink.errorsPerSecond)
                                    $0.key("ack_latency_p50_seconds")
                                    if let p50 = sink.latencyP50 { $0.value(p50) } else { $0.null() }
                                    $0.key("ack_latency_p99_seconds")
                                    if let p99 = sink.latencyP99 { $0.value(p99) } else { $0.null() }
                                    $0.field("in_flight_events", sink.inFlightEvents)
                                    $0.field("max_in_flight_events", sink.maxInFlightEvents)
                                    $0.field("in_flight_bytes", sink.inFlightBytes)
                                    $0.field("max_in_flight_bytes", sink.maxInFlightBytes)
                                    $0.field("waiting_requests", sink.waiting)
                                    $0.field("ready", sink.ready)
                                }
                            }
                        }
                        json.key("routes")
                        json.object { json in
                            for (name, route) in sample.routes {
                                json.key(name)
                                json.object { Self.write(route, &$0) }
                            }
                        }
                        json.key("upstreams")
                        json.object { json in
                            for (name, upstream) in sample.upstreams {
                                json.key(name)
                                json.object {
                                    Self.write(upstream.flow, &$0)
                                    $0.field("requests_in_progress", upstream.inProgress)
                                    $0.field("requests_waiting", upstream.waiting)
                                    $0.field("endpoints_in_service", upstream.endpointsInService)
                                    $0.field("endpoints", upstream.endpoints)
                                }
                            }
                        }
                    }
                }
            }
        }
        return json
    }

    private static func write(_ flow: FlowSample, _ json: inout JSONWriter) {
        json.field("requests_per_second", flow.requestsPerSecond)
        json.field("events_per_second", flow.eventsPerSecond)
        json.field("bytes_per_second", flow.bytesPerSecond)
        json.field("errors_per_second", flow.errorsPerSecond)
    }
}
