import NIOCore
import NIOHTTP1
import NIOSSL
import SluiceCore
import SluiceConnections

/// The life of one HTTP/1.1 connection between and around its requests, in one handler (it
/// sees every request and response part, so it is kept to one pipeline step):
///
/// - **Idle timeout**: closes the connection once no request has been in progress for
///   `idleTimeout`. One timer per connection, not one per request: it stays armed while
///   requests come and go, and when it fires it closes the connection only if it has been
///   idle long enough, else it is set again for when that would be.
/// - **Parse errors**: answered with a JSON error, then the connection closes: 431 when the
///   request head is larger than `max_header_bytes`, 400 for anything else malformed (NIO's
///   HTTPServerProtocolErrorHandler would answer every one with an empty 400). One bad request
///   gets exactly one response: when the error comes mid-body (a malformed chunk) the
///   request's handler may still be running and would answer too; once this handler has
///   answered, every later response part is dropped (its write fails). If that request's own
///   response had already begun, nothing is added to it: the connection is closed. A
///   malformed request pipelined behind others still owed an answer is answered after them.
/// - **Graceful close**: when the server quiesces (a drain), an idle connection closes at
///   once and a busy one after its answer, which says `connection: close`. The same when the
///   client half-closes its side after a request (`nc`-style clients): the answer still goes
///   out, then the connection closes.
///
/// Requests are read while an answer is pending (NIO's HTTPServerPipelineHandler stops reading
/// instead, which costs two `epoll_ctl` calls per request): the listener answers them one at a
/// time in order, and what a pipelining client sends ahead waits in the connection's bounded
/// inbound buffer, which stops reading when it is full.
final class HTTP1ConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = IOData

    private let idleTimeout: TimeAmount
    /// Answers become bytes here (NIO's HTTPResponseEncoder is not in the pipeline).
    private var encoding = HTTP1MessageEncoding()
    private let maxHeaderBytes: Int
    private var idleTimer: Scheduled<Void>?
    private var idleSince = NIODeadline.now()
    /// Requests whose head has been read and whose answer has not ended.
    private var inFlight = 0
    /// The last request's head has been read, its end not yet.
    private var requestEndPending = false
    private var responseInProgress = false
    /// A parse error has been answered (or the connection is being closed for one).
    private var failed = false
    /// A malformed request pipelined behind others, answered once they have been.
    private var pendingParseError: HTTPParserError?
    /// Close once the answers owed have gone out (a drain, a half-closed client).
    private var closeWhenAnswered = false
    private var closing = false

    init(idleTimeout: TimeAmount, maxHeaderBytes: Int) {
        self.idleTimeout = idleTimeout
        self.maxHeaderBytes = maxHeaderBytes
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.idleSince = .now()
        self.armIdleTimer(context: context, at: self.idleSince + self.idleTimeout)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.idleTimer?.cancel()
        self.idleTimer = nil
    }

    // MARK: Requests

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.encoding.requestRead(head.method)
            self.inFlight += 1
            self.requestEndPending = true
        case .end:
            self.requestEndPending = false
            if self.closeWhenAnswered, self.inFlight == 0 {
                // Answered early; the rest of the request has now been read.
                context.fireChannelRead(data)
                return self.close(context: context)
            }
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case is ChannelShouldQuiesceEvent:
            self.closeWhenAnswered = true
            if self.inFlight == 0 && !self.requestEndPending { self.close(context: context) }
        case ChannelEvent.inputClosed:
            // The client sends no more: answer what it asked, then close.
            self.closeWhenAnswered = true
            if self.inFlight == 0 { self.close(context: context) }
            context.fireUserInboundEventTriggered(event)
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parseError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        guard !self.failed, self.pendingParseError == nil else { return }
        // Answers owed to requests before the one being read (pipelined ahead of it).
        let earlierAnswersOwed = self.inFlight - (self.requestEndPending ? 1 : 0)
        if earlierAnswersOwed > 0 {
            // Not this request's turn yet: it is answered once those have been.
            self.pendingParseError = parseError
            self.requestEndPending = false
            self.inFlight = earlierAnswersOwed
        } else {
            self.answer(parseError, context: context)
        }
        // The request's handler learns that its body is broken (its read fails).
        context.fireErrorCaught(error)
    }

    private func answer(_ parseError: HTTPParserError, context: ChannelHandlerContext) {
        self.failed = true
        if self.responseInProgress {
            // A response has begun: it cannot be replaced, and the connection cannot be reused.
            return self.close(context: context)
        }
        let response: HTTPResponse =
            parseError == .headerOverflow
            ? .error(.headersTooLarge, message: "the request head is larger than max_header_bytes (\(self.maxHeaderBytes) bytes)")
            : .error(.malformedRequest, message: "the request is not valid HTTP/1.1 (\(parseError))")
        var headers = response.headers
        headers.replaceOrAdd(name: "connection", value: "close")
        headers.replaceOrAdd(name: "content-length", value: String(response.body.readableBytes))
        self.encoding.write(answer: .head(HTTPResponseHead(version: .http1_1, status: response.status, headers: headers)), context: context, promise: nil)
        self.encoding.write(answer: .body(.byteBuffer(response.body)), context: context, promise: nil)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let ended = context.eventLoop.makePromise(of: Void.self)
        self.encoding.write(answer: .end(nil), context: context, promise: ended)
        self.flush(context: context)
        ended.futureResult.whenComplete { _ in
            let (handler, context) = loopBound.value
            handler.close(context: context)
        }
    }

    // MARK: Responses

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard !self.failed else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        let part = self.unwrapOutboundIn(data)
        switch part {
        case .head(var head) where head.status.code >= 200:
            self.responseInProgress = true
            if self.closeWhenAnswered, head.isKeepAlive {
                head.headers.replaceOrAdd(name: "connection", value: "close")
                self.encoding.write(answer: .head(head), context: context, promise: promise)
                return
            }
        case .end:
            self.responseInProgress = false
            self.inFlight -= 1
            if self.inFlight == 0, let parseError = self.pendingParseError {
                self.pendingParseError = nil
                self.encoding.write(answer: part, context: context, promise: promise)
                return self.answer(parseError, context: context)
            }
            if self.inFlight == 0 {
                self.idleSince = .now()
                if self.idleTimer == nil { self.armIdleTimer(context: context, at: self.idleSince + self.idleTimeout) }
                if self.closeWhenAnswered && !self.requestEndPending {
                    let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                    let written = context.eventLoop.makePromise(of: Void.self)
                    self.encoding.write(answer: part, context: context, promise: written)
                    written.futureResult.whenComplete { _ in
                        let (handler, context) = loopBound.value
                        handler.close(context: context)
                    }
                    if let promise { written.futureResult.cascade(to: promise) }
                    return
                }
            }
        default:
            break
        }
        self.encoding.write(answer: part, context: context, promise: promise)
    }

    func flush(context: ChannelHandlerContext) {
        self.encoding.flushHeld(context)
        context.flush()
    }

    // MARK: -

    private func close(context: ChannelHandlerContext) {
        guard !self.closing else { return }
        self.closing = true
        context.close(promise: nil)
    }

    private func armIdleTimer(context: ChannelHandlerContext, at deadline: NIODeadline) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        self.idleTimer = context.eventLoop.scheduleTask(deadline: deadline) {
            let (handler, context) = loopBound.value
            handler.idleTimer = nil
            // Busy: armed again when its last answer ends.
            guard handler.inFlight == 0 else { return }
            let due = handler.idleSince + handler.idleTimeout
            if due <= .now() {
                handler.close(context: context)
            } else {
                handler.armIdleTimer(context: context, at: due)
            }
        }
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
