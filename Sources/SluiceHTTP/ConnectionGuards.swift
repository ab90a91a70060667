import NIOCore
import NIOHTTP1
import NIOSSL
import SluiceCore
import SluiceConnections

/// Answers HTTP/1.1 parse errors with a JSON error and closes: 431 when the request head is
/// larger than `max_header_bytes`, 400 for anything else malformed. (Replaces NIO's
/// HTTPServerProtocolErrorHandler, which answers every parse error with an empty 400.)
///
/// One bad request gets exactly one response: when the error comes mid-body (a malformed chunk)
/// the handler of that request may still be running and would answer too; once this handler has
/// answered, every later response part is dropped (its write fails), and the connection closes
/// as soon as the answer is flushed. If the handler's own response had already begun, nothing
/// is added to it: the connection is closed.
final class HTTP1ParseErrorResponder: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var responseInProgress = false
    /// A parse error has been answered (or the connection is being closed for one).
    private var failed = false
    private let maxHeaderBytes: Int

    init(maxHeaderBytes: Int) {
        self.maxHeaderBytes = maxHeaderBytes
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parseError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        guard !self.failed else { return }
        self.failed = true
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        if self.responseInProgress {
            // A response has begun: it cannot be replaced, and the connection cannot be reused.
            context.close(promise: nil)
        } else {
            let response: HTTPResponse =
                parseError == .headerOverflow
                ? .error(
                    .headersTooLarge,
                    message: "the request head is larger than max_header_bytes (\(self.maxHeaderBytes) bytes)")
                : .error(.malformedRequest, message: "the request is not valid HTTP/1.1 (\(parseError))")
            var headers = response.headers
            headers.replaceOrAdd(name: "connection", value: "close")
            headers.replaceOrAdd(name: "content-length", value: String(response.body.readableBytes))
            context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: response.status, headers: headers))), promise: nil)
            context.write(self.wrapOutboundOut(.body(.byteBuffer(response.body))), promise: nil)
            context.writeAndFlush(self.wrapOutboundOut(.end(nil))).whenComplete { _ in
                loopBound.value.close(promise: nil)
            }
        }
        // The request's handler learns that its body is broken (its read fails).
        context.fireErrorCaught(error)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard !self.failed else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
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

/// Slow-body protection for one connection (HTTP/1.1) or stream (HTTP/2): closes it when the
/// client sends no body bytes for `stallTimeout`, or when, after `rateGrace` of waiting, it has
/// averaged less than `minRate` bytes per second. Only time a read is outstanding mid-body
/// counts: while Sluice itself is not reading (a sink's budget is spent, or the request waits
/// for acknowledgements) the client is not judged.
final class BodyReadTimeoutHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let stallTimeout: TimeAmount
    private let minRate: Int
    private let rateGrace: TimeAmount
    private var inBody = false
    private var timer: Scheduled<Void>?
    /// When the outstanding read was asked for, if one is.
    private var readAskedAt: NIODeadline?
    private var waited = TimeAmount.zero
    private var received = 0

    init(stallTimeout: TimeAmount, minRate: Int, rateGrace: TimeAmount) {
        self.stallTimeout = stallTimeout
        self.minRate = minRate
        self.rateGrace = rateGrace
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = self.unwrapInboundIn(data)
        switch part {
        case .head:
            self.inBody = true
            self.waited = .zero
            self.received = 0
        case .body(let buffer):
            self.received += buffer.readableBytes
        case .end:
            self.inBody = false
        }
        self.timer?.cancel()
        self.timer = nil
        if let asked = self.readAskedAt {
            self.waited = self.waited + (NIODeadline.now() - asked)
            self.readAskedAt = nil
        }
        if self.inBody, self.minRate > 0, self.waited > self.rateGrace {
            let seconds = Double(self.waited.nanoseconds) / 1e9
            if Double(self.received) / seconds < Double(self.minRate) {
                context.close(promise: nil)
                return
            }
        }
        context.fireChannelRead(data)
    }

    func read(context: ChannelHandlerContext) {
        if self.inBody {
            if self.readAskedAt == nil { self.readAskedAt = .now() }
            if self.timer == nil {
                let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
                self.timer = context.eventLoop.scheduleTask(in: self.stallTimeout) {
                    loopBound.value.close(promise: nil)
                }
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
