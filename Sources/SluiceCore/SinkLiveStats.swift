import NIOConcurrencyHelpers
import Synchronization

/// A sink's running totals for operators (`GET /sinks/{name}`, `/stats`, the console and
/// `sluice top`), kept beside the Prometheus series whether or not metrics are exported:
/// events and bytes delivered, failures by code, retries, batch sizes, and ack latencies in a
/// fixed-bucket histogram. Lock-free on the delivery path (relaxed atomic adds); a reader
/// takes a `Snapshot` and computes rates and percentiles from two of them.
public final class SinkLiveStats: DeliveryRecorder, @unchecked Sendable {
    /// Upper bounds of the latency buckets, in microseconds: 50 µs × 1.25^k, up to about a
    /// minute; a last bucket takes everything longer.
    public static let latencyBounds: [Int64] = (0..<64).map { Int64((50.0 * pow125($0)).rounded()) }
    /// Upper bounds of the batch size buckets: powers of two up to 65,536.
    public static let batchBounds: [Int64] = (0...16).map { Int64(1) << $0 }

    private let delivered = Synchronization.Atomic<Int>(0)
    private let deliveredBytes = Synchronization.Atomic<Int>(0)
    private let failedTotal = Synchronization.Atomic<Int>(0)
    private let retries = Synchronization.Atomic<Int>(0)
    private let batches = Synchronization.Atomic<Int>(0)
    private let batchedEvents = Synchronization.Atomic<Int>(0)
    private let latencyCounts: UnsafeMutablePointer<Synchronization.Atomic<Int>>
    private let batchCounts: UnsafeMutablePointer<Synchronization.Atomic<Int>>
    private let failedByCode = NIOLockedValueBox<[String: Int]>([:])
    /// Whether the ledger should time events (the latency histogram) at all.
    public let wantsLatency: Bool

    public init(measuresLatency: Bool = true) {
        self.wantsLatency = measuresLatency
        self.latencyCounts = .allocate(capacity: Self.latencyBounds.count + 1)
        for index in 0...Self.latencyBounds.count { (self.latencyCounts + index).initialize(to: Synchronization.Atomic(0)) }
        self.batchCounts = .allocate(capacity: Self.batchBounds.count + 1)
        for index in 0...Self.batchBounds.count { (self.batchCounts + index).initialize(to: Synchronization.Atomic(0)) }
    }

    deinit {
        self.latencyCounts.deinitialize(count: Self.latencyBounds.count + 1)
        self.latencyCounts.deallocate()
        self.batchCounts.deinitialize(count: Self.batchBounds.count + 1)
        self.batchCounts.deallocate()
    }

    public func recordSettled(sink: String, outcome: DeliveryOutcome, count: Int, bytes: Int, latency: Duration?) {
        switch outcome {
        case .delivered:
            self.delivered.wrappingAdd(count, ordering: .relaxed)
            self.deliveredBytes.wrappingAdd(bytes, ordering: .relaxed)
        case .failed(let failure):
            self.failedTotal.wrappingAdd(count, ordering: .relaxed)
            self.failedByCode.withLockedValue { $0[failure.code, default: 0] += count }
        }
        if let latency {
            let (seconds, attoseconds) = latency.components  // (each read of `components` divides 128 bits)
            let microseconds = seconds * 1_000_000 + attoseconds / 1_000_000_000_000
            self.latencyCounts[Self.bucket(microseconds, Self.latencyBounds)].wrappingAdd(1, ordering: .relaxed)
        }
    }

    public func recordBatch(size: Int) {
        self.batches.wrappingAdd(1, ordering: .relaxed)
        self.batchedEvents.wrappingAdd(size, ordering: .relaxed)
        self.batchCounts[Self.bucket(Int64(size), Self.batchBounds)].wrappingAdd(1, ordering: .relaxed)
    }

    public func recordRetries(_ count: Int) {
        self.retries.wrappingAdd(count, ordering: .relaxed)
    }

    /// The first bucket whose bound is at least `value` (the last one past every bound).
    static func bucket(_ value: Int64, _ bounds: [Int64]) -> Int {
        var low = 0
        var high = bounds.count
        while low < high {
            let middle = (low + high) / 2
            if bounds[middle] < value { low = middle + 1 } else { high = middle }
        }
        return low
    }

    private static func pow125(_ exponent: Int) -> Double {
        var result = 1.0
        for _ in 0..<exponent { result *= 1.25 }
        return result
    }

    /// The totals at one moment.
    public struct Snapshot: Sendable {
        public var delivered: Int
        public var deliveredBytes: Int
        public var failed: Int
        public var failedByCode: [String: Int]
        public var retries: Int
        public var batches: Int
        public var batchedEvents: Int
        /// Counts per `SinkLiveStats.latencyBounds` bucket (one more: longer than the last).
        public var latencyCounts: [Int]
        /// Counts per `SinkLiveStats.batchBounds` bucket (one more: larger than the last).
        public var batchCounts: [Int]

        /// The latency (in seconds) below which `quantile` of the acks in `counts` fell: the
        /// upper bound of its bucket; nil when `counts` holds none.
        public static func latencyQuantile(_ quantile: Double, counts: [Int]) -> Double? {
            let total = counts.reduce(0, +)
            guard total > 0 else { return nil }
            let rank = max(1, Int((quantile * Double(total)).rounded(.up)))
            var seen = 0
            for (index, count) in counts.enumerated() {
                seen += count
                if seen >= rank {
                    let bounds = SinkLiveStats.latencyBounds
                    return Double(index < bounds.count ? bounds[index] : bounds[bounds.count - 1] * 2) / 1_000_000
                }
            }
            return nil
        }

        /// What happened between `earlier` and `self` (counts of `self` minus those of `earlier`).
        public func since(_ earlier: Snapshot) -> Snapshot {
            Snapshot(
                delivered: self.delivered - earlier.delivered, deliveredBytes: self.deliveredBytes - earlier.deliveredBytes,
                failed: self.failed - earlier.failed,
                failedByCode: self.failedByCode.mapValues { $0 }.merging(earlier.failedByCode.mapValues { -$0 }, uniquingKeysWith: +),
                retries: self.retries - earlier.retries, batches: self.batches - earlier.batches,
                batchedEvents: self.batchedEvents - earlier.batchedEvents,
                latencyCounts: zip(self.latencyCounts, earlier.latencyCounts).map { $0 - $1 },
                batchCounts: zip(self.batchCounts, earlier.batchCounts).map { $0 - $1 })
        }
    }

    public var snapshot: Snapshot {
        Snapshot(
            delivered: self.delivered.load(ordering: .relaxed), deliveredBytes: self.deliveredBytes.load(ordering: .relaxed),
            failed: self.failedTotal.load(ordering: .relaxed), failedByCode: self.failedByCode.withLockedValue { $0 },
            retries: self.retries.load(ordering: .relaxed), batches: self.batches.load(ordering: .relaxed),
            batchedEvents: self.batchedEvents.load(ordering: .relaxed),
            latencyCounts: (0...Self.latencyBounds.count).map { self.latencyCounts[$0].load(ordering: .relaxed) },
            batchCounts: (0...Self.batchBounds.count).map { self.batchCounts[$0].load(ordering: .relaxed) })
    }
}

/// Tells several recorders about every settled event (live stats and Prometheus series).
public struct DeliveryRecorders: DeliveryRecorder {
    public let recorders: [any DeliveryRecorder]

    public init(_ recorders: [any DeliveryRecorder]) {
        self.recorders = recorders
    }

    public var wantsLatency: Bool { self.recorders.contains { $0.wantsLatency } }

    public func recordSettled(sink: String, outcome: DeliveryOutcome, count: Int, bytes: Int, latency: Duration?) {
        for recorder in self.recorders { recorder.recordSettled(sink: sink, outcome: outcome, count: count, bytes: bytes, latency: latency) }
    }

    public func recordBatch(size: Int) {
        for recorder in self.recorders { recorder.recordBatch(size: size) }
    }

    public func recordRetries(_ count: Int) {
        for recorder in self.recorders { recorder.recordRetries(count) }
    }
}
