#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a route's handler knows about the request it served, for metrics and the access log:
/// filled by the handler and the policies, completed by the listener (`ExchangeRecord`).
public struct ExchangeFacts: Sendable {
    /// The route that served the request; nil when no route matched.
    public var route: String?
    /// The route's path pattern (`/v1/events/{topic}`), for traces' `http.route`.
    public var routePath: String?
    /// The sink the route hands events to, or the upstream it proxied the request to.
    public var sink: String?
    public var upstream: String?
    /// Events decoded from the request and handed to the sink, and their bytes.
    public var events = 0
    public var eventBytes = 0
    /// Events not delivered (with ack: accepted, not queued), by error code.
    public var rejected: [String: Int] = [:]
    /// Events settled in the route's dead-letter destination, by the error code that sent them.
    public var deadLettered: [String: Int] = [:]
    /// Events offered to the route's mirror: `queued` (taken by the mirror sink) or `dropped`
    /// (it had no room at that moment).
    public var mirrored: [String: Int] = [:]
    /// Who the policies said the client is (a basic-auth user, a JWT subject, a certificate's
    /// name) — never a credential.
    public var identity: String?
    /// The policy that refused the request and the refusal's error code.
    public var denial: (policy: String, reason: String)?

    public init(route: String? = nil, sink: String? = nil, upstream: String? = nil) {
        self.route = route
        self.sink = sink
        self.upstream = upstream
    }

    /// Counts `count` events as not delivered for `reason`.
    public mutating func reject(_ count: Int, reason: String) {
        guard count > 0 else { return }
        self.rejected[reason, default: 0] += count
    }

    /// Adds a request's mirror outcomes (`IngestSession.mirrored`).
    public mutating func mirror(_ outcomes: [String: Int]) {
        for (outcome, count) in outcomes { self.mirrored[outcome, default: 0] += count }
    }

    /// Counts the failed results by their code.
    public mutating func reject(_ summary: DeliverySummary) {
        for (failure, count) in summary.failures { self.rejected[failure.code, default: 0] += count }
    }
}

/// One HTTP request or gRPC call as it ended: what observers (metrics, the access log) are told.
public struct ExchangeRecord: Sendable {
    public enum Transport: String, Sendable {
        case http, grpc
    }

    public var transport: Transport
    /// The listener's name (`grpc` for the gRPC listener).
    public var listener: String
    /// The HTTP method, or the gRPC method's name.
    public var method: String
    /// The request path without the query (a gRPC call's `/service/method`).
    public var path: String
    /// The HTTP status code; for gRPC the status code's number.
    public var status: Int
    /// `HTTP/1.1`, `HTTP/2` or `gRPC`.
    public var protocolName: String
    /// For gRPC, the status code's name (`ok`, `unavailable`, …).
    public var statusName: String?
    public var facts: ExchangeFacts
    /// Body bytes read from the client and written to it.
    public var bytesIn: Int
    public var bytesOut: Int
    /// From the request's head to the end of its response.
    public var duration: Duration
    /// The client's IP address.
    public var client: String?
    /// The trace the request is part of (32 hex digits), when it carried or started one.
    public var traceID: String?
    /// When the request's head arrived (seconds since the Unix epoch, with fractions).
    public var startedAt: Double

    public init(
        transport: Transport, listener: String, method: String, path: String, protocolName: String, status: Int, statusName: String? = nil,
        facts: ExchangeFacts, bytesIn: Int, bytesOut: Int, duration: Duration, client: String?, traceID: String? = nil,
        startedAt: Double
    ) {
        self.transport = transport
        self.listener = listener
        self.method = method
        self.path = path
        self.status = status
        self.protocolName = protocolName
        self.statusName = statusName
        self.facts = facts
        self.bytesIn = bytesIn
        self.bytesOut = bytesOut
        self.duration = duration
        self.client = client
        self.traceID = traceID
        self.startedAt = startedAt
    }
}

/// Told about every request and call when it ends (metrics, the access log). Called on the
/// request's task; must be quick and must not block.
public protocol ExchangeObserver: Sendable {
    func observe(_ record: ExchangeRecord)
}

/// The wall clock, for timestamps operators read (the access log); durations use
/// `ContinuousClock`.
public enum WallClock {
    /// Seconds since the Unix epoch, with fractions.
    public static func now() -> Double {
        let time = self.read()
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1_000_000_000
    }

    /// Milliseconds since the Unix epoch (record timestamps).
    public static func milliseconds() -> Int64 {
        let time = self.read()
        return Int64(time.tv_sec) * 1000 + Int64(time.tv_nsec) / 1_000_000
    }

    private static func read() -> timespec {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return time
    }
}
