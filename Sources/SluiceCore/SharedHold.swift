import NIOConcurrencyHelpers
import Synchronization

extension DeliveryLedger {
    /// Budget taken once for a run of one request's events (consecutive slots) that the backend
    /// settles one by one, as Kafka's delivery reports do. Each event completes its own slot at
    /// once; the budget goes back, and the recorder hears of the run (one settlement per
    /// outcome), when the last of them has settled. Per event that leaves one tracker update
    /// and one atomic decrement, instead of a budget release, a recorder call and a clock read.
    public final class SharedHold: Sendable {
        public let held: Held
        let ledger: DeliveryLedger
        private let remaining: Synchronization.Atomic<Int>
        /// Failed events of the run by failure: how many, and their bytes. Touched only on failure.
        fileprivate let failures = NIOLockedValueBox<[DeliveryFailure: (count: Int, bytes: Int)]>([:])

        init(held: Held, ledger: DeliveryLedger) {
            self.held = held
            self.ledger = ledger
            self.remaining = Synchronization.Atomic(held.count)
        }

        /// Settles the event in `slot` (one of the run's) as delivered at `offset` of `partition`:
        /// `settle(slot:bytes:with: .delivered(…))` without building the result.
        public func settleDelivered(slot: Int, partition: Int32, offset: Int64) {
            self.countSettled()
            self.held.tracker.completeDelivered(slot, partition: partition, offset: offset)
        }

        /// Settles the event in `slot` (one of the run's), of `bytes` bytes.
        public func settle(slot: Int, bytes: Int, with result: DeliveryResult) {
            if case .failed(let failure) = result {
                self.failures.withLockedValue { tallies in
                    var tally = tallies[failure, default: (0, 0)]
                    tally.count += 1
                    tally.bytes += bytes
                    tallies[failure] = tally
                }
            }
            self.countSettled()
            self.held.tracker.complete(slot, with: result)
        }

        /// One more of the run settled; the last gives the budget back and tells the recorder.
        /// Called before the slot completes: completing the request's last slot may answer it.
        @inline(__always)
        private func countSettled() {
            if self.remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
                self.ledger.release(self)
            }
        }
    }

    /// Takes budget for `count` events (`bytes` in all, slots from `firstSlot`) if there is
    /// room now and nobody waits; nil otherwise.
    public func tryTakeShared(tracker: DeliveryTracker, firstSlot: Int, count: Int, bytes: Int) -> SharedHold? {
        self.tryTake(tracker: tracker, firstSlot: firstSlot, count: count, bytes: bytes).map { SharedHold(held: $0, ledger: self) }
    }

    /// Takes budget for `count` events, waiting until `deadline` if it must; nil if the deadline
    /// passed first.
    public func takeShared(
        tracker: DeliveryTracker, firstSlot: Int, count: Int, bytes: Int, deadline: ContinuousClock.Instant
    ) async -> SharedHold? {
        await self.take(tracker: tracker, firstSlot: firstSlot, count: count, bytes: bytes, deadline: deadline)
            .map { SharedHold(held: $0, ledger: self) }
    }

    /// The last event of a shared hold has settled: the budget back, the recorder told.
    func release(_ hold: SharedHold) {
        let held = hold.held
        self.budget.release(bytes: held.bytes, events: held.count)
        guard let recorder = self.recorder else { return }
        let failures = hold.failures.withLockedValue { $0 }
        let latency = held.since.map { MonotonicInstant.now - $0 }
        let failed = failures.values.reduce(into: (count: 0, bytes: 0)) { $0.count += $1.count; $0.bytes += $1.bytes }
        if failed.count < held.count {
            recorder.recordSettled(
                sink: self.sink, outcome: .delivered, count: held.count - failed.count, bytes: held.bytes - failed.bytes, latency: latency)
        }
        for (failure, tally) in failures {
            recorder.recordSettled(sink: self.sink, outcome: .failed(failure), count: tally.count, bytes: tally.bytes, latency: latency)
        }
    }
}
