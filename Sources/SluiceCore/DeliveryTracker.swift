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
        var waiter: CheckedContinuation<DeliveryResults, Never>?
    }

    private let state = NIOLockedValueBox(State())
    private let recordsResults: Bool
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
        let (waiter, results): (CheckedContinuation<DeliveryResults, Never>?, DeliveryResults) =
            self.state.withLockedValue { state in
                guard state.results.isPending(index) else { return (nil, DeliveryResults()) }
                state.results.set(index, result)
                state.pending -= 1
                if state.sealed, state.pending == 0, let waiter = state.waiter {
                    state.waiter = nil
                    return (waiter, state.results)
                }
                return (nil, DeliveryResults())
            }
        if case .failed(let failure) = result {
            self.onFailure?(index, failure)
        }
        waiter?.resume(returning: results)
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
    public func results(deadline: ContinuousClock.Instant, unsettled: DeliveryFailure) async -> DeliveryResults {
        let timer = Task { [weak self] in
            guard (try? await Task.sleep(until: deadline, clock: .continuous)) != nil, let self else { return }
            let expired: (CheckedContinuation<DeliveryResults, Never>, DeliveryResults)? = self.state.withLockedValue { state in
                guard let waiter = state.waiter else { return nil }
                state.waiter = nil
                // A late completion finds no open slot and is ignored; pending stays above zero.
                state.results.settleRemaining(with: unsettled)
                return (waiter, state.results)
            }
            if let (waiter, results) = expired { waiter.resume(returning: results) }
        }
        defer { timer.cancel() }
        return await self.results()
    }

    /// Waits until every slot is complete; requires `seal()` first and a tracker that records results.
    public func results() async -> DeliveryResults {
        precondition(self.recordsResults, "results() on a counting tracker")
        return await withCheckedContinuation { continuation in
            let ready: DeliveryResults? = self.state.withLockedValue { state in
                precondition(state.sealed, "results() before seal()")
                if state.pending == 0 { return state.results }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}
