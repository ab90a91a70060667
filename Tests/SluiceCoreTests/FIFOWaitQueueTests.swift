import NIOConcurrencyHelpers
import NIOCore
import SluiceCore
import Testing

/// Slots, as an upstream's circuit breaker counts them.
private struct Slots: FIFOCapacity {
    let max: Int
    var active = 0

    mutating func take(_ amount: Int) -> Bool {
        guard self.active + amount <= self.max else { return false }
        self.active += amount
        return true
    }

    mutating func give(_ amount: Int) {
        self.active -= amount
    }
}

@Suite struct FIFOWaitQueueTests {
    /// How long a waiter here may wait: these tests never let one reach its deadline, so it is
    /// only a bound, and a long one. On CI's two cores, other suites' blocking helpers held the
    /// runner's cooperative threads for over 30 s at the start of a run, and a waiter with a 30 s
    /// deadline left the line before the test gave it its slot.
    static let patience = Duration.seconds(600)

    @Test func waitersAreServedInArrivalOrderAndALongLineRefusesAtOnce() async {
        let queue = FIFOWaitQueue(Slots(max: 1))
        #expect(queue.tryTake(1))
        let first = Task { await queue.take(1, deadline: .now + Self.patience, maxWaiting: 2) }
        #expect(await eventually { queue.waiting == 1 })
        let second = Task { await queue.take(1, deadline: .now + Self.patience, maxWaiting: 2) }
        #expect(await eventually { queue.waiting == 2 })
        #expect(await !queue.take(1, deadline: .now + Self.patience, maxWaiting: 2), "two already wait: refused without waiting")
        queue.give(1)
        #expect(await first.value, "the first in line gets the slot given back")
        #expect(queue.waiting == 1)
        queue.give(1)
        #expect(await second.value)
        #expect(queue.withCapacity { $0.active } == 1)
    }

    @Test func aWaiterThatLeavesTheLineTakesNothingAndUnblocksThoseBehindIt() async {
        let queue = FIFOWaitQueue(Slots(max: 4))
        #expect(queue.tryTake(3))
        // Wants 3 of the 1 left: waits, and holds up the small one behind it (first come, first served).
        let big = Task { await queue.take(3, deadline: .now + Self.patience) }
        #expect(await eventually { queue.waiting == 1 })
        let small = Task { await queue.take(1, deadline: .now + Self.patience) }
        #expect(await eventually { queue.waiting == 2 })
        #expect(queue.withCapacity { $0.active } == 3, "the small one waits behind the big one")
        big.cancel()  // leaves the line as a passed deadline does (both expire the waiter)
        #expect(await !big.value)
        #expect(await small.value, "let in once the big one left the line")
        #expect(queue.withCapacity { $0.active } == 4)
    }

    @Test func aCancelledWaiterLeavesTheLine() async {
        let queue = FIFOWaitQueue(Slots(max: 1))
        #expect(queue.tryTake(1))
        let waiter = Task { await queue.take(1, deadline: .now + Self.patience) }
        #expect(await eventually { queue.waiting == 1 })
        waiter.cancel()
        #expect(await !waiter.value)
        #expect(queue.waiting == 0)
        queue.give(1)
        #expect(queue.withCapacity { $0.active } == 0, "nothing was granted to the cancelled waiter")
    }
}

/// Remembers what a ledger told it.
final class RecordingRecorder: DeliveryRecorder {
    struct Entry: Sendable {
        var sink: String
        var outcome: DeliveryOutcome
        var count: Int
        var latency: Duration?
    }

    private let entries = NIOLockedValueBox<[Entry]>([])
    var recorded: [Entry] { self.entries.withLockedValue { $0 } }

    func recordSettled(sink: String, outcome: DeliveryOutcome, count: Int, bytes: Int, latency: Duration?) {
        self.entries.withLockedValue { $0.append(Entry(sink: sink, outcome: outcome, count: count, latency: latency)) }
    }
}

@Suite struct DeliveryLedgerTests {
    static func event(_ bytes: Int) -> Event { Event(value: ByteBuffer(repeating: 0x61, count: bytes)) }

    @Test func everySettledOrRefusedEventReachesTheTrackerTheBudgetAndTheRecorder() async {
        let recorder = RecordingRecorder()
        let ledger = DeliveryLedger(sink: "s", budget: InFlightBudget(maxBytes: 100, maxEvents: 10), recorder: recorder)
        let tracker = DeliveryTracker()
        _ = tracker.reserve(4)
        tracker.seal()
        guard let one = await ledger.take(tracker: tracker, firstSlot: 0, bytes: 10, deadline: .now + .seconds(1)),
            let batch = await ledger.take(tracker: tracker, firstSlot: 1, count: 2, bytes: 20, deadline: .now + .seconds(1))
        else {
            Issue.record("budget refused")
            return
        }
        #expect(ledger.budget.inFlight == (30, 3))
        ledger.settle(one, with: .delivered(DeliveryReceipt(offset: 7)))
        ledger.settleDelivered(batch) { DeliveryReceipt(offset: 8 + Int64($0)) }
        ledger.refuse(tracker: tracker, slot: 3, with: .queueFull(sink: "s"))
        #expect(ledger.budget.inFlight == (0, 0), "every taken byte and event came back")
        let results = await tracker.results()
        #expect(results == [
            .delivered(DeliveryReceipt(offset: 7)), .delivered(DeliveryReceipt(offset: 8)), .delivered(DeliveryReceipt(offset: 9)),
            .failed(.queueFull(sink: "s")),
        ])
        let recorded = recorder.recorded
        #expect(recorded.map(\.count) == [1, 2, 1])
        #expect(recorded.map(\.outcome) == [.delivered, .delivered, .failed(.queueFull(sink: "s"))])
        #expect(recorded.allSatisfy { $0.sink == "s" })
        #expect(recorded[0].latency != nil && recorded[1].latency != nil, "held events have a latency")
        #expect(recorded[2].latency == nil, "a refused event was never held")
    }

    @Test func holdsSettledTogetherAreReleasedAndRecordedOncePerRunOfConsecutiveSlotsOfOneTracker() async {
        let recorder = RecordingRecorder()
        let ledger = DeliveryLedger(sink: "s", budget: InFlightBudget(maxBytes: 1000, maxEvents: 20), recorder: recorder)
        let first = DeliveryTracker()
        let second = DeliveryTracker()
        _ = first.reserve(6)
        _ = second.reserve(2)
        first.seal()
        second.seal()
        // first 0,1,2 | second 0,1 | first 4 (slot 3 skipped: a break in the run) | first 5
        let order: [(DeliveryTracker, Int)] = [(first, 0), (first, 1), (first, 2), (second, 0), (second, 1), (first, 4), (first, 5)]
        var holds: [DeliveryLedger.Held] = []
        for (tracker, slot) in order {
            guard let held = ledger.tryTake(tracker: tracker, firstSlot: slot, bytes: 10 + slot) else {
                Issue.record("budget refused")
                return
            }
            holds.append(held)
        }
        #expect(ledger.budget.inFlight == (83, 7))
        ledger.settle(holds, with: .delivered(DeliveryReceipt()))
        #expect(ledger.budget.inFlight == (0, 0), "every run gave its bytes and events back")
        #expect(recorder.recorded.map(\.count) == [3, 2, 2], "one record per run")
        #expect(recorder.recorded.allSatisfy { $0.outcome == .delivered && $0.latency != nil })
        ledger.refuse(tracker: first, slot: 3, with: .notAttempted)
        #expect(await second.results() == [.delivered(DeliveryReceipt()), .delivered(DeliveryReceipt())])
        #expect(await first.results() == [
            .delivered(DeliveryReceipt()), .delivered(DeliveryReceipt()), .delivered(DeliveryReceipt()), .failed(.notAttempted),
            .delivered(DeliveryReceipt()), .delivered(DeliveryReceipt()),
        ])
    }

    @Test func holdsJoinOnlyWhenTheyContinueTheSameTrackersSlots() {
        let ledger = DeliveryLedger(sink: "s", budget: InFlightBudget(maxBytes: 1000, maxEvents: 20), recorder: RecordingRecorder())
        let tracker = DeliveryTracker()
        _ = tracker.reserve(8)
        func take(_ slot: Int, count: Int = 1, tracker: DeliveryTracker = tracker) -> DeliveryLedger.Held {
            ledger.tryTake(tracker: tracker, firstSlot: slot, count: count, bytes: 10 * count)!
        }
        let first = take(3, count: 2)
        let next = take(5)
        let joined = first.joined(with: next)
        #expect(joined?.firstSlot == 3 && joined?.count == 3 && joined?.bytes == 30)
        #expect(joined?.since != nil && joined?.since == first.since, "a run is timed from its earliest take")
        // A gap, an overlap, the order reversed, another request's tracker: no run.
        #expect(first.joined(with: take(6)) == nil)
        #expect(first.joined(with: take(4)) == nil)
        #expect(next.joined(with: first) == nil)
        let other = DeliveryTracker()
        _ = other.reserve(8)
        #expect(first.joined(with: take(5, tracker: other)) == nil)
    }

    @Test func admitRefusesWhatHasNoBudgetByTheDeadlineAndHandsTheRestInChunks() async {
        struct Entry: HoldingEntry {
            var held: DeliveryLedger.Held
        }
        let recorder = RecordingRecorder()
        let ledger = DeliveryLedger(sink: "s", budget: InFlightBudget(maxBytes: 30, maxEvents: 10), recorder: recorder)
        let tracker = DeliveryTracker()
        let first = tracker.reserve(5)
        tracker.seal()
        var handed: [[Int]] = []
        var kept: [Entry] = []
        let queued = await ledger.admit(
            (0..<5).map { _ in Self.event(10) }, tracker: tracker, firstIndex: first, deadline: .now + .milliseconds(20), chunk: 2
        ) { slot, _, held in
            Entry(held: held)
        } hand: { entries in
            handed.append(entries.map(\.held.firstSlot))
            kept += entries
        }
        #expect(queued == 3, "30 bytes of budget: three events of 10")
        #expect(handed == [[0, 1], [2]], "in chunks, and what it had before the wait")
        for entry in kept { ledger.settle(entry.held, with: .delivered(DeliveryReceipt())) }
        let results = await tracker.results()
        #expect(results[3] == .failed(.queueFull(sink: "s")) && results[4] == .failed(.queueFull(sink: "s")))
        #expect(ledger.budget.inFlight == (0, 0))
        #expect(recorder.recorded.reduce(0) { $0 + $1.count } == 5, "the recorder saw all five")
    }
}
