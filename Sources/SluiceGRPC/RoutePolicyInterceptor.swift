import GRPCCore
import NIOConcurrencyHelpers
import SluiceCore
import SluicePolicy
import SluiceTracing
import Tracing

/// Runs a gRPC ingest route's policies around its calls, as the HTTP gateway does around its
/// handlers: the call's metadata stands for headers and the peer for the source address. A
/// refusal is the call's status (UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED,
/// UNAVAILABLE) with the refusal's headers as trailers. The call runs inside the chain to its end
/// — a stream's last message included — so a rate limit in events or bytes charges what the
/// call handed to the sink.
struct RoutePolicyInterceptor: ServerInterceptor {
    /// The current route table (the gateway snapshot's), read once per call.
    let routes: @Sendable () -> GRPCRouteTable
    /// Told about every ingest call when it ends (metrics, access log).
    let observer: (any ExchangeObserver)?

    @concurrent func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>,
        context: ServerContext,
        next: @concurrent @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        let method = context.descriptor.method
        guard context.descriptor.service.fullyQualifiedService == IngestService.serviceName else {
            return try await next(request, context)
        }
        let table = self.routes()
        // The call holds its snapshot until it finishes (the tally gives the lease back).
        table.leases.acquire()
        let route = try? IngestService.route(in: table.routes, method: method, metadata: request.metadata)
        let metadata = request.metadata
        // The peer's address, parsed from grpc-swift's `ipv4:a.b.c.d:port` form once per call.
        let clientIP = IngestService.peerIP(context.remotePeer)
        var span: (any Span)?
        if RequestTracing.isEnabled {
            // RPC conventions: "{service}/{method}", continuing the client's traceparent.
            span = RequestTracing.startServerSpan("\(IngestService.serviceName)/\(method)") { name in
                metadata[stringValues: name].first(where: { _ in true })
            }
            span?.updateAttributes { attributes in
                attributes["rpc.system"] = "grpc"
                attributes["rpc.service"] = IngestService.serviceName
                attributes["rpc.method"] = method
                if let client = clientIP { attributes["client.address"] = client }
                if let route { attributes["sluice.route"] = route.name }
            }
        }
        let tally = CallTally(
            observed: self.observer.map { observer in
                CallTally.Observed(
                    observer: observer, method: method, path: "/\(IngestService.serviceName)/\(method)",
                    client: clientIP, facts: ExchangeFacts(route: route?.name, sink: route?.sink.name))
            }, span: span, leases: table.leases)
        // Calls no route serves go on to the service, which answers NOT_FOUND.
        guard let route, !route.policies.isEmpty else {
            return try await tally.observing {
                try await GRPCRouteTable.$ofCall.withValue(table) {
                    try await CallTally.$current.withValue(tally) { try await next(request, context) }
                }
            }
        }
        let policyRequest = PolicyRequest(
            method: "POST", path: "/\(IngestService.serviceName)/\(method)", sourceIP: clientIP,
            tlsPrincipals: IngestService.tlsPrincipals(context)
        ) { name in metadata[stringValues: name.lowercased()].first(where: { _ in true }) }
        var called: Result<StreamingServerResponse<Output>, any Error>?
        let outcome = await RequestTracing.withCurrent(span) { await route.policies.handle(policyRequest) { (_, identity) async -> PolicyOutcome<HandledCall> in
            tally.identify(identity.client)
            do {
                let response = try await GRPCRouteTable.$ofCall.withValue(table) {
                    try await CallTally.$current.withValue(tally) { try await next(request, context) }
                }
                called = .success(response)
            } catch {
                called = .failure(error)
            }
            return .handled(HandledCall(tally: tally))
        } }
        if case .answered(let rejection) = outcome {
            tally.identify(rejection.client)
            if let policy = rejection.policy { tally.deny(policy: policy, reason: rejection.code) }
            let status = Self.status(rejection)
            await tally.finish(status: status.code)
            throw status
        }
        guard let called else { preconditionFailure("a handled call without a response") }
        return try await tally.observing { try called.get() }
    }

    /// A refusal as the call's status.
    static func status(_ rejection: PolicyRejection) -> RPCError {
        let code: RPCError.Code
        switch rejection.status {
        case 401: code = .unauthenticated
        case 403: code = .permissionDenied
        case 429: code = .resourceExhausted
        case 503: code = .unavailable
        default: code = .failedPrecondition
        }
        var trailers = Metadata()
        for (name, value) in rejection.headers.sorted(by: { $0.key < $1.key }) { trailers.addString(value, forKey: name) }
        return RPCError(code: code, message: rejection.message, metadata: trailers)
    }
}

/// What one call handed to the sink, counted by the service for the call's policies and its
/// observer, and what they want done once the call is over.
final class CallTally: Sendable {
    /// The tally of the call being served (set by `RoutePolicyInterceptor`).
    @TaskLocal static var current: CallTally?

    /// What the observer is told when the call ends.
    struct Observed: Sendable {
        let observer: any ExchangeObserver
        let method: String
        let path: String
        let client: String?
        var facts: ExchangeFacts
        let started = ContinuousClock.now
        let startedAt = WallClock.now()
    }

    private struct State {
        var events = 0
        var bytes = 0
        var finished = false
        var whenFinished: [@Sendable (Int, Int) async -> Void] = []
        var observed: Observed?
    }

    private let state: NIOLockedValueBox<State>
    /// The call's server span (tracing on): current while the call runs, ended with it.
    let span: (any Span)?

    /// The snapshot's leases the call holds one of, given back when it finishes.
    private let leases: SnapshotLeases?

    init(observed: Observed? = nil, span: (any Span)? = nil, leases: SnapshotLeases? = nil) {
        self.state = NIOLockedValueBox(State(observed: observed))
        self.span = span
        self.leases = leases
    }

    func add(events: Int, bytes: Int, eventBytes: Int = 0) {
        self.state.withLockedValue {
            $0.events += events
            $0.bytes += bytes
            $0.observed?.facts.events += events
            $0.observed?.facts.eventBytes += eventBytes
        }
    }

    /// Counts a request's mirror outcomes (for the observer).
    func mirror(_ outcomes: [String: Int]) {
        guard !outcomes.isEmpty else { return }
        self.state.withLockedValue { $0.observed?.facts.mirror(outcomes) }
    }

    /// Counts the failed results among a request's (for the observer).
    func reject(_ summary: DeliverySummary) {
        self.state.withLockedValue { $0.observed?.facts.reject(summary) }
    }

    func identify(_ client: String?) {
        self.state.withLockedValue { $0.observed?.facts.identity = client }
    }

    func deny(policy: String, reason: String) {
        self.state.withLockedValue { $0.observed?.facts.denial = (policy, reason) }
    }

    /// Runs `body` with the totals once the call is over (at once if it is).
    func whenFinished(_ body: @escaping @Sendable (Int, Int) async -> Void) async {
        let totals: (Int, Int)? = self.state.withLockedValue { state in
            guard state.finished else {
                state.whenFinished.append(body)
                return nil
            }
            return (state.events, state.bytes)
        }
        if let (events, bytes) = totals { await body(events, bytes) }
    }

    /// The call is over, with `status` (nil: OK): runs what waited for it and tells the observer.
    func finish(status: RPCError.Code?) async {
        let finishing = self.state.withLockedValue { state -> (waiting: [@Sendable (Int, Int) async -> Void], Int, Int, Observed?)? in
            guard !state.finished else { return nil }
            state.finished = true
            defer { state.whenFinished = [] }
            return (state.whenFinished, state.events, state.bytes, state.observed)
        }
        guard let (waiting, events, bytes, observed) = finishing else { return }
        self.leases?.release()
        for body in waiting { await body(events, bytes) }
        guard observed != nil || self.span != nil else { return }
        let code = status.map { Status.Code($0) } ?? .ok
        var traceID: String?
        if let span = self.span {
            span.attributes["rpc.grpc.status_code"] = code.rawValue
            span.attributes["sluice.events"] = events
            // RPC server spans: these codes are the server's fault.
            if [.unknown, .deadlineExceeded, .unimplemented, .internalError, .unavailable, .dataLoss].contains(code) {
                span.setStatus(SpanStatus(code: .error))
            }
            traceID = RequestTracing.traceID(of: span)
            span.end()
        }
        if let observed {
            observed.observer.observe(
                ExchangeRecord(
                    transport: .grpc, listener: "grpc", method: observed.method, path: observed.path, protocolName: "gRPC", status: code.rawValue,
                    statusName: Self.name(code), facts: observed.facts, bytesIn: bytes, bytesOut: 0,
                    duration: .now - observed.started, client: observed.client, traceID: traceID, startedAt: observed.startedAt))
        }
    }

    /// Runs the call (`body` gives its response) and finishes the tally when the call is over:
    /// when it throws or is refused, or after a stream's last message.
    func observing<Output: Sendable>(
        _ body: () async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        let response: StreamingServerResponse<Output>
        do {
            response = try await RequestTracing.withCurrent(self.span) { try await body() }
        } catch {
            await self.finish(status: (error as? RPCError)?.code ?? .unknown)
            throw error
        }
        let contents: StreamingServerResponse<Output>.Contents
        switch response.accepted {
        case .success(let accepted):
            contents = accepted
        case .failure(let error):
            await self.finish(status: error.code)
            return response
        }
        // A stream's messages are handled in the producer: the tally ends when it returns.
        return StreamingServerResponse(
            accepted: .success(
                .init(metadata: contents.metadata) { writer in
                    do {
                        let trailers = try await RequestTracing.withCurrent(self.span) {
                            try await CallTally.$current.withValue(self) { try await contents.producer(writer) }
                        }
                        await self.finish(status: nil)
                        return trailers
                    } catch {
                        await self.finish(status: (error as? RPCError)?.code ?? .unknown)
                        throw error
                    }
                }))
    }

    /// The gRPC name of a status code, lower-case with underscores (`ok`, `unavailable`,
    /// `resource_exhausted`): a label value for metrics.
    static func name(_ code: Status.Code) -> String {
        switch code {
        case .ok: "ok"
        case .cancelled: "cancelled"
        case .unknown: "unknown"
        case .invalidArgument: "invalid_argument"
        case .deadlineExceeded: "deadline_exceeded"
        case .notFound: "not_found"
        case .alreadyExists: "already_exists"
        case .permissionDenied: "permission_denied"
        case .resourceExhausted: "resource_exhausted"
        case .failedPrecondition: "failed_precondition"
        case .aborted: "aborted"
        case .outOfRange: "out_of_range"
        case .unimplemented: "unimplemented"
        case .internalError: "internal"
        case .unavailable: "unavailable"
        case .dataLoss: "data_loss"
        case .unauthenticated: "unauthenticated"
        default: "unknown"
        }
    }
}

/// A call as its policies see it. gRPC has no CORS: headers policies set are not sent.
struct HandledCall: PolicyResponse {
    let tally: CallTally

    func whenFinished(_ body: @escaping @Sendable (_ events: Int, _ bytes: Int) async -> Void) async {
        await self.tally.whenFinished(body)
    }

    mutating func setHeader(name: String, value: String) {}
}
