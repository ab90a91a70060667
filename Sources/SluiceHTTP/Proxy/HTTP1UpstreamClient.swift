import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// HTTP/1.1 to the endpoints of a cleartext upstream, on the event loop that serves the
/// client: the connection for a request is taken from (or opened on) that loop, so the socket
/// work of both sides runs on one thread, as in Envoy and nginx (the route's handler, which
/// awaits the exchange, still runs as a task). It keeps
/// connections alive per endpoint (at most `maxConnections` open per endpoint, idle ones closed
/// after `idleTimeout`), reads an answer's body only as fast as it is consumed, and fails an
/// exchange whose head does not come by its deadline or whose body stalls for `readTimeout`.
final class HTTP1UpstreamClient: Sendable {
    struct Settings: Sendable {
        var maxConnections: Int
        var connectTimeout: TimeAmount
        var idleTimeout: TimeAmount
        var readTimeout: TimeAmount
        /// Answers with a content-length up to this are read whole on the loop and handed over
        /// with their head (one wake-up of the waiting task instead of one per part).
        var wholeAnswerBytes: Int
    }

    /// What goes after the head.
    enum OutgoingBody {
        case none
        case bytes(ByteBuffer)
        /// Sent part by part as the pipe yields them (`content-length` or chunked, by the head).
        case stream(BodyPipe)

        var isStream: Bool {
            if case .stream = self { return true }
            return false
        }
    }

    private let settings: Settings
    private let pool: HTTP1ConnectionPool

    init(settings: Settings) {
        self.settings = settings
        self.pool = HTTP1ConnectionPool(settings: settings)
    }

    /// One exchange with `endpoint`: returns once the answer's head has come (its body streams
    /// from the returned response); a streamed request body may still be going out then.
    func execute(
        _ head: HTTPRequestHead, body: OutgoingBody, endpoint: Int, host: String, port: Int, on eventLoop: any EventLoop,
        deadline: NIODeadline
    ) async throws -> HTTP1UpstreamResponse {
        var head = head
        Self.frame(&head, body)
        var connection = try await self.pool.connection(to: endpoint, host: host, port: port, on: eventLoop)
        switch body {
        case .none, .bytes:
            let bytes: ByteBuffer? = if case .bytes(let bytes) = body { bytes } else { nil }
            do {
                return try await connection.exchange(head, bytes: bytes, deadline: deadline)
            } catch HTTP1UpstreamError.closedBeforeAnswer where connection.wasReused && Self.idempotent.contains(head.method) {
                // A kept-alive connection the endpoint closed as this request came (its idle
                // timeout ran out): once more on a fresh connection, as nginx does, for methods
                // that may be sent twice. Not a byte came back.
                connection = try await self.pool.connection(to: endpoint, host: host, port: port, on: eventLoop, fresh: true)
                return try await connection.exchange(head, bytes: bytes, deadline: deadline)
            }
        case .stream(let pipe):
            // Full duplex: the body goes out from its own task, and the answer is handed over
            // as soon as its head comes (an answer that ends before the request does closes the
            // connection: the endpoint will not read the rest).
            let token = HTTP1RequestToken()
            let sending = connection
            return try await withUnsafeThrowingContinuation { answer in
                // The head is on its way (or queued on the connection's loop) before the task
                // sending the body can ask to send a part of it.
                sending.start(head, bytes: nil, streamed: token, deadline: deadline, answer: answer)
                Task {
                    do {
                        for try await part in pipe {
                            try await sending.writeBodyPart(part, of: token).get()
                        }
                        sending.finishRequest(of: token, trailers: pipe.trailers)
                    } catch {
                        // The client's body failed, or the connection did (then the answer says how).
                        sending.abort(token)
                    }
                }
            }
        }
    }

    static let idempotent: [HTTPMethod] = [.GET, .HEAD, .PUT, .DELETE, .OPTIONS, .TRACE]

    /// The body's framing in the head: its length for bytes, 0 for no body where a method
    /// usually has one; a stream keeps the length it declares, or is sent chunked.
    private static func frame(_ head: inout HTTPRequestHead, _ body: OutgoingBody) {
        switch body {
        case .none:
            if ![HTTPMethod.GET, .HEAD, .DELETE, .OPTIONS, .TRACE, .CONNECT].contains(head.method) {
                head.headers.replaceOrAdd(name: "content-length", value: "0")
            }
        case .bytes(let bytes):
            head.headers.replaceOrAdd(name: "content-length", value: String(bytes.readableBytes))
        case .stream:
            break
        }
    }

    /// Closes every pooled connection; later requests fail.
    func shutdown() {
        self.pool.shutdown()
    }
}

/// Why an exchange failed; `ProxyHandler.classify` maps each to 502/503/504.
enum HTTP1UpstreamError: Error, Equatable {
    /// TCP connect did not complete in time.
    case connectTimeout
    /// Every allowed connection to the endpoint stayed busy for the connect timeout.
    case noConnectionAvailable
    /// No answer head by the request deadline.
    case responseTimeout
    /// The answer's body stalled for the read timeout.
    case readTimeout
    /// The connection closed (or reset) before the answer was complete.
    case closedBeforeAnswer
    case closedDuringAnswer
    /// The endpoint sent something that is not an HTTP/1.1 answer to this request.
    case invalidAnswer
    /// The request holds what HTTP/1.1 may not carry (the encoder refused it): the request's
    /// fault, not the endpoint's.
    case unsendableRequest
    case shutDown
}

/// An answer's head, and its body as it arrives (backpressured: the connection reads on only
/// while the consumer keeps up).
struct HTTP1UpstreamResponse: Sendable {
    let head: HTTPResponseHead
    let body: HTTP1UpstreamBody
    /// A streamed answer's trailers, once its body has ended.
    var trailers: ResponseTrailers? = nil
}

typealias HTTP1UpstreamBodyProducer = NIOThrowingAsyncSequenceProducer<
    ByteBuffer, any Error, NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark, HTTP1BodyDemand
>

struct HTTP1UpstreamBody: AsyncSequence, Sendable {
    typealias Element = ByteBuffer

    enum Storage: Sendable {
        /// Read whole before the head was handed over (small answers).
        case whole(ByteBuffer)
        case streamed(HTTP1UpstreamBodyProducer)
    }
    let storage: Storage

    func makeAsyncIterator() -> Iterator {
        switch self.storage {
        case .whole(let bytes): Iterator(base: .whole(bytes.readableBytes > 0 ? bytes : nil))
        case .streamed(let producer): Iterator(base: .streamed(producer.makeAsyncIterator()))
        }
    }

    struct Iterator: AsyncIteratorProtocol {
        enum Base {
            case whole(ByteBuffer?)
            case streamed(HTTP1UpstreamBodyProducer.AsyncIterator)
        }
        var base: Base

        mutating func next() async throws -> ByteBuffer? {
            switch self.base {
            case .whole(let bytes):
                self.base = .whole(nil)
                return bytes
            case .streamed(var iterator):
                return try await iterator.next(isolation: #isolation)
            }
        }
    }

    /// The whole body, if it is at most `limit` bytes.
    func collect(upTo limit: Int) async throws -> ByteBuffer {
        if case .whole(let bytes) = self.storage {
            guard bytes.readableBytes <= limit else { throw HTTP1UpstreamError.invalidAnswer }
            return bytes
        }
        return try await self.collectAnswer(upTo: limit)
    }
}

extension AsyncSequence where Element == ByteBuffer {
    /// An upstream answer's whole body, if it is at most `limit` bytes (else `invalidAnswer`).
    func collectAnswer(upTo limit: Int) async throws -> ByteBuffer {
        var whole = ByteBuffer()
        for try await part in self {
            guard whole.readableBytes + part.readableBytes <= limit else { throw HTTP1UpstreamError.invalidAnswer }
            whole.writeImmutableBuffer(part)
        }
        return whole
    }
}

/// Tells the connection that the consumer of a body wants more, or has gone.
struct HTTP1BodyDemand: NIOAsyncSequenceProducerDelegate {
    let connection: HTTP1Connection
    let exchange: Int

    func produceMore() {
        self.connection.onLoop { $0.bodyDemanded(exchange: self.exchange) }
    }

    func didTerminate() {
        self.connection.onLoop { $0.bodyConsumerGone(exchange: self.exchange) }
    }
}

// MARK: - Connections

/// One kept-alive connection to one endpoint. Used by one exchange at a time.
final class HTTP1Connection: Sendable {
    let channel: any Channel
    let endpoint: Int
    private let handler: NIOLoopBound<HTTP1ExchangeHandler>
    private struct Use {
        /// How often it was taken for an exchange (a closed kept-alive connection may be retried once).
        var taken = 0
        /// When it last went back to the pool.
        var releasedAt = NIODeadline.now()
        /// Whether its idle timer is scheduled (one per connection, however often it is released).
        var idleTimerArmed = false
    }
    private let use = NIOLockedValueBox(Use())

    fileprivate init(channel: any Channel, endpoint: Int, handler: HTTP1ExchangeHandler) {
        self.channel = channel
        self.endpoint = endpoint
        self.handler = NIOLoopBound(handler, eventLoop: channel.eventLoop)
    }

    var wasReused: Bool { self.use.withLockedValue { $0.taken > 1 } }

    fileprivate func taken() {
        self.use.withLockedValue { $0.taken += 1 }
    }

    /// Back in the pool now; true if its idle timer is to be started (it is not running).
    fileprivate func releasedArmingTimer() -> Bool {
        self.use.withLockedValue { use in
            use.releasedAt = .now()
            defer { use.idleTimerArmed = true }
            return !use.idleTimerArmed
        }
    }

    /// When the idle timer fires: nil if the connection has been idle for `timeout` (the timer
    /// is spent), else when to look again (it stays armed).
    fileprivate func idleCheck(timeout: TimeAmount) -> NIODeadline? {
        self.use.withLockedValue { use in
            let due = use.releasedAt + timeout
            if due <= .now() {
                use.idleTimerArmed = false
                return nil
            }
            return due
        }
    }

    fileprivate func disarmIdleTimer() {
        self.use.withLockedValue { $0.idleTimerArmed = false }
    }

    /// Runs `body` on the connection's loop: now if this is it, else as its next task.
    func onLoop(_ body: @escaping @Sendable (HTTP1ExchangeHandler) -> Void) {
        if self.channel.eventLoop.inEventLoop {
            body(self.handler.value)
        } else {
            self.channel.eventLoop.execute { body(self.handler.value) }
        }
    }

    private func onLoopFuture<T: Sendable>(_ body: @escaping @Sendable (HTTP1ExchangeHandler) -> EventLoopFuture<T>) -> EventLoopFuture<T> {
        if self.channel.eventLoop.inEventLoop { return body(self.handler.value) }
        return self.channel.eventLoop.flatSubmit { body(self.handler.value) }
    }

    /// One exchange of a request sent whole: returns once the answer's head has come.
    func exchange(_ head: HTTPRequestHead, bytes: ByteBuffer?, deadline: NIODeadline) async throws -> HTTP1UpstreamResponse {
        // A continuation the handler resumes, not a promise's future: the future, its callback
        // list and the closure `get()` registers cost more than the wait itself.
        try await withUnsafeThrowingContinuation { answer in
            self.start(head, bytes: bytes, streamed: nil, deadline: deadline, answer: answer)
        }
    }

    /// Starts an exchange whose answer goes to `answer` (resumed exactly once); a request whose
    /// body follows (`streamed`) is named by its token in the calls that send it.
    func start(
        _ head: HTTPRequestHead, bytes: ByteBuffer?, streamed: HTTP1RequestToken?, deadline: NIODeadline, answer: HTTP1AnswerContinuation
    ) {
        self.onLoop { $0.start(connection: self, head: head, bytes: bytes, streamed: streamed, deadline: deadline, answer: answer) }
    }

    func writeBodyPart(_ part: ByteBuffer, of request: HTTP1RequestToken) -> EventLoopFuture<Void> {
        self.onLoopFuture { $0.writeBodyPart(part, of: request) }
    }

    func finishRequest(of request: HTTP1RequestToken, trailers: HTTPHeaders?) {
        self.onLoop { $0.finishRequest(of: request, trailers: trailers) }
    }

    func abort(_ request: HTTP1RequestToken) {
        self.onLoop { $0.abort(request) }
    }
}

/// Names one streamed request to its connection: the connection may be back in the pool and
/// carrying another exchange by the time the task sending this one's body makes a late call
/// (its body ended on the wire before the task said so), which must not touch the other.
final class HTTP1RequestToken: Sendable {}

/// Where an exchange's answer head (or its failure) goes.
typealias HTTP1AnswerContinuation = UnsafeContinuation<HTTP1UpstreamResponse, any Error>

/// The connection's exchanges, one at a time, on its loop: writes the request, turns the
/// answer into a head and a backpressured body, and gives the connection back to the pool once
/// both directions have ended cleanly (or closes it).
final class HTTP1ExchangeHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private enum State {
        /// In the pool (or just opened): reading only to notice a close.
        case idle
        case awaitingHead(HTTP1AnswerContinuation)
        /// An informational (1xx) answer is being skipped.
        case skippingInformational(HTTP1AnswerContinuation)
        /// A streamed answer, and where its trailers go (only a chunked answer has any).
        case streamingBody(HTTP1UpstreamBodyProducer.Source, ResponseTrailers)
        /// A small answer (by its content-length) read whole before it is handed over.
        case collectingBody(HTTP1AnswerContinuation, HTTPResponseHead, ByteBuffer)
        /// The answer is complete; the request may still be going out.
        case answered
        case closed
    }

    private let settings: HTTP1UpstreamClient.Settings
    private let released: @Sendable (HTTP1Connection, _ reusable: Bool) -> Void
    private var context: ChannelHandlerContext?
    private var connection: HTTP1Connection?
    private var state = State.idle
    private var exchangeID = 0
    private var requestDone = true
    /// The streamed request in progress, if one is.
    private var requestToken: HTTP1RequestToken?
    /// Of a streamed request with a content-length, the body bytes still to send.
    private var bodyBytesLeft: Int?
    private var keepAlive = true
    private var demand = false
    private var readPending = false
    /// When the exchange's answer head is due (while one is awaited).
    private var headDue: NIODeadline?
    /// When the body read asked for is due (while one is asked for during an answer's body).
    private var readDue: NIODeadline?
    /// One timer for both deadlines, armed at most once per connection rather than once per
    /// exchange: when it fires it fails what is overdue, or is set again for what is due next.
    private var watchdog: Scheduled<Void>?
    private var watchdogAt = NIODeadline.distantFuture

    init(settings: HTTP1UpstreamClient.Settings, released: @escaping @Sendable (HTTP1Connection, Bool) -> Void) {
        self.settings = settings
        self.released = released
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        // Added to a connected channel (the pool adds it after the connect): reading starts
        // now, so that the upstream closing an idle connection is seen.
        if context.channel.isActive { self.read() }
    }

    func channelActive(context: ChannelHandlerContext) {
        self.read()
    }

    // MARK: Requests

    func start(
        connection: HTTP1Connection, head: HTTPRequestHead, bytes: ByteBuffer?, streamed: HTTP1RequestToken?, deadline: NIODeadline,
        answer: HTTP1AnswerContinuation
    ) {
        guard let context = self.context else { return answer.resume(throwing: HTTP1UpstreamError.closedBeforeAnswer) }
        guard case .idle = self.state else {
            return answer.resume(throwing: self.isClosed ? HTTP1UpstreamError.closedBeforeAnswer : HTTP1UpstreamError.invalidAnswer)
        }
        self.connection = connection
        self.exchangeID += 1
        self.requestDone = streamed == nil
        self.requestToken = streamed
        self.bodyBytesLeft = streamed == nil ? nil : head.headers.first(name: "content-length").flatMap { Int($0) }
        self.keepAlive = head.isKeepAlive
        self.state = .awaitingHead(answer)
        self.headDue = deadline
        self.watch(until: deadline, context: context)
        context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        if let bytes, bytes.readableBytes > 0 {
            context.write(self.wrapOutboundOut(.body(.byteBuffer(bytes))), promise: nil)
        }
        if streamed == nil {
            context.write(self.wrapOutboundOut(.end(nil)), promise: nil)
        }
        context.flush()
        self.read()
    }

    func writeBodyPart(_ part: ByteBuffer, of request: HTTP1RequestToken) -> EventLoopFuture<Void> {
        let context = self.context!
        guard !self.isClosed, request === self.requestToken, !self.requestDone else {
            return context.eventLoop.makeFailedFuture(HTTP1UpstreamError.closedBeforeAnswer)
        }
        // Completes once the bytes are in the socket: one part in flight, so the client's body
        // is read no faster than the endpoint takes it.
        let written = context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(part))))
        if let left = self.bodyBytesLeft {
            self.bodyBytesLeft = left - part.readableBytes
            // The last byte of a content-length body is out: the request is complete on the
            // wire now, not when the sending task comes back to say so (an answer arriving in
            // between would otherwise find the request unfinished and close the connection).
            if left - part.readableBytes <= 0 { self.finishRequest(of: request, trailers: nil) }
        }
        return written
    }

    func finishRequest(of request: HTTP1RequestToken, trailers: HTTPHeaders?) {
        guard let context = self.context, !self.isClosed, request === self.requestToken, !self.requestDone else { return }
        self.requestDone = true
        context.writeAndFlush(self.wrapOutboundOut(.end(trailers)), promise: nil)
        if case .answered = self.state { self.exchangeEnded() }
    }

    /// The request cannot be completed (the client's body failed): the connection is closed.
    func abort(_ request: HTTP1RequestToken) {
        guard !self.isClosed, request === self.requestToken else { return }
        self.fail(HTTP1UpstreamError.closedBeforeAnswer)
    }

    // MARK: Answers

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.readPending = false
        self.readDue = nil
        let part = self.unwrapInboundIn(data)
        if case .body(var bytes) = part, case .collectingBody(let answer, let head, var whole) = self.state {
            // Not in the switch below: its (part, state) tuple holds a second reference to
            // `whole`, and each part would copy what was collected before it.
            guard whole.readableBytes + bytes.readableBytes <= self.settings.wholeAnswerBytes else {
                return self.fail(HTTP1UpstreamError.invalidAnswer)
            }
            self.state = .answered
            if whole.readableBytes == 0 {
                // The usual small answer comes in one part: kept as read, not copied.
                whole = bytes
            } else {
                whole.writeBuffer(&bytes)
            }
            self.state = .collectingBody(answer, head, whole)
            return
        }
        switch (part, self.state) {
        case (.head(let head), .awaitingHead(let answer)):
            if head.status.code >= 100 && head.status.code < 200 {
                // 100 Continue, 103 Early Hints: not the answer (101 was never asked for here).
                guard head.status != .switchingProtocols else { return self.fail(HTTP1UpstreamError.invalidAnswer) }
                self.state = .skippingInformational(answer)
                return
            }
            self.headDue = nil
            self.keepAlive = self.keepAlive && head.isKeepAlive
            if let length = head.headers.first(name: "content-length").flatMap({ Int($0) }), length >= 0,
                length <= self.settings.wholeAnswerBytes
            {
                self.state = .collectingBody(answer, head, ByteBuffer())
                return
            }
            let connection = self.connection!
            let produced = HTTP1UpstreamBodyProducer.makeSequence(
                elementType: ByteBuffer.self, failureType: (any Error).self,
                backPressureStrategy: .init(lowWatermark: 2, highWatermark: 8), finishOnDeinit: false,
                delegate: HTTP1BodyDemand(connection: connection, exchange: self.exchangeID))
            let trailers = ResponseTrailers()
            self.state = .streamingBody(produced.source, trailers)
            self.demand = true
            answer.resume(
                returning: HTTP1UpstreamResponse(head: head, body: HTTP1UpstreamBody(storage: .streamed(produced.sequence)), trailers: trailers))
        case (.end, .skippingInformational(let answer)):
            self.state = .awaitingHead(answer)
        case (.body(let part), .streamingBody(let source, _)):
            switch source.yield(part) {
            case .produceMore: self.demand = true
            case .stopProducing: self.demand = false
            case .dropped:
                // The consumer is gone: the rest of the answer is not wanted.
                self.fail(HTTP1UpstreamError.closedDuringAnswer)
            }
        case (.end, .collectingBody(let answer, let head, let whole)):
            self.state = .answered
            answer.resume(returning: HTTP1UpstreamResponse(head: head, body: HTTP1UpstreamBody(storage: .whole(whole))))
            if self.requestDone {
                self.exchangeEnded()
            } else {
                self.close()
            }
        case (.end(let received), .streamingBody(let source, let trailers)):
            if let received { trailers.set(received) }
            // State first: finishing may call the delegate's didTerminate right here (when the
            // consumer is waiting), which must find the answer complete, not abandoned.
            self.state = .answered
            source.finish()
            if self.requestDone {
                self.exchangeEnded()
            } else {
                // Answered before the request was complete: the request is cut, so is the connection.
                self.close()
            }
        default:
            // Bytes with no exchange waiting for them, or out of order: not a connection to keep.
            self.fail(HTTP1UpstreamError.invalidAnswer)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        switch self.state {
        case .idle, .awaitingHead, .skippingInformational, .collectingBody: self.read()
        case .streamingBody: if self.demand { self.read() }
        case .answered, .closed: break
        }
    }

    func bodyDemanded(exchange: Int) {
        guard exchange == self.exchangeID, case .streamingBody = self.state else { return }
        self.demand = true
        self.read()
    }

    func bodyConsumerGone(exchange: Int) {
        guard exchange == self.exchangeID, case .streamingBody = self.state else { return }
        // Dropped mid-answer: what is left of it would have to be read and thrown away.
        self.fail(HTTP1UpstreamError.closedDuringAnswer)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.fail(HTTP1UpstreamError.closedBeforeAnswer)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if case HTTP1MessageEncodingError.fieldNotSendable = error { return self.fail(HTTP1UpstreamError.unsendableRequest) }
        self.fail(error is HTTPParserError ? HTTP1UpstreamError.invalidAnswer : HTTP1UpstreamError.closedBeforeAnswer)
    }

    // MARK: -

    private var isClosed: Bool {
        if case .closed = self.state { return true }
        return false
    }

    private func read() {
        guard let context = self.context, !self.readPending else { return }
        self.readPending = true
        context.read()
        // The read timeout runs while a body is wanted (the head has its own deadline; an idle
        // connection reads only to notice a close).
        switch self.state {
        case .streamingBody, .collectingBody:
            let due = NIODeadline.now() + self.settings.readTimeout
            self.readDue = due
            self.watch(until: due, context: context)
        default:
            break
        }
    }

    /// Makes sure the watchdog fires no later than `deadline`.
    private func watch(until deadline: NIODeadline, context: ChannelHandlerContext) {
        if self.watchdog != nil, self.watchdogAt <= deadline { return }
        self.watchdog?.cancel()
        self.watchdogAt = deadline
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        self.watchdog = context.eventLoop.scheduleTask(deadline: deadline) { loopBound.value.watchdogFired() }
    }

    private func watchdogFired() {
        self.watchdog = nil
        guard let context = self.context, !self.isClosed else { return }
        let now = NIODeadline.now()
        if let due = self.headDue, due <= now { return self.fail(HTTP1UpstreamError.responseTimeout) }
        if let due = self.readDue, due <= now { return self.fail(HTTP1UpstreamError.readTimeout) }
        if let next = [self.headDue, self.readDue].compactMap({ $0 }).min() { self.watch(until: next, context: context) }
    }

    private func stopWatching() {
        self.headDue = nil
        self.readDue = nil
    }

    /// Both directions are complete: back to the pool, or closed if the connection is not to be kept.
    private func exchangeEnded() {
        // (The watchdog stays armed, if it is: it finds nothing due and lapses.)
        self.stopWatching()
        self.requestToken = nil
        guard self.keepAlive, let connection = self.connection else { return self.close() }
        self.state = .idle
        self.read()
        self.released(connection, true)
    }

    /// Ends whatever is in progress with `error` and closes the connection.
    private func fail(_ error: HTTP1UpstreamError) {
        let previous = self.state
        self.state = .closed
        self.stopWatching()
        self.watchdog?.cancel()
        self.watchdog = nil
        switch previous {
        case .awaitingHead(let answer):
            answer.resume(throwing: error)
        case .skippingInformational(let answer), .collectingBody(let answer, _, _):
            // Something came back: not a connection that closed before it was used.
            answer.resume(throwing: error == .closedBeforeAnswer ? HTTP1UpstreamError.closedDuringAnswer : error)
        case .streamingBody(let source, _):
            source.finish(error == .closedBeforeAnswer ? HTTP1UpstreamError.closedDuringAnswer : error)
        case .idle, .answered, .closed:
            break
        }
        if case .closed = previous { return }
        self.context?.close(promise: nil)
        if let connection = self.connection {
            self.connection = nil
            self.released(connection, false)
        }
    }

    private func close() {
        guard !self.isClosed else { return }
        self.state = .closed
        self.stopWatching()
        self.watchdog?.cancel()
        self.watchdog = nil
        self.context?.close(promise: nil)
        if let connection = self.connection {
            self.connection = nil
            self.released(connection, false)
        }
    }

    /// Remembers the connection for the pool from the moment it opens (idle close notices).
    fileprivate func adopt(_ connection: HTTP1Connection) {
        self.connection = connection
    }
}

// MARK: - The pool

/// Kept-alive connections by endpoint and event loop. A request takes an idle connection on
/// its own loop, else opens one there while the endpoint has fewer than `maxConnections`
/// open, else takes an idle one from another loop, else waits (up to the connect timeout) for
/// one to be released or closed.
final class HTTP1ConnectionPool: Sendable {
    private struct Key: Hashable {
        let endpoint: Int
        let loop: ObjectIdentifier
    }

    private struct Waiter {
        let id: Int
        let promise: EventLoopPromise<HTTP1Connection?>
    }

    private struct State {
        var idle: [Key: [HTTP1Connection]] = [:]
        /// Open (idle, busy or connecting) by endpoint.
        var open: [Int: Int] = [:]
        var waiters: [Int: [Waiter]] = [:]
        var nextWaiter = 0
        var shutDown = false
    }

    private let settings: HTTP1UpstreamClient.Settings
    private let state = NIOLockedValueBox(State())

    init(settings: HTTP1UpstreamClient.Settings) {
        self.settings = settings
    }

    private enum Choice {
        case reuse(HTTP1Connection)
        case connect
        case wait(Waiter)
        case shutDown
    }

    func connection(to endpoint: Int, host: String, port: Int, on loop: any EventLoop, fresh: Bool = false) async throws -> HTTP1Connection {
        let key = Key(endpoint: endpoint, loop: ObjectIdentifier(loop))
        let choice: Choice = self.state.withLockedValue { state in
            if state.shutDown { return .shutDown }
            if !fresh, let connection = Self.takeIdle(&state, key) { return .reuse(connection) }
            if state.open[endpoint, default: 0] < self.settings.maxConnections {
                state.open[endpoint, default: 0] += 1
                return .connect
            }
            if !fresh, let other = state.idle.first(where: { $0.key.endpoint == endpoint && !$0.value.isEmpty })?.key,
                let connection = Self.takeIdle(&state, other)
            {
                return .reuse(connection)
            }
            state.nextWaiter += 1
            let waiter = Waiter(id: state.nextWaiter, promise: loop.makePromise())
            state.waiters[endpoint, default: []].append(waiter)
            return .wait(waiter)
        }
        switch choice {
        case .shutDown:
            throw HTTP1UpstreamError.shutDown
        case .reuse(let connection):
            connection.taken()
            return connection
        case .connect:
            return try await self.connect(to: endpoint, host: host, port: port, on: loop)
        case .wait(let waiter):
            let timeout = loop.scheduleTask(in: self.settings.connectTimeout) {
                let removed = self.state.withLockedValue { state -> Bool in
                    guard let index = state.waiters[endpoint]?.firstIndex(where: { $0.id == waiter.id }) else { return false }
                    state.waiters[endpoint]!.remove(at: index)
                    return true
                }
                if removed { waiter.promise.fail(HTTP1UpstreamError.noConnectionAvailable) }
            }
            let handed = try await waiter.promise.futureResult.get()
            timeout.cancel()
            if let handed {
                handed.taken()
                return handed
            }
            // A connection closed: its place is this request's.
            return try await self.connect(to: endpoint, host: host, port: port, on: loop)
        }
    }

    private static func takeIdle(_ state: inout State, _ key: Key) -> HTTP1Connection? {
        while let connection = state.idle[key]?.popLast() {
            if connection.channel.isActive { return connection }
        }
        return nil
    }

    private func connect(to endpoint: Int, host: String, port: Int, on loop: any EventLoop) async throws -> HTTP1Connection {
        let settings = self.settings
        do {
            // The handlers join once the connection is up: a refused connect (every request's
            // fate while an endpoint is down) does not build and tear down a pipeline. Nothing
            // is read before they are there (autoRead is off).
            let channel = try await ClientBootstrap(group: loop)
                .connectTimeout(settings.connectTimeout)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelOption(.autoRead, value: false)
                .connect(toHost: host, port: port).get()
            return try await channel.eventLoop.submit {
                if !channel.isActive { throw HTTP1UpstreamError.closedBeforeAnswer }
                // NIO's client handlers with Sluice's request encoder (HTTP1MessageEncoding) in
                // place of HTTPRequestEncoder and NIOHTTPRequestHeadersValidator (it checks every
                // field as it copies it); the response decoder sees each request head go by
                // (answers to HEAD have no body).
                let sync = channel.pipeline.syncOperations
                let handler = HTTP1ExchangeHandler(settings: settings) { [weak self] connection, reusable in
                    self?.released(connection, reusable: reusable)
                }
                do {
                    try sync.addHandler(HTTP1RequestEncoder())
                    try sync.addHandler(ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes)))
                    try sync.addHandler(handler)
                } catch {
                    channel.close(promise: nil)
                    throw error
                }
                let connection = HTTP1Connection(channel: channel, endpoint: endpoint, handler: handler)
                handler.adopt(connection)
                connection.taken()
                return connection
            }.get()
        } catch {
            self.closed(endpoint)
            if case ChannelError.connectTimeout = error { throw HTTP1UpstreamError.connectTimeout }
            throw error
        }
    }

    /// An exchange ended: a reusable connection goes to a waiter or back to the pool (with its
    /// idle timer); any other is gone.
    private func released(_ connection: HTTP1Connection, reusable: Bool) {
        let key = Key(endpoint: connection.endpoint, loop: ObjectIdentifier(connection.channel.eventLoop))
        guard reusable else { return self.closed(connection.endpoint, leaving: key, connection) }
        let waiter: Waiter? = self.state.withLockedValue { state in
            if state.shutDown { return nil }
            if var waiting = state.waiters[connection.endpoint], !waiting.isEmpty {
                let first = waiting.removeFirst()
                state.waiters[connection.endpoint] = waiting
                return first
            }
            state.idle[key, default: []].append(connection)
            return nil
        }
        if let waiter {
            waiter.promise.succeed(connection)
            return
        }
        if self.state.withLockedValue({ $0.shutDown }) {
            connection.channel.close(promise: nil)
            return
        }
        // Closed once idle for the idle timeout: one timer per connection, which looks again
        // (rather than a new timer per release) if the connection was used in the meantime.
        if connection.releasedArmingTimer() {
            self.scheduleIdleCheck(connection, key: key, at: .now() + self.settings.idleTimeout)
        }
    }

    private func scheduleIdleCheck(_ connection: HTTP1Connection, key: Key, at deadline: NIODeadline) {
        connection.channel.eventLoop.scheduleTask(deadline: deadline) {
            guard connection.channel.isActive else { return connection.disarmIdleTimer() }
            if let later = connection.idleCheck(timeout: self.settings.idleTimeout) {
                return self.scheduleIdleCheck(connection, key: key, at: later)
            }
            // Idle for the whole timeout, or busy ever since: close it only if it is in the pool now.
            let expired = self.state.withLockedValue { state -> Bool in
                guard let index = state.idle[key]?.firstIndex(where: { $0 === connection }) else { return false }
                state.idle[key]!.remove(at: index)
                return true
            }
            if expired { connection.channel.close(promise: nil) }
        }
    }

    /// A connection closed (or never opened): its place goes to a waiter, if any. One that
    /// closed while pooled (the endpoint closed it) leaves the idle list at once, so closed
    /// connections never pile up there.
    private func closed(_ endpoint: Int, leaving key: Key? = nil, _ connection: HTTP1Connection? = nil) {
        let waiter: Waiter? = self.state.withLockedValue { state in
            if let key, let connection { state.idle[key]?.removeAll { $0 === connection } }
            if var waiting = state.waiters[endpoint], !waiting.isEmpty {
                let first = waiting.removeFirst()
                state.waiters[endpoint] = waiting
                return first  // keeps the place: `open` unchanged
            }
            state.open[endpoint, default: 1] -= 1
            return nil
        }
        waiter?.promise.succeed(nil)
    }

    func shutdown() {
        let (idle, waiters): ([HTTP1Connection], [Waiter]) = self.state.withLockedValue { state in
            state.shutDown = true
            defer {
                state.idle = [:]
                state.waiters = [:]
            }
            return (state.idle.values.flatMap { $0 }, state.waiters.values.flatMap { $0 })
        }
        for connection in idle { connection.channel.close(promise: nil) }
        for waiter in waiters { waiter.promise.fail(HTTP1UpstreamError.shutDown) }
    }
}
