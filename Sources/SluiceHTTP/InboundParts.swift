import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// The request parts of one HTTP/1.1 connection or HTTP/2 stream, as the task serving it reads them.
typealias RequestParts = InboundParts<HTTPServerRequestPart>

/// What a channel reads (HTTP parts), handed from the channel to the one task that consumes
/// them, with backpressure: once `highWatermark` parts wait unread, the channel stops reading
/// (HTTP/1.1: the socket; HTTP/2: no WINDOW_UPDATE) until the task has taken them down to
/// `lowWatermark`.
///
/// What NIOAsyncChannel's inbound stream did here, without its writer (writes go to the channel
/// directly, see `HTTPServer.write` and `HTTP2UpstreamExchange`): that generic machinery ran
/// unspecialized from this module and cost every request its metadata lookups, and every
/// HTTP/2 stream a producer and a writer it never used (see Benchmarks/README.md, "Instructions
/// per proxied request"). Generic here, it is specialized for each part type it is used with.
final class InboundParts<Part: Sendable>: Sendable {
    let channel: any Channel
    private let highWatermark: Int
    private let lowWatermark: Int
    private let state = NIOLockedValueBox(State())

    private struct State {
        var parts = CircularBuffer<Part>(initialCapacity: 4)
        /// How the parts ended (after the buffered ones): nil for a clean end, else the error.
        var end: (any Error)??
        var waiter: UnsafeContinuation<Part?, any Error>?
        /// A read was held back while the buffer was full: the consumer asks for it again.
        var readHeld = false
    }

    /// What `next` does once it has looked at the state (outside the lock).
    private enum Take {
        case part(Part, readAgain: Bool)
        case ended((any Error)?)
        case wait
    }

    init(channel: any Channel, highWatermark: Int = 8, lowWatermark: Int = 2) {
        precondition(lowWatermark < highWatermark)
        self.channel = channel
        self.highWatermark = highWatermark
        self.lowWatermark = lowWatermark
    }

    /// The next part, nil once the channel has no more (closed, or the client closed its side),
    /// or the error that ended it (after the parts read before it). Throws `CancellationError`
    /// when the waiting task is cancelled (the listener's drain ran out).
    func next() async throws -> Part? {
        switch self.take() {
        case .part(let part, let readAgain):
            if readAgain { self.channel.read() }
            return part
        case .ended(let error):
            if let error { throw error }
            return nil
        case .wait:
            break
        }
        return try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Part?, any Error>) in
                let take = self.state.withLockedValue { state -> Take in
                    let take = Self.take(&state, lowWatermark: self.lowWatermark)
                    if case .wait = take {
                        if Task.isCancelled {
                            return .ended(CancellationError())
                        }
                        state.waiter = continuation
                    }
                    return take
                }
                switch take {
                case .part(let part, let readAgain):
                    if readAgain { self.channel.read() }
                    continuation.resume(returning: part)
                case .ended(let error):
                    if let error { continuation.resume(throwing: error) } else { continuation.resume(returning: nil) }
                case .wait:
                    break
                }
            }
        } onCancel: {
            let waiter = self.state.withLockedValue { state in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(throwing: CancellationError())
        }
    }

    private func take() -> Take {
        self.state.withLockedValue { Self.take(&$0, lowWatermark: self.lowWatermark) }
    }

    private static func take(_ state: inout State, lowWatermark: Int) -> Take {
        if let part = state.parts.popFirst() {
            let readAgain = state.readHeld && state.parts.count <= lowWatermark
            if readAgain { state.readHeld = false }
            return .part(part, readAgain: readAgain)
        }
        if let end = state.end { return .ended(end) }
        return .wait
    }

    // MARK: The channel's side (on its event loop)

    /// A part has been read: to the waiting task, else into the buffer.
    fileprivate func received(_ part: Part) {
        let waiter = self.state.withLockedValue { state -> UnsafeContinuation<Part?, any Error>? in
            guard state.end == nil else { return nil }
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.parts.append(part)
            return nil
        }
        waiter?.resume(returning: part)
    }

    /// Whether the channel may read on (else the read is held until the task catches up).
    fileprivate func mayRead() -> Bool {
        self.state.withLockedValue { state in
            guard state.parts.count >= self.highWatermark else { return true }
            state.readHeld = true
            return false
        }
    }

    /// No part follows (after those buffered): nil for a clean end, else why.
    fileprivate func finish(_ error: (any Error)?) {
        let waiter = self.state.withLockedValue { state -> UnsafeContinuation<Part?, any Error>? in
            guard state.end == nil else { return nil }
            state.end = .some(error)
            defer { state.waiter = nil }
            return state.waiter
        }
        guard let waiter else { return }
        if let error { waiter.resume(throwing: error) } else { waiter.resume(returning: nil) }
    }
}

/// The handler that feeds an `InboundParts`, last in its channel's pipeline: hands each part
/// over and holds reads back while too many wait (writes pass it untouched).
///
/// A protocol with one concrete class per part type rather than a generic class: NIO calls a
/// handler through its protocol witnesses, and a generic class's witnesses run unspecialized
/// (several metadata lookups per part, ~7,000 instructions per proxied request).
protocol InboundPartsReader: ChannelDuplexHandler, RemovableChannelHandler
where InboundIn: Sendable, OutboundIn == Any, OutboundOut == Any {
    var parts: InboundParts<InboundIn> { get }
}

extension InboundPartsReader {
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.parts.received(self.unwrapInboundIn(data))
    }

    func read(context: ChannelHandlerContext) {
        if self.parts.mayRead() { context.read() }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.parts.finish(nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.parts.finish(error)
        context.fireErrorCaught(error)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The peer closed its side (an HTTP/1.1 client's half-close): nothing more will come.
        if case ChannelEvent.inputClosed = event { self.parts.finish(nil) }
        context.fireUserInboundEventTriggered(event)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // Out of the pipeline (the channel has closed): no part follows.
        self.parts.finish(nil)
    }
}

/// Feeds a listener connection's or stream's `RequestParts`.
final class RequestPartsReader: InboundPartsReader {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = Any
    typealias OutboundOut = Any
    let parts: RequestParts

    init(_ parts: RequestParts) {
        self.parts = parts
    }
}

/// Feeds an HTTP/2 upstream stream's answer parts.
final class AnswerPartsReader: InboundPartsReader {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = Any
    typealias OutboundOut = Any
    let parts: InboundParts<HTTPClientResponsePart>

    init(_ parts: InboundParts<HTTPClientResponsePart>) {
        self.parts = parts
    }
}
