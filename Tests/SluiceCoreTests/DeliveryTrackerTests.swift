import NIOConcurrencyHelpers
import SluiceCore
import Testing

@Suite struct DeliveryTrackerTests {
    @Test func returnsResultsInRequestOrderWhateverTheCompletionOrder() async {
        let tracker = DeliveryTracker()
        let first = tracker.reserve(3)
        #expect(first == 0)
        tracker.complete(2, with: .delivered(DeliveryReceipt(partition: 0, offset: 12)))
        tracker.complete(0, with: .delivered(DeliveryReceipt(partition: 0, offset: 10)))
        tracker.seal()
        let waiter = Task { await tracker.results() }
        tracker.complete(1, with: .failed(.queueFull(sink: "s")))
        let results = await waiter.value
        #expect(results.count == 3)
        #expect(results[0] == .delivered(DeliveryReceipt(partition: 0, offset: 10)))
        #expect(results[1] == .failed(.queueFull(sink: "s")))
        #expect(results[2] == .delivered(DeliveryReceipt(partition: 0, offset: 12)))
    }

    @Test func ignoresASecondCompletionOfTheSameSlot() async {
        let tracker = DeliveryTracker()
        _ = tracker.reserve(1)
        tracker.complete(0, with: .delivered(DeliveryReceipt(offset: 1)))
        tracker.complete(0, with: .failed(.notAttempted))
        tracker.seal()
        #expect(await tracker.results() == [.delivered(DeliveryReceipt(offset: 1))])
    }

    @Test func aRangeCompletesItsOpenSlotsUnderOneResultAndKeepsTheFateOfSettledOnes() async {
        let tracker = DeliveryTracker()
        _ = tracker.reserve(6)
        tracker.seal()
        tracker.complete(1, with: .delivered(DeliveryReceipt(partition: 2, offset: 9)))
        let waiter = Task { await tracker.results() }
        tracker.complete(0..<3, with: .failed(.queueFull(sink: "s")))
        tracker.complete(3..<3, with: .failed(.notAttempted))
        tracker.complete(3..<6, with: .delivered(DeliveryReceipt(offset: 4)))
        let results = await waiter.value
        #expect(Array(results) == [
            .failed(.queueFull(sink: "s")), .delivered(DeliveryReceipt(partition: 2, offset: 9)), .failed(.queueFull(sink: "s")),
            .delivered(DeliveryReceipt(offset: 4)), .delivered(DeliveryReceipt(offset: 4)), .delivered(DeliveryReceipt(offset: 4)),
        ])
        #expect(results.summary().delivered == 4)
    }

    @Test func aCountingTrackerTellsTheFailureCallbackOfEverySlotOfAFailedRange() {
        let failed = NIOLockedValueBox<[Int]>([])
        let tracker = DeliveryTracker(recordsResults: false, onFailure: { slot, _ in failed.withLockedValue { $0.append(slot) } })
        _ = tracker.reserve(5)
        tracker.complete(0..<2, with: .delivered(DeliveryReceipt()))
        tracker.complete(2..<5, with: .failed(.notAttempted))
        #expect(failed.withLockedValue { $0 } == [2, 3, 4])
    }

    @Test func reportsEveryFailureToTheFailureCallback() async {
        let failures = Counter()
        let tracker = DeliveryTracker(onFailure: { _, _ in failures.increment() })
        _ = tracker.reserve(4)
        for i in 0..<4 {
            tracker.complete(i, with: i.isMultiple(of: 2) ? .failed(.notAttempted) : .delivered(DeliveryReceipt()))
        }
        tracker.seal()
        _ = await tracker.results()
        #expect(failures.value == 2)
    }

    @Test func aCountingTrackerKeepsNothingPerEventButStillReportsFailures() {
        let failures = Counter()
        let tracker = DeliveryTracker(recordsResults: false, onFailure: { _, _ in failures.increment() })
        #expect(tracker.reserve(1000) == 0)
        #expect(tracker.reserve(5) == 1000)
        for i in 0..<1005 {
            tracker.complete(i, with: i == 7 ? .failed(.notAttempted) : .delivered(DeliveryReceipt()))
        }
        #expect(tracker.count == 1005)
        #expect(failures.value == 1)
    }

    @Test func stopsWaitingAtTheDeadlineAndReportsOpenSlotsAsUnsettled() async {
        let tracker = DeliveryTracker()
        _ = tracker.reserve(2)
        tracker.complete(0, with: .delivered(DeliveryReceipt(offset: 1)))
        tracker.seal()
        let unsettled = DeliveryFailure.unsettled(sink: "s", after: .milliseconds(50))
        let results = await tracker.results(deadline: .now + .milliseconds(50), unsettled: unsettled)
        #expect(results == [.delivered(DeliveryReceipt(offset: 1)), .failed(unsettled)])
        tracker.complete(1, with: .delivered(DeliveryReceipt(offset: 2)))  // a late report is harmless
    }

    @Test func aDeadlineAlreadyPastEndsTheWaitWhicheverComesFirst() async {
        // The sweeper may expire the tracker before its waiter is registered, or after.
        for _ in 0..<10 {
            let tracker = DeliveryTracker()
            _ = tracker.reserve(1)
            tracker.seal()
            let results = await tracker.results(deadline: .now - .seconds(1), unsettled: .notAttempted)
            #expect(results == [.failed(.notAttempted)])
        }
    }

    @Test func oneSweeperKeepsTheDeadlinesOfManyWaits() async {
        // Settled requests are forgotten; only the open ones expire, each with its own failure.
        await withTaskGroup(of: (Int, DeliveryResults).self) { group in
            for index in 0..<200 {
                group.addTask {
                    let tracker = DeliveryTracker()
                    _ = tracker.reserve(1)
                    tracker.seal()
                    if index % 2 == 0 { tracker.complete(0, with: .delivered(DeliveryReceipt(offset: Int64(index)))) }
                    let failure = DeliveryFailure(code: "late_\(index)", message: "m", isRetryable: true)
                    return (index, await tracker.results(deadline: .now + .milliseconds(20), unsettled: failure))
                }
            }
            for await (index, results) in group {
                let expected: DeliveryResult =
                    index % 2 == 0
                    ? .delivered(DeliveryReceipt(offset: Int64(index))) : .failed(DeliveryFailure(code: "late_\(index)", message: "m", isRetryable: true))
                #expect(results == [expected])
            }
        }
    }

    @Test func sealedEmptyTrackerReturnsAtOnce() async {
        let tracker = DeliveryTracker()
        tracker.seal()
        #expect(await tracker.results().isEmpty)
    }

    @Test func failuresMapRetryableToServiceUnavailable() {
        #expect(DeliveryFailure(code: "x", message: "m", isRetryable: true).httpStatus == 503)
        #expect(DeliveryFailure(code: "x", message: "m", isRetryable: false).httpStatus == 422)
        #expect(DeliveryFailure(code: "x", message: "m", isRetryable: false, httpStatus: 413).httpStatus == 413)
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLockLike()
    private var count = 0
    func increment() { self.lock.withLock { self.count += 1 } }
    var value: Int { self.lock.withLock { self.count } }
}

import Foundation
typealias NSLockLike = NSLock
