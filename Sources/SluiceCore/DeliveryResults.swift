/// Every event's fate for one request, in request order, stored in 13 bytes per event however
/// many events a request holds: a kind byte, a 32-bit and a 64-bit field. A Kafka receipt
/// (partition and offset), a file receipt (an offset) and a failure fit; the failure itself is
/// kept once in a table of the request's distinct failures (a request's failures are nearly
/// always a handful of kinds). Receipts that do not fit (a Kinesis shard and sequence number) go
/// to a side table.
///
/// Read like an array of `DeliveryResult`: each element is built when it is read.
public struct DeliveryResults: RandomAccessCollection, Sendable {
    enum Kind: UInt8 {
        case pending = 0
        /// `small` is the partition, `large` the offset.
        case partitionAndOffset
        /// `large` is the offset; no partition.
        case offset
        /// A receipt with nothing in it.
        case empty
        /// `large` indexes `receipts`.
        case otherReceipt
        /// `large` indexes `failures`.
        case failed
    }

    private var kinds: [UInt8] = []
    private var small: [Int32] = []
    private var large: [Int64] = []
    private var receipts: [DeliveryReceipt] = []
    private var failures: [DeliveryFailure] = []
    /// Where each distinct failure sits in `failures`.
    private var failureSlots: [DeliveryFailure: Int] = [:]

    public init() {}

    /// Builds the collection from whole values (tests, small requests).
    public init(_ results: some Sequence<DeliveryResult>) {
        for result in results {
            self.append(pendingCount: 1)
            self.set(self.count - 1, result)
        }
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { self.kinds.count }

    /// Bytes this collection holds per event, for tests of the memory bound.
    public static var bytesPerEvent: Int { MemoryLayout<UInt8>.stride + MemoryLayout<Int32>.stride + MemoryLayout<Int64>.stride }

    public subscript(position: Int) -> DeliveryResult {
        switch Kind(rawValue: self.kinds[position]) ?? .pending {
        case .partitionAndOffset:
            return .delivered(DeliveryReceipt(partition: self.small[position], offset: self.large[position]))
        case .offset:
            return .delivered(DeliveryReceipt(offset: self.large[position]))
        case .empty:
            return .delivered(DeliveryReceipt())
        case .otherReceipt:
            return .delivered(self.receipts[Int(self.large[position])])
        case .failed:
            return .failed(self.failures[Int(self.large[position])])
        case .pending:
            preconditionFailure("result \(position) read before it was settled")
        }
    }

    /// Whether the event at `position` has no fate yet.
    func isPending(_ position: Int) -> Bool { self.kinds[position] == Kind.pending.rawValue }

    /// Adds `count` events whose fate is not known yet.
    mutating func append(pendingCount count: Int) {
        self.kinds.append(contentsOf: repeatElement(Kind.pending.rawValue, count: count))
        self.small.append(contentsOf: repeatElement(0, count: count))
        self.large.append(contentsOf: repeatElement(0, count: count))
    }

    /// Records the commonest fate, delivered at `offset` of `partition`, without building a
    /// `DeliveryResult` (a Kafka delivery report's path).
    mutating func setDelivered(_ position: Int, partition: Int32, offset: Int64) {
        self.kinds[position] = Kind.partitionAndOffset.rawValue
        self.small[position] = partition
        self.large[position] = offset
    }

    /// The partition and offset of the event at `position` when that is all its receipt holds
    /// (the commonest answer, written without building a `DeliveryResult`); nil otherwise.
    public func partitionAndOffset(at position: Int) -> (partition: Int32, offset: Int64)? {
        guard self.kinds[position] == Kind.partitionAndOffset.rawValue else { return nil }
        return (self.small[position], self.large[position])
    }

    /// Records the fate of the event at `position`.
    mutating func set(_ position: Int, _ result: DeliveryResult) {
        switch result {
        case .delivered(let receipt):
            switch (receipt.partition, receipt.offset, receipt.shardID, receipt.sequenceNumber) {
            case _ where receipt.deadLetter != nil || receipt.targets != nil:
                self.kinds[position] = Kind.otherReceipt.rawValue
                self.large[position] = Int64(self.receipts.count)
                self.receipts.append(receipt)
            case (let partition?, let offset?, nil, nil):
                self.kinds[position] = Kind.partitionAndOffset.rawValue
                self.small[position] = partition
                self.large[position] = offset
            case (nil, let offset?, nil, nil):
                self.kinds[position] = Kind.offset.rawValue
                self.large[position] = offset
            case (nil, nil, nil, nil):
                self.kinds[position] = Kind.empty.rawValue
            default:
                self.kinds[position] = Kind.otherReceipt.rawValue
                self.large[position] = Int64(self.receipts.count)
                self.receipts.append(receipt)
            }
        case .failed(let failure):
            let slot: Int
            if let known = self.failureSlots[failure] {
                slot = known
            } else {
                slot = self.failures.count
                self.failures.append(failure)
                self.failureSlots[failure] = slot
            }
            self.kinds[position] = Kind.failed.rawValue
            self.large[position] = Int64(slot)
        }
    }

    /// Records `result` for every event of `positions` that has no fate yet (an event settled
    /// twice keeps its first fate) and returns how many that were: the result is read once and
    /// copied, not taken apart per event.
    mutating func set(pendingIn positions: Range<Int>, _ result: DeliveryResult) -> Int {
        var model: Int?
        var settled = 0
        for position in positions where self.isPending(position) {
            if let model {
                self.kinds[position] = self.kinds[model]
                self.small[position] = self.small[model]
                self.large[position] = self.large[model]
            } else {
                self.set(position, result)
                model = position
            }
            settled += 1
        }
        return settled
    }

    /// Changes the recorded fate of the event at `position` (a dead letter's outcome, known after
    /// the request's own results).
    public mutating func replace(_ position: Int, with result: DeliveryResult) {
        self.set(position, result)
    }

    /// The same results with every dead letter told as the failure that sent it there (for
    /// answers without a word for dead letters: REST Proxy, gRPC).
    public func deadLettersAsFailures() -> DeliveryResults {
        guard self.receipts.contains(where: { $0.deadLetter != nil }) else { return self }
        var told = self
        for position in self.kinds.indices where self.kinds[position] == Kind.otherReceipt.rawValue {
            let result = self[position]
            told.set(position, result.deadLetterAsFailure)
        }
        return told
    }

    /// Every event still without a fate fails with `failure`.
    mutating func settleRemaining(with failure: DeliveryFailure) {
        for position in self.kinds.indices where self.isPending(position) {
            self.set(position, .failed(failure))
        }
    }

    /// Counts without building a value per event: delivered events, and per failure kind how
    /// many events failed with it.
    public func summary() -> DeliverySummary {
        var delivered = 0
        var failedPerSlot = Array(repeating: 0, count: self.failures.count)
        for position in self.kinds.indices {
            if self.kinds[position] == Kind.failed.rawValue {
                failedPerSlot[Int(self.large[position])] += 1
            } else {
                delivered += 1
            }
        }
        return DeliverySummary(
            delivered: delivered,
            failures: zip(self.failures, failedPerSlot).filter { $0.1 > 0 }.map { (failure: $0.0, count: $0.1) })
    }
}

/// How a request's events fared, counted.
public struct DeliverySummary: Sendable {
    public var delivered: Int
    /// Each distinct failure with the number of events that failed with it, in the order first seen.
    public var failures: [(failure: DeliveryFailure, count: Int)]

    public var failed: Int { self.failures.reduce(0) { $0 + $1.count } }
    /// The first failure, if any.
    public var firstFailure: DeliveryFailure? { self.failures.first?.failure }
}

extension DeliveryResults: Equatable, ExpressibleByArrayLiteral {
    /// Equal when they hold the same results in the same order (however stored).
    public static func == (lhs: DeliveryResults, rhs: DeliveryResults) -> Bool {
        lhs.elementsEqual(rhs)
    }

    public init(arrayLiteral elements: DeliveryResult...) {
        self.init(elements)
    }
}
