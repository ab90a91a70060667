@testable import SluiceCore
import Testing

/// The queue both batching sinks (Kinesis, Zerobus) take their batches from.
@Suite struct PendingEntriesTests {
    struct Entry: BatchEntry {
        var held: DeliveryLedger.Held
        var bytes: Int
        var deadline: MonotonicInstant
        /// Non-trivial, as the sinks' entries are (a value-witness copy each).
        var payload: String
    }

    static let tracker = DeliveryTracker()

    static func entries(_ sizes: [Int], deadline: MonotonicInstant) -> [Entry] {
        sizes.enumerated().map { index, size in
            Entry(
                held: DeliveryLedger.Held(tracker: Self.tracker, firstSlot: index, count: 1, bytes: size, since: nil),
                bytes: size, deadline: deadline, payload: "event \(index)")
        }
    }

    @Test func batchesStopAtTheRecordAndByteLimitsButAlwaysTakeOne() {
        var pending = PendingEntries<Entry>()
        #expect(pending.oldestSince == nil)
        pending.append(contentsOf: Self.entries([10, 20, 30, 500, 5], deadline: .now + .seconds(60)))
        #expect(pending.count == 5)
        #expect(pending.bytes == 565)
        #expect(pending.oldestSince != nil)

        // Two records at most.
        #expect(pending.takeBatch(maxRecords: 2, maxBytes: 1_000).map(\.payload) == ["event 0", "event 1"])
        #expect(pending.bytes == 535)
        // 30 fits in 100, 30 + 500 does not.
        #expect(pending.takeBatch(maxRecords: 10, maxBytes: 100).map(\.payload) == ["event 2"])
        // An entry larger than the byte limit still goes, alone.
        #expect(pending.takeBatch(maxRecords: 10, maxBytes: 100).map(\.payload) == ["event 3"])
        #expect(pending.takeBatch(maxRecords: 10, maxBytes: 100).map(\.payload) == ["event 4"])
        #expect(pending.isEmpty)
        #expect(pending.bytes == 0)
        #expect(pending.oldestSince == nil)
        #expect(pending.takeBatch(maxRecords: 10, maxBytes: 100).isEmpty)
    }

    @Test func entriesPastTheirDeadlineGoToExpiredNotIntoTheBatch() {
        var pending = PendingEntries<Entry>()
        let now = MonotonicInstant.now
        pending.append(contentsOf: Self.entries([10, 10], deadline: now - .seconds(1)))
        pending.append(contentsOf: Self.entries([10], deadline: now + .seconds(60)).map { entry in
            var entry = entry
            entry.payload = "fresh"
            return entry
        })
        var expired: [String] = []
        let batch = pending.takeBatch(maxRecords: 10, maxBytes: 1_000, expiringAt: now) { expired.append($0.payload) }
        #expect(expired == ["event 0", "event 1"])
        #expect(batch.map(\.payload) == ["fresh"])
        #expect(pending.isEmpty)
        #expect(pending.bytes == 0)
    }
}
