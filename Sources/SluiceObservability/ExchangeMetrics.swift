import CoreMetrics
import NIOConcurrencyHelpers
import SluiceCore

/// Turns every request and call into the request, event and policy series
/// (`sluice_http_*`, `sluice_grpc_*`, `sluice_events_*`, `sluice_policy_denied_total`). Handlers
/// are made on first use of a label set and kept: every label value comes from the configuration
/// or the error catalogue, so the set is bounded.
public final class ExchangeMetrics: ExchangeObserver {
    private let factory: any MetricsFactory

    private struct HTTPKey: Hashable {
        var listener: String
        var route: String
        var code: Int
    }

    private struct GRPCKey: Hashable {
        var route: String
        var method: String
        var code: String
    }

    private struct PairKey: Hashable {
        var first: String
        var second: String
    }

    private struct RouteSeries {
        var received: Counter
        var receivedBytes: Counter
    }

    private struct Handlers {
        var http = MadeOnFirstUse<HTTPKey, Counter>()
        var httpDuration = MadeOnFirstUse<String, Timer>()
        var grpc = MadeOnFirstUse<GRPCKey, Counter>()
        var grpcDuration = MadeOnFirstUse<String, Timer>()
        var routes = MadeOnFirstUse<String, RouteSeries>()
        var rejected = MadeOnFirstUse<PairKey, Counter>()
        var deadLettered = MadeOnFirstUse<PairKey, Counter>()
        var mirrored = MadeOnFirstUse<PairKey, Counter>()
        var denied = MadeOnFirstUse<PairKey, Counter>()
    }

    private let handlers = NIOLockedValueBox(Handlers())

    public init(factory: any MetricsFactory) {
        self.factory = factory
    }

    public func observe(_ record: ExchangeRecord) {
        let route = record.facts.route ?? "none"
        let factory = self.factory
        let (requests, duration, series, rejected, denied) = self.handlers.withLockedValue {
            handlers -> (Counter, Timer, RouteSeries?, [(Counter, Int)], Counter?) in
            let requests: Counter
            let duration: Timer
            switch record.transport {
            case .http:
                let key = HTTPKey(listener: record.listener, route: route, code: record.status)
                requests = handlers.http.value(for: key) {
                    MetricCatalogue.httpRequests.counter(record.listener, route, String(record.status), factory: factory)
                }
                duration = handlers.httpDuration.value(for: route) { MetricCatalogue.httpRequestDuration.timer(route, factory: factory) }
            case .grpc:
                let code = record.statusName ?? String(record.status)
                let key = GRPCKey(route: route, method: record.method, code: code)
                requests = handlers.grpc.value(for: key) { MetricCatalogue.grpcRequests.counter(route, record.method, code, factory: factory) }
                duration = handlers.grpcDuration.value(for: route) { MetricCatalogue.grpcRequestDuration.timer(route, factory: factory) }
            }
            var series: RouteSeries?
            if let named = record.facts.route, record.facts.events > 0 || !record.facts.rejected.isEmpty {
                series = handlers.routes.value(for: named) {
                    RouteSeries(
                        received: MetricCatalogue.eventsReceived.counter(named, factory: factory),
                        receivedBytes: MetricCatalogue.eventsReceivedBytes.counter(named, factory: factory))
                }
            }
            var rejected: [(Counter, Int)] = []
            for (reason, count) in record.facts.rejected {
                let key = PairKey(first: route, second: reason)
                let counter = handlers.rejected.value(for: key) { MetricCatalogue.eventsRejected.counter(route, reason, factory: factory) }
                rejected.append((counter, count))
            }
            for (reason, count) in record.facts.deadLettered {
                let key = PairKey(first: route, second: reason)
                let counter = handlers.deadLettered.value(for: key) { MetricCatalogue.eventsDeadLettered.counter(route, reason, factory: factory) }
                rejected.append((counter, count))
            }
            for (outcome, count) in record.facts.mirrored {
                let key = PairKey(first: route, second: outcome)
                let counter = handlers.mirrored.value(for: key) { MetricCatalogue.eventsMirrored.counter(route, outcome, factory: factory) }
                rejected.append((counter, count))
            }
            var denied: Counter?
            if let denial = record.facts.denial {
                let key = PairKey(first: denial.policy, second: denial.reason)
                denied = handlers.denied.value(for: key) { MetricCatalogue.policyDenied.counter(denial.policy, denial.reason, factory: factory) }
            }
            return (requests, duration, series, rejected, denied)
        }
        requests.increment()
        duration.record(record.duration)
        if let series, record.facts.events > 0 {
            series.received.increment(by: record.facts.events)
            series.receivedBytes.increment(by: record.facts.eventBytes)
        }
        for (counter, count) in rejected { counter.increment(by: count) }
        denied?.increment()
    }
}

/// Several observers told in turn.
public struct ExchangeObservers: ExchangeObserver {
    public let observers: [any ExchangeObserver]

    public init(_ observers: [any ExchangeObserver]) {
        self.observers = observers
    }

    public func observe(_ record: ExchangeRecord) {
        for observer in self.observers { observer.observe(record) }
    }
}
