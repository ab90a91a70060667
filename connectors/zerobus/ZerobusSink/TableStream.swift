import Foundation
import GRPCCore
import Logging
import GRPCNIOTransportHTTP2Posix
import NIOConcurrencyHelpers
import NIOCore
import SluiceCore

typealias StreamRequest = Databricks_Zerobus_EphemeralStreamRequest
typealias StreamResponse = Databricks_Zerobus_EphemeralStreamResponse

/// One event on its way to a table: waiting to be sent, or sent and waiting for its ack.
struct ZerobusEntry: BatchEntry {
    var record: ZerobusRecord
    /// The event's slot and what it holds of the sink's in-flight budget.
    var held: DeliveryLedger.Held
    /// Not acknowledged by then: failed, retryable.
    var deadline: MonotonicInstant
    /// Already completed (it outlived its deadline while sent); skipped when its ack comes.
    var settled = false
    var bytes: Int { self.record.bytes }
}

/// What a table stream needs of its sink, and no more.
struct TableStreamContext: Sendable {
    /// The sink's name (for failures).
    let sinkName: String
    /// Settles every entry: its event's tracker slot, its budget, the recorder.
    let ledger: DeliveryLedger
    let client: Databricks_Zerobus_Zerobus.Client<HTTP2ClientTransport.Posix>
    let tokens: ZerobusTokenProvider
    let health: ZerobusHealth
    let config: ZerobusSinkConfig
    /// The batching knobs now (an operator may change them while the sink runs).
    let live: SluiceCore.AtomicBox<ZerobusSinkConfig>
    let logger: Logger
    /// Logs records Zerobus refused for good (throttled per table and code).
    let logRefusal: @Sendable (_ failure: DeliveryFailure, _ table: String) -> Void
    /// Forgets a stream that retired for being idle.
    let retire: @Sendable (TableStream) -> Void
}

/// The stream of one table: opens it on demand (token, then `create_stream`), sends records
/// with consecutive offsets (singly or as batches), completes events when
/// `durability_ack_up_to_offset` covers them, and recovers:
/// - `close_stream_signal`: stop sending, wait for the acks of what was sent, half-close, open a
///   new stream for the rest;
/// - a retryable failure (UNAVAILABLE, a dropped connection, any code not listed below): open a
///   new stream after a backoff and send again every record that was not acknowledged, offsets
///   restarting at 0 — at-least-once: a record whose ack was lost is stored twice;
/// - INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED, OUT_OF_RANGE, UNIMPLEMENTED,
///   NOT_FOUND: the unacknowledged records fail with the service's answer (when the stream was
///   refused at opening, the records waiting for it fail too: they would meet the same refusal).
///   A cached token refused at opening is dropped and the stream tried once with a new one; a
///   stream cut with UNAUTHENTICATED after it opened (its token expired or was revoked) is
///   recovered like UNAVAILABLE, with a new token.
actor TableStream {
    let table: String
    private let context: TableStreamContext
    private let config: ZerobusSinkConfig

    private var pending = PendingEntries<ZerobusEntry>()
    private var sent = CircularBuffer<Submission>()
    private var sentRecords = 0
    private var session: Session?
    private var sessionIDs = 0
    private var reopen: Task<Void, Never>?
    private var notBefore: ContinuousClock.Instant?
    private var failuresInRow = 0
    private var lastFailure: DeliveryFailure?
    private var retriedWithNewToken = false
    private var ticker: Task<Void, Never>?
    private var lastActivity = ContinuousClock.now
    private var closing = false
    private var aborted = false
    private var retired = false
    private var drainWaiters = DrainWaiters()

    private struct Submission {
        var offset: Int64
        var entries: [ZerobusEntry]
        var sentAt: ContinuousClock.Instant
    }

    /// One `EphemeralStream` call.
    private final class Session: Sendable {
        let id: Int
        let outbox: AsyncStream<StreamRequest>.Continuation
        let messages: AsyncStream<StreamRequest>
        let opened = NIOLockedValueBox(false)
        let draining = NIOLockedValueBox(false)
        /// Half-closed because acks stopped coming.
        let recycling = NIOLockedValueBox(false)
        let lastAck = NIOLockedValueBox(ContinuousClock.now)
        let nextOffset = NIOLockedValueBox<Int64>(0)
        let call = NIOLockedValueBox<Task<Void, Never>?>(nil)

        init(id: Int) {
            self.id = id
            (self.messages, self.outbox) = AsyncStream.makeStream(of: StreamRequest.self)
        }
    }

    /// Streams idle this long are closed and forgotten.
    static let idleRetirement = Duration.seconds(60)
    /// Reopening after a failure: full jitter over min(5 s, 100 ms * 2^failures).
    static let backoff = RetryBackoff(base: .milliseconds(100), cap: .seconds(5))

    init(table: String, context: TableStreamContext) {
        self.table = table
        self.context = context
        self.config = context.config
    }

    // MARK: - Intake

    /// Queues entries (their budget is already taken). False if this stream has retired: use a new one.
    func add(_ entries: [ZerobusEntry]) -> Bool {
        guard !self.retired else { return false }
        if self.aborted {
            for entry in entries { self.finish(entry, with: .failed(.shuttingDown(sink: self.context.sinkName))) }
            return true
        }
        self.pending.append(contentsOf: entries)
        self.lastActivity = .now
        self.startTicker()
        if self.session == nil { self.open() } else { self.pump() }
        return true
    }

    /// Stop accepting; what is queued is still sent.
    func close() {
        self.closing = true
        self.notifyIfDrained()
    }

    /// Returns once nothing is queued or waiting for an ack (events that timed out waiting are settled).
    func drained() async {
        if self.isDrained { return }
        await withCheckedContinuation { self.drainWaiters.add($0) }
    }

    /// Fails whatever is still queued or unacknowledged (retryable) and ends the stream.
    func abort() {
        self.closing = true
        self.aborted = true
        self.reopen?.cancel()
        self.reopen = nil
        self.failAll(with: .shuttingDown(sink: self.context.sinkName), includingPending: true)
        self.endSession()
        self.notifyIfDrained()
    }

    /// Half-closes the stream (everything is acknowledged) and waits a little for it to end.
    func stop() async {
        self.ticker?.cancel()
        self.reopen?.cancel()
        guard let session = self.session else { return }
        session.outbox.finish()
        let call = session.call.withLockedValue { $0 }
        let grace = Task {
            try? await Task.sleep(for: .seconds(2))
            call?.cancel()
        }
        await call?.value
        grace.cancel()
    }

    /// While the sink is unhealthy: opens a stream even with nothing to send (and half-closes it
    /// once open), so readiness recovers without waiting for traffic.
    func probe() {
        guard self.session == nil, self.reopen == nil, !self.closing, !self.retired else { return }
        self.open(probe: true)
    }

    // MARK: - Sending

    private func open(probe: Bool = false) {
        guard self.session == nil, self.reopen == nil, !self.aborted, probe || !self.pending.isEmpty else { return }
        if let notBefore, notBefore > .now {
            self.reopen = Task {
                try? await Task.sleep(until: notBefore, clock: .continuous)
                self.reopened()
            }
            return
        }
        self.sessionIDs += 1
        let session = Session(id: self.sessionIDs)
        self.session = session
        let create = StreamRequest.with {
            $0.createStream = .with {
                $0.tableName = self.table
                switch self.config.recordType {
                case .json: $0.recordType = .json
                case .proto(let schema):
                    $0.recordType = .proto
                    $0.descriptorProto = Data(schema.descriptor)
                }
            }
        }
        let call = Task { await self.call(session, create: create) }
        session.call.withLockedValue { $0 = call }
        let openTimeout = self.config.openTimeout
        Task {
            try? await Task.sleep(for: openTimeout)
            if !session.opened.withLockedValue({ $0 }) { call.cancel() }
        }
    }

    private func reopened() {
        self.reopen = nil
        self.notBefore = nil
        if self.session == nil { self.open() }
    }

    /// Sends queued records while the stream is open and under its in-flight limit.
    private func pump() {
        guard let session, session.opened.withLockedValue({ $0 }), !session.draining.withLockedValue({ $0 }) else { return }
        let live = self.context.live.load()
        while !self.pending.isEmpty, self.sentRecords < live.maxInFlightRecords {
            let entries = self.pending.takeBatch(
                maxRecords: min(live.maxBatchRecords, live.maxInFlightRecords - self.sentRecords),
                maxBytes: live.maxBatchBytes)
            let offset = session.nextOffset.withLockedValue { offset in
                defer { offset += 1 }
                return offset
            }
            self.context.ledger.noteBatch(size: entries.count)
            session.outbox.yield(Self.message(entries, offset: offset))
            self.sent.append(Submission(offset: offset, entries: entries, sentAt: .now))
            self.sentRecords += entries.count
        }
    }

    private static func message(_ entries: [ZerobusEntry], offset: Int64) -> StreamRequest {
        if entries.count == 1 {
            return StreamRequest.with {
                $0.ingestRecord = .with {
                    $0.offsetID = offset
                    switch entries[0].record {
                    case .json(let text): $0.jsonRecord = text
                    case .proto(let data): $0.protoEncodedRecord = data
                    }
                }
            }
        }
        return StreamRequest.with {
            $0.ingestRecordBatch = .with {
                $0.offsetID = offset
                switch entries[0].record {
                case .json:
                    $0.jsonBatch = .with {
                        $0.records = entries.map {
                            if case .json(let text) = $0.record { return text }
                            return ""
                        }
                    }
                case .proto:
                    $0.protoEncodedBatch = .with {
                        $0.records = entries.map {
                            if case .proto(let data) = $0.record { return data }
                            return Data()
                        }
                    }
                }
            }
        }
    }

    // MARK: - The call

    private enum Outcome {
        /// The call ended with status OK (we half-closed, or the server ended it).
        case ended
        case rpc(RPCError)
        case token(ZerobusTokenError)
        case other(any Error)
    }

    /// Runs one `EphemeralStream` call to its end (outside the actor, which it calls back).
    private nonisolated func call(_ session: Session, create: StreamRequest) async {
        let outcome: Outcome
        do {
            let token = try await self.context.tokens.token(for: self.table)
            var metadata = Metadata()
            metadata.addString("Bearer \(token)", forKey: "authorization")
            metadata.addString(self.table, forKey: "x-databricks-zerobus-table-name")
            try await self.context.client.ephemeralStream(
                metadata: metadata,
                requestProducer: { writer in
                    try await writer.write(create)
                    for await message in session.messages { try await writer.write(message) }
                },
                onResponse: { response in
                    for try await message in response.messages {
                        switch message.payload {
                        case .createStreamResponse(let created): await self.opened(session, streamID: created.streamID)
                        case .ingestRecordResponse(let ack): await self.acknowledged(session, upTo: ack.durabilityAckUpToOffset)
                        case .closeStreamSignal: await self.closeSignal(session)
                        case nil: break
                        }
                    }
                })
            outcome = .ended
        } catch let error as ZerobusTokenError {
            outcome = .token(error)
        } catch let error as RPCError {
            outcome = .rpc(error)
        } catch {
            outcome = .other(error)
        }
        await self.ended(session, outcome)
    }

    private func opened(_ session: Session, streamID: String) {
        guard session === self.session, !session.opened.withLockedValue({ $0 }) else { return }
        session.opened.withLockedValue { $0 = true }
        self.retriedWithNewToken = false
        self.context.health.succeeded()
        self.context.logger.debug("zerobus stream opened", metadata: ["table": "\(self.table)", "stream_id": "\(streamID)"])
        self.pump()
        if self.pending.isEmpty, self.sent.isEmpty { session.outbox.finish() }  // a probe, or the records timed out
    }

    private func acknowledged(_ session: Session, upTo offset: Int64) {
        guard session === self.session else { return }
        self.failuresInRow = 0
        self.lastActivity = .now
        session.lastAck.withLockedValue { $0 = .now }
        while let first = self.sent.first, first.offset <= offset {
            self.sent.removeFirst()
            self.sentRecords -= first.entries.count
            self.finish(first.entries, with: .delivered(DeliveryReceipt()))
        }
        if session.draining.withLockedValue({ $0 }) {
            if self.sent.isEmpty { session.outbox.finish() }
        } else {
            self.pump()
        }
        self.notifyIfDrained()
    }

    /// Acks stopped coming: half-close (the service acknowledges what it holds as the stream ends),
    /// and if it does not end soon, cut it; what stays unacknowledged goes again on a new stream.
    private func recycle(_ session: Session) {
        session.recycling.withLockedValue { $0 = true }
        session.draining.withLockedValue { $0 = true }
        self.context.logger.warning(
            "zerobus acks stopped for ack_timeout; ending the stream and resending what it did not acknowledge",
            metadata: ["table": "\(self.table)", "unacknowledged": "\(self.sentRecords)"])
        session.outbox.finish()
        let call = session.call.withLockedValue { $0 }
        Task {
            try? await Task.sleep(for: .seconds(2))
            call?.cancel()
        }
    }

    private func closeSignal(_ session: Session) {
        guard session === self.session else { return }
        session.draining.withLockedValue { $0 = true }
        self.context.logger.debug("zerobus asked to close the stream; draining", metadata: ["table": "\(self.table)"])
        if self.sent.isEmpty { session.outbox.finish() }
    }

    private func ended(_ session: Session, _ outcome: Outcome) {
        guard session === self.session else { return }
        let wasOpen = session.opened.withLockedValue { $0 }
        self.endSession()
        if let error = Self.failure(outcome, table: self.table, timedOut: !wasOpen) {
            self.failed(error, wasOpen: wasOpen)
        } else {
            // Anything sent and not acknowledged goes again on the next stream.
            self.requeueSent()
        }
        self.open()
        self.notifyIfDrained()
    }

    private func failed(_ error: ZerobusSinkError, wasOpen: Bool) {
        let failure = error.deliveryFailure
        if error.isRetryable {
            self.requeueSent()
            self.failuresInRow += 1
            self.lastFailure = failure
            self.context.health.failed(permanent: false)
            self.backOff()
            if self.failuresInRow == 1 || self.failuresInRow % 10 == 0 {
                self.context.logger.warning(
                    "zerobus stream failed; resending unacknowledged records on a new stream",
                    metadata: ["table": "\(self.table)", "error": "\(failure.message)", "failures_in_row": "\(self.failuresInRow)"])
            }
            return
        }
        if error.refusesCredentials, !self.retriedWithNewToken {
            // A token the service no longer takes (expired or revoked under an open stream, or
            // a cached one refused at opening): once, a new stream with a new token takes over
            // what was not acknowledged. (Reset when a stream opens.)
            self.retriedWithNewToken = true
            self.context.tokens.invalidate(table: self.table)
            self.requeueSent()
            return
        }
        self.failuresInRow += 1
        self.lastFailure = failure
        // A refused record or table is not the sink's health; refused credentials are.
        if error.refusesCredentials { self.context.health.failed(permanent: true) }
        self.context.logRefusal(failure, self.table)
        self.failAll(with: failure, includingPending: !wasOpen)
        self.backOff()
    }

    /// How a stream ended: nil when cleanly.
    private static func failure(_ outcome: Outcome, table: String, timedOut: Bool) -> ZerobusSinkError? {
        switch outcome {
        case .ended: return nil
        case .token(let error): return ZerobusSinkError(table: table, reason: .token(error))
        case .rpc(let error): return ZerobusSinkError(table: table, rpc: error, timedOut: timedOut)
        case .other(let error): return ZerobusSinkError(table: table, reason: .streamFailed("\(error)"))
        }
    }

    private func endSession() {
        guard let session = self.session else { return }
        session.outbox.finish()
        session.call.withLockedValue { $0 }?.cancel()
        self.session = nil
    }

    /// Sent, unacknowledged records go back to the front of the queue, in order.
    private func requeueSent() {
        guard !self.sent.isEmpty else { return }
        var again: [ZerobusEntry] = []
        for submission in self.sent { again.append(contentsOf: submission.entries.lazy.filter { !$0.settled }) }
        self.sent.removeAll()
        self.sentRecords = 0
        self.context.ledger.noteRetries(again.count)
        self.pending.prepend(again, since: MonotonicInstant.now)
    }

    private func backOff() {
        self.notBefore = .now + Self.backoff.delay(after: self.failuresInRow)
    }

    // MARK: - Completion

    private func finish(_ entry: ZerobusEntry, with result: DeliveryResult) {
        self.context.ledger.settle(entry.held, with: result)
    }

    /// Settles the entries not settled yet, a request's consecutive events as one.
    private func finish(_ entries: some Sequence<ZerobusEntry>, with result: DeliveryResult) {
        self.context.ledger.settle(entries.lazy.filter { !$0.settled }.map(\.held), with: result)
    }

    private func failAll(with failure: DeliveryFailure, includingPending: Bool) {
        for submission in self.sent { self.finish(submission.entries, with: .failed(failure)) }
        self.sent.removeAll()
        self.sentRecords = 0
        if includingPending { self.finish(self.pending.removeAll(), with: .failed(failure)) }
    }

    private var isDrained: Bool {
        self.pending.isEmpty && self.sent.allSatisfy { $0.entries.allSatisfy(\.settled) }
    }

    private func notifyIfDrained() {
        guard !self.drainWaiters.isEmpty, self.isDrained else { return }
        self.drainWaiters.resumeAll()
    }

    // MARK: - Deadlines and idleness

    private func startTicker() {
        guard self.ticker == nil else { return }
        self.ticker = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(250))
                guard let self, await self.tick() else { return }
            }
        }
    }

    /// Fails what outlived its deadline; retires the stream when idle. False: stop ticking.
    private func tick() -> Bool {
        let now = ContinuousClock.now
        let monotonicNow = MonotonicInstant.now
        let failure = ZerobusSinkError(
            table: self.table, reason: .deliveryTimeout(self.config.deliveryTimeout, lastError: self.lastFailure?.message)
        ).deliveryFailure
        var expired = false
        for index in self.sent.indices {
            var submission = self.sent[index]
            var changed = false
            for i in submission.entries.indices where !submission.entries[i].settled && submission.entries[i].deadline <= monotonicNow {
                self.finish(submission.entries[i], with: .failed(failure))
                submission.entries[i].settled = true
                changed = true
            }
            if changed { self.sent[index] = submission } else if submission.entries.last.map({ $0.deadline > monotonicNow }) ?? true { break }
            expired = expired || changed
        }
        if self.pending.removeExpired(at: monotonicNow, { self.finish($0, with: .failed(failure)) }) { expired = true }
        if expired { self.notifyIfDrained() }
        if let session, session.opened.withLockedValue({ $0 }), let oldest = self.sent.first,
            now - max(oldest.sentAt, session.lastAck.withLockedValue { $0 }) > self.config.ackTimeout,
            !session.recycling.withLockedValue({ $0 })
        {
            self.recycle(session)
        }
        if !self.pending.isEmpty || self.sentRecords > 0 {
            self.lastActivity = now
            return true
        }
        if self.closing || now - self.lastActivity < Self.idleRetirement { return !self.closing }
        // Idle: half-close the stream and let the sink forget this table.
        self.retired = true
        self.ticker = nil
        self.session?.outbox.finish()
        self.context.retire(self)
        return false
    }
}
