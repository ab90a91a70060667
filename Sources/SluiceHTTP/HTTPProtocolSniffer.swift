import NIOCore

/// Tells HTTP/2 with prior knowledge from HTTP/1.x on a cleartext connection by its first
/// bytes: an HTTP/2 client opens with the connection preface `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`.
/// Once decided it configures the pipeline for that protocol, replays what it buffered, and
/// removes itself.
///
/// With `h2cUpgrade` it also reads an HTTP/1.x connection's first request head: an
/// unambiguous `Upgrade: h2c` request without a body (see `H2CUpgradeRequest`) is answered
/// `101 Switching Protocols`, the pipeline becomes HTTP/2, and the request is handed to it as
/// stream 1 right after the client's connection preface (its magic and first SETTINGS frame).
/// Any other head is replayed to HTTP/1.1 as it came.
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

    /// `Upgrade: h2c` is read from heads up to this many bytes (nil: not at all).
    private let h2cUpgrade: H2CUpgradeLimits?
    /// After a 101: stream 1's frames, waiting for the client's preface to pass.
    private var pendingStream1: ByteBuffer?

    struct H2CUpgradeLimits {
        /// Longer heads are left to HTTP/1.1 (which answers 431 past its limit).
        var maxHeadBytes: Int
        /// The HTTP/2 side's SETTINGS_MAX_HEADER_LIST_SIZE.
        var maxHeaderListSize: Int
    }

    /// `timeout`: a connection that has not shown its protocol by then (no bytes, or a TLS
    /// handshake that does not finish) is closed.
    init(
        promise: EventLoopPromise<Output>, timeout: TimeAmount? = nil, h2cUpgrade: H2CUpgradeLimits? = nil,
        configure: @escaping (any Channel, WireProtocol) throws -> Output
    ) {
        self.promise = promise
        self.timeout = timeout
        self.h2cUpgrade = h2cUpgrade
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
        if self.pendingStream1 != nil {
            self.spliceStream1(context: context)
            return
        }
        let preface = Self.preface
        let view = self.buffered!.readableBytesView
        let compared = min(view.count, preface.count)
        if !view.prefix(compared).elementsEqual(preface.prefix(compared)) {
            guard let limits = self.h2cUpgrade else {
                self.decide(context: context, .http1)
                return
            }
            let length: Int
            switch H2CUpgradeRequest.scanHead(view) {
            case .complete(let end): length = end
            case .notUpgrade: return self.decide(context: context, .http1)
            case .incomplete:
                // The head so far: wait for the rest, up to the limit.
                if view.count > limits.maxHeadBytes { self.decide(context: context, .http1) }
                return
            }
            if length <= limits.maxHeadBytes,
                let upgrade = H2CUpgradeRequest(head: view.prefix(length), maxHeaderListSize: limits.maxHeaderListSize)
            {
                self.upgrade(context: context, upgrade, headLength: length)
            } else {
                self.decide(context: context, .http1)
            }
        } else if compared == preface.count {
            self.decide(context: context, .http2)
        }
        // Otherwise a prefix of the preface so far: wait for more bytes.
    }

    /// Answers 101, makes the pipeline HTTP/2, and waits for the client's preface to put
    /// stream 1 after it.
    private func upgrade(context: ChannelHandlerContext, _ request: H2CUpgradeRequest, headLength: Int) {
        guard !self.decided else { return }
        self.decided = true
        self.timer?.cancel()
        self.timer = nil
        self.buffered!.moveReaderIndex(forwardBy: headLength)
        // The 101 goes out before HTTP/2's server preface, which the HTTP/2 handler writes when added.
        context.writeAndFlush(NIOAny(ByteBuffer(string: H2CUpgradeRequest.switchingProtocols)), promise: nil)
        do {
            let output = try self.configure(context.channel, .http2)
            self.promise?.succeed(output)
            self.promise = nil
        } catch {
            self.fail(context: context, error)
            return
        }
        self.pendingStream1 = request.headerFrames()
        self.spliceStream1(context: context)
    }

    /// Once the client's preface (magic, then a SETTINGS frame) is whole: passes it on, then
    /// stream 1, then whatever followed, and steps aside. A client that opens otherwise is
    /// passed on untouched for HTTP/2 to reject.
    private func spliceStream1(context: ChannelHandlerContext) {
        guard var buffered = self.buffered, let stream1 = self.pendingStream1 else { return }
        let magic = Self.preface.count
        let view = buffered.readableBytesView
        let compared = min(view.count, magic)
        var prefaceLength: Int?
        if view.prefix(compared).elementsEqual(Self.preface.prefix(compared)) {
            guard view.count >= magic + 9 else { return }
            let header = Array(view.dropFirst(magic).prefix(9))
            let length = Int(header[0]) << 16 | Int(header[1]) << 8 | Int(header[2])
            if header[3] == 0x4, length <= 16384 {
                guard view.count >= magic + 9 + length else { return }
                prefaceLength = magic + 9 + length
            }
        }
        self.buffered = nil
        self.pendingStream1 = nil
        if let prefaceLength {
            context.fireChannelRead(self.wrapInboundOut(buffered.readSlice(length: prefaceLength)!))
            context.fireChannelRead(self.wrapInboundOut(stream1))
        }
        if buffered.readableBytes > 0 { context.fireChannelRead(self.wrapInboundOut(buffered)) }
        context.fireChannelReadComplete()
        context.pipeline.syncOperations.removeHandler(self, promise: nil)
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
        // Asked to quiesce before the client said anything: nothing is in flight, close. The
        // client's input ended before it showed its protocol (over TLS the channel allows
        // half-closure, so that does not close it by itself): nothing can follow, close.
        if !self.decided, event is ChannelShouldQuiesceEvent {
            context.close(promise: nil)
            return
        }
        if !self.decided, case ChannelEvent.inputClosed = event {
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
