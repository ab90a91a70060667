import NIOCore
import SluiceCore

/// What a stream pump needs of its sink, and no more.
struct StreamPumpContext: Sendable {
    /// The sink's name (for failures).
    let sinkName: String
    /// Settles every entry: its event's tracker slot, its budget, the recorder.
    let ledger: DeliveryLedger
    let client: KinesisClient
    let health: KinesisHealth
    let config: KinesisSinkConfig
    /// The batching knobs now (an operator may change them while the sink runs).
    let live: SluiceCore.AtomicBox<KinesisSinkConfig>
    /// Logs a call Kinesis refused for good (throttled per error and stream).
    let logRefusal: @Sendable (_ error: KinesisError, _ stream: String, _ records: Int) -> Void
    /// Forgets a pump that retired for being idle.
    let retire: @Sendable (StreamPump) -> Void

    /// A retryable error that outlasted `delivery_timeout`.
    func exhausted(_ error: KinesisError?) -> DeliveryFailure {
        KinesisSinkError.exhausted(last: error, deliveryTimeout: self.config.deliveryTimeout).deliveryFailure
    }

    var shuttingDown: DeliveryFailure { .shuttingDown(sink: self.sinkName) }
}

/// The batches of one stream: gathers entries, sends PutRecords calls (as many at once as the
/// current concurrency limit allows), and schedules retries of the entries that may succeed later.
actor StreamPump {
    struct Entry: BatchEntry {
        var data: ByteBuffer
        var partitionKey: String
        /// Data plus partition key: what counts against the service limits.
        var bytes: Int
        /// The event's slot and what it holds of the sink's in-flight budget.
        var held: DeliveryLedger.Held
        /// Not delivered by then: failed, retryable.
        var deadline: MonotonicInstant
        var attempts = 0
        var lastError: KinesisError?
    }

    /// Retry backoff: full jitter over min(2 s, 50 ms * 2^attempt).
    static let backoff = RetryBackoff(base: .milliseconds(50), cap: .seconds(2))
    /// An idle pump retires after this long (a stream named by a client may never be used again).
    static let idleRetirement = Duration.seconds(60)

    let stream: String
    private let context: StreamPumpContext
    private var pending = PendingEntries<Entry>()
    private var inFlight = 0
    private var retrying = 0
    private var concurrencyLimit: Int
    private var closing = false
    private var aborted = false
    private var retired = false
    /// The run loop has returned (closed and drained): nothing queued now would be sent.
    private var stopped = false
    private var waiter: CheckedContinuation<Void, Never>?
    private var drainWaiters = DrainWaiters()

    init(stream: String, context: StreamPumpContext) {
        self.stream = stream
        self.context = context
        self.concurrencyLimit = context.live.load().maxConcurrentRequests
    }

    private func settle(_ entry: Entry, with result: DeliveryResult) {
        self.context.ledger.settle(entry.held, with: result)
    }

    /// Queues entries (their budget is already taken). False if this pump has retired: use a new one.
    func add(_ entries: [Entry]) -> Bool {
        guard !self.retired else { return false }
        if self.aborted || self.stopped {
            for entry in entries { self.settle(entry, with: .failed(self.context.shuttingDown)) }
            return true
        }
        self.pending.append(contentsOf: entries)
        self.wake()
        return true
    }

    func close() {
        self.closing = true
        self.wake()
    }

    /// Fails whatever is still queued or waiting to be retried.
    func abort() {
        self.closing = true
        self.aborted = true
        for entry in self.pending.removeAll() {
            self.settle(entry, with: .failed(self.context.shuttingDown))
        }
        self.wake()
        self.notifyIfDrained()
    }

    /// Returns once nothing is queued, in flight or waiting for a retry.
    func drained() async {
        if self.isIdle { return }
        await withCheckedContinuation { self.drainWaiters.add($0) }
    }

    private var isIdle: Bool { self.pending.isEmpty && self.inFlight == 0 && self.retrying == 0 }

    private func notifyIfDrained() {
        guard self.isIdle else { return }
        self.drainWaiters.resumeAll()
    }

    private func wake() {
        if let waiter = self.waiter {
            self.waiter = nil
            waiter.resume()
        }
    }

    /// Sleeps until woken, or until `deadline`. One timer serves every wait with the same or a
    /// later deadline (a timer per wait costs more than the batching saves).
    private func wait(until deadline: ContinuousClock.Instant?) async {
        if let deadline, self.timerDeadline.map({ $0 > deadline }) ?? true {
            self.timerDeadline = deadline
            Task { [weak self] in
                try? await Task.sleep(until: deadline, clock: .continuous)
                await self?.timerFired(deadline)
            }
        }
        await withCheckedContinuation { self.waiter = $0 }
    }

    private var timerDeadline: ContinuousClock.Instant?

    private func timerFired(_ deadline: ContinuousClock.Instant) {
        if self.timerDeadline == deadline { self.timerDeadline = nil }
        self.wake()
    }

    func run() async {
        while true {
            let config = self.context.live.load()
            if self.pending.isEmpty {
                if self.closing {
                    if self.inFlight == 0 && self.retrying == 0 {
                        self.stopped = true
                        return
                    }
                    await self.wait(until: nil)
                    continue
                }
                let idleSince = ContinuousClock.now
                await self.wait(until: idleSince + Self.idleRetirement)
                if self.isIdle, !self.closing, ContinuousClock.now >= idleSince + Self.idleRetirement {
                    self.retired = true
                    self.context.retire(self)
                    return
                }
                continue
            }
            if self.inFlight >= min(self.concurrencyLimit, config.maxConcurrentRequests) {
                await self.wait(until: nil)
                continue
            }
            let full = self.pending.count >= config.maxBatchRecords || self.pending.bytes >= config.maxBatchBytes
            if !full, !self.closing, let oldest = self.pending.oldestSince, MonotonicInstant.now < oldest + config.linger {
                await self.wait(until: (oldest + config.linger).continuousInstant)
                continue
            }
            // Entries already past their deadline fail instead of being sent.
            let batch = self.pending.takeBatch(maxRecords: config.maxBatchRecords, maxBytes: config.maxBatchBytes, expiringAt: MonotonicInstant.now) {
                self.settle($0, with: .failed(self.context.exhausted($0.lastError)))
            }
            self.notifyIfDrained()
            guard !batch.isEmpty else { continue }
            self.inFlight += 1
            Task { await self.send(batch) }
        }
    }

    nonisolated private func send(_ batch: [Entry]) async {
        let context = self.context
        context.ledger.noteBatch(size: batch.count)
        let outcome = await context.client.putRecords(
            stream: self.stream, entries: batch.map { PutRecordsEntry(data: $0.data, partitionKey: $0.partitionKey) })
        var retry: [Entry] = []
        var throttled = false
        switch outcome {
        case .records(let results):
            context.health.succeeded()
            // Delivered events in consecutive slots of one request settle as one run (one budget
            // release, one metrics observation), each with its own receipt. An entry is one
            // event, so the run's i-th event is entry `first + i`.
            var delivered: (held: DeliveryLedger.Held, first: Int)?
            func settleDelivered() {
                guard let (held, first) = delivered else { return }
                context.ledger.settleDelivered(held) { i in
                    guard case .success(let receipt) = results[first + i] else { preconditionFailure("a failed record in a delivered run") }
                    return receipt
                }
                delivered = nil
            }
            for (index, (entry, result)) in zip(batch, results).enumerated() {
                let error: KinesisError
                switch result {
                case .success:
                    if let run = delivered, let joined = run.held.joined(with: entry.held) {
                        delivered = (joined, run.first)
                    } else {
                        settleDelivered()
                        delivered = (entry.held, index)
                    }
                    continue
                case .failure(let failure):
                    error = failure
                }
                settleDelivered()
                if error.isRetryable {
                    throttled = throttled || error.isThrottling
                    var again = entry
                    again.lastError = error
                    retry.append(again)
                } else {
                    context.ledger.settle(entry.held, with: .failed(KinesisSinkError.refused(error).deliveryFailure))
                }
            }
            settleDelivered()
        case .failed(let error):
            context.health.failed(error)
            if error.isRetryable {
                throttled = error.isThrottling
                retry = batch.map { entry in
                    var again = entry
                    again.lastError = error
                    return again
                }
            } else {
                context.logRefusal(error, self.stream, batch.count)
                let failure = KinesisSinkError.refused(error).deliveryFailure
                for entry in batch { context.ledger.settle(entry.held, with: .failed(failure)) }
            }
        }
        await self.finished(retry: retry, throttled: throttled, clean: retry.isEmpty)
    }

    private func finished(retry: [Entry], throttled: Bool, clean: Bool) {
        self.inFlight -= 1
        let maximum = self.context.live.load().maxConcurrentRequests
        if throttled {
            self.concurrencyLimit = max(1, self.concurrencyLimit / 2)
        } else if clean, self.concurrencyLimit < maximum {
            self.concurrencyLimit += 1
        }
        if self.concurrencyLimit > maximum {
            // An operator lowered the maximum.
            self.concurrencyLimit = maximum
        }
        if !retry.isEmpty { self.scheduleRetry(retry) }
        self.wake()
        self.notifyIfDrained()
    }

    private func scheduleRetry(_ entries: [Entry]) {
        let attempt = entries.map(\.attempts).max() ?? 0
        let delay = Self.backoff.delay(after: attempt)
        let retryAt = ContinuousClock.now + delay
        let entriesDueBy = MonotonicInstant.now + delay
        var again: [Entry] = []
        for var entry in entries {
            if self.aborted {
                self.settle(entry, with: .failed(self.context.shuttingDown))
            } else if entry.deadline <= entriesDueBy {
                self.settle(entry, with: .failed(self.context.exhausted(entry.lastError)))
            } else {
                entry.attempts += 1
                again.append(entry)
            }
        }
        guard !again.isEmpty else { return }
        self.context.ledger.noteRetries(again.count)
        self.retrying += again.count
        Task {
            try? await Task.sleep(until: retryAt, clock: .continuous)
            self.requeue(again)
        }
    }

    /// Retried entries go to the front: they are the oldest.
    private func requeue(_ entries: [Entry]) {
        self.retrying -= entries.count
        if self.aborted {
            for entry in entries { self.settle(entry, with: .failed(self.context.shuttingDown)) }
            self.notifyIfDrained()
            return
        }
        // As if they had lingered already: sent at once.
        self.pending.prepend(entries, since: MonotonicInstant.now - self.context.live.load().linger)
        self.wake()
    }
}
