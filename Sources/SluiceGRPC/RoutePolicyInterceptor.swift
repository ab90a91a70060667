import GRPCCore
import NIOConcurrencyHelpers
import SluiceCore
import SluicePolicy

/// Runs a gRPC ingest route's policies around its calls, as the HTTP gateway does around its
/// handlers: the call's metadata stands for headers and the peer for the source address. A
/// refusal is the call's status (UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED,
/// UNAVAILABLE) with the refusal's headers as trailers. The call runs inside the chain to its end
/// — a stream's last message included — so a rate limit in events or bytes charges what the
/// call handed to the sink.
struct RoutePolicyInterceptor: ServerInterceptor {
    /// The current route table (the gateway snapshot's), read once per call.
    let routes: @Sendable () -> GRPCRouteTable

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>,
        context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        let method = context.descriptor.method
        guard context.descriptor.service.fullyQualifiedService == IngestService.serviceName else {
            return try await next(request, context)
        }
        let table = self.routes()
        // Calls no route serves go on to the service, which answers NOT_FOUND.
        guard let route = try? IngestService.route(in: table.routes, method: method, metadata: request.metadata), !route.policies.isEmpty
        else {
            return try await GRPCRouteTable.$ofCall.withValue(table) { try await next(request, context) }
        }
        let metadata = request.metadata
        let policyRequest = PolicyRequest(
            method: "POST", path: "/\(IngestService.serviceName)/\(method)", sourceIP: IngestService.peerIP(context.remotePeer),
            tlsPrincipals: IngestService.tlsPrincipals(context)
        ) { name in metadata[stringValues: name.lowercased()].first(where: { _ in true }) }
        let tally = CallTally()
        var called: Result<StreamingServerResponse<Output>, any Error>?
        let outcome = await route.policies.handle(policyRequest) { (_, _) async -> PolicyOutcome<HandledCall> in
            do {
                let response = try await GRPCRouteTable.$ofCall.withValue(table) {
                    try await CallTally.$current.withValue(tally) { try await next(request, context) }
                }
                called = .success(response)
            } catch {
                called = .failure(error)
            }
            return .handled(HandledCall(tally: tally))
        }
        if case .answered(let rejection) = outcome {
            throw Self.status(rejection)
        }
        guard let response = try called?.get() else { preconditionFailure("a handled call without a response") }
        guard case .success(let contents) = response.accepted else {
            await tally.finish()
            return response
        }
        // A stream's messages are handled in the producer: the tally ends when it returns.
        return StreamingServerResponse(
            accepted: .success(
                .init(metadata: contents.metadata) { writer in
                    do {
                        let trailers = try await CallTally.$current.withValue(tally) { try await contents.producer(writer) }
                        await tally.finish()
                        return trailers
                    } catch {
                        await tally.finish()
                        throw error
                    }
                }))
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

/// What one call handed to the sink, counted by the service for the call's policies, and what
/// they want done once the call is over.
final class CallTally: Sendable {
    /// The tally of the call being served (set by `RoutePolicyInterceptor`).
    @TaskLocal static var current: CallTally?

    private struct State {
        var events = 0
        var bytes = 0
        var finished = false
        var whenFinished: [@Sendable (Int, Int) async -> Void] = []
    }

    private let state = NIOLockedValueBox(State())

    func add(events: Int, bytes: Int) {
        self.state.withLockedValue {
            $0.events += events
            $0.bytes += bytes
        }
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

    /// The call is over: runs what waited for it.
    func finish() async {
        let (waiting, events, bytes) = self.state.withLockedValue { state in
            state.finished = true
            defer { state.whenFinished = [] }
            return (state.whenFinished, state.events, state.bytes)
        }
        for body in waiting { await body(events, bytes) }
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
