// The least an HTTP/1.1 reverse proxy built on SwiftNIO's own pieces can cost: a reference for
// Benchmarks/proxy-instructions.sh, not a product. It has no gateway in it at all — no routes,
// policies, header rewrites, retries, timeouts, metrics, pooling across client connections or
// flow control — only what every NIO proxy pays for: NIO's event loop, channels and pipelines,
// its HTTP/1.1 decoders (llhttp) and encoders on both sides, and one handler per side that hands
// each part across. Each client connection gets its own upstream connection on its own event
// loop, opened at its first request; requests are forwarded as they came, one at a time.
//
//   sluice-reference-proxy LISTEN_PORT UPSTREAM_PORT [THREADS]   (127.0.0.1 both)
import NIOCore
import NIOHTTP1
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// The client's side: forwards each request part to the upstream connection (buffered until
/// that connection is open) and writes the answer's parts the upstream side hands back.
final class ClientSideHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let upstreamPort: Int
    private var context: ChannelHandlerContext?
    private var upstream: (any Channel)?
    private var connecting = false
    private var waiting: [HTTPClientRequestPart] = []

    init(upstreamPort: Int) {
        self.upstreamPort = upstreamPort
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part: HTTPClientRequestPart =
            switch self.unwrapInboundIn(data) {
            case .head(let head): .head(head)
            case .body(let bytes): .body(.byteBuffer(bytes))
            case .end(let trailers): .end(trailers)
            }
        guard let upstream = self.upstream else {
            self.waiting.append(part)
            if !self.connecting { self.connect(context: context) }
            return
        }
        if case .end = part {
            upstream.writeAndFlush(part, promise: nil)
        } else {
            upstream.write(part, promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.upstream?.close(promise: nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// An answer's part from the upstream side (on this loop).
    func answer(_ part: HTTPClientResponsePart) {
        guard let context = self.context else { return }
        switch part {
        case .head(let head):
            context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: head.status, headers: head.headers))), promise: nil)
        case .body(let bytes):
            context.write(self.wrapOutboundOut(.body(.byteBuffer(bytes))), promise: nil)
        case .end(let trailers):
            context.writeAndFlush(self.wrapOutboundOut(.end(trailers)), promise: nil)
        }
    }

    func upstreamClosed() {
        self.context?.close(promise: nil)
    }

    private func connect(context: ChannelHandlerContext) {
        self.connecting = true
        let me = NIOLoopBound(self, eventLoop: context.eventLoop)
        ClientBootstrap(group: context.eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(UpstreamSideHandler(client: me.value))
                }
            }
            .connect(host: "127.0.0.1", port: self.upstreamPort)
            .whenComplete { result in
                let handler = me.value
                switch result {
                case .success(let channel):
                    handler.upstream = channel
                    for part in handler.waiting { channel.write(part, promise: nil) }
                    handler.waiting = []
                    channel.flush()
                case .failure:
                    handler.context?.close(promise: nil)
                }
            }
    }
}

/// The upstream's side: hands each answer part to the client's side.
final class UpstreamSideHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let client: ClientSideHandler

    init(client: ClientSideHandler) {
        self.client = client
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.client.answer(self.unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.client.upstreamClosed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

let arguments = CommandLine.arguments
guard arguments.count >= 3, let listenPort = Int(arguments[1]), let upstreamPort = Int(arguments[2]) else {
    print("usage: sluice-reference-proxy LISTEN_PORT UPSTREAM_PORT [THREADS]")
    exit(2)
}
let threads = arguments.count > 3 ? Int(arguments[3]) ?? System.coreCount : System.coreCount
let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
let server = try ServerBootstrap(group: group)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: false)
            try channel.pipeline.syncOperations.addHandler(ClientSideHandler(upstreamPort: upstreamPort))
        }
    }
    .bind(host: "127.0.0.1", port: listenPort)
    .wait()
print("sluice-reference-proxy: 127.0.0.1:\(listenPort) -> 127.0.0.1:\(upstreamPort), \(threads) threads")
try server.closeFuture.wait()
