import NIOConcurrencyHelpers

/// Something handed out in amounts that callers may wait for: a sink's in-flight bytes and
/// events, an upstream's request slots. Mutated only under the queue's lock.
public protocol FIFOCapacity: Sendable {
    associatedtype Amount: Sendable
    /// Takes `amount` if it fits now; false leaves the capacity unchanged.
    mutating func take(_ amount: Amount) -> Bool
    /// Gives `amount` back.
    mutating func give(_ amount: Amount)
    /// Whether waiters may be let in now (a low watermark can hold them back until enough has
    /// come back, so that waiters resume in bursts). True by default.
    var admitsWaiters: Bool { get }
}

extension FIFOCapacity {
    public var admitsWaiters: Bool { true }
}

/// The one first-come-first-served wait for capacity: a caller takes an amount at once if nobody
/// waits ahead and it fits, or waits in line until it is granted, its deadline passes, or its task
/// is cancelled. Deciding and queueing happen under one lock, so capacity given back meanwhile
/// always reaches a waiter. The line may be bounded (`maxWaiting`): past it a caller is refused
/// at once.
public final class FIFOWaitQueue<Capacity: FIFOCapacity>: Sendable {
    private struct Waiter {
        var id: UInt64
        var amount: Capacity.Amount
        var continuation: CheckedContinuation<Bool, Never>
        var timer: Task<Void, Never>?
    }

    private struct State {
        var capacity: Capacity
        var waiters: [Waiter] = []
        var nextID: UInt64 = 0
    }

    private let state: NIOLockedValueBox<State>

    public init(_ capacity: Capacity) {
        self.state = NIOLockedValueBox(State(capacity: capacity))
    }

    /// Reads (or adjusts) the capacity under the lock.
    public func withCapacity<R>(_ body: (inout Capacity) -> R) -> R {
        self.state.withLockedValue { body(&$0.capacity) }
    }

    /// Callers waiting in line.
    public var waiting: Int {
        self.state.withLockedValue { $0.waiters.count }
    }

    /// Takes `amount` if it fits now and nobody is waiting ahead.
    public func tryTake(_ amount: Capacity.Amount) -> Bool {
        self.state.withLockedValue { state in
            state.waiters.isEmpty && state.capacity.take(amount)
        }
    }

    /// Takes `amount`, waiting in line until `deadline`. False if the deadline passed, the task
    /// was cancelled, or `maxWaiting` callers were already waiting; nothing is taken then.
    public func take(_ amount: Capacity.Amount, deadline: ContinuousClock.Instant, maxWaiting: Int = .max) async -> Bool {
        if self.tryTake(amount) { return true }
        let id = self.state.withLockedValue { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                // nil: now waiting; true/false: answered at once.
                let answer = self.state.withLockedValue { state -> Bool? in
                    if state.waiters.isEmpty, state.capacity.take(amount) { return true }
                    // Checked under the lock: a cancellation handler that already ran found no waiter.
                    if Task.isCancelled || state.waiters.count >= maxWaiting { return false }
                    state.waiters.append(Waiter(id: id, amount: amount, continuation: continuation))
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

    /// Gives `amount` back and lets in, in order, the waiters that now fit.
    public func give(_ amount: Capacity.Amount) {
        let granted: [Waiter] = self.state.withLockedValue { state in
            state.capacity.give(amount)
            return Self.grant(&state)
        }
        Self.resume(granted)
    }

    private static func grant(_ state: inout State) -> [Waiter] {
        var granted: [Waiter] = []
        guard !state.waiters.isEmpty, state.capacity.admitsWaiters else { return granted }
        while let first = state.waiters.first, state.capacity.take(first.amount) {
            granted.append(state.waiters.removeFirst())
        }
        return granted
    }

    private static func resume(_ granted: [Waiter]) {
        for waiter in granted {
            waiter.timer?.cancel()
            waiter.continuation.resume(returning: true)
        }
    }

    private func expire(_ id: UInt64) {
        let (expired, granted): (Waiter?, [Waiter]) = self.state.withLockedValue { state in
            guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return (nil, []) }
            let waiter = state.waiters.remove(at: index)
            // The expired waiter may have been blocking smaller ones behind it.
            return (waiter, Self.grant(&state))
        }
        guard let expired else { return }
        expired.timer?.cancel()
        expired.continuation.resume(returning: false)
        Self.resume(granted)
    }
}
