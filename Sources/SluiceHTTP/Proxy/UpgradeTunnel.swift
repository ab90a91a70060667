import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// An upstream connection that answered an HTTP/1.1 `Upgrade` request (a WebSocket handshake)
/// with `101 Switching Protocols`. Once the client has its 101, `attach` joins the client's
/// connection to it byte for byte, on the one event loop both share: each side reads only
/// while the other can write (so a slow reader slows the writer, with nothing buffered past
/// the socket buffers), closing either closes both, and a tunnel quiet both ways for
/// `idleTimeout` is closed.
final class UpgradeTunnel: Sendable {
    private let upstream: any Channel
    /// The upstream side's relay, added when the 101 was read (it holds what the upstream sent
    /// after it until the client is attached).
    private let upstreamRelay: NIOLoopBound<TunnelRelay>
    private let idleTimeout: TimeAmount

    fileprivate init(upstream: any Channel, relay: TunnelRelay, idleTimeout: TimeAmount) {
        self.upstream = upstream
        self.upstreamRelay = NIOLoopBound(relay, eventLoop: upstream.eventLoop)
        self.idleTimeout = idleTimeout
    }

    /// Joins the client's connection (on its event loop, which is the upstream's, after the 101
    /// has been flushed). The client's HTTP handlers are left to the caller to remove: the
    /// relay goes first in the pipeline, so they see nothing more.
    func attach(client: any Channel) throws {
        client.eventLoop.preconditionInEventLoop()
        let relay = TunnelRelay()
        let sync = client.pipeline.syncOperations
        // The relays decide when each side reads (see TunnelRelay), not the handlers left behind.
        try client.syncOptions?.setOption(.autoRead, value: false)
        try sync.addHandler(relay, position: .first)
        try sync.addHandler(IdleStateHandler(allTimeout: self.idleTimeout), position: .first)
        TunnelRelay.join(relay, self.upstreamRelay.value)
    }

    /// Closes the upstream connection (the client never got its 101, or went away first).
    func abandon() {
        self.upstream.close(promise: nil)
    }

    /// Runs `body` once the upstream connection has closed.
    func whenClosed(_ body: @escaping @Sendable () -> Void) {
        self.upstream.closeFuture.whenComplete { _ in body() }
    }

    /// What an `Upgrade` request got from the upstream.
    enum Outcome {
        /// 101: the tunnel, and the upstream's 101 head.
        case switched(HTTPResponseHead, UpgradeTunnel)
        /// Any other answer (its body, up to `maxAnswerBytes`): passed to the client as it is;
        /// the upstream connection is closed.
        case answered(HTTPResponseHead, ByteBuffer)
    }

    struct UpgradeFailed: Error {
        enum Reason { case timeout, answerTooLarge, closed }
        var reason: Reason
    }

    static let maxAnswerBytes = 64 * 1024

    /// Connects to `host:port` on `eventLoop`, sends the upgrade request and reads the answer.
    static func open(
        host: String, port: Int, tls: NIOSSLContext?, head: HTTPRequestHead, on eventLoop: any EventLoop,
        connectTimeout: TimeAmount, answerTimeout: TimeAmount, idleTimeout: TimeAmount
    ) async throws -> Outcome {
        let promise = eventLoop.makePromise(of: Outcome.self)
        let channel: any Channel
        do {
            channel = try await Self.connect(host: host, port: port, tls: tls, on: eventLoop, connectTimeout: connectTimeout) { channel, encoder, decoder in
                UpgradeAnswerReader(promise: promise, httpHandlers: [encoder, decoder], timeout: answerTimeout, idleTimeout: idleTimeout)
            }
        } catch {
            promise.fail(error)
            throw error
        }
        do {
            try await channel.writeAndFlush(HTTPClientRequestPart.head(head)).get()
            try await channel.writeAndFlush(HTTPClientRequestPart.end(nil)).get()
            let outcome = try await promise.futureResult.get()
            if case .answered = outcome { channel.close(promise: nil) }
            return outcome
        } catch {
            channel.close(promise: nil)
            promise.fail(error)
            throw error
        }
    }

    private static func connect(
        host: String, port: Int, tls: NIOSSLContext?, on eventLoop: any EventLoop, connectTimeout: TimeAmount,
        reader: @escaping @Sendable (any Channel, HTTP1RequestEncoder, ByteToMessageHandler<HTTPResponseDecoder>) -> UpgradeAnswerReader
    ) async throws -> any Channel {
        try await ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls {
                        let serverName = host.contains(":") || host.allSatisfy({ $0.isNumber || $0 == "." }) ? nil : host
                        try sync.addHandler(NIOSSLClientHandler(context: tls, serverHostname: serverName))
                    }
                    let encoder = HTTP1RequestEncoder()
                    let decoder = ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .forwardBytes))
                    try sync.addHandler(encoder)
                    try sync.addHandler(decoder)
                    try sync.addHandler(reader(channel, encoder, decoder))
                }
            }
            .connect(toHost: host, port: port).get()
    }
}

/// Reads the answer to an upgrade request. On 101 it puts a relay where the HTTP handlers were
/// (the decoder hands the relay what followed the 101) and steps aside; on any other answer
/// it collects the body.
private final class UpgradeAnswerReader: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart

    private var promise: EventLoopPromise<UpgradeTunnel.Outcome>?
    private let httpHandlers: [any RemovableChannelHandler]
    private let timeout: TimeAmount
    private let idleTimeout: TimeAmount
    private var timer: Scheduled<Void>?
    private var head: HTTPResponseHead?
    private var body = ByteBuffer()

    init(
        promise: EventLoopPromise<UpgradeTunnel.Outcome>, httpHandlers: [any RemovableChannelHandler], timeout: TimeAmount,
        idleTimeout: TimeAmount
    ) {
        self.promise = promise
        self.httpHandlers = httpHandlers
        self.timeout = timeout
        self.idleTimeout = idleTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        self.timer = context.eventLoop.scheduleTask(in: self.timeout) {
            loopBound.value.fail(UpgradeTunnel.UpgradeFailed(reason: .timeout))
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.timer?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body(var part):
            guard self.body.readableBytes + part.readableBytes <= UpgradeTunnel.maxAnswerBytes else {
                self.fail(UpgradeTunnel.UpgradeFailed(reason: .answerTooLarge))
                return
            }
            self.body.writeBuffer(&part)
        case .end:
            guard let head = self.head else { return }
            self.timer?.cancel()
            guard head.status == .switchingProtocols else {
                self.promise?.succeed(.answered(head, self.body))
                self.promise = nil
                return
            }
            // The 101 is whole (as NIO's own client upgrade handler, act on its end): the relay
            // takes the HTTP handlers' place, and the decoder hands it whatever followed the 101
            // as it is removed.
            let relay = TunnelRelay()
            let sync = context.pipeline.syncOperations
            do {
                try sync.addHandler(relay, position: .after(self))
                try context.channel.syncOptions?.setOption(.autoRead, value: false)
                let tunnel = UpgradeTunnel(upstream: context.channel, relay: relay, idleTimeout: self.idleTimeout)
                let promise = self.promise
                self.promise = nil
                sync.removeHandler(context: context, promise: nil)
                for handler in self.httpHandlers { sync.removeHandler(handler, promise: nil) }
                promise?.succeed(.switched(head, tunnel))
            } catch {
                self.fail(error)
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.fail(UpgradeTunnel.UpgradeFailed(reason: .closed))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.fail(error)
        context.close(promise: nil)
    }

    private func fail(_ error: any Error) {
        self.timer?.cancel()
        self.promise?.fail(error)
        self.promise = nil
    }
}

/// One side of a tunnel: what its channel reads is written to the partner's channel. Its
/// channel does not read by itself (autoRead off): the relay asks for the next read once a
/// read has been passed on, and only while the partner's channel is writable — otherwise when
/// it becomes writable again. Until joined it holds what it read and asks for no more.
final class TunnelRelay: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var partner: TunnelRelay?
    private var context: ChannelHandlerContext?
    private var held: [ByteBuffer] = []
    private var readPending = false

    static func join(_ a: TunnelRelay, _ b: TunnelRelay) {
        a.partner = b
        b.partner = a
        a.release()
        b.release()
    }

    /// Passes on what was read before the partner was there, and reads on if it was waiting.
    private func release() {
        guard let partner = self.partner else { return }
        if !self.held.isEmpty {
            for buffer in self.held { partner.write(buffer) }
            self.held = []
            partner.flush()
        }
        if self.context?.channel.isActive == false {
            partner.closeChannel()
        }
        self.readMore()
    }

    /// The next read, if the partner can take what it brings; otherwise once it can.
    private func readMore() {
        guard let context = self.context else { return }
        if let partner = self.partner, partner.isWritable {
            self.readPending = false
            context.read()
        } else {
            self.readPending = true
        }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        self.partner = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = self.unwrapInboundIn(data)
        if let partner = self.partner {
            partner.write(buffer)
        } else {
            self.held.append(buffer)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.partner?.flush()
        self.readMore()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.partner?.closeChannel()
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.partner?.partnerWritabilityChanged()
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func read(context: ChannelHandlerContext) {
        // Reads asked for by handlers further in (none should remain): the same rule.
        self.readMore()
    }

    // MARK: - Called by the partner

    private var isWritable: Bool { self.context?.channel.isWritable ?? false }

    private func write(_ buffer: ByteBuffer) {
        self.context?.write(self.wrapOutboundOut(buffer), promise: nil)
    }

    private func flush() {
        self.context?.flush()
    }

    private func closeChannel() {
        self.context?.close(promise: nil)
    }

    private func partnerWritabilityChanged() {
        guard self.readPending else { return }
        self.readMore()
    }
}
