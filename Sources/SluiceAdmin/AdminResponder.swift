import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceHTTP

/// The admin listener's endpoints. Never on the data-plane port.
///
/// - `GET /ready`: 200 once every listener accepts and every sink reaches its backend;
///   503 otherwise (and while draining), with the state of each.
/// - `GET /health`: 200 while the process runs (liveness).
/// - `GET /sinks`: each sink's readiness and in-flight budget: what is in flight, the limits,
///   and how many requests are waiting for room (a saturated sink shows waiters).
/// - `GET /upstreams`: each upstream's requests in progress and waiting for a slot, and each
///   endpoint's state: healthy (active checks), ejected (outlier detection), requests in progress.
/// - `GET /metrics`: every series in the Prometheus text format (when metrics are on).
public struct AdminResponder: HTTPResponder {
    private let listeners: [any Listening]
    private let sinks: [any Sink]
    private let upstreams: [Upstream]
    /// The Prometheus exposition, when metrics are on.
    private let metrics: (@Sendable () -> [UInt8])?

    public init(listeners: [any Listening], sinks: [any Sink], upstreams: [Upstream] = [], metrics: (@Sendable () -> [UInt8])? = nil) {
        self.listeners = listeners
        self.sinks = sinks
        self.upstreams = upstreams
        self.metrics = metrics
    }

    public func respond(to request: HTTPRequest, body: inout RequestBody) async -> HTTPResponse {
        guard request.head.method == .GET || request.head.method == .HEAD else {
            return .error(.methodNotAllowed, message: "the admin API takes GET", headers: ["allow": "GET, HEAD"])
        }
        switch request.path {
        case "/ready":
            var ready = true
            var json = JSONWriter()
            json.object { json in
                json.key("listeners")
                json.object { json in
                    for listener in self.listeners {
                        let accepting = listener.isAccepting
                        ready = ready && accepting
                        json.field(listener.name, accepting ? "accepting" : "not_accepting")
                    }
                }
                json.key("sinks")
                json.object { json in
                    for sink in self.sinks {
                        let sinkReady = sink.isReady
                        ready = ready && sinkReady
                        json.field(sink.name, sinkReady ? "ready" : "not_ready")
                    }
                }
                json.field("ready", ready)
            }
            return .json(ready ? .ok : .serviceUnavailable, json)
        case "/sinks":
            var json = JSONWriter()
            json.object { json in
                for sink in self.sinks {
                    let budget = sink.budget
                    let inFlight = budget.inFlight
                    json.key(sink.name)
                    json.object {
                        $0.field("ready", sink.isReady)
                        $0.field("in_flight_bytes", inFlight.bytes)
                        $0.field("in_flight_events", inFlight.events)
                        $0.field("max_in_flight_bytes", budget.maxBytes)
                        $0.field("max_in_flight_events", budget.maxEvents)
                        $0.field("waiting_requests", budget.waiting)
                        for counter in sink.counters { $0.field(counter.name, counter.value) }
                    }
                }
            }
            return .json(.ok, json)
        case "/upstreams":
            var json = JSONWriter()
            json.object { json in
                for upstream in self.upstreams {
                    let status = upstream.status
                    json.key(upstream.name)
                    json.object { json in
                        json.field("requests_in_progress", status.requestsInProgress)
                        json.field("requests_waiting", status.waiting)
                        json.key("endpoints")
                        json.array { json in
                            for endpoint in status.endpoints {
                                json.object {
                                    $0.field("address", endpoint.address)
                                    $0.field("in_service", endpoint.healthy && !endpoint.ejected)
                                    $0.field("healthy", endpoint.healthy)
                                    $0.field("ejected", endpoint.ejected)
                                    $0.field("ejections", endpoint.ejections)
                                    $0.field("requests_in_progress", endpoint.active)
                                }
                            }
                        }
                    }
                }
            }
            return .json(.ok, json)
        case "/metrics":
            guard let metrics = self.metrics else {
                return .error(.notFound, message: "metrics are off (admin.metrics: false)")
            }
            return HTTPResponse(
                status: .ok, headers: ["content-type": "text/plain; version=0.0.4; charset=utf-8"], body: ByteBuffer(bytes: metrics()))
        case "/health":
            var json = JSONWriter()
            json.object { $0.field("status", "alive") }
            return .json(.ok, json)
        default:
            return .error(.notFound, message: "admin endpoints: /ready, /health, /sinks, /upstreams, /metrics")
        }
    }
}
