import NIOCore

// The pieces every batching sink worker is built from (a Kinesis stream pump, a Zerobus table
// stream): the queue of entries not yet sent, the wait for a worker to drain, and the backoff
// between attempts. Each worker keeps only its protocol: how a batch is sent and acknowledged.

/// An entry a batching worker queues: it holds its event's budget (settled through the sink's
/// ledger), counts its bytes against the service's batch limits, and is failed as retryable if
/// not settled by its deadline.
public protocol BatchEntry: HoldingEntry {
    /// What the entry counts against a batch's byte limit.
    var bytes: Int { get }
    var deadline: MonotonicInstant { get }
}

/// The entries a worker has not sent yet, oldest first, with their bytes counted and the time the
/// oldest has been waiting (for linger).
///
/// Inlinable so that each connector's worker gets it specialised for its own entry type: called
/// across the module boundary unspecialised, every entry moved through the queue cost a metadata
/// lookup and value-witness copies (seen in the Kinesis profile under `takeBatch`).
public struct PendingEntries<Entry: BatchEntry> {
    @usableFromInline var entries = CircularBuffer<Entry>()
    @usableFromInline var queuedBytes = 0
    @usableFromInline var oldestQueuedSince: MonotonicInstant?

    @inlinable public init() {}

    /// Bytes of the entries queued.
    @inlinable public var bytes: Int { self.queuedBytes }
    /// Since when the entry at the front has waited to be sent; nil when empty.
    @inlinable public var oldestSince: MonotonicInstant? { self.oldestQueuedSince }
    @inlinable public var isEmpty: Bool { self.entries.isEmpty }
    @inlinable public var count: Int { self.entries.count }

    /// Queues new entries at the back.
    @inlinable
    public mutating func append(contentsOf new: some Sequence<Entry>) {
        for entry in new {
            if self.entries.isEmpty { self.oldestQueuedSince = .now }
            // Counted before it is queued: its last use then moves it in (read after, the
            // entry was copied into the queue, a value-witness copy per entry).
            self.queuedBytes += entry.bytes
            self.entries.append(entry)
        }
    }

    /// Puts entries back at the front (they are the oldest: sent before, to be sent again), as
    /// having waited since `since`.
    @inlinable
    public mutating func prepend(_ again: [Entry], since: MonotonicInstant) {
        for entry in again.reversed() {
            self.entries.prepend(entry)
            self.queuedBytes += entry.bytes
        }
        if !again.isEmpty { self.oldestQueuedSince = since }
    }

    /// Takes from the front at most `maxRecords` entries and `maxBytes` bytes (always at least one
    /// entry, so an entry larger than `maxBytes` still goes, alone). With `now`, entries already
    /// past their deadline are handed to `expired` instead of being taken.
    @inlinable
    public mutating func takeBatch(
        maxRecords: Int, maxBytes: Int, expiringAt now: MonotonicInstant? = nil, expired: (Entry) -> Void = { _ in }
    ) -> [Entry] {
        var batch: [Entry] = []
        batch.reserveCapacity(Swift.min(maxRecords, self.entries.count))
        var bytes = 0
        // The front entry's size is read in place (binding `first` copied the whole entry).
        while batch.count < maxRecords, let next = self.entries.first?.bytes, batch.isEmpty || bytes + next <= maxBytes {
            let entry = self.entries.removeFirst()
            self.queuedBytes -= entry.bytes
            if let now, entry.deadline <= now {
                expired(entry)
                continue
            }
            bytes += entry.bytes
            batch.append(entry)
        }
        self.oldestQueuedSince = self.entries.isEmpty ? nil : .now
        return batch
    }

    /// Hands to `expired` the entries at the front that are past their deadline (entries queue
    /// in deadline order, so the rest are not). True if there were any.
    @inlinable
    @discardableResult
    public mutating func removeExpired(at now: MonotonicInstant, _ expired: (Entry) -> Void) -> Bool {
        var any = false
        while let first = self.entries.first, first.deadline <= now {
            self.entries.removeFirst()
            self.queuedBytes -= first.bytes
            expired(first)
            any = true
        }
        if self.entries.isEmpty { self.oldestQueuedSince = nil }
        return any
    }

    /// Takes every entry (to fail them).
    @inlinable
    public mutating func removeAll() -> [Entry] {
        let all = Array(self.entries)
        self.entries.removeAll()
        self.queuedBytes = 0
        self.oldestQueuedSince = nil
        return all
    }
}

/// Callers waiting for a worker to have nothing queued, in flight or waiting for a retry.
public struct DrainWaiters {
    private var waiters: [CheckedContinuation<Void, Never>] = []

    public init() {}

    public var isEmpty: Bool { self.waiters.isEmpty }

    public mutating func add(_ waiter: CheckedContinuation<Void, Never>) {
        self.waiters.append(waiter)
    }

    /// Resumes them all (the worker has drained).
    public mutating func resumeAll() {
        let waiters = self.waiters
        self.waiters.removeAll()
        for waiter in waiters { waiter.resume() }
    }
}

/// Exponential backoff with full jitter: a delay drawn uniformly from zero to
/// min(`cap`, `base` * 2^attempt), so workers that failed together do not retry together.
public struct RetryBackoff: Sendable {
    public let base: Duration
    public let cap: Duration

    public init(base: Duration, cap: Duration) {
        self.base = base
        self.cap = cap
    }

    /// The delay before attempt `attempt + 1` (`attempt`: attempts or failures so far).
    public func delay(after attempt: Int) -> Duration {
        let ceiling = min(self.cap, self.base * (1 << min(max(attempt, 0), 16)))
        return ceiling * Double.random(in: 0...1)
    }
}
