import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Logging
import NIOConcurrencyHelpers
import NIOCore
import SluiceConfig
import SluiceCore
import SluiceIngest
import SluicePolicy
import X509
import SluiceTLS

/// A gRPC route bound to its running sink.
public struct GRPCIngestRoute: Sendable {
    public var name: String
    public var match: RouteMatchConfig
    public var pipeline: IngestPipeline
    public var policies: PolicyChain
    public var ingest: IngestConfig { self.pipeline.config }
    public var sink: any Sink { self.pipeline.sink }

    public init(
        name: String, match: RouteMatchConfig, ingest: IngestConfig, sink: any Sink, deadLetterSink: (any Sink)? = nil,
        mirrorSink: (any Sink)? = nil, policies: PolicyChain = .empty, logger: Logger = Logger(label: "sluice")
    ) {
        self.name = name
        self.match = match
        self.pipeline = IngestPipeline(
            routeName: name, config: ingest, sink: sink, deadLetterSink: deadLetterSink, mirrorSink: mirrorSink, logger: logger)
        self.policies = policies
    }
}

/// The gRPC ingest routes of one gateway snapshot, in configuration order. Immutable.
public struct GRPCRouteTable: Sendable {
    public var routes: [GRPCIngestRoute]
    /// Counts the calls running on this table (and the snapshot it belongs to).
    public let leases: SnapshotLeases

    public init(routes: [GRPCIngestRoute], leases: SnapshotLeases = SnapshotLeases()) {
        self.routes = routes
        self.leases = leases
    }

    /// The table the call being served was routed with (set by `RoutePolicyInterceptor`, which
    /// reads the snapshot once per call).
    @TaskLocal static var ofCall: GRPCRouteTable?
}

/// `sluice.v1.Ingest`: the same routes, sinks and delivery contract as HTTP ingest.
///
/// - `Publish`: one batch, answered with one result per event once each event's fate is known.
/// - `PublishStream`: batches on a long-lived stream; each is acknowledged (`PublishAck`, by the
///   request's `sequence`) once settled, in whatever order that happens. The next request is
///   read only after the sink has taken the previous one, so a slow sink slows the client
///   through HTTP/2 flow control instead of being buffered.
///
/// Requests are read and answers written by `IngestWire` (events slice one copy of the request),
/// not through SwiftProtobuf's generated message values; the wire format is the same.
public struct IngestService: RegistrableRPCService {
    static let serviceName = "sluice.v1.Ingest"
    /// Requests of one stream whose acks are not yet written; past this the stream stops reading.
    static let maxUnackedRequests = 1024

    /// The current route table (the gateway snapshot's).
    let routes: @Sendable () -> GRPCRouteTable
    private let logger: Logger

    public init(routes: @escaping @Sendable () -> GRPCRouteTable, logger: Logger) {
        self.routes = routes
        self.logger = logger
    }

    /// The routes of the call being served: those its policies ran with.
    private var callRoutes: [GRPCIngestRoute] {
        (GRPCRouteTable.ofCall ?? self.routes()).routes
    }

    // MARK: - RPCs

    public func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        router.registerHandler(
            forMethod: Sluice_V1_Ingest.Method.Publish.descriptor,
            deserializer: PublishRequestDeserializer(),
            serializer: WireSerializer(encode: IngestWire.publishResponse),
            handler: { request, context in
                try await StreamingServerResponse(single: self.publish(request: ServerRequest(stream: request), context: context))
            })
        router.registerHandler(
            forMethod: Sluice_V1_Ingest.Method.PublishStream.descriptor,
            deserializer: PublishRequestDeserializer(),
            serializer: WireSerializer(encode: IngestWire.publishAck),
            handler: { request, context in try await self.publishStream(request: request, context: context) })
    }

    func publish(
        request: consuming ServerRequest<IncomingPublishRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<OutgoingPublishResponse> {
        let route = try Self.route(in: self.callRoutes, method: "Publish", metadata: request.metadata)
        // The message goes to the settling task as the only holder of its events: captured
        // as a value (and the request kept), the events would be shared, and handing them
        // over would copy every one of them.
        let handed = NIOLockedValueBox<IncomingPublishRequest?>(request.message)
        _ = consume request
        let (results, summary) = try await Self.untilCancelled {
            guard var message = handed.withLockedValue({ $0.take() }) else { preconditionFailure("a unary request handed over twice") }
            return await self.handOver(&message, route: route).results()
        }
        try Self.callLevelError(summary)
        return ServerResponse(message: OutgoingPublishResponse(accepted: UInt32(summary.delivered), results: results))
    }

    func publishStream(
        request: StreamingServerRequest<IncomingPublishRequest>,
        context: ServerContext
    ) async throws -> StreamingServerResponse<OutgoingPublishAck> {
        let route = try Self.route(in: self.callRoutes, method: "PublishStream", metadata: request.metadata)
        return StreamingServerResponse { response in
            try await Self.untilCancelled { try await self.stream(request.messages, to: response, route: route) }
            return [:]
        }
    }

    /// Runs `operation` as a task that is cancelled when the RPC is: gRPC signals a client's
    /// cancellation, a passed deadline or a reset stream through the RPC's cancellation handle,
    /// not by cancelling the handler's task. Cancelled, a call stops reading and withdraws the
    /// events still waiting for room in the sink; what the sink has already taken is delivered
    /// but not acknowledged to anyone.
    static func untilCancelled<R: Sendable>(_ operation: @escaping @Sendable () async throws -> R) async throws -> R {
        let task = Task { try await operation() }
        return try await withRPCCancellationHandler {
            try await withTaskCancellationHandler {
                try await task.value
            } onCancel: {
                task.cancel()
            }
        } onCancelRPC: {
            task.cancel()
        }
    }

    private func stream(
        _ requests: RPCAsyncSequence<IncomingPublishRequest, any Error>,
        to response: RPCWriter<OutgoingPublishAck>,
        route: GRPCIngestRoute
    ) async throws {
        let (acks, ackContinuation) = AsyncStream<OutgoingPublishAck>.makeStream()
        // A client that does not read its acks is not allowed to pile them up here: each request
        // takes one of these permits and its ack gives it back once written.
        let unacked = InFlightBudget(maxBytes: Self.maxUnackedRequests, maxEvents: Self.maxUnackedRequests)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await ack in acks {
                    try await response.write(ack)
                    unacked.release(bytes: 1, events: 1)
                }
            }
            try await withThrowingDiscardingTaskGroup { settling in
                for try await var message in requests {
                    // Returns false only when the stream is cancelled.
                    guard await unacked.acquire(bytes: 1, events: 1, deadline: .now + .seconds(365 * 86_400)) else {
                        throw CancellationError()
                    }
                    // Hand the events over (this waits while the sink has no room) ...
                    let pending = await self.handOver(&message, route: route)
                    // ... and acknowledge them when they settle, without holding up the next request.
                    let sequence = message.sequence
                    settling.addTask {
                        let (results, summary) = await pending.results()
                        ackContinuation.yield(OutgoingPublishAck(sequence: sequence, durable: summary.failed == 0, results: results))
                    }
                }
            }
            ackContinuation.finish()
            try await group.waitForAll()
        }
    }

    /// When every event failed for the same kind of reason, that is the call's status:
    /// UNAVAILABLE if retryable (sink saturated or down), INVALID_ARGUMENT for a bad request
    /// (bad topic, too many events, all too large). Mixed outcomes are per-event results.
    static func callLevelError(_ summary: DeliverySummary) throws(RPCError) {
        guard summary.delivered == 0, let first = summary.firstFailure else { return }
        let failures = summary.failures.map(\.failure)
        if failures.allSatisfy(\.isRetryable) {
            throw RPCError(code: .unavailable, message: "\(first.message) (retry later)")
        }
        if failures.allSatisfy({ !$0.isRetryable && $0.httpStatus < 500 }) {
            // The catalogue's gRPC status for the code; a backend's own code is the request's fault.
            let status = ErrorCode.named(first.code)?.grpcStatus ?? .invalidArgument
            throw RPCError(code: Self.rpcCode(status), message: first.message)
        }
    }

    /// grpc-swift's code for a catalogue status.
    static func rpcCode(_ status: GRPCStatusCode) -> RPCError.Code {
        Status.Code(rawValue: status.rawValue).flatMap { RPCError.Code($0) } ?? .internalError
    }

    // MARK: - Routing

    /// The route that serves a call: the first whose gRPC match names this method (or none) and
    /// whose header matches the call's metadata.
    static func route(in routes: [GRPCIngestRoute], method: String, metadata: Metadata) throws(RPCError) -> GRPCIngestRoute {
        for route in routes {
            guard let grpc = route.match.grpc, grpc.service == Self.serviceName, grpc.method == nil || grpc.method == method else {
                continue
            }
            let headersMatch = route.match.headers.allSatisfy { header in
                metadata[stringValues: header.name].contains(header.value)
            }
            if headersMatch { return route }
        }
        throw RPCError(code: .notFound, message: "no route serves \(Self.serviceName)/\(method) for this call's metadata")
    }

    /// The names of the client's verified certificate (common name, then DNS, URI, e-mail and IP
    /// subject alternative names), on a gRPC listener that requires one; empty otherwise.
    static func tlsPrincipals(_ context: ServerContext) -> [String] {
        guard let posix = context.transportSpecific as? HTTP2ServerTransport.Posix.Context, let certificate = posix.peerCertificate else {
            return []
        }
        var names: [String] = []
        for rdn in certificate.subject {
            for attribute in rdn where attribute.type == .RDNAttributeType.commonName { names.append(attribute.value.description) }
        }
        if let alternatives = try? certificate.extensions.subjectAlternativeNames {
            for name in alternatives {
                switch name {
                case .dnsName(let text), .uniformResourceIdentifier(let text), .rfc822Name(let text):
                    names.append(text)
                case .ipAddress(let octets):
                    if let address = TLSClientIdentity.ipAddress(Array(octets.bytes)) { names.append(address) }
                default:
                    continue
                }
            }
        }
        return names
    }

    /// `ipv4:127.0.0.1:5000` / `ipv6:[::1]:5000` -> the address.
    static func peerIP(_ peer: String) -> String? {
        if peer.hasPrefix("ipv4:") {
            let rest = peer.dropFirst(5)
            return rest.lastIndex(of: ":").map { String(rest[..<$0]) } ?? String(rest)
        }
        if peer.hasPrefix("ipv6:") {
            let rest = peer.dropFirst(5)
            if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") { return String(rest[rest.index(after: rest.startIndex)..<close]) }
            return String(rest)
        }
        return nil
    }

    // MARK: - Delivery

    /// A request's events handed to the sink, to be settled.
    struct PendingDelivery {
        let session: IngestSession
        /// The call's tally, told which events failed.
        let tally = CallTally.current

        func results() async -> (results: DeliveryResults, summary: DeliverySummary) {
            let results = await self.session.results().deadLettersAsFailures()
            let summary = results.summary()
            self.tally?.reject(summary)
            return (results, summary)
        }
    }

    /// Validates the request, fails invalid events at once, and hands the valid ones to the
    /// sink through the route's pipeline (waiting, up to `max_wait` per wait, while it has no
    /// room). Every event gets a result, in the request's order. The request's events are
    /// handed over (moved, not copied) and `request.events` is left empty.
    private func handOver(_ request: inout IncomingPublishRequest, route: GRPCIngestRoute) async -> PendingDelivery {
        let pipeline = route.pipeline
        let count = request.events.count
        let topic = self.topic(for: request, route: route)
        let defaultKey = pipeline.defaultKey(["topic": request.topic])
        var session = pipeline.session(
            topic: (try? topic.get()) ?? request.topic, requestKey: defaultKey, defaultKey: defaultKey, headers: [], ack: .sink)
        if case .failure(let failure) = topic {
            session.fail(count: count, with: failure.deliveryFailure)
            return PendingDelivery(session: session)
        }
        if count > pipeline.config.maxEvents {
            session.fail(count: count, with: IngestError.tooManyEvents(limit: pipeline.config.maxEvents).deliveryFailure)
            return PendingDelivery(session: session)
        }

        // The events go to the sink as one run, without a copy of any; the session refuses one
        // past max_event_bytes alone in its place (failed, or dead-lettered). After a stop
        // (saturated sink, bad key), the rest fail with its reason.
        var bytes = 0  // the call's byte tally: values and keys
        for event in request.events { bytes += event.value.readableBytes + (event.key?.readableBytes ?? 0) }
        var run: [Event] = []
        swap(&run, &request.events)
        let before = session.reserved
        _ = await session.send(&run, lines: nil)
        session.fail(count: count - (session.reserved - before), with: session.stopFailure)
        CallTally.current?.add(events: session.sent, bytes: bytes, eventBytes: session.sentBytes)
        CallTally.current?.mirror(session.mirrored)
        return PendingDelivery(session: session)
    }

    /// The topic of a request: the route's fixed topic (the request may repeat it), or the
    /// request's `topic` in the route's template; then the pipeline's checks.
    private func topic(for request: IncomingPublishRequest, route: GRPCIngestRoute) -> Result<String, IngestError> {
        let template = route.ingest.topic
        if let fixed = template.fixedValue {
            guard request.topic.isEmpty || request.topic == fixed else {
                return .failure(IngestError(.invalidTopic, "this route publishes to \"\(fixed)\"; leave topic empty or set it to that"))
            }
            return .success(fixed)
        }
        guard !request.topic.isEmpty else { return .failure(IngestError(.invalidTopic, "this route takes the topic from the request: set topic")) }
        let topic = template.render(["topic": request.topic])
        if let problem = route.pipeline.problem(topic: topic) { return .failure(problem) }
        return .success(topic)
    }
}

/// Reads `sluice.v1.PublishRequest` with `IngestWire`; a message it cannot read fails the call
/// with INVALID_ARGUMENT, as grpc-swift's protobuf deserializer does.
struct PublishRequestDeserializer: MessageDeserializer {
    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> IncomingPublishRequest {
        do {
            return try serializedMessageBytes.withUnsafeBytes { bytes throws(IngestWire.Malformed) in try IngestWire.publishRequest(bytes) }
        } catch {
            throw RPCError(code: .invalidArgument, message: "Can't deserialize sluice.v1.PublishRequest: \(error)")
        }
    }
}

/// Writes an answer with `IngestWire`.
struct WireSerializer<Message>: MessageSerializer {
    let encode: @Sendable (Message) -> [UInt8]

    func serialize<Bytes: GRPCContiguousBytes>(_ message: Message) throws -> Bytes {
        Bytes(self.encode(message))
    }
}
