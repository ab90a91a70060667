import SluiceCore
import Testing

@Suite struct SharedHoldTests {
    @Test func eachEventCompletesItsSlotAndTheLastGivesTheBudgetBackAndTellsTheRecorderOncePerOutcome() async {
        let recorder = RecordingRecorder()
        let ledger = DeliveryLedger(sink: "s", budget: InFlightBudget(maxBytes: 1000, maxEvents: 10), recorder: recorder)
        let tracker = DeliveryTracker()
        _ = tracker.reserve(4)
        tracker.seal()
        guard let hold = ledger.tryTakeShared(tracker: tracker, firstSlot: 0, count: 4, bytes: 40) else {
            Issue.record("budget refused")
            return
        }
        #expect(ledger.budget.inFlight == (40, 4))
        // Out of order, one failure.
        hold.settle(slot: 2, bytes: 10, with: .delivered(DeliveryReceipt(partition: 0, offset: 12)))
        hold.settle(slot: 0, bytes: 10, with: .failed(.notAttempted))
        hold.settle(slot: 3, bytes: 10, with: .delivered(DeliveryReceipt(partition: 0, offset: 13)))
        #expect(ledger.budget.inFlight == (40, 4), "held until the run's last event settles")
        #expect(recorder.recorded.isEmpty)
        hold.settle(slot: 1, bytes: 10, with: .delivered(DeliveryReceipt(partition: 0, offset: 11)))
        #expect(ledger.budget.inFlight == (0, 0))
        let results = await tracker.results()
        #expect(Array(results) == [
            .failed(.notAttempted), .delivered(DeliveryReceipt(partition: 0, offset: 11)),
            .delivered(DeliveryReceipt(partition: 0, offset: 12)), .delivered(DeliveryReceipt(partition: 0, offset: 13)),
        ])
        let recorded = recorder.recorded
        #expect(recorded.map(\.outcome) == [.delivered, .failed(.notAttempted)])
        #expect(recorded.map(\.count) == [3, 1])
        #expect(recorded.allSatisfy { $0.latency != nil })
    }

    @Test func aRunBeyondTheBudgetIsRefusedUnlessNothingIsInFlight() {
        let ledger = DeliveryLedger(sink: "s", budget: InFlightBudget(maxBytes: 100, maxEvents: 4))
        let tracker = DeliveryTracker()
        _ = tracker.reserve(8)
        guard let first = ledger.tryTakeShared(tracker: tracker, firstSlot: 0, count: 3, bytes: 30) else {
            Issue.record("budget refused a run that fits")
            return
        }
        #expect(ledger.tryTakeShared(tracker: tracker, firstSlot: 3, count: 2, bytes: 20) == nil, "5 events > 4")
        #expect(ledger.tryTakeShared(tracker: tracker, firstSlot: 3, count: 1, bytes: 10) != nil)
        _ = first
    }
}
