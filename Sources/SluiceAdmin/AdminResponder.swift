import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceHTTP

/// The admin listener's endpoints. Never on the data-plane port; 127.0.0.1 unless configured
/// otherwise. With `admin.auth.bearer_token` every endpoint but `/health` and `/ready` (which
/// probes call) requires `Authorization: Bearer <token>`.
///
/// - `GET /ready`: 200 once every listener accepts and every sink reaches its backend;
///   503 otherwise (and while draining), with the state of each.
/// - `GET /health`: 200 while the process runs (liveness).
/// - `GET /sinks`: each sink's readiness and in-flight budget.
/// - `GET /sinks/{name}`: one sink: its settings (those `PATCH` may change), in-flight against
///   its limits, live throughput, ack latency percentiles, errors by code, batch sizes.
/// - `PATCH /sinks/{name}`: retunes a running sink (`{"linger": "20ms", "max_in_flight_events": 5000}`).
/// - `GET /upstreams`: each upstream's requests in progress and its endpoints' states.
/// - `GET /config`: the running configuration (secrets redacted), its hash and load time, and
///   the runtime overrides made since.
/// - `POST /reload`: reads the configuration file again and applies it; 422 with every error
///   (the running configuration serves on) when it is invalid.
/// - `GET /stats?since=N`: one sample a second of every sink, route and upstream (the console's
///   and `sluice top`'s feed).
/// - `GET /`: the ops console.
/// - `GET /metrics`: every series in the Prometheus text format (when metrics are on).
public struct AdminResponder: HTTPResponder {
    /// The gateway (nil once it is gone).
    private let control: @Sendable () -> (any GatewayControl)?
    /// The Prometheus exposition, when metrics are on.
    private let metrics: (@Sendable () -> [UInt8])?
    /// The SHA-256 of the bearer token every endpoint but /health and /ready requires.
    private let tokenDigest: [UInt8]?

    /// The largest `PATCH` body read.
    static let maxPatchBytes = 16 * 1024

    public init(control: @escaping @Sendable () -> (any GatewayControl)?, metrics: (@Sendable () -> [UInt8])? = nil, bearerToken: String? = nil) {
        self.control = control
        self.metrics = metrics
        self.tokenDigest = bearerToken.map { Array(SHA256.hash(data: Data($0.utf8))) }
    }

    public func respond(to request: HTTPRequest, body: inout RequestBody) async -> HTTPResponse {
        let method = request.head.method
        let path = request.path
        if path == "/health" || path == "/ready" {
            guard method == .GET || method == .HEAD else { return Self.methodNotAllowed("GET, HEAD") }
            return path == "/health" ? Self.health() : self.ready()
        }
        // The console page holds no data (what it shows comes from endpoints that need the token).
        if (method == .GET || method == .HEAD), path == "/" || path == "/console" {
            return Self.console()
        }
        if let refusal = self.authenticate(request) { return refusal }
        guard let control = self.control() else {
            return .error(.shuttingDown, message: "the gateway is stopping")
        }
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        switch (method, path) {
        case (.GET, "/sinks"), (.HEAD, "/sinks"):
            return self.sinksSummary(control)
        case (.GET, "/upstreams"), (.HEAD, "/upstreams"):
            return self.upstreams(control)
        case (.GET, "/config"), (.HEAD, "/config"):
            return .json(.ok, control.configurationJSON())
        case (.GET, "/stats"), (.HEAD, "/stats"):
            let since = Self.queryValue("since", in: request.query).flatMap { Int($0) } ?? 0
            return .json(.ok, control.statsJSON(after: since), headers: ["cache-control": "no-store"])
        case (.GET, "/metrics"), (.HEAD, "/metrics"):
            guard let metrics = self.metrics else {
                return .error(.notFound, message: "metrics are off (admin.metrics: false)")
            }
            return HTTPResponse(
                status: .ok, headers: ["content-type": "text/plain; version=0.0.4; charset=utf-8"], body: ByteBuffer(bytes: metrics()))
        case (.POST, "/reload"):
            _ = await body.drain(limit: Self.maxPatchBytes)
            return await self.reload(control, who: Self.who(request))
        case (_, "/reload"):
            return Self.methodNotAllowed("POST")
        default:
            break
        }
        if segments.count == 2, segments.first == "sinks", let name = segments.last.map(String.init), !name.isEmpty {
            switch method {
            case .GET, .HEAD: return self.sinkDetail(control, name: name)
            case .PATCH: return await self.patchSink(control, name: name, request: request, body: &body)
            default: return Self.methodNotAllowed("GET, HEAD, PATCH")
            }
        }
        if ["/", "/console", "/sinks", "/upstreams", "/config", "/stats", "/metrics"].contains(path) {
            return Self.methodNotAllowed("GET, HEAD")
        }
        return .error(
            .notFound,
            message: "admin endpoints: / (console), /ready, /health, /sinks, /sinks/{name}, /upstreams, /config, /reload, /stats, /metrics")
    }

    // MARK: Authentication

    /// nil when the request may go on; the refusal otherwise (401, saying no more than that).
    private func authenticate(_ request: HTTPRequest) -> HTTPResponse? {
        guard let expected = self.tokenDigest else { return nil }
        let header = request.head.headers.first(name: "authorization") ?? ""
        let prefix = "bearer "
        var presented = ""
        if header.count > prefix.count, header.prefix(prefix.count).lowercased() == prefix {
            presented = String(header.dropFirst(prefix.count)).trimmingCharacters(in: .whitespaces)
        }
        let digest = Array(SHA256.hash(data: Data(presented.utf8)))
        // Compared in constant time (digests of equal length).
        var difference: UInt8 = 0
        for (a, b) in zip(digest, expected) { difference |= a ^ b }
        guard difference != 0 || presented.isEmpty else { return nil }
        return .error(.adminUnauthorized, message: "the admin API needs a valid bearer token", headers: ["www-authenticate": "Bearer realm=\"sluice-admin\""])
    }

    /// Who made a change, for the log: the client's address, and its certificate's name over mTLS.
    static func who(_ request: HTTPRequest) -> String {
        var who = request.remoteIP ?? "unknown"
        if let principal = request.tlsClient?.principals.first { who = "\(principal)@\(who)" }
        return who
    }

    // MARK: Endpoints

    private static func console() -> HTTPResponse {
        HTTPResponse(
            status: .ok,
            headers: [
                "content-type": "text/html; charset=utf-8", "cache-control": "no-store",
                "content-security-policy": "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            ],
            body: ByteBuffer(string: OpsConsole.html))
    }

    private static func health() -> HTTPResponse {
        var json = JSONWriter()
        json.object { $0.field("status", "alive") }
        return .json(.ok, json)
    }

    private func ready() -> HTTPResponse {
        guard let control = self.control() else {
            var json = JSONWriter()
            json.object { $0.field("ready", false) }
            return .json(.serviceUnavailable, json)
        }
        var ready = true
        var json = JSONWriter()
        json.object { json in
            json.key("listeners")
            json.object { json in
                for listener in control.listeners {
                    let accepting = listener.isAccepting
                    ready = ready && accepting
                    json.field(listener.name, accepting ? "accepting" : "not_accepting")
                }
            }
            json.key("sinks")
            json.object { json in
                for sink in control.sinks {
                    let sinkReady = sink.isReady
                    ready = ready && sinkReady
                    json.field(sink.name, sinkReady ? "ready" : "not_ready")
                }
            }
            json.field("ready", ready)
        }
        return .json(ready ? .ok : .serviceUnavailable, json)
    }

    private func sinksSummary(_ control: any GatewayControl) -> HTTPResponse {
        var json = JSONWriter()
        json.object { json in
            for sink in control.sinks {
                json.key(sink.name)
                json.object { Self.writeBudget(of: sink, to: &$0) }
            }
        }
        return .json(.ok, json)
    }

    private static func writeBudget(of sink: any Sink, to json: inout JSONWriter) {
        let budget = sink.budget
        let inFlight = budget.inFlight
        json.field("ready", sink.isReady)
        json.field("in_flight_bytes", inFlight.bytes)
        json.field("in_flight_events", inFlight.events)
        json.field("max_in_flight_bytes", budget.maxBytes)
        json.field("max_in_flight_events", budget.maxEvents)
        json.field("waiting_requests", budget.waiting)
        for counter in sink.counters { json.field(counter.name, counter.value) }
    }

    private func sinkDetail(_ control: any GatewayControl, name: String) -> HTTPResponse {
        guard let sink = control.sinks.first(where: { $0.name == name }), let settings = control.sinkSettings(name),
            let stats = control.sinkStats(name)
        else {
            return .error(.notFound, message: "no sink named \"\(name)\"")
        }
        // Throughput: over the last ten samples of /stats.
        var json = JSONWriter()
        json.object { json in
            json.field("name", name)
            json.field("messaging_system", sink.messagingSystem)
            json.key("settings")
            json.object { json in
                for setting in settings { json.field(setting.name, setting.value) }
            }
            json.key("settings_help")
            json.object { json in
                for setting in settings { json.field(setting.name, setting.help) }
            }
            json.key("state")
            json.object { Self.writeBudget(of: sink, to: &$0) }
            json.key("totals")
            json.object { json in
                json.field("delivered_events", stats.delivered)
                json.field("delivered_bytes", stats.deliveredBytes)
                json.field("failed_events", stats.failed)
                json.field("retries", stats.retries)
                json.field("batches", stats.batches)
                json.field("batched_events", stats.batchedEvents)
                json.key("failed_by_code")
                json.object { json in
                    for (code, count) in stats.failedByCode.sorted(by: { $0.key < $1.key }) { json.field(code, count) }
                }
            }
            json.key("ack_latency_seconds")
            json.object { json in
                for (label, quantile) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
                    json.key(label)
                    if let value = SinkLiveStats.Snapshot.latencyQuantile(quantile, counts: stats.latencyCounts) { json.value(value) } else { json.null() }
                }
            }
            json.key("batch_sizes")
            json.object { json in
                json.field("mean", stats.batches > 0 ? Double(stats.batchedEvents) / Double(stats.batches) : 0)
                json.key("histogram")
                json.object { json in
                    for (index, count) in stats.batchCounts.enumerated() where count > 0 {
                        let bound = index < SinkLiveStats.batchBounds.count ? "le_\(SinkLiveStats.batchBounds[index])" : "larger"
                        json.field(bound, count)
                    }
                }
            }
            json.key("live")
            json.appendRaw(Self.recentRates(control.statsJSON(after: 0), sink: name))
        }
        return .json(.ok, json)
    }

    /// The sink's rates averaged over the newest ten samples of `stats` (a `/stats` document).
    static func recentRates(_ stats: JSONWriter, sink: String) -> [UInt8] {
        var json = JSONWriter()
        guard let document = try? JSONSerialization.jsonObject(with: Data(stats.bytes)) as? [String: Any],
            let samples = document["samples"] as? [[String: Any]]
        else {
            json.object { _ in }
            return json.bytes
        }
        let recent = samples.suffix(10).compactMap { ($0["sinks"] as? [String: Any])?[sink] as? [String: Any] }
        json.object { json in
            json.field("window_seconds", recent.count)
            for key in ["events_per_second", "bytes_per_second", "errors_per_second"] {
                let values = recent.compactMap { $0[key] as? Double }
                json.field(key, values.isEmpty ? 0 : values.reduce(0, +) / Double(values.count))
            }
        }
        return json.bytes
    }

    private func upstreams(_ control: any GatewayControl) -> HTTPResponse {
        var json = JSONWriter()
        json.object { json in
            for upstream in control.upstreams {
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
    }

    private func reload(_ control: any GatewayControl, who: String) async -> HTTPResponse {
        switch await control.reload(trigger: "POST /reload from \(who)") {
        case .applied(let summary):
            var json = JSONWriter()
            summary.write(to: &json)
            return .json(.ok, json)
        case .refused(let problems):
            var json = JSONWriter()
            json.object { json in
                json.key("error")
                json.object { json in
                    json.field("code", ErrorCode.configInvalid.code)
                    json.field("message", "the configuration was not applied; the running one serves on")
                    json.key("errors")
                    json.array { json in
                        for problem in problems { json.value(problem) }
                    }
                }
            }
            return .json(HTTPResponseStatus(statusCode: ErrorCode.configInvalid.httpStatus), json)
        case .failed(let reason):
            return .error(.reloadFailed, message: "the configuration was not applied; the running one serves on: \(reason)")
        }
    }

    private func patchSink(_ control: any GatewayControl, name: String, request: HTTPRequest, body: inout RequestBody) async -> HTTPResponse {
        var bytes: [UInt8] = []
        do {
            while let chunk = try await body.next() {
                bytes.append(contentsOf: chunk.readableBytesView)
                guard bytes.count <= Self.maxPatchBytes else {
                    return .error(.bodyTooLarge, message: "a PATCH body is at most \(Self.maxPatchBytes) bytes")
                }
            }
        } catch {
            return .error(.bodyReadFailed, message: "the body could not be read")
        }
        let object: [String: PatchValue]
        do {
            object = try JSONDecoder().decode([String: PatchValue].self, from: Data(bytes))
        } catch let DecodingError.dataCorrupted(context) where !context.codingPath.isEmpty {
            return Self.invalid(field: context.codingPath[0].stringValue, message: context.debugDescription)
        } catch {
            return .error(.invalidSetting, message: "expected a JSON object of setting: value, e.g. {\"linger\": \"20ms\"}")
        }
        let changes = object.sorted { $0.key < $1.key }.map { (name: $0.key, value: $0.value.text) }
        switch await control.tuneSink(name, changes: changes, by: Self.who(request)) {
        case .unknownSink:
            return .error(.notFound, message: "no sink named \"\(name)\"")
        case .invalid(let field, let message):
            return Self.invalid(field: field, message: message)
        case .applied(let applied):
            var json = JSONWriter()
            json.object { json in
                json.field("sink", name)
                json.key("changed")
                json.object { json in
                    for change in applied {
                        json.key(change.name)
                        json.object {
                            $0.field("before", change.before)
                            $0.field("after", change.after)
                        }
                    }
                }
            }
            return .json(.ok, json)
        }
    }

    private static func invalid(field: String, message: String) -> HTTPResponse {
        var json = JSONWriter()
        json.object { json in
            json.key("error")
            json.object {
                $0.field("code", ErrorCode.invalidSetting.code)
                $0.field("field", field)
                $0.field("message", field.isEmpty ? message : "\(field): \(message)")
            }
        }
        return .json(HTTPResponseStatus(statusCode: ErrorCode.invalidSetting.httpStatus), json)
    }

    private static func methodNotAllowed(_ allowed: String) -> HTTPResponse {
        .error(.methodNotAllowed, message: "this admin endpoint takes \(allowed)", headers: ["allow": allowed])
    }

    /// A value in a `PATCH` body: a whole number or a string (`"20ms"`, `"1MiB"`).
    struct PatchValue: Decodable {
        var text: String

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let number = try? container.decode(Int.self) {
                self.text = String(number)
            } else if let string = try? container.decode(String.self) {
                self.text = string
            } else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "expected a whole number or a string (\"20ms\", \"1MiB\")")
            }
        }
    }

    /// The value of `name` in a query string (not percent-decoded: admin parameters are plain).
    static func queryValue(_ name: String, in query: Substring?) -> String? {
        guard let query else { return nil }
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if parts.first == Substring(name) { return parts.count > 1 ? String(parts[1]) : "" }
        }
        return nil
    }
}
