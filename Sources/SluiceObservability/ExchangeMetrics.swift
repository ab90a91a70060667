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
        var http: [HTTPKey: Counter] = [:]
        var httpDuration: [String: Timer] = [:]
        var grpc: [GRPCKey: Counter] = [:]
        var grpcDuration: [String: Timer] = [:]
        var routes: [String: RouteSeries] = [:]
        var rejected: [PairKey: Counter] = [:]
        var deadLettered: [PairKey: Counter] = [:]
        var mirrored: [PairKey: Counter] = [:]
        var denied: [PairKey: Counter] = [:]
        /// The last HTTP request's labels and handlers, and the last route's event series: a
        /// run of requests with the same labels (the common case) compares them instead of
        /// hashing the route and listener names into two or three dictionaries.
        var lastHTTP: (key: HTTPKey, requests: Counter, duration: Timer)?
        var lastRoute: (name: String, series: RouteSeries)?
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
                if let last = handlers.lastHTTP, last.key == key {
                    (requests, duration) = (last.requests, last.duration)
                } else {
                    requests = cached(&handlers.http, key) {
                        MetricCatalogue.httpRequests.counter(record.listener, route, String(record.status), factory: factory)
                    }
                    duration = cached(&handlers.httpDuration, route) { MetricCatalogue.httpRequestDuration.timer(route, factory: factory) }
                    handlers.lastHTTP = (key, requests, duration)
                }
            case .grpc:
                let code = record.statusName ?? String(record.status)
                let key = GRPCKey(route: route, method: record.method, code: code)
                requests = cached(&handlers.grpc, key) { MetricCatalogue.grpcRequests.counter(route, record.method, code, factory: factory) }
                duration = cached(&handlers.grpcDuration, route) { MetricCatalogue.grpcRequestDuration.timer(route, factory: factory) }
            }
            var series: RouteSeries?
            if let named = record.facts.route, record.facts.events > 0 || !record.facts.rejected.isEmpty {
                if let last = handlers.lastRoute, last.name == named {
                    series = last.series
                } else {
                    let made = cached(&handlers.routes, named) {
                        RouteSeries(
                            received: MetricCatalogue.eventsReceived.counter(named, factory: factory),
                            receivedBytes: MetricCatalogue.eventsReceivedBytes.counter(named, factory: factory))
                    }
                    handlers.lastRoute = (named, made)
                    series = made
                }
            }
            var rejected: [(Counter, Int)] = []
            for (reason, count) in record.facts.rejected {
                let key = PairKey(first: route, second: reason)
                let counter = cached(&handlers.rejected, key) { MetricCatalogue.eventsRejected.counter(route, reason, factory: factory) }
                rejected.append((counter, count))
            }
            for (reason, count) in record.facts.deadLettered {
                let key = PairKey(first: route, second: reason)
                let counter = cached(&handlers.deadLettered, key) { MetricCatalogue.eventsDeadLettered.counter(route, reason, factory: factory) }
                rejected.append((counter, count))
            }
            for (outcome, count) in record.facts.mirrored {
                let key = PairKey(first: route, second: outcome)
                let counter = cached(&handlers.mirrored, key) { MetricCatalogue.eventsMirrored.counter(route, outcome, factory: factory) }
                rejected.append((counter, count))
            }
            var denied: Counter?
            if let denial = record.facts.denial {
                let key = PairKey(first: denial.policy, second: denial.reason)
                denied = cached(&handlers.denied, key) { MetricCatalogue.policyDenied.counter(denial.policy, denial.reason, factory: factory) }
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

/// The handler kept under `key`, made by `make` the first time.
private func cached<Key: Hashable, Handler>(_ handlers: inout [Key: Handler], _ key: Key, _ make: () -> Handler) -> Handler {
    if let handler = handlers[key] { return handler }
    let handler = make()
    handlers[key] = handler
    return handler
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
