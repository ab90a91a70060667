import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL
import NIOTLS

/// HTTP/2 to the endpoints of an upstream with `http2: true`: cleartext with prior knowledge
/// (h2c, RFC 9113 3.3) without `tls`, the way gRPC services are usually reached inside a
/// cluster; with `tls`, h2 by ALPN (an endpoint that does not agree to h2 is not used).
///
/// One connection per endpoint and event loop carries every request made on that loop as its
/// own stream (at most `maxConnections` per endpoint: past that, a request borrows another
/// loop's connection); a connection without streams for `idleTimeout` is closed, and one the
/// endpoint sends GOAWAY on takes no new streams. An exchange is full duplex: its answer's head
/// is handed over as soon as it comes, while the request body may still be flowing, and the
/// body streams with HTTP/2 flow control as backpressure both ways. Trailers pass both ways.
final class HTTP2UpstreamClient: Sendable {
    struct Settings: Sendable {
        var maxConnections: Int
        var connectTimeout: TimeAmount
        var idleTimeout: TimeAmount
        /// A stream with no frame either way for this long is reset.
        var readTimeout: TimeAmount
        /// TLS to the endpoints (its ALPN offers h2 only), or nil for h2c.
        var tls: NIOSSLContext?
    }

    private struct Key: Hashable {
        let endpoint: Int
        let loop: ObjectIdentifier
    }

    private struct State {
        var connections: [Key: HTTP2UpstreamConnection] = [:]
        var connecting: [Key: EventLoopFuture<HTTP2UpstreamConnection>] = [:]
        /// Open or connecting, by endpoint.
        var open: [Int: Int] = [:]
        var shutDown = false
    }

    private enum Choice {
        case use(HTTP2UpstreamConnection)
        case await(EventLoopFuture<HTTP2UpstreamConnection>)
        case connect(EventLoopPromise<HTTP2UpstreamConnection>)
        case shutDown
    }

    let settings: Settings
    private let state = NIOLockedValueBox(State())

    init(settings: Settings) {
        self.settings = settings
    }

    /// Opens a stream to `endpoint` and sends the request head (and `bytes`, when given, as the
    /// whole body). The returned exchange's `answer()` waits for the head; the body, if still to
    /// come, goes with `send` and `finish`.
    func open(
        _ head: HTTPRequestHead, endpoint: Int, host: String, port: Int, on loop: any EventLoop, answerDeadline: NIODeadline,
        streamDeadline: NIODeadline?
    ) async throws -> HTTP2UpstreamExchange {
        var connection = try await self.connection(to: endpoint, host: host, port: port, on: loop)
        do {
            return try await connection.openExchange(
                head, settings: self.settings, answerDeadline: answerDeadline, streamDeadline: streamDeadline)
        } catch {
            // The connection went away (GOAWAY, closed) before the stream existed: the endpoint
            // has not seen this request, so once more on a fresh connection.
            self.forget(connection)
            connection = try await self.connection(to: endpoint, host: host, port: port, on: loop)
            return try await connection.openExchange(
                head, settings: self.settings, answerDeadline: answerDeadline, streamDeadline: streamDeadline)
        }
    }

    private func connection(to endpoint: Int, host: String, port: Int, on loop: any EventLoop) async throws -> HTTP2UpstreamConnection {
        let key = Key(endpoint: endpoint, loop: ObjectIdentifier(loop))
        let choice: Choice = self.state.withLockedValue { state in
            if state.shutDown { return .shutDown }
            if let connection = state.connections[key], connection.isUsable { return .use(connection) }
            if let pending = state.connecting[key] { return .await(pending) }
            if state.open[endpoint, default: 0] < self.settings.maxConnections {
                state.open[endpoint, default: 0] += 1
                let promise = loop.makePromise(of: HTTP2UpstreamConnection.self)
                state.connecting[key] = promise.futureResult
                return .connect(promise)
            }
            if let other = state.connections.first(where: { $0.key.endpoint == endpoint && $0.value.isUsable })?.value {
                return .use(other)
            }
            if let pending = state.connecting.first(where: { $0.key.endpoint == endpoint })?.value { return .await(pending) }
            // Every place is held by a connection that is closing: open one beyond them.
            state.open[endpoint, default: 0] += 1
            let promise = loop.makePromise(of: HTTP2UpstreamConnection.self)
            state.connecting[key] = promise.futureResult
            return .connect(promise)
        }
        switch choice {
        case .shutDown:
            throw HTTP1UpstreamError.shutDown
        case .use(let connection):
            return connection
        case .await(let pending):
            return try await pending.get()
        case .connect(let promise):
            do {
                let connection = try await self.connect(endpoint: endpoint, host: host, port: port, on: loop, key: key)
                let shutDown = self.state.withLockedValue { state -> Bool in
                    state.connecting[key] = nil
                    if state.shutDown { return true }
                    state.connections[key] = connection
                    return false
                }
                if shutDown { connection.channel.close(promise: nil) }
                promise.succeed(connection)
                return connection
            } catch {
                self.state.withLockedValue { state in
                    state.connecting[key] = nil
                    state.open[endpoint, default: 1] -= 1
                }
                let failure: any Error = if case ChannelError.connectTimeout = error { HTTP1UpstreamError.connectTimeout } else { error }
                promise.fail(failure)
                throw failure
            }
        }
    }

    private func connect(endpoint: Int, host: String, port: Int, on loop: any EventLoop, key: Key) async throws -> HTTP2UpstreamConnection {
        let activity = HTTP2StreamActivity()
        var settings = NIOHTTP2Handler.Configuration()
        settings.connection.initialSettings = [
            HTTP2Setting(parameter: .enablePush, value: 0),
            HTTP2Setting(parameter: .maxConcurrentStreams, value: 0),
            HTTP2Setting(parameter: .initialWindowSize, value: 1 << 20),
        ]
        let channel = try await ClientBootstrap(group: loop)
            .connectTimeout(self.settings.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(toHost: host, port: port).get()
        let configuration = settings
        let tls = self.settings.tls
        let multiplexer = try await channel.eventLoop.submit {
            let sync = channel.pipeline.syncOperations
            if let tls {
                // The endpoint's name is what its certificate is checked against (an IP address
                // is checked as such).
                let serverName = host.contains(":") || host.allSatisfy({ $0.isNumber || $0 == "." }) ? nil : host
                try sync.addHandler(NIOSSLClientHandler(context: tls, serverHostname: serverName))
                try sync.addHandler(HTTP2ALPNRequirement())
            }
            let multiplexer = try sync.configureAsyncHTTP2Pipeline(
                mode: .client, streamDelegate: activity, configuration: configuration
            ) { stream in
                // The endpoint may not open streams (push is off): any it opens is closed.
                stream.close()
            }
            try sync.addHandler(HTTP2GoAwayWatcher(activity: activity))
            return multiplexer
        }.get()
        let connection = HTTP2UpstreamConnection(channel: channel, multiplexer: multiplexer, activity: activity)
        channel.closeFuture.whenComplete { _ in self.closed(connection, key: key) }
        activity.onIdle = { [weak connection] in
            guard let connection else { return }
            self.armIdleCheck(connection, key: key)
        }
        self.armIdleCheck(connection, key: key)
        return connection
    }

    /// Closes the connection once it has had no stream for the idle timeout (one timer at a
    /// time, which looks again if a stream came and went meanwhile).
    private func armIdleCheck(_ connection: HTTP2UpstreamConnection, key: Key) {
        guard connection.activity.armTimer() else { return }
        let timeout = self.settings.idleTimeout
        @Sendable func check(at deadline: NIODeadline) {
            connection.channel.eventLoop.scheduleTask(deadline: deadline) {
                switch connection.activity.idleCheck(timeout: timeout) {
                case .later(let next): check(at: next)
                case .busy: break
                case .expired:
                    self.forget(connection)
                    connection.channel.close(promise: nil)
                }
            }
        }
        check(at: .now() + timeout)
    }

    /// Takes the connection out of the pool (it stays open for its streams).
    private func forget(_ connection: HTTP2UpstreamConnection) {
        connection.activity.goingAway()
    }

    private func closed(_ connection: HTTP2UpstreamConnection, key: Key) {
        self.state.withLockedValue { state in
            if state.connections[key] === connection { state.connections[key] = nil }
            state.open[key.endpoint, default: 1] -= 1
        }
    }

    func shutdown() {
        let connections = self.state.withLockedValue { state in
            state.shutDown = true
            defer { state.connections = [:] }
            return Array(state.connections.values)
        }
        for connection in connections { connection.channel.close(promise: nil) }
    }
}

/// One HTTP/2 connection to an endpoint.
final class HTTP2UpstreamConnection: Sendable {
    let channel: any Channel
    let multiplexer: NIOHTTP2Handler.AsyncStreamMultiplexer<Void>
    let activity: HTTP2StreamActivity

    init(channel: any Channel, multiplexer: NIOHTTP2Handler.AsyncStreamMultiplexer<Void>, activity: HTTP2StreamActivity) {
        self.channel = channel
        self.multiplexer = multiplexer
        self.activity = activity
    }

    var isUsable: Bool { self.channel.isActive && !self.activity.isGoingAway }

    func openExchange(
        _ head: HTTPRequestHead, settings: HTTP2UpstreamClient.Settings, answerDeadline: NIODeadline, streamDeadline: NIODeadline?
    ) async throws -> HTTP2UpstreamExchange {
        guard self.isUsable else { throw HTTP1UpstreamError.closedBeforeAnswer }
        let stream = try await self.multiplexer.openStream { stream in
            stream.eventLoop.makeCompletedFuture {
                let sync = stream.pipeline.syncOperations
                try sync.addHandler(HTTP2FramePayloadToHTTP1ClientCodec(httpProtocol: .http))
                try sync.addHandler(
                    HTTP2ExchangeTimeouts(answerDeadline: answerDeadline, streamDeadline: streamDeadline, idleTimeout: settings.readTimeout))
                let parts = InboundParts<HTTPClientResponsePart>(channel: stream)
                try sync.addHandler(AnswerPartsReader(parts))
                return parts
            }
        }
        let exchange = HTTP2UpstreamExchange(stream)
        // Not flushed yet: a request that ends at once goes out as one HEADERS frame with
        // END_STREAM (the codec merges a head and an end written before a flush), as every
        // HTTP/2 client sends a bodiless request — a separate empty DATA frame after an answer
        // has been sent made nginx stall the connection's other streams.
        exchange.channel.write(HTTPClientRequestPart.head(head), promise: nil)
        return exchange
    }
}

/// Open streams on a connection, whether it is going away, and its idle timer.
final class HTTP2StreamActivity: NIOHTTP2StreamDelegate, @unchecked Sendable {
    private struct State {
        var open = 0
        var idleSince = NIODeadline.now()
        var timerArmed = false
        var goingAway = false
    }
    private let state = NIOLockedValueBox(State())
    /// Called (on the connection's loop) when the last open stream closes.
    nonisolated(unsafe) var onIdle: (@Sendable () -> Void)?

    enum IdleCheck { case later(NIODeadline), busy, expired }

    var isGoingAway: Bool { self.state.withLockedValue { $0.goingAway } }

    func goingAway() { self.state.withLockedValue { $0.goingAway = true } }

    func streamCreated(_ id: HTTP2StreamID, channel: any Channel) {
        self.state.withLockedValue { $0.open += 1 }
    }

    func streamClosed(_ id: HTTP2StreamID, channel: any Channel) {
        let idle = self.state.withLockedValue { state -> Bool in
            state.open -= 1
            guard state.open == 0 else { return false }
            state.idleSince = .now()
            return true
        }
        if idle { self.onIdle?() }
    }

    /// Whether a timer should be scheduled (none is).
    func armTimer() -> Bool {
        self.state.withLockedValue { state in
            guard !state.timerArmed else { return false }
            state.timerArmed = true
            return true
        }
    }

    func idleCheck(timeout: TimeAmount) -> IdleCheck {
        self.state.withLockedValue { state in
            if state.open > 0 {
                state.timerArmed = false
                return .busy
            }
            let due = state.idleSince + timeout
            if due > .now() { return .later(due) }
            state.timerArmed = false
            return .expired
        }
    }
}

/// Closes a TLS connection whose endpoint did not agree to h2 by ALPN: HTTP/2 frames must not
/// go to an HTTP/1.1 server.
final class HTTP2ALPNRequirement: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted(let negotiated) = event {
            guard negotiated == "h2" else {
                context.fireErrorCaught(HTTP2UpstreamError.http2Refused)
                context.close(promise: nil)
                return
            }
            context.pipeline.syncOperations.removeHandler(self, promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// Marks the connection as going away on GOAWAY: streams already open finish, new ones go to
/// a new connection.
final class HTTP2GoAwayWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame
    private let activity: HTTP2StreamActivity

    init(activity: HTTP2StreamActivity) {
        self.activity = activity
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .goAway = self.unwrapInboundIn(data).payload { self.activity.goingAway() }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Stream-level errors pass here too (a stream reset): not a reason to close the
        // connection. A connection-level one NIOHTTP2 answers with GOAWAY and a close itself.
        context.fireErrorCaught(error)
    }
}

/// The deadlines of one stream: its answer's head by `answerDeadline`, the whole exchange by
/// `streamDeadline` (a gRPC deadline), and no frame either way for `idleTimeout` resets it.
final class HTTP2ExchangeTimeouts: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias InboundOut = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    private let answerDeadline: NIODeadline
    private let streamDeadline: NIODeadline?
    private let idleTimeout: TimeAmount
    private var answerTimer: Scheduled<Void>?
    private var streamTimer: Scheduled<Void>?
    private var idleTimer: Scheduled<Void>?
    private var lastActivity = NIODeadline.now()

    init(answerDeadline: NIODeadline, streamDeadline: NIODeadline?, idleTimeout: TimeAmount) {
        self.answerDeadline = answerDeadline
        self.streamDeadline = streamDeadline
        self.idleTimeout = idleTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        self.answerTimer = context.eventLoop.scheduleTask(deadline: self.answerDeadline) {
            Self.fail(loopBound.value, HTTP1UpstreamError.responseTimeout)
        }
        if let streamDeadline = self.streamDeadline {
            self.streamTimer = context.eventLoop.scheduleTask(deadline: streamDeadline) {
                Self.fail(loopBound.value, HTTP2UpstreamError.deadlineExceeded)
            }
        }
        self.armIdle(context: context, at: .now() + self.idleTimeout)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.cancelTimers()
    }

    private func cancelTimers() {
        self.answerTimer?.cancel()
        self.streamTimer?.cancel()
        self.idleTimer?.cancel()
    }

    private func armIdle(context: ChannelHandlerContext, at deadline: NIODeadline) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        self.idleTimer = context.eventLoop.scheduleTask(deadline: deadline) {
            let (handler, context) = loopBound.value
            let due = handler.lastActivity + handler.idleTimeout
            if due > .now() {
                handler.armIdle(context: context, at: due)
            } else {
                Self.fail(context, HTTP1UpstreamError.readTimeout)
            }
        }
    }

    private static func fail(_ context: ChannelHandlerContext, _ error: any Error) {
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.lastActivity = .now()
        switch self.unwrapInboundIn(data) {
        case .head(let head) where head.status.code >= 200:
            self.answerTimer?.cancel()
        case .end:
            // The idle timer stays while the request side may still be sending.
            self.answerTimer?.cancel()
            self.streamTimer?.cancel()
        default:
            break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        self.lastActivity = .now()
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.cancelTimers()
        context.fireChannelInactive()
    }
}

enum HTTP2UpstreamError: Error, Equatable {
    /// The request's own deadline (gRPC `grpc-timeout`) passed before the exchange ended.
    case deadlineExceeded
    /// The stream was reset or the connection lost before the answer was complete.
    case streamReset
    /// A TLS endpoint did not agree to h2 by ALPN.
    case http2Refused
    /// The endpoint refused the stream unprocessed (REFUSED_STREAM, or a GOAWAY that came as it
    /// was opened): safe to send again.
    case refused
}

/// One request on its own HTTP/2 stream: the request side is written with `write`/`send`/
/// `finish`, the answer read with `answer()` and then the body. Closing (or dropping) it
/// resets the stream if it has not ended.
final class HTTP2UpstreamExchange: @unchecked Sendable {
    let channel: any Channel
    /// Read by one task at a time: `answer()`, then the body's iterator.
    private let inbound: InboundParts<HTTPClientResponsePart>
    /// The answer's trailers, once its body has ended.
    let trailers = ResponseTrailers()

    /// Requests are written straight to the channel (each write's promise is HTTP/2 flow
    /// control's backpressure); the answer is read from `parts`.
    init(_ parts: InboundParts<HTTPClientResponsePart>) {
        self.channel = parts.channel
        self.inbound = parts
    }

    deinit {
        self.channel.close(promise: nil)
    }

    /// Queues a part of the request; `finish` (or `flush`) sends it.
    func write(_ part: HTTPClientRequestPart) {
        self.channel.write(part, promise: nil)
    }

    /// Sends what is written so far (the head) without ending the request: for a body that
    /// comes later.
    func flush() {
        self.channel.flush()
    }

    /// Sends a part of the request body; returns once HTTP/2 flow control let it go.
    func send(_ part: ByteBuffer) async throws {
        try await self.channel.writeAndFlush(HTTPClientRequestPart.body(.byteBuffer(part))).get()
    }

    /// Ends the request (with trailers, if any).
    func finish(trailers: HTTPHeaders?) {
        self.channel.writeAndFlush(HTTPClientRequestPart.end(trailers), promise: nil)
    }

    /// Resets the stream (the client's body failed, or nobody reads the answer).
    func reset() {
        self.channel.close(promise: nil)
    }

    /// Waits for the answer's head (informational ones skipped).
    func answer() async throws -> HTTPResponseHead {
        while true {
            switch try await self.next() {
            case .head(let head):
                if head.status.code >= 200 || head.status == .switchingProtocols { return head }
            case .body, .end:
                throw HTTP1UpstreamError.invalidAnswer
            case nil:
                throw HTTP1UpstreamError.closedBeforeAnswer
            }
        }
    }

    private func next() async throws -> HTTPClientResponsePart? {
        do {
            return try await self.inbound.next()
        } catch let error as HTTP1UpstreamError {
            throw error
        } catch let error as HTTP2UpstreamError {
            throw error
        } catch let error as NIOHTTP2Errors.StreamClosed where error.errorCode == .refusedStream {
            throw HTTP2UpstreamError.refused
        } catch {
            throw HTTP2UpstreamError.streamReset
        }
    }

    /// The next part of the answer's body; nil at its end (trailers then in `trailers`).
    func nextBodyPart() async throws -> ByteBuffer? {
        while true {
            switch try await self.next() {
            case .body(let part):
                if part.readableBytes > 0 { return part }
            case .end(let trailers):
                if let trailers { self.trailers.set(trailers) }
                return nil
            case .head:
                throw HTTP1UpstreamError.invalidAnswer
            case nil:
                throw HTTP1UpstreamError.closedDuringAnswer
            }
        }
    }
}

/// An HTTP/2 answer's body.
struct HTTP2UpstreamBody: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let exchange: HTTP2UpstreamExchange

    func makeAsyncIterator() -> Iterator { Iterator(exchange: self.exchange) }

    struct Iterator: AsyncIteratorProtocol {
        let exchange: HTTP2UpstreamExchange
        var ended = false

        mutating func next() async throws -> ByteBuffer? {
            if self.ended { return nil }
            let part = try await self.exchange.nextBodyPart()
            if part == nil { self.ended = true }
            return part
        }
    }

    func collect(upTo limit: Int) async throws -> ByteBuffer {
        try await self.collectAnswer(upTo: limit)
    }
}
