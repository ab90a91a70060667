import NIOCore
import NIOHTTP1
import SluiceConfig

/// A listener's connection-level limits (see `ListenerConfig`).
public struct ListenerLimits: Sendable {
    public var idleTimeout: Duration
    public var bodyReadTimeout: Duration
    public var maxHeaderBytes: Int
    public var maxConnections: Int
    public var maxConcurrentStreams: Int

    public init(
        idleTimeout: Duration = ListenerConfig.defaultIdleTimeout,
        bodyReadTimeout: Duration = ListenerConfig.defaultBodyReadTimeout,
        maxHeaderBytes: Int = ListenerConfig.defaultMaxHeaderBytes,
        maxConnections: Int = ListenerConfig.defaultMaxConnections,
        maxConcurrentStreams: Int = ListenerConfig.defaultMaxConcurrentStreams
    ) {
        self.idleTimeout = idleTimeout
        self.bodyReadTimeout = bodyReadTimeout
        self.maxHeaderBytes = maxHeaderBytes
        self.maxConnections = maxConnections
        self.maxConcurrentStreams = maxConcurrentStreams
    }

    public init(_ config: ListenerConfig) {
        self.init(
            idleTimeout: config.idleTimeout, bodyReadTimeout: config.bodyReadTimeout, maxHeaderBytes: config.maxHeaderBytes,
            maxConnections: config.maxConnections, maxConcurrentStreams: config.maxConcurrentStreams)
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

/// Answers HTTP/1.1 parse errors with a JSON error and closes: 431 when the request head is
/// larger than `max_header_bytes`, 400 for anything else malformed. (Replaces NIO's
/// HTTPServerProtocolErrorHandler, which answers every parse error with an empty 400.)
final class HTTP1ParseErrorResponder: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var responseInProgress = false
    private let maxHeaderBytes: Int

    init(maxHeaderBytes: Int) {
        self.maxHeaderBytes = maxHeaderBytes
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parseError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        // The decoder closes the connection right after this returns; answer only if no
        // other response has started.
        if !self.responseInProgress {
            let response: HTTPResponse =
                parseError == .headerOverflow
                ? .error(
                    .requestHeaderFieldsTooLarge, code: "headers_too_large",
                    message: "the request head is larger than max_header_bytes (\(self.maxHeaderBytes) bytes)")
                : .error(.badRequest, code: "malformed_request", message: "the request is not valid HTTP/1.1 (\(parseError))")
            var headers = response.headers
            headers.replaceOrAdd(name: "connection", value: "close")
            headers.replaceOrAdd(name: "content-length", value: String(response.body.readableBytes))
            context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: response.status, headers: headers))), promise: nil)
            context.write(self.wrapOutboundOut(.body(.byteBuffer(response.body))), promise: nil)
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        }
        context.fireErrorCaught(error)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch self.unwrapOutboundIn(data) {
        case .head(let head) where head.status.code >= 200:
            self.responseInProgress = true
        case .end:
            self.responseInProgress = false
        default:
            break
        }
        context.write(data, promise: promise)
    }
}

/// Closes a connection (HTTP/1.1) or stream (HTTP/2) whose client sends no body bytes for
/// `timeout` while Sluice is asking for them. Time spent not reading — because a sink's
/// budget is spent, or the request is waiting for acknowledgements — does not count: the
/// timer runs only while a read is outstanding in the middle of a body.
final class BodyReadTimeoutHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let timeout: TimeAmount
    private var inBody = false
    private var timer: Scheduled<Void>?

    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head: self.inBody = true
        case .body: break
        case .end: self.inBody = false
        }
        self.timer?.cancel()
        self.timer = nil
        context.fireChannelRead(data)
    }

    func read(context: ChannelHandlerContext) {
        if self.inBody, self.timer == nil {
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            self.timer = context.eventLoop.scheduleTask(in: self.timeout) {
                loopBound.value.close(promise: nil)
            }
        }
        context.read()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.timer?.cancel()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.timer = nil
        context.fireChannelInactive()
    }
}

struct ConnectionLimitReached: Error {}
