/// Told the fate of every event a sink settles, and of the batches and retries it sends: the
/// place metrics hook in (`SinkDeliveryMetrics`). Called on whatever thread settled the events (a
/// librdkafka callback thread, a sink's queue, an event loop), so it must be quick and must not
/// block.
public protocol DeliveryRecorder: Sendable {
    /// `count` events (`bytes` of them) of sink `sink` settled with `outcome`, `latency` after the
    /// sink took them (took their in-flight budget). `latency` is nil, and `bytes` 0, for events
    /// the sink refused before taking them (saturated, shutting down, invalid for the backend).
    func recordSettled(sink: String, outcome: DeliveryOutcome, count: Int, bytes: Int, latency: Duration?)
    /// The sink sent a batch of `size` events to its backend.
    func recordBatch(size: Int)
    /// The sink sent `count` events or batches again after a retryable failure.
    func recordRetries(_ count: Int)
    /// Whether settled events should carry their latency (the ledger times them only then).
    var wantsLatency: Bool { get }
}

extension DeliveryRecorder {
    public var wantsLatency: Bool { true }

    public func recordBatch(size: Int) {}
    public func recordRetries(_ count: Int) {}
}

/// Delivered, or failed and why.
public enum DeliveryOutcome: Sendable, Equatable {
    case delivered
    case failed(DeliveryFailure)
}

/// The one way a sink takes and gives back in-flight budget and settles events: every event a
/// sink is handed goes through `settle` (it held budget) or `refuse` (it never did), exactly once,
/// so the tracker, the budget and the recorder always agree.
public final class DeliveryLedger: Sendable {
    /// The sink's name, for failures and the recorder.
    public let sink: String
    public let budget: InFlightBudget
    public let recorder: (any DeliveryRecorder)?

    /// Whether events are timed from take to settlement (a recorder wants latencies).
    @usableFromInline let timesEvents: Bool

    public init(sink: String, budget: InFlightBudget, recorder: (any DeliveryRecorder)? = nil) {
        self.sink = sink
        self.budget = budget
        self.recorder = recorder
        self.timesEvents = recorder?.wantsLatency ?? false
    }

    /// Events (one, or a batch in consecutive slots) the sink has taken budget for and must
    /// settle.
    public struct Held: Sendable {
        public let tracker: DeliveryTracker
        public let firstSlot: Int
        public let count: Int
        /// The budget bytes the events hold.
        public let bytes: Int
        /// When the sink took them; kept only when a recorder wants latencies.
        public var since: MonotonicInstant?

        @inlinable
        init(tracker: DeliveryTracker, firstSlot: Int, count: Int, bytes: Int, since: MonotonicInstant?) {
            self.tracker = tracker
            self.firstSlot = firstSlot
            self.count = count
            self.bytes = bytes
            self.since = since
        }

        /// This hold and `next` as one, when `next` holds the slots right after this one's, of
        /// the same tracker (timed from the earlier take); nil otherwise.
        @inlinable
        public func joined(with next: Held) -> Held? {
            guard self.tracker === next.tracker, self.firstSlot + self.count == next.firstSlot else { return nil }
            return Held(
                tracker: self.tracker, firstSlot: self.firstSlot, count: self.count + next.count, bytes: self.bytes + next.bytes,
                since: self.since ?? next.since)
        }
    }

    // MARK: Taking

    /// Takes budget for `events` events of `bytes` if there is room now and nobody waits; nil
    /// otherwise (then `take` waits for it). The per-event fast path: no suspension point.
    @inlinable
    public func tryTake(tracker: DeliveryTracker, firstSlot: Int, count: Int = 1, bytes: Int) -> Held? {
        guard self.budget.tryAcquire(bytes: bytes, events: count) else { return nil }
        return self.held(tracker: tracker, firstSlot: firstSlot, count: count, bytes: bytes)
    }

    /// Takes budget for `events` events of `bytes`, waiting until `deadline` if it must; nil
    /// (nothing taken) if the deadline passed first. The caller refuses the events then.
    @inlinable
    public func take(
        tracker: DeliveryTracker, firstSlot: Int, count: Int = 1, bytes: Int, deadline: ContinuousClock.Instant
    ) async -> Held? {
        if let held = self.tryTake(tracker: tracker, firstSlot: firstSlot, count: count, bytes: bytes) { return held }
        guard await self.budget.acquire(bytes: bytes, events: count, deadline: deadline) else { return nil }
        return self.held(tracker: tracker, firstSlot: firstSlot, count: count, bytes: bytes)
    }

    /// The record of events whose budget was just taken.
    @inlinable
    func held(tracker: DeliveryTracker, firstSlot: Int, count: Int, bytes: Int) -> Held {
        Held(tracker: tracker, firstSlot: firstSlot, count: count, bytes: bytes, since: self.timesEvents ? .now : nil)
    }

    // MARK: Settling

    /// Settles held events that share one result (a single event, or a batch that failed as one).
    @inlinable
    public func settle(_ held: Held, with result: DeliveryResult) {
        self.release(held, outcome: Self.outcome(result))
        held.tracker.complete(held.firstSlot..<(held.firstSlot + held.count), with: result)
    }

    /// Settles holds that share one result (a sink's acknowledgement of everything up to a point),
    /// a run of consecutive slots of one tracker at a time: one budget release, one recorder call
    /// (timed from the run's first take) and one tracker lock per run, not per event.
    @inlinable
    public func settle(_ holds: some Sequence<Held>, with result: DeliveryResult) {
        var run: Held?
        for held in holds {
            if let joined = run?.joined(with: held) {
                run = joined
                continue
            }
            if let current = run { self.settle(current, with: result) }
            run = held
        }
        if let current = run { self.settle(current, with: result) }
    }

    /// Settles a delivered batch: `receipt(i)` is where its i-th event landed.
    @inlinable
    public func settleDelivered(_ held: Held, receipt: (Int) -> DeliveryReceipt) {
        self.release(held, outcome: .delivered)
        for i in 0..<held.count {
            held.tracker.complete(held.firstSlot + i, with: .delivered(receipt(i)))
        }
    }

    /// Before the tracker slots are completed: gives the budget back and tells the recorder.
    /// In this order a client holding its answer finds its events counted in the metrics and
    /// their budget free (completing the last slot may resume the request and answer it).
    @inlinable
    func release(_ held: Held, outcome: @autoclosure () -> DeliveryOutcome) {
        self.budget.release(bytes: held.bytes, events: held.count)
        if let recorder = self.recorder {
            recorder.recordSettled(
                sink: self.sink, outcome: outcome(), count: held.count, bytes: held.bytes, latency: held.since.map { MonotonicInstant.now - $0 })
        }
    }

    /// Tells the recorder the sink sent a batch of `size` events.
    @inlinable
    public func noteBatch(size: Int) {
        self.recorder?.recordBatch(size: size)
    }

    /// Tells the recorder the sink sent `count` events or batches again.
    @inlinable
    public func noteRetries(_ count: Int = 1) {
        guard count > 0 else { return }
        self.recorder?.recordRetries(count)
    }

    /// Fails events the sink never took budget for (slots `slots` of `tracker`).
    @inlinable
    public func refuse(tracker: DeliveryTracker, slots: Range<Int>, with failure: DeliveryFailure) {
        guard !slots.isEmpty else { return }
        self.recorder?.recordSettled(sink: self.sink, outcome: .failed(failure), count: slots.count, bytes: 0, latency: nil)
        for slot in slots {
            tracker.complete(slot, with: .failed(failure))
        }
    }

    /// Fails one event the sink never took budget for.
    @inlinable
    public func refuse(tracker: DeliveryTracker, slot: Int, with failure: DeliveryFailure) {
        self.refuse(tracker: tracker, slots: slot..<(slot + 1), with: failure)
    }

    @inlinable
    static func outcome(_ result: DeliveryResult) -> DeliveryOutcome {
        switch result {
        case .delivered: return .delivered
        case .failed(let failure): return .failed(failure)
        }
    }
}

/// An entry a batching sink keeps per event: it carries the event's hold on the ledger.
public protocol HoldingEntry: Sendable {
    var held: DeliveryLedger.Held { get set }
}

extension DeliveryLedger {
    /// Takes budget for each event in turn and hands what it has budget for to the sink in chunks
    /// of `chunk` — and before any wait, or the wait could be for this request's own events.
    ///
    /// - Parameters:
    ///   - entry: the event as the sink's entry (built around the hold it is given), or nil when
    ///     the event cannot be sent (the closure has refused its slot).
    ///   - hand: takes entries that hold budget; from then on the sink settles them.
    /// - Returns: how many events were queued; the rest (after a wait that hit `deadline`) have been
    ///   refused as `sink_saturated`.
    /// Inlinable: the sinks call it per event with their own entry type; unspecialized, every
    /// entry copy went through value witnesses (seen in perf).
    @inlinable
    public func admit<Entry: HoldingEntry>(
        _ events: [Event], tracker: DeliveryTracker, firstIndex: Int, deadline: ContinuousClock.Instant, chunk: Int,
        entry: (_ slot: Int, _ event: Event, _ held: Held) -> Entry?, hand: ([Entry]) async -> Void
    ) async -> Int {
        var entries: [Entry] = []
        for (index, event) in events.enumerated() {
            let slot = firstIndex + index
            let size = event.size
            guard var next = entry(slot, event, Held(tracker: tracker, firstSlot: slot, count: 1, bytes: size, since: nil)) else { continue }
            if !self.budget.tryAcquire(bytes: size) {
                if !entries.isEmpty {
                    await hand(entries)
                    entries.removeAll()
                }
                guard await self.budget.acquire(bytes: size, deadline: deadline) else {
                    self.refuse(tracker: tracker, slots: slot..<(firstIndex + events.count), with: .queueFull(sink: self.sink))
                    return index
                }
            }
            if self.timesEvents { next.held.since = .now }
            entries.append(next)
            if entries.count >= chunk {
                await hand(entries)
                entries.removeAll()
            }
        }
        if !entries.isEmpty { await hand(entries) }
        return events.count
    }
}
