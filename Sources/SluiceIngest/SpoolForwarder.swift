import Logging
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle
import SluiceConfig
import SluiceCore
import SluiceSpool

/// Drains an `ack: spooled` route's spool into its sink, with the sink's own delivery
/// contract: a batch is handed to the sink, every event's fate awaited; retryable failures are
/// sent again (with backoff) until they land; an event the sink refuses for good goes to the
/// route's dead letters, or — without a `dead_letter` — is logged and counted. Only then is the
/// batch acknowledged in the spool, so a crash at any point sends it again (at-least-once).
///
/// On graceful shutdown the spool closes (requests get 503) and the forwarder keeps going for
/// up to `drainTimeout`; what it has not forwarded by then is forwarded at the next start.
public final class SpoolForwarder: Service, Sendable {
    public let spool: Spool
    public let routeName: String
    private let current: NIOLockedValueBox<IngestPipeline>
    private let drainTimeout: Duration
    private let batchBytes: Int
    private let logger: Logger
    private let totals = NIOLockedValueBox(Totals())

    /// What the forwarder has done since it started.
    public struct Totals: Sendable, Equatable {
        /// Events the sink settled as delivered.
        public var forwarded = 0
        /// Sends again after a retryable failure (one per event per attempt).
        public var retried = 0
        /// Events the sink refused for good that went to the dead letters.
        public var deadLettered = 0
        /// Events the sink refused for good that had nowhere to go (logged, each).
        public var dropped = 0
        /// Events forwarded that were spooled before this process started (at-least-once: some may be duplicates).
        public var replayed = 0
        /// Of those, the ones an earlier process had already handed to the sink: they may now be there twice.
        public var possiblyDuplicated = 0

        public init(
            forwarded: Int = 0, retried: Int = 0, deadLettered: Int = 0, dropped: Int = 0, replayed: Int = 0, possiblyDuplicated: Int = 0
        ) {
            self.possiblyDuplicated = possiblyDuplicated
            self.forwarded = forwarded
            self.retried = retried
            self.deadLettered = deadLettered
            self.dropped = dropped
            self.replayed = replayed
        }
    }

    public var totalsSoFar: Totals { self.totals.withLockedValue { $0 } }

    /// `pipeline`: the route as it is now (its sink and dead-letter sink); `update` replaces it on reload.
    public init(spool: Spool, pipeline: IngestPipeline, drainTimeout: Duration, batchBytes: Int = 4 << 20, logger: Logger) {
        self.spool = spool
        self.routeName = pipeline.routeName
        self.current = NIOLockedValueBox(pipeline)
        self.drainTimeout = drainTimeout
        self.batchBytes = batchBytes
        var logger = logger
        logger[metadataKey: "route"] = "\(pipeline.routeName)"
        self.logger = logger
    }

    /// The route as a reload left it: later batches go to its sink.
    public func update(_ pipeline: IngestPipeline) {
        self.current.withLockedValue { $0 = pipeline }
    }

    public func run() async throws {
        if self.spool.recovery.pendingRecords > 0 || self.spool.recovery.bytesCut > 0 {
            self.logger.notice(
                "spool opened with events to forward again",
                metadata: [
                    "directory": "\(self.spool.directory)", "events": "\(self.spool.recovery.pendingRecords)",
                    "bytes_cut": "\(self.spool.recovery.bytesCut)", "damaged_segments": "\(self.spool.recovery.damagedSegments)",
                    "possibly_duplicated": "\(self.spool.recovery.possiblyDuplicated)",
                ])
        }
        let replaying = NIOLockedValueBox(Int(self.spool.recovery.pendingRecords))
        self.totals.withLockedValue { $0.possiblyDuplicated += self.spool.recovery.possiblyDuplicated }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.forwardUntilClosed(replaying: replaying) }
            group.addTask {
                // Until shutdown begins; then the spool closes and the forwarder has drainTimeout.
                try? await gracefulShutdown()
                self.spool.close()
                try? await Task.sleep(for: self.drainTimeout)
            }
            await group.next()
            group.cancelAll()
        }
        let left = self.spool.pendingRecords
        if left > 0 {
            self.logger.notice("spool forwarder stopped; the rest is forwarded at the next start", metadata: ["events": "\(left)"])
        }
    }

    private func forwardUntilClosed(replaying: NIOLockedValueBox<Int>) async {
        var backoff = Backoff()
        while !Task.isCancelled {
            let batch: [SpoolEntry]
            do {
                batch = try await self.spool.next(maxBytes: self.batchBytes)
            } catch {
                self.logger.error("spool read failed; retrying", metadata: ["directory": "\(self.spool.directory)", "error": "\(error)"])
                _ = await backoff.wait()
                continue
            }
            guard let last = batch.last else { return }  // closed, and all read
            await self.spool.noteSent(below: last.sequence + 1)
            guard await self.forward(batch) else { return }  // cancelled mid-batch: it stays in the spool
            let replayed = replaying.withLockedValue { left -> Int in
                let count = min(left, batch.count)
                left -= count
                return count
            }
            if replayed > 0 { self.totals.withLockedValue { $0.replayed += replayed } }
            do {
                try await self.spool.acknowledge(below: last.sequence + 1)
                backoff = Backoff()
            } catch {
                // The batch is settled; a checkpoint that is not written sends it again after a restart.
                self.logger.error("spool checkpoint failed", metadata: ["directory": "\(self.spool.directory)", "error": "\(error)"])
            }
        }
    }

    /// Sends `batch` until every event is settled: delivered, dead-lettered, or dropped (logged).
    /// False when cancelled first.
    private func forward(_ batch: [SpoolEntry]) async -> Bool {
        var pending = batch
        var backoff = Backoff()
        while !pending.isEmpty {
            if Task.isCancelled { return false }
            let pipeline = self.current.withLockedValue { $0 }
            let results = await Self.send(pending, to: pipeline.sink, maxWait: pipeline.config.maxWait)
            var retry: [SpoolEntry] = []
            var refused: [(SpoolEntry, DeliveryFailure)] = []
            var delivered = 0
            for (entry, result) in zip(pending, results) {
                switch result {
                case .delivered: delivered += 1
                case .failed(let failure) where failure.isRetryable: retry.append(entry)
                case .failed(let failure): refused.append((entry, failure))
                }
            }
            if !refused.isEmpty, !(await self.deadLetter(refused, pipeline: pipeline)) { return false }
            self.totals.withLockedValue {
                $0.forwarded += delivered
                $0.retried += retry.count
            }
            pending = retry
            if !pending.isEmpty {
                if case .failed(let failure) = results.first(where: { if case .failed(let f) = $0 { f.isRetryable } else { false } }) {
                    self.logger.warning(
                        "spooled events not yet delivered; sending them again",
                        metadata: ["events": "\(pending.count)", "code": "\(failure.code)", "reason": "\(failure.message)", "after": "\(backoff.next)"])
                }
                guard await backoff.wait() else { return false }
            }
        }
        return true
    }

    /// Hands `entries` to `sink` in runs of one topic and waits for every event's fate.
    static func send(_ entries: [SpoolEntry], to sink: any Sink, maxWait: Duration) async -> DeliveryResults {
        let tracker = DeliveryTracker()
        var start = 0
        while start < entries.count {
            var end = start + 1
            while end < entries.count, entries[end].topic == entries[start].topic { end += 1 }
            let run = entries[start..<end].map(\.event)
            let first = tracker.reserve(run.count)
            let deadline = ContinuousClock.now + (sink.budget.maxWaitOverride ?? maxWait)
            let taken = await sink.enqueue(run, topic: entries[start].topic, tracker: tracker, firstIndex: first, deadline: deadline)
            for slot in (first + taken)..<(first + run.count) { tracker.complete(slot, with: .failed(.queueFull(sink: sink.name))) }
            start = end
        }
        tracker.seal()
        return await tracker.results(settledBy: sink)
    }

    /// The events the sink refused for good: to the route's dead letters when it has them
    /// (until they land there), else logged one by one and counted as dropped. False when
    /// cancelled first (the batch stays in the spool).
    private func deadLetter(_ refused: [(SpoolEntry, DeliveryFailure)], pipeline: IngestPipeline) async -> Bool {
        guard let sink = pipeline.deadLetterSink, let config = pipeline.config.deadLetter else {
            for (entry, failure) in refused {
                self.logger.error(
                    "a spooled event the sink refused for good was dropped (the route has no dead_letter)",
                    metadata: ["topic": "\(entry.topic)", "sequence": "\(entry.sequence)", "code": "\(failure.code)", "reason": "\(failure.message)"])
            }
            self.totals.withLockedValue { $0.dropped += refused.count }
            return true
        }
        var letters = refused.map { entry, failure in
            SpoolEntry(
                sequence: entry.sequence, topic: config.topic,
                event: pipeline.letter(for: entry.event, topic: entry.topic, failure, envelope: config.envelope))
        }
        var backoff = Backoff()
        while !letters.isEmpty {
            let results = await Self.send(letters, to: sink, maxWait: pipeline.config.maxWait)
            var again: [SpoolEntry] = []
            for (letter, result) in zip(letters, results) {
                guard case .failed(let failure) = result else {
                    self.totals.withLockedValue { $0.deadLettered += 1 }
                    continue
                }
                if failure.isRetryable {
                    again.append(letter)
                } else {
                    self.logger.error(
                        "a spooled event the sink refused for good was not taken by the dead-letter sink either; dropped",
                        metadata: ["topic": "\(letter.topic)", "sequence": "\(letter.sequence)", "code": "\(failure.code)", "reason": "\(failure.message)"])
                    self.totals.withLockedValue { $0.dropped += 1 }
                }
            }
            letters = again
            if !letters.isEmpty, !(await backoff.wait()) { return false }
        }
        return true
    }
}

/// The forwarder's pause between tries: 100 ms, doubling up to 5 s.
struct Backoff {
    private(set) var next = Duration.milliseconds(100)

    /// Sleeps `next`, then doubles it; false when the task was cancelled meanwhile.
    mutating func wait() async -> Bool {
        do {
            try await Task.sleep(for: self.next)
        } catch {
            return false
        }
        self.next = min(self.next * 2, .seconds(5))
        return true
    }
}
