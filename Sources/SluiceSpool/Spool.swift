import Dispatch
import Foundation
import NIOConcurrencyHelpers
import SluiceCore

/// Why events could not be spooled.
public enum SpoolAppendFailure: Error, Sendable, Equatable {
    /// The spool stayed at `max_bytes` past the deadline: nothing was written.
    case full
    /// The write or its fsync failed (a full disk among them): nothing of this append counts.
    case failed(SpoolError)
    /// The spool is closed (shutting down).
    case closed
}

/// A route's write-ahead spool, shared by every request and its forwarder: `append` returns
/// once the events are in the log and fsynced, with one fsync for every append waiting at that
/// moment (group commit); `next` hands the forwarder what was appended; `acknowledge` lets the
/// forwarder release what the sink has settled. At most `maxBytes` of segments are on disk: an
/// append that would pass it waits for acknowledgements until its deadline.
///
/// The log is driven from one serial queue; callers wait without blocking a thread.
public final class Spool: Sendable {
    public let directory: String
    public let maxBytes: Int
    /// Where the log is driven, one step at a time.
    let queue: DispatchQueue
    private let log: NIOLockedValueBox<SpoolLog>
    private let state = NIOLockedValueBox(State())

    private struct PendingAppend {
        var entries: [(topic: String, event: Event)]
        var continuation: CheckedContinuation<Result<Range<UInt64>, SpoolAppendFailure>, Never>
    }

    private struct RoomWaiter {
        var id: UInt64
        var bytes: Int
        var continuation: CheckedContinuation<Bool, Never>
    }

    private struct State {
        var pending: [PendingAppend] = []
        var pendingBytes = 0
        var writing = false
        /// Bytes on disk after the last write or acknowledgement (the log's own count).
        var bytesOnDisk = 0
        /// Bytes promised to appends that found room and are not yet written.
        var reserved = 0
        var roomWaiters: [RoomWaiter] = []
        var nextWaiterID: UInt64 = 0
        /// The forwarder waiting for records (resumed with true once the spool is closed).
        var reader: CheckedContinuation<Bool, Never>?
        /// Appended (durable) records the forwarder has not been handed.
        var unread = false
        var closed = false
        /// When records were appended: the first sequence of each write round and its time (ms
        /// since the epoch), from the oldest unacknowledged one on; thinned past 4096 entries.
        var appendedAt: [(sequence: UInt64, at: Int64)] = []
        var acknowledged: UInt64 = 0
        var nextSequence: UInt64 = 0
    }

    /// What opening found (records to forward again, bytes cut).
    public let recovery: SpoolRecovery

    public init(directory: String, maxBytes: Int, segmentBytes: Int, maxRecordBytes: Int) throws(SpoolError) {
        let log = try SpoolLog(directory: directory, segmentBytes: segmentBytes, maxRecordBytes: maxRecordBytes)
        self.directory = directory
        self.maxBytes = maxBytes
        self.recovery = log.recovery
        self.queue = DispatchQueue(label: "sluice.spool")
        self.state.withLockedValue {
            $0.bytesOnDisk = log.bytesOnDisk
            $0.unread = log.pendingRecords > 0
            $0.acknowledged = log.acknowledged
            $0.nextSequence = log.nextSequence
            if log.pendingRecords > 0 { $0.appendedAt = [(log.acknowledged, log.recovery.oldestSegmentWrittenAt ?? Self.now())] }
        }
        self.log = NIOLockedValueBox(log)
    }

    /// Bytes of segments on disk.
    public var bytesOnDisk: Int { self.state.withLockedValue { $0.bytesOnDisk } }

    /// Records appended and not yet acknowledged.
    public var pendingRecords: UInt64 { self.log.withLockedValue { $0.pendingRecords } }

    /// fsyncs of appended records so far.
    public var syncs: Int { self.log.withLockedValue { $0.syncs } }

    /// How long the oldest record not yet acknowledged has waited (zero when none waits).
    public var oldestPendingAge: Duration {
        self.state.withLockedValue { state in
            guard state.nextSequence > state.acknowledged, let first = state.appendedAt.first else { return .zero }
            return .milliseconds(max(0, Self.now() - first.at))
        }
    }

    static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// Appends handed to the writer and not yet written.
    var appendsPending: Int { self.state.withLockedValue { $0.pending.count } }

    /// Writes `entries` and returns once they are fsynced: their sequence numbers, or why not.
    /// Waits (until `deadline`) while the spool has no room for them.
    public func append(_ entries: [(topic: String, event: Event)], deadline: ContinuousClock.Instant) async -> Result<Range<UInt64>, SpoolAppendFailure> {
        guard !entries.isEmpty else { return .success(0..<0) }
        let bytes = entries.reduce(0) { $0 + Self.estimatedBytes($1.topic, $1.event) }
        guard await self.waitForRoom(bytes, deadline: deadline) else {
            return .failure(self.state.withLockedValue { $0.closed } ? .closed : .full)
        }
        return await withCheckedContinuation { continuation in
            let startWriter = self.state.withLockedValue { state -> Bool in
                state.pending.append(PendingAppend(entries: entries, continuation: continuation))
                state.pendingBytes += bytes
                guard !state.writing else { return false }
                state.writing = true
                return true
            }
            if startWriter { self.queue.async { self.writeWhatIsPending() } }
        }
    }

    /// A record's frame size, close enough for the room check (headers and framing included).
    static func estimatedBytes(_ topic: String, _ event: Event) -> Int {
        32 + topic.utf8.count + event.size + event.headers.count * 6
    }

    /// Takes `bytes` of room, waiting until `deadline` for acknowledgements to make it.
    private func waitForRoom(_ bytes: Int, deadline: ContinuousClock.Instant) async -> Bool {
        enum Decision {
            case go, refuse
            case wait(UInt64)
        }
        let id = self.state.withLockedValue { state -> UInt64 in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let decision = self.state.withLockedValue { state -> Decision in
                    if state.closed { return .refuse }
                    // One append larger than the whole spool may go alone into an empty one.
                    if state.roomWaiters.isEmpty, state.bytesOnDisk + state.reserved + bytes <= self.maxBytes || state.bytesOnDisk + state.reserved == 0 {
                        state.reserved += bytes
                        return .go
                    }
                    state.roomWaiters.append(RoomWaiter(id: id, bytes: bytes, continuation: continuation))
                    return .wait(id)
                }
                switch decision {
                case .go: continuation.resume(returning: true)
                case .refuse: continuation.resume(returning: false)
                case .wait(let id):
                    Task { [weak self] in
                        try? await Task.sleep(until: deadline, clock: .continuous)
                        self?.giveUp(id)
                    }
                }
            }
        } onCancel: {
            self.giveUp(id)
        }
    }

    private func giveUp(_ id: UInt64) {
        let waiter = self.state.withLockedValue { state -> RoomWaiter? in
            guard let index = state.roomWaiters.firstIndex(where: { $0.id == id }) else { return nil }
            return state.roomWaiters.remove(at: index)
        }
        waiter?.continuation.resume(returning: false)
        self.admitWaiters()
    }

    /// Lets waiting appends in, in arrival order, as room allows.
    private func admitWaiters() {
        let admitted = self.state.withLockedValue { state -> [RoomWaiter] in
            var admitted: [RoomWaiter] = []
            while let first = state.roomWaiters.first,
                state.bytesOnDisk + state.reserved + first.bytes <= self.maxBytes || state.bytesOnDisk + state.reserved == 0
            {
                state.reserved += first.bytes
                admitted.append(state.roomWaiters.removeFirst())
            }
            return admitted
        }
        for waiter in admitted { waiter.continuation.resume(returning: true) }
    }

    /// On the queue: writes every pending append, fsyncs once, answers them all; then, if more
    /// arrived meanwhile, queues the next round behind whatever else waits for the queue (the
    /// forwarder's reads and acknowledgements), so a steady stream of appends cannot starve them.
    private func writeWhatIsPending() {
        let batch = self.state.withLockedValue { state -> (appends: [PendingAppend], bytes: Int)? in
            guard !state.pending.isEmpty else {
                state.writing = false
                return nil
            }
            defer {
                state.pending.removeAll()
                state.pendingBytes = 0
            }
            return (state.pending, state.pendingBytes)
        }
        guard let batch else { return }
        // Weak: a spool nobody holds any more (no append waits: each holds it) goes, and with
        // it its directory lock, without waiting for this queue.
        defer { self.queue.async { [weak self] in self?.writeWhatIsPending() } }
        var results: [Result<Range<UInt64>, SpoolAppendFailure>] = []
        let firstSequence = self.log.withLockedValue { $0.nextSequence }
        let (onDisk, nextSequence) = self.log.withLockedValue { log -> (Int, UInt64) in
            for append in batch.appends {
                do throws(SpoolError) {
                    results.append(.success(try log.append(append.entries)))
                } catch {
                    results.append(.failure(.failed(error)))
                }
            }
            do throws(SpoolError) {
                try log.sync()
            } catch {
                // Nothing of this round is durable: every append fails (a retry writes anew).
                results = results.map { _ in .failure(.failed(error)) }
            }
            return (log.bytesOnDisk, log.nextSequence)
        }
        let reader = self.state.withLockedValue { state -> CheckedContinuation<Bool, Never>? in
            state.bytesOnDisk = onDisk
            state.reserved = max(0, state.reserved - batch.bytes)
            if nextSequence > firstSequence {
                state.appendedAt.append((firstSequence, Self.now()))
                state.nextSequence = nextSequence
                if state.appendedAt.count > 4096 {
                    // Keep every other round (the earlier of each pair): ages stay upper bounds.
                    state.appendedAt = state.appendedAt.enumerated().filter { $0.offset % 2 == 0 }.map(\.element)
                }
            }
            guard results.contains(where: { (try? $0.get()) != nil }) else { return nil }
            state.unread = true
            defer { state.reader = nil }
            return state.reader
        }
        for (append, result) in zip(batch.appends, results) { append.continuation.resume(returning: result) }
        reader?.resume(returning: false)
        self.admitWaiters()
    }

    /// The next records for the forwarder, up to about `maxBytes`, once there are any; empty
    /// once the spool is closed and nothing is left to read.
    public func next(maxBytes: Int) async throws(SpoolError) -> [SpoolEntry] {
        while true {
            let entries: Result<[SpoolEntry], SpoolError> = await withCheckedContinuation { continuation in
                self.queue.async {
                    continuation.resume(returning: self.log.withLockedValue { log in Result { () throws(SpoolError) in try log.readNext(maxBytes: maxBytes) } })
                }
            }
            let read = try entries.get()
            if !read.isEmpty { return read }
            let closed: Bool = await withCheckedContinuation { continuation in
                let ready = self.state.withLockedValue { state -> Bool? in
                    if state.unread {
                        state.unread = false
                        return false
                    }
                    if state.closed { return true }
                    state.reader = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
            if closed { return [] }
            self.state.withLockedValue { $0.unread = false }
        }
    }

    /// Releases every record below `sequence` (the sink settled them): its room goes to
    /// waiting appends once whole segments are deleted.
    public func acknowledge(below sequence: UInt64) async throws(SpoolError) {
        let result: Result<Int, SpoolError> = await withCheckedContinuation { continuation in
            self.queue.async {
                continuation.resume(
                    returning: self.log.withLockedValue { log in
                        Result { () throws(SpoolError) -> Int in
                            try log.acknowledge(below: sequence)
                            return log.bytesOnDisk
                        }
                    })
            }
        }
        let onDisk = try result.get()
        self.state.withLockedValue { state in
            state.bytesOnDisk = onDisk
            state.acknowledged = max(state.acknowledged, sequence)
            while state.appendedAt.count > 1, state.appendedAt[1].sequence <= state.acknowledged { state.appendedAt.removeFirst() }
        }
        self.admitWaiters()
    }

    /// Notes that the records below `sequence` are being handed to the sink (see `SpoolLog.noteSent`).
    public func noteSent(below sequence: UInt64) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            self.queue.async {
                self.log.withLockedValue { $0.noteSent(below: sequence) }
                continuation.resume()
            }
        }
    }

    /// Refuses new appends (those waiting for room fail with `.closed`) and wakes the
    /// forwarder, which ends once it has read what is there.
    public func close() {
        let (waiters, reader) = self.state.withLockedValue { state -> ([RoomWaiter], CheckedContinuation<Bool, Never>?) in
            state.closed = true
            defer {
                state.roomWaiters.removeAll()
                state.reader = nil
            }
            return (state.roomWaiters, state.reader)
        }
        for waiter in waiters { waiter.continuation.resume(returning: false) }
        reader?.resume(returning: true)
    }
}

// Spool touches its log only under its lock, from its serial queue.
extension SpoolLog: @unchecked Sendable {}
