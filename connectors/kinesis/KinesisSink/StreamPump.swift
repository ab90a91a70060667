import NIOCore
import SluiceCore

/// The batches of one stream: gathers entries, sends PutRecords calls (as many at once as the
/// current concurrency limit allows), and schedules retries of the entries that may succeed later.
actor StreamPump {
    struct Entry: HoldingEntry {
        var data: ByteBuffer
        var partitionKey: String
        /// Data plus partition key: what counts against the service limits.
        var bytes: Int
        /// The event's slot and what it holds of the sink's in-flight budget.
        var held: DeliveryLedger.Held
        /// Not delivered by then: failed, retryable.
        var deadline: ContinuousClock.Instant
        var attempts = 0
        var lastError: KinesisError?
    }

    /// Retry backoff: full jitter over min(cap, base * 2^attempt).
    static let backoffBase = Duration.milliseconds(50)
    static let backoffCap = Duration.seconds(2)
    /// An idle pump retires after this long (a stream named by a client may never be used again).
    static let idleRetirement = Duration.seconds(60)

    let stream: String
    private let sink: KinesisSink
    private var pending = CircularBuffer<Entry>()
    private var pendingBytes = 0
    private var oldestPendingAt: ContinuousClock.Instant?
    private var inFlight = 0
    private var retrying = 0
    private var concurrencyLimit: Int
    private var closing = false
    private var aborted = false
    private var retired = false
    /// The run loop has returned (closed and drained): nothing queued now would be sent.
    private var stopped = false
    private var waiter: CheckedContinuation<Void, Never>?
    private var drainWaiters: [CheckedContinuation<Void, Never>] = []

    init(stream: String, sink: KinesisSink) {
        self.stream = stream
        self.sink = sink
        self.concurrencyLimit = sink.config.maxConcurrentRequests
    }

    /// Queues entries (their budget is already taken). False if this pump has retired: use a new one.
    func add(_ entries: [Entry]) -> Bool {
        guard !self.retired else { return false }
        if self.aborted || self.stopped {
            for entry in entries { self.sink.complete(entry, with: .failed(.shuttingDown(sink: self.sink.name))) }
            return true
        }
        for entry in entries { self.append(entry) }
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
        while let entry = self.pending.popFirst() {
            self.sink.complete(entry, with: .failed(.shuttingDown(sink: self.sink.name)))
        }
        self.pendingBytes = 0
        self.wake()
        self.notifyIfDrained()
    }

    /// Returns once nothing is queued, in flight or waiting for a retry.
    func drained() async {
        if self.isIdle { return }
        await withCheckedContinuation { self.drainWaiters.append($0) }
    }

    private var isIdle: Bool { self.pending.isEmpty && self.inFlight == 0 && self.retrying == 0 }

    private func notifyIfDrained() {
        guard self.isIdle else { return }
        for waiter in self.drainWaiters { waiter.resume() }
        self.drainWaiters.removeAll()
    }

    private func append(_ entry: Entry) {
        if self.pending.isEmpty { self.oldestPendingAt = .now }
        self.pending.append(entry)
        self.pendingBytes += entry.bytes
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
        let config = self.sink.config
        while true {
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
                    self.sink.retire(self)
                    return
                }
                continue
            }
            if self.inFlight >= self.concurrencyLimit {
                await self.wait(until: nil)
                continue
            }
            let full = self.pending.count >= config.maxBatchRecords || self.pendingBytes >= config.maxBatchBytes
            if !full, !self.closing, let oldest = self.oldestPendingAt, ContinuousClock.now < oldest + config.linger {
                await self.wait(until: oldest + config.linger)
                continue
            }
            let batch = self.takeBatch(maxRecords: config.maxBatchRecords, maxBytes: config.maxBatchBytes)
            guard !batch.isEmpty else { continue }
            self.inFlight += 1
            Task { await self.send(batch) }
        }
    }

    /// Up to `maxRecords` entries and `maxBytes` bytes from the front; entries past their
    /// deadline fail instead of being sent.
    private func takeBatch(maxRecords: Int, maxBytes: Int) -> [Entry] {
        var batch: [Entry] = []
        var bytes = 0
        let now = ContinuousClock.now
        while let first = self.pending.first, batch.count < maxRecords, batch.isEmpty || bytes + first.bytes <= maxBytes {
            let entry = self.pending.removeFirst()
            self.pendingBytes -= entry.bytes
            if entry.deadline <= now {
                self.sink.complete(entry, with: .failed(self.sink.exhausted(entry.lastError)))
                continue
            }
            batch.append(entry)
            bytes += entry.bytes
        }
        self.oldestPendingAt = self.pending.isEmpty ? nil : now
        self.notifyIfDrained()
        return batch
    }

    nonisolated private func send(_ batch: [Entry]) async {
        let sink = self.sink
        let outcome = await sink.client.putRecords(
            stream: self.stream, entries: batch.map { PutRecordsEntry(data: $0.data, partitionKey: $0.partitionKey) })
        var retry: [Entry] = []
        var throttled = false
        switch outcome {
        case .records(let results):
            sink.health.succeeded()
            for (entry, result) in zip(batch, results) {
                switch result {
                case .success(let receipt):
                    sink.complete(entry, with: .delivered(receipt))
                case .failure(let error) where error.isRetryable:
                    throttled = throttled || error.isThrottling
                    var again = entry
                    again.lastError = error
                    retry.append(again)
                case .failure(let error):
                    sink.complete(entry, with: .failed(KinesisSinkError.refused(error).deliveryFailure))
                }
            }
        case .failed(let error):
            sink.health.failed(error)
            if error.isRetryable {
                throttled = error.isThrottling
                retry = batch.map { entry in
                    var again = entry
                    again.lastError = error
                    return again
                }
            } else {
                sink.logRefusal(error, stream: self.stream, records: batch.count)
                let failure = KinesisSinkError.refused(error).deliveryFailure
                for entry in batch { sink.complete(entry, with: .failed(failure)) }
            }
        }
        await self.finished(retry: retry, throttled: throttled, clean: retry.isEmpty)
    }

    private func finished(retry: [Entry], throttled: Bool, clean: Bool) {
        self.inFlight -= 1
        let maximum = self.sink.config.maxConcurrentRequests
        if throttled {
            self.concurrencyLimit = max(1, self.concurrencyLimit / 2)
        } else if clean, self.concurrencyLimit < maximum {
            self.concurrencyLimit += 1
        }
        if !retry.isEmpty { self.scheduleRetry(retry) }
        self.wake()
        self.notifyIfDrained()
    }

    private func scheduleRetry(_ entries: [Entry]) {
        let attempt = entries.map(\.attempts).max() ?? 0
        let ceiling = min(Self.backoffCap, Self.backoffBase * (1 << min(attempt, 16)))
        let delay = ceiling * Double.random(in: 0...1)
        let retryAt = ContinuousClock.now + delay
        var again: [Entry] = []
        for var entry in entries {
            if self.aborted {
                self.sink.complete(entry, with: .failed(.shuttingDown(sink: self.sink.name)))
            } else if entry.deadline <= retryAt {
                self.sink.complete(entry, with: .failed(self.sink.exhausted(entry.lastError)))
            } else {
                entry.attempts += 1
                again.append(entry)
            }
        }
        guard !again.isEmpty else { return }
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
            for entry in entries { self.sink.complete(entry, with: .failed(.shuttingDown(sink: self.sink.name))) }
            self.notifyIfDrained()
            return
        }
        for entry in entries.reversed() {
            self.pending.prepend(entry)
            self.pendingBytes += entry.bytes
        }
        if self.oldestPendingAt == nil || !entries.isEmpty { self.oldestPendingAt = .now - self.sink.config.linger }
        self.wake()
    }
}
