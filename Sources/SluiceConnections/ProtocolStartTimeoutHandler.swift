import NIOCore
import NIOSSL

/// Closes a connection that has not shown the first `bytes` bytes of its protocol (the HTTP/2
/// client preface: 24) within `timeout` — a TCP connection that sends nothing, or a TLS
/// handshake that never finishes. Over TLS it sits behind the TLS handler and counts decrypted
/// bytes. Removes itself once the bytes have come.
public final class ProtocolStartTimeoutHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    private let timeout: TimeAmount
    private let bytes: Int
    private var received = 0
    private var timer: Scheduled<Void>?

    public init(timeout: Duration, bytes: Int = 24) {
        self.timeout = TimeAmount(timeout)
        self.bytes = bytes
    }

    /// Adds the handler to an accepted channel: behind its TLS handler if it has one, else first.
    public static func install(on channel: any Channel, timeout: Duration) throws {
        let sync = channel.pipeline.syncOperations
        let handler = ProtocolStartTimeoutHandler(timeout: timeout)
        if let tls = try? sync.handler(type: NIOSSLServerHandler.self) {
            try sync.addHandler(handler, position: .after(tls))
        } else {
            try sync.addHandler(handler, position: .first)
        }
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        self.timer = context.eventLoop.scheduleTask(in: self.timeout) {
            loopBound.value.close(promise: nil)
        }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.timer = nil
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.received += self.unwrapInboundIn(data).readableBytes
        context.fireChannelRead(data)
        if self.received >= self.bytes, self.timer != nil {
            self.timer?.cancel()
            self.timer = nil
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }
}
