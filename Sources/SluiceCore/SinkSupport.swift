import NIOConcurrencyHelpers

// Pieces the batching sinks (Kinesis, Zerobus) share.

/// Runs `body`, waiting at most `limit`: true if it finished in time. On time-out the caller goes
/// on while `body` keeps running (a drain that waits on continuations cannot be cancelled; the
/// caller then fails what is left, which lets it finish).
public func finishes(within limit: Duration, _ body: @escaping @Sendable () async -> Void) async -> Bool {
    let answered = NIOLockedValueBox(false)
    return await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
        @Sendable func answer(_ value: Bool) {
            let first = answered.withLockedValue { answered in
                defer { answered = true }
                return !answered
            }
            if first { continuation.resume(returning: value) }
        }
        let timer = Task {
            try? await Task.sleep(for: limit)
            answer(false)
        }
        Task {
            await body()
            timer.cancel()
            answer(true)
        }
    }
}

/// Says whether a message is due: at most once per `interval` for each key (for logging a
/// repeated failure without flooding the log).
public final class LogThrottle: Sendable {
    private let interval: Duration
    private let last = NIOLockedValueBox<[String: ContinuousClock.Instant]>([:])

    public init(interval: Duration = .seconds(60)) {
        self.interval = interval
    }

    public func isDue(_ key: String) -> Bool {
        let now = ContinuousClock.now
        return self.last.withLockedValue { last in
            if let previous = last[key], now - previous < self.interval { return false }
            last[key] = now
            return true
        }
    }
}

/// A sink's workers, one per destination (Kinesis stream pumps, Zerobus table streams): made on
/// demand, at most `limit` at once, forgotten when they retire, none made after `close()`.
public final class WorkerRegistry<Worker: AnyObject & Sendable>: Sendable {
    private struct State: Sendable {
        var workers: [String: Worker] = [:]
        var closed = false
    }
    private let state = NIOLockedValueBox(State())
    public let limit: Int

    public init(limit: Int) {
        self.limit = limit
    }

    public var isClosed: Bool { self.state.withLockedValue { $0.closed } }

    /// Up to `count` of the current workers.
    public func some(_ count: Int) -> [Worker] {
        self.state.withLockedValue { Array($0.workers.values.prefix(count)) }
    }

    /// The destination's worker; `make` makes (and starts) one if there is none. Nil when closed
    /// or at the limit.
    public func worker(for key: String, make: (String) -> Worker) -> Worker? {
        self.state.withLockedValue { state in
            guard !state.closed else { return nil }
            if let worker = state.workers[key] { return worker }
            guard state.workers.count < self.limit else { return nil }
            let worker = make(key)
            state.workers[key] = worker
            return worker
        }
    }

    /// Forgets `worker` if it is still the one for `key`; true if it was.
    @discardableResult
    public func retire(_ worker: Worker, key: String) -> Bool {
        self.state.withLockedValue { state in
            guard state.workers[key] === worker else { return false }
            state.workers[key] = nil
            return true
        }
    }

    /// Makes no more workers; returns the current ones.
    public func close() -> [Worker] {
        self.state.withLockedValue { state in
            state.closed = true
            return Array(state.workers.values)
        }
    }
}
