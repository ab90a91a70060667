import Dispatch
import Logging
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle
import SluiceCore

/// The embedded default sink: appends each event as one NDJSON line to size-rotated
/// segment files. An event is reported delivered after its line is written — and,
/// with `fsync: always`, after it is on disk. The result's `offset` is the event's
/// position in the sink's log (segment files are named by their first offset).
///
/// Line format: `{"ts":<ms>,"topic":"…","key":"…"|null,"headers":{…},"value":<json>}`;
/// a value that is not JSON is written as `"value_base64":"…"` instead.
public final class FileSink: Sink, Service {
    public let name: String
    private let config: FileSinkConfig
    private let logger: Logger
    private let queue: DispatchQueue
    private let writer: SegmentWriterBox
    private let closed = NIOLockedValueBox(false)
    /// Lines handed to the writer queue and not yet written (and fsynced).
    public var budget: InFlightBudget { self.ledger.budget }
    private let ledger: DeliveryLedger

    public init(config: FileSinkConfig, context: SinkContext) throws {
        self.name = context.name
        self.config = config
        var logger = context.logger
        logger[metadataKey: "sink"] = "\(context.name)"
        self.logger = logger
        self.ledger = context.ledger
        self.queue = DispatchQueue(label: "sluice.file-sink.\(context.name)")
        self.writer = SegmentWriterBox(try SegmentWriter(directory: config.directory, segmentBytes: config.segmentBytes))
    }

    public var isReady: Bool { !self.closed.withLockedValue { $0 } }

    /// A local write has no timeout of its own.
    public var settleTimeout: Duration? { nil }

    /// Not a messaging system: traces say `sluice_file`.
    public var messagingSystem: String { "sluice_file" }

    public func enqueue(
        _ events: [Event],
        topic: String,
        tracker: DeliveryTracker,
        firstIndex: Int,
        deadline: ContinuousClock.Instant
    ) async -> Int {
        guard !events.isEmpty else { return 0 }
        var lines: [UInt8] = []
        lines.reserveCapacity(events.reduce(0) { $0 + $1.size + 64 })
        let now = WallClock.milliseconds()
        for event in events {
            NDJSONLineEncoder.append(event, topic: topic, timestamp: event.timestampMilliseconds ?? now, to: &lines)
        }
        let size = lines.count
        let slots = firstIndex..<(firstIndex + events.count)
        if self.closed.withLockedValue({ $0 }) {
            self.ledger.refuse(tracker: tracker, slots: slots, with: .shuttingDown(sink: self.name))
            return 0
        }
        // The batch's share of the in-flight budget, held until it is written.
        guard let held = await self.ledger.take(tracker: tracker, firstSlot: firstIndex, count: events.count, bytes: size, deadline: deadline)
        else {
            self.ledger.refuse(tracker: tracker, slots: slots, with: .queueFull(sink: self.name))
            return 0
        }
        let count = events.count
        self.ledger.noteBatch(size: count)
        let policy = self.config.fsync
        self.queue.async { [writer, ledger, logger, lines] in
            do throws(FileSinkError) {
                let first = try writer.value.append(lines, count: count, fsyncPolicy: policy)
                ledger.settleDelivered(held) { DeliveryReceipt(partition: 0, offset: first + Int64($0)) }
            } catch {
                logger.error("file sink write failed", metadata: ["error": "\(error)"])
                ledger.settle(held, with: .failed(error.deliveryFailure))
            }
        }
        return count
    }

    public func run() async throws {
        try? await gracefulShutdown()
        await self.shutdown()
    }

    /// Stops accepting events, writes what is queued, fsyncs, and closes the directory.
    public func shutdown() async {
        guard !self.closed.withLockedValue({ closed in
            defer { closed = true }
            return closed
        }) else { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            self.queue.async { [writer, logger] in
                do {
                    try writer.value.sync()
                } catch {
                    logger.error("file sink fsync at shutdown failed", metadata: ["error": "\(error)"])
                }
                writer.value.closeFiles()
                continuation.resume()
            }
        }
        self.logger.info("file sink flushed")
    }
}

/// Holds the writer, which is only touched on the sink's serial queue.
final class SegmentWriterBox: @unchecked Sendable {
    let value: SegmentWriter
    init(_ value: SegmentWriter) { self.value = value }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
