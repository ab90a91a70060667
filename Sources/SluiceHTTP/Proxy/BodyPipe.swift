import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// Hands a request body from the task reading the client to the HTTP client sending it
/// upstream, one part at a time: `send` returns only once the consumer has taken the part, so
/// the client is read no faster than the upstream accepts (and at most one part is held here).
///
/// One consumer. When the consumer goes away (the upstream request ended or failed) `send`
/// returns false and the producer stops reading.
final class BodyPipe: AsyncSequence, Sendable {
    typealias Element = ByteBuffer

    private struct State {
        var part: ByteBuffer?
        var finished = false
        var failure: (any Error)?
        var consumerGone = false
        /// Whether the consumer has asked for anything: before that the upstream has seen no body.
        var started = false
        /// The client's trailers, passed on after the last part.
        var trailers: HTTPHeaders?
        var producer: CheckedContinuation<Bool, Never>?
        var consumer: CheckedContinuation<ByteBuffer?, any Error>?
    }

    private let state = NIOLockedValueBox(State())

    /// Whether the consumer ever asked for a part.
    var started: Bool { self.state.withLockedValue { $0.started } }

    /// Offers one part; true once taken, false if the consumer is gone.
    func send(_ part: ByteBuffer) async -> Bool {
        await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let handoff: (CheckedContinuation<ByteBuffer?, any Error>)? = self.state.withLockedValue { state in
                if state.consumerGone {
                    continuation.resume(returning: false)
                    return nil
                }
                if let consumer = state.consumer {
                    state.consumer = nil
                    continuation.resume(returning: true)
                    return consumer
                }
                state.part = part
                state.producer = continuation
                return nil
            }
            handoff?.resume(returning: part)
        }
    }

    /// The request's trailers, once the body has ended.
    var trailers: HTTPHeaders? { self.state.withLockedValue { $0.trailers } }

    /// The end of the body (or its failure: the upstream request is aborted), with the
    /// request's trailers if it had any.
    func finish(throwing error: (any Error)? = nil, trailers: HTTPHeaders? = nil) {
        let consumer: CheckedContinuation<ByteBuffer?, any Error>? = self.state.withLockedValue { state in
            state.finished = true
            state.trailers = trailers
            state.failure = error
            defer { state.consumer = nil }
            return state.consumer
        }
        if let error { consumer?.resume(throwing: error) } else { consumer?.resume(returning: nil) }
    }

    fileprivate func next() async throws -> ByteBuffer? {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ByteBuffer?, any Error>) in
            let producer: CheckedContinuation<Bool, Never>? = self.state.withLockedValue { state in
                state.started = true
                if let part = state.part {
                    state.part = nil
                    continuation.resume(returning: part)
                    defer { state.producer = nil }
                    return state.producer
                }
                if state.finished {
                    if let failure = state.failure { continuation.resume(throwing: failure) } else { continuation.resume(returning: nil) }
                    return nil
                }
                state.consumer = continuation
                return nil
            }
            producer?.resume(returning: true)
        }
    }

    /// The consumer stopped (or never started and never will): a waiting producer is released.
    func abandon() {
        let producer: CheckedContinuation<Bool, Never>? = self.state.withLockedValue { state in
            state.consumerGone = true
            state.part = nil
            defer { state.producer = nil }
            return state.producer
        }
        producer?.resume(returning: false)
    }

    func makeAsyncIterator() -> Iterator {
        Iterator(pipe: self)
    }

    struct Iterator: AsyncIteratorProtocol {
        fileprivate let token: ConsumerToken

        init(pipe: BodyPipe) {
            self.token = ConsumerToken(pipe: pipe)
        }

        mutating func next() async throws -> ByteBuffer? {
            try await self.token.pipe.next()
        }
    }

    /// Marks the consumer gone when the iterator is dropped, however the consumer ended.
    fileprivate final class ConsumerToken: Sendable {
        let pipe: BodyPipe
        init(pipe: BodyPipe) { self.pipe = pipe }
        deinit { self.pipe.abandon() }
    }
}
