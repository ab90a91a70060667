import SluiceCore
import Testing

@Suite struct DeliveryResultsTests {
    static let unsettled = DeliveryFailure.unsettled(sink: "s", after: .seconds(1))

    @Test func everyKindOfReceiptAndFailureReadsBackAsWritten() {
        let written: [DeliveryResult] = [
            .delivered(DeliveryReceipt(partition: 3, offset: 1 << 40)),
            .delivered(DeliveryReceipt(partition: 0, offset: 0)),
            .delivered(DeliveryReceipt(offset: 77)),
            .delivered(DeliveryReceipt()),
            .delivered(DeliveryReceipt(shardID: "shardId-000000000001", sequenceNumber: "49590338271490256608559692538361571095921575989136588898")),
            .delivered(DeliveryReceipt(partition: 1)),
            .failed(.queueFull(sink: "s")),
            .failed(.notAttempted),
            .failed(.queueFull(sink: "s")),
        ]
        let results = DeliveryResults(written)
        #expect(Array(results) == written)
        #expect(results == DeliveryResults(written))
        #expect(results != DeliveryResults(written.reversed()))
    }

    @Test func theSummaryCountsEachDistinctFailureOnce() {
        let results: DeliveryResults = [
            .failed(.queueFull(sink: "a")), .delivered(DeliveryReceipt(offset: 1)), .failed(.notAttempted), .failed(.queueFull(sink: "a")),
            .failed(.queueFull(sink: "b")),
        ]
        let summary = results.summary()
        #expect(summary.delivered == 1)
        #expect(summary.failed == 4)
        #expect(summary.failures.map(\.failure) == [.queueFull(sink: "a"), .notAttempted, .queueFull(sink: "b")])
        #expect(summary.failures.map(\.count) == [2, 1, 1])
        #expect(summary.firstFailure == .queueFull(sink: "a"))
    }

    @Test func storageIsThirteenBytesPerEventWhateverTheReceipt() {
        #expect(DeliveryResults.bytesPerEvent == 13)
    }

    @Test func aTrackerPastItsDeadlineReportsOpenSlotsUnsettledAndIgnoresLateCompletions() async {
        let tracker = DeliveryTracker()
        _ = tracker.reserve(3)
        tracker.complete(1, with: .delivered(DeliveryReceipt(partition: 0, offset: 5)))
        tracker.seal()
        let results = await tracker.results(deadline: .now + .milliseconds(50), unsettled: Self.unsettled)
        #expect(Array(results) == [.failed(Self.unsettled), .delivered(DeliveryReceipt(partition: 0, offset: 5)), .failed(Self.unsettled)])
        // A completion after the answer changes nothing the caller holds, and does not trap.
        tracker.complete(0, with: .delivered(DeliveryReceipt(partition: 0, offset: 4)))
        #expect(results[0] == .failed(Self.unsettled))
    }
}
