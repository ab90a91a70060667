import NIOConcurrencyHelpers
import SluiceCore

/// Running totals per route and per upstream for operators (the console, `sluice top`), kept
/// whether or not metrics are exported: requests, events, body bytes, and failed requests
/// (answered 5xx, or a gRPC status that is the server's fault). One short lock per request.
public final class LiveExchangeStats: ExchangeObserver {
    public struct Totals: Sendable, Equatable {
        public var requests = 0
        public var events = 0
        public var bytes = 0
        public var errors = 0

        public init() {}

        public func since(_ earlier: Totals) -> Totals {
            var delta = Totals()
            delta.requests = self.requests - earlier.requests
            delta.events = self.events - earlier.events
            delta.bytes = self.bytes - earlier.bytes
            delta.errors = self.errors - earlier.errors
            return delta
        }
    }

    /// A route's or upstream's totals, changed in place. Read and written only under the box's
    /// lock, and never handed out (`snapshot` copies the values).
    private final class Tally: @unchecked Sendable {
        var totals = Totals()
    }

    private struct Tallies {
        var routes = MadeOnFirstUse<String, Tally>()
        var upstreams = MadeOnFirstUse<String, Tally>()
    }

    private let tallies = NIOLockedValueBox(Tallies())

    public init() {}

    public func observe(_ record: ExchangeRecord) {
        let failed =
            switch record.transport {
            case .http: record.status >= 500
            // UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
            case .grpc: [2, 4, 12, 13, 14, 15].contains(record.status)
            }
        let route = record.facts.route
        let upstream = record.facts.upstream
        guard route != nil || upstream != nil else { return }
        self.tallies.withLockedValue { tallies in
            if let route { tallies.routes.value(for: route, make: Tally.init).totals.add(record, failed: failed) }
            if let upstream { tallies.upstreams.value(for: upstream, make: Tally.init).totals.add(record, failed: failed) }
        }
    }

    /// The totals now, by route and by upstream.
    public var snapshot: (routes: [String: Totals], upstreams: [String: Totals]) {
        self.tallies.withLockedValue { tallies in
            (tallies.routes.all.mapValues(\.totals), tallies.upstreams.all.mapValues(\.totals))
        }
    }
}

extension LiveExchangeStats.Totals {
    fileprivate mutating func add(_ record: ExchangeRecord, failed: Bool) {
        self.requests += 1
        self.events += record.facts.events
        self.bytes += record.bytesIn
        if failed { self.errors += 1 }
    }
}
