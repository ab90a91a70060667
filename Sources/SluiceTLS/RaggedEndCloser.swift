import NIOCore
import NIOSSL

/// Closes a TLS connection at once when the client's TCP input ends without a close_notify (a
/// "ragged" end: many clients simply close their socket).
///
/// A listener's TLS connections allow half-closure, so that a client that sends its requests and
/// then its close_notify still gets its answers (as a cleartext client does after a FIN). The
/// price: at a ragged end the channel is not closed by the end of input, and a close passing
/// through the TLS handler sends a close_notify and waits up to its shutdown timeout (5 s) for
/// the client's, which cannot come. `Ahead` sits between the socket and the TLS handler, where a
/// close goes straight to the socket; `Behind` sits after the TLS handler and sees its
/// `uncleanShutdown` error, and has `Ahead` close. (What the client asked before that is not
/// answered, as before half-closure was allowed: an unauthenticated end may be a truncation.)
public enum RaggedEndCloser {
    /// The TLS handler between the two closer handlers: `[ahead, tls, behind]`.
    public static func handlers(around tls: NIOSSLServerHandler) -> [any ChannelHandler] {
        let ahead = Ahead()
        return [ahead, tls, Behind(ahead)]
    }

    final class Ahead: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = Any
        private var context: ChannelHandlerContext?

        func handlerAdded(context: ChannelHandlerContext) {
            self.context = context
        }

        func handlerRemoved(context: ChannelHandlerContext) {
            self.context = nil
        }

        func closeSocket() {
            self.context?.close(promise: nil)
        }
    }

    final class Behind: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = Any
        private let ahead: Ahead

        init(_ ahead: Ahead) {
            self.ahead = ahead
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            // Closed first: a handler that closes on the error would start a TLS shutdown.
            if case .uncleanShutdown? = error as? NIOSSLError { self.ahead.closeSocket() }
            context.fireErrorCaught(error)
        }
    }
}
