import NIOCore

/// Tells HTTP/2 with prior knowledge from HTTP/1.x on a cleartext connection by its first
/// bytes: an HTTP/2 client opens with the connection preface `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`.
/// Once decided it configures the pipeline for that protocol, replays what it buffered, and
/// removes itself.
final class HTTPProtocolSniffer<Output: Sendable>: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    enum WireProtocol { case http1, http2 }

    static var preface: [UInt8] { Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) }

    private var buffered: ByteBuffer?
    private let configure: (any Channel, WireProtocol) throws -> Output
    private var promise: EventLoopPromise<Output>?
    private var decided = false

    private let timeout: TimeAmount?
    private var timer: Scheduled<Void>?

    /// `timeout`: a connection that has not shown its protocol by then (no bytes, or a TLS
    /// handshake that does not finish) is closed.
    init(promise: EventLoopPromise<Output>, timeout: TimeAmount? = nil, configure: @escaping (any Channel, WireProtocol) throws -> Output) {
        self.promise = promise
        self.timeout = timeout
        self.configure = configure
    }

    func handlerAdded(context: ChannelHandlerContext) {
        guard let timeout = self.timeout else { return }
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        self.timer = context.eventLoop.scheduleTask(in: timeout) {
            loopBound.value.close(promise: nil)
        }
    }


    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = self.unwrapInboundIn(data)
        if self.buffered == nil {
            self.buffered = incoming
        } else {
            self.buffered!.writeBuffer(&incoming)
        }
        let preface = Self.preface
        let view = self.buffered!.readableBytesView
        let compared = min(view.count, preface.count)
        if !view.prefix(compared).elementsEqual(preface.prefix(compared)) {
            self.decide(context: context, .http1)
        } else if compared == preface.count {
            self.decide(context: context, .http2)
        }
        // Otherwise a prefix of the preface so far: wait for more bytes.
    }

    private func decide(context: ChannelHandlerContext, _ proto: WireProtocol) {
        guard !self.decided else { return }
        self.decided = true
        do {
            let output = try self.configure(context.channel, proto)
            self.promise?.succeed(output)
            self.promise = nil
            let buffered = self.buffered
            self.buffered = nil
            if let buffered {
                context.fireChannelRead(self.wrapInboundOut(buffered))
            }
            context.fireChannelReadComplete()
            context.pipeline.syncOperations.removeHandler(self, promise: nil)
        } catch {
            self.fail(context: context, error)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.promise?.fail(ChannelError.eof)
        self.promise = nil
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Asked to quiesce before the client said anything: nothing is in flight, close.
        if !self.decided, event is ChannelShouldQuiesceEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.fail(context: context, error)
    }

    private func fail(context: ChannelHandlerContext, _ error: any Error) {
        self.promise?.fail(error)
        self.promise = nil
        context.close(promise: nil)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.timer = nil
        self.promise?.fail(ChannelError.ioOnClosedChannel)
        self.promise = nil
    }
}
