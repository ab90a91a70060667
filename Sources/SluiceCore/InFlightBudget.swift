import NIOConcurrencyHelpers

/// A sink's in-flight budget: the bytes and events handed to it whose fate is not yet known.
///
/// A sink takes budget before it accepts an event and gives it back when the event is
/// delivered or failed. When the budget is spent, `acquire` waits — so the request that
/// wants to send stops reading its body, and the client is slowed down instead of Sluice
/// buffering. Waiters are served first come, first served; a wait ends at its deadline.
/// An amount larger than the whole budget is let through when nothing else is in flight,
/// so one oversized event cannot wedge a sink.
///
/// Watermarks: once someone has had to wait, waiters are let in only after what is in flight
/// has fallen to half the budget (the low watermark), so reading resumes in bursts instead of
/// flapping on every delivered event.
public final class InFlightBudget: Sendable {
    public let maxBytes: Int
    public let maxEvents: Int

    private struct Waiter {
        var id: UInt64
        var bytes: Int
        var events: Int
        var continuation: CheckedContinuation<Bool, Never>
        var timer: Task<Void, Never>?
    }

    private struct State {
        var bytes = 0
        var events = 0
        var waiters: [Waiter] = []
        var nextID: UInt64 = 0

        func fits(bytes: Int, events: Int, maxBytes: Int, maxEvents: Int) -> Bool {
            (self.bytes == 0 && self.events == 0) || (self.bytes + bytes <= maxBytes && self.events + events <= maxEvents)
        }
    }

    private let state = NIOLockedValueBox(State())

    public init(maxBytes: Int, maxEvents: Int) {
        precondition(maxBytes > 0 && maxEvents > 0, "an in-flight budget must allow something")
        self.maxBytes = maxBytes
        self.maxEvents = maxEvents
    }

    /// Bytes and events currently in flight.
    public var inFlight: (bytes: Int, events: Int) {
        self.state.withLockedValue { ($0.bytes, $0.events) }
    }

    /// Requests waiting for budget.
    public var waiting: Int {
        self.state.withLockedValue { $0.waiters.count }
    }

    /// Takes the amount if it fits now and nobody is waiting ahead.
    public func tryAcquire(bytes: Int, events: Int = 1) -> Bool {
        self.state.withLockedValue { state in
            guard state.waiters.isEmpty, state.fits(bytes: bytes, events: events, maxBytes: self.maxBytes, maxEvents: self.maxEvents) else {
                return false
            }
            state.bytes += bytes
            state.events += events
            return true
        }
    }

    /// Takes the amount, waiting for room until `deadline`. Returns false if the deadline passed
    /// (or the task was cancelled) first; nothing is taken then.
    public func acquire(bytes: Int, events: Int = 1, deadline: ContinuousClock.Instant) async -> Bool {
        if self.tryAcquire(bytes: bytes, events: events) { return true }
        let id = self.state.withLockedValue { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                // nil: now waiting; true/false: answered at once.
                let answer = self.state.withLockedValue { state -> Bool? in
                    if state.waiters.isEmpty, state.fits(bytes: bytes, events: events, maxBytes: self.maxBytes, maxEvents: self.maxEvents) {
                        state.bytes += bytes
                        state.events += events
                        return true
                    }
                    // Checked under the lock: a cancellation handler that already ran found no waiter.
                    if Task.isCancelled { return false }
                    state.waiters.append(Waiter(id: id, bytes: bytes, events: events, continuation: continuation))
                    return nil
                }
                if let answer {
                    continuation.resume(returning: answer)
                    return
                }
                let timer = Task { [weak self] in
                    try? await Task.sleep(until: deadline, clock: .continuous)
                    self?.expire(id)
                }
                let stillWaiting = self.state.withLockedValue { state -> Bool in
                    guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return false }
                    state.waiters[index].timer = timer
                    return true
                }
                if !stillWaiting { timer.cancel() }
            }
        } onCancel: {
            self.expire(id)
        }
    }

    /// Gives back what an event (or batch) took, and lets waiters in that now fit.
    public func release(bytes: Int, events: Int = 1) {
        let granted: [Waiter] = self.state.withLockedValue { state in
            state.bytes -= bytes
            state.events -= events
            assert(state.bytes >= 0 && state.events >= 0, "released more than was acquired")
            var granted: [Waiter] = []
            guard !state.waiters.isEmpty, state.bytes <= self.maxBytes / 2, state.events <= self.maxEvents / 2 else {
                return granted
            }
            while let first = state.waiters.first,
                state.fits(bytes: first.bytes, events: first.events, maxBytes: self.maxBytes, maxEvents: self.maxEvents)
            {
                state.bytes += first.bytes
                state.events += first.events
                granted.append(state.waiters.removeFirst())
            }
            return granted
        }
        for waiter in granted {
            waiter.timer?.cancel()
            waiter.continuation.resume(returning: true)
        }
    }

    private func expire(_ id: UInt64) {
        let waiter: Waiter? = self.state.withLockedValue { state in
            guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return state.waiters.remove(at: index)
        }
        guard let waiter else { return }
        waiter.timer?.cancel()
        waiter.continuation.resume(returning: false)
        // The expired waiter may have been blocking smaller ones behind it.
        self.release(bytes: 0, events: 0)
    }
}
