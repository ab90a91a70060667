import NIOConcurrencyHelpers

/// Collects the fate of every event of one request, in request order.
///
/// The request handler reserves one slot per event before handing the events to a
/// sink; the sink completes each slot exactly once, from any thread. `results()`
/// returns when every reserved slot is complete and the tracker is sealed.
///
/// Results are kept in `DeliveryResults`, 13 bytes per event. A tracker that does not record
/// results (`recordsResults: false`) only counts: its memory does not grow with the number of
/// events, for requests nobody waits on (`ack: accepted`).
public final class DeliveryTracker: Sendable {
    private struct State {
        var results = DeliveryResults()
        var reserved = 0
        var pending = 0
        var sealed = false
        var waiter: Waiter?
        /// Set when the deadline passed before anyone waited: the next wait ends at once.
        var expiredWith: DeliveryFailure?
    }

    /// The continuation of the task waiting in `results()`, in a class of its own:
    /// `CheckedContinuation` is a resilient type of the standard library, and held in `State`
    /// directly it gave `State` a layout known only at run time, so every event's completion
    /// reached its fields through metadata lookups and value witnesses.
    private final class Waiter: Sendable {
        let continuation: CheckedContinuation<DeliveryResults, Never>

        init(_ continuation: CheckedContinuation<DeliveryResults, Never>) {
            self.continuation = continuation
        }
    }

    private let state = NIOLockedValueBox(State())
    public let recordsResults: Bool
    private let onFailure: (@Sendable (Int, DeliveryFailure) -> Void)?

    /// - Parameters:
    ///   - recordsResults: keep every event's result for `results()`; false to only count.
    ///   - onFailure: called for every failed event (used when nobody waits for results).
    public init(recordsResults: Bool = true, onFailure: (@Sendable (Int, DeliveryFailure) -> Void)? = nil) {
        self.recordsResults = recordsResults
        self.onFailure = onFailure
    }

    /// Reserves `count` consecutive slots and returns the index of the first.
    public func reserve(_ count: Int) -> Int {
        self.state.withLockedValue { state in
            precondition(!state.sealed, "reserve after seal")
            let first = state.reserved
            if self.recordsResults {
                state.results.append(pendingCount: count)
            }
            state.reserved += count
            state.pending += count
            return first
        }
    }

    /// Records the fate of the event in slot `index`. A second completion of the same slot is
    /// ignored (when results are recorded; a counting tracker trusts sinks to complete once).
    public func complete(_ index: Int, with result: DeliveryResult) {
        if !self.recordsResults {
            self.state.withLockedValue { $0.pending -= 1 }
            if case .failed(let failure) = result { self.onFailure?(index, failure) }
            return
        }
        let finished = self.record(index) { $0.set(index, result) }
        if case .failed(let failure) = result {
            self.onFailure?(index, failure)
        }
        finished?.resume()
    }

    /// `complete(_:with:)` for each slot of `slots`, under one lock: a batch settled as one.
    public func complete(_ slots: Range<Int>, with result: DeliveryResult) {
        guard !slots.isEmpty else { return }
        var finished: Wakeup?
        if self.recordsResults {
            finished = self.record { $0.set(pendingIn: slots, result) }
        } else {
            self.state.withLockedValue { $0.pending -= slots.count }
        }
        if case .failed(let failure) = result, let onFailure = self.onFailure {
            for slot in slots { onFailure(slot, failure) }
        }
        finished?.resume()
    }

    /// `complete(index, with: .delivered(DeliveryReceipt(partition:offset:)))` without building
    /// the result: once per event on a Kafka delivery report's path.
    public func completeDelivered(_ index: Int, partition: Int32, offset: Int64) {
        if !self.recordsResults {
            self.state.withLockedValue { $0.pending -= 1 }
            return
        }
        self.record(index) { $0.setDelivered(index, partition: partition, offset: offset) }?.resume()
    }

    /// The waiter of a tracker whose last slot just completed, and the results to give it. A
    /// struct, not a tuple: the optional tuple this was went through the runtime's generic value
    /// witnesses on every event's completion.
    private struct Wakeup {
        let waiter: Waiter
        let results: DeliveryResults

        func resume() {
            self.waiter.continuation.resume(returning: self.results)
        }
    }

    /// Records slot `index` with `write` if it is still open; the waiter to resume, with the
    /// results, when that was the last open slot of a sealed tracker.
    @inline(__always)
    private func record(_ index: Int, _ write: (inout DeliveryResults) -> Void) -> Wakeup? {
        self.record { results in
            guard results.isPending(index) else { return 0 }
            write(&results)
            return 1
        }
    }

    /// Records results with `write`, which returns how many open slots it closed; the waiter to
    /// resume, with the results, when no open slot is left in a sealed tracker.
    @inline(__always)
    private func record(_ write: (inout DeliveryResults) -> Int) -> Wakeup? {
        self.state.withLockedValue { state in
            state.pending -= write(&state.results)
            guard state.sealed, state.pending == 0, let waiter = state.waiter else { return nil }
            state.waiter = nil
            return Wakeup(waiter: waiter, results: state.results)
        }
    }

    /// Number of slots reserved so far.
    public var count: Int {
        self.state.withLockedValue { $0.reserved }
    }

    /// Marks that no more slots will be reserved.
    public func seal() {
        self.state.withLockedValue { $0.sealed = true }
    }

    /// Waits until every slot is complete or `deadline` passes; slots still open then are
    /// reported as `unsettled`. Requires `seal()` first and a tracker that records results.
    ///
    /// The deadline is kept by `SettleDeadlines` (one sweeper for the process, within its tick
    /// of `deadline`), not by a timer per request: a timer task per request cost a dispatch
    /// timer and a wake-up of libdispatch's manager thread each. `unsettled` is built only if
    /// the deadline passes: its message (a formatted duration) cost ~2,500 instructions, once
    /// per request that waited for its sink.
    public func results(
        deadline: ContinuousClock.Instant, unsettled: @autoclosure @escaping @Sendable () -> DeliveryFailure
    ) async -> DeliveryResults {
        let watch = SettleDeadlines.shared.watch(self, deadline: deadline, unsettled: unsettled)
        defer { SettleDeadlines.shared.forget(watch) }
        return await self.results()
    }

    /// Reports the slots still open as `unsettled` to the waiting `results()` (a deadline passed).
    func expire(with unsettled: DeliveryFailure) {
        let expired: Wakeup? = self.state.withLockedValue { state in
            guard let waiter = state.waiter else {
                state.expiredWith = unsettled
                return nil
            }
            state.waiter = nil
            // A late completion finds no open slot and is ignored; pending stays above zero.
            state.results.settleRemaining(with: unsettled)
            return Wakeup(waiter: waiter, results: state.results)
        }
        expired?.resume()
    }

    /// Waits until every slot is complete; requires `seal()` first and a tracker that records results.
    public func results() async -> DeliveryResults {
        precondition(self.recordsResults, "results() on a counting tracker")
        return await withCheckedContinuation { continuation in
            let ready: DeliveryResults? = self.state.withLockedValue { state in
                precondition(state.sealed, "results() before seal()")
                if state.pending == 0 { return state.results }
                if let unsettled = state.expiredWith {
                    state.results.settleRemaining(with: unsettled)
                    return state.results
                }
                state.waiter = Waiter(continuation)
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}

/// The settle deadlines of the requests waiting for their results, kept by one sweeper task
/// for the whole process: it runs while any deadline is watched, every `tick`, and expires the
/// trackers whose deadline has passed. A deadline is met within one tick after it passes.
final class SettleDeadlines: Sendable {
    static let shared = SettleDeadlines(tick: .milliseconds(100))

    private struct Watched {
        let tracker: DeliveryTracker
        let deadline: ContinuousClock.Instant
        let unsettled: @Sendable () -> DeliveryFailure
    }

    private struct State {
        var watched: [Int: Watched] = [:]
        var nextID = 0
        var sweeping = false
    }

    private let state = NIOLockedValueBox(State())
    private let tick: Duration

    init(tick: Duration) {
        self.tick = tick
    }

    /// Watches `tracker`'s deadline until `forget` is called with the returned id.
    func watch(_ tracker: DeliveryTracker, deadline: ContinuousClock.Instant, unsettled: @escaping @Sendable () -> DeliveryFailure) -> Int {
        let (id, startSweeper) = self.state.withLockedValue { state in
            let id = state.nextID
            state.nextID &+= 1
            state.watched[id] = Watched(tracker: tracker, deadline: deadline, unsettled: unsettled)
            if state.sweeping { return (id, false) }
            state.sweeping = true
            return (id, true)
        }
        if startSweeper { Task.detached { await self.sweep() } }
        return id
    }

    func forget(_ id: Int) {
        self.state.withLockedValue { _ = $0.watched.removeValue(forKey: id) }
    }

    private func sweep() async {
        while true {
            try? await Task.sleep(for: self.tick)
            let now = ContinuousClock.now
            let expired: [Watched]? = self.state.withLockedValue { state in
                if state.watched.isEmpty {
                    state.sweeping = false
                    return nil
                }
                var expired: [Watched] = []
                for (id, watched) in state.watched where watched.deadline <= now {
                    expired.append(watched)
                    state.watched[id] = nil
                }
                return expired
            }
            guard let expired else { return }
            for watched in expired { watched.tracker.expire(with: watched.unsettled()) }
        }
    }
}
