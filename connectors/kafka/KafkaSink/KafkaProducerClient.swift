import CRdKafka
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import SluiceCore

/// One librdkafka producer: the wire side of `KafkaSink`.
///
/// librdkafka is thread-safe: `produce` is called from request tasks, delivery
/// reports are served by a dedicated poll thread that completes each event's slot
/// in its request's `DeliveryTracker`.
final class KafkaProducerClient: @unchecked Sendable {
    // @unchecked: `handle` is an immutable pointer to a thread-safe librdkafka
    // instance; all mutable state is behind locks.
    private let handle: OpaquePointer
    private let logger: Logger
    private let callbackContext: Unmanaged<CallbackContext>
    private let topics = NIOLockedValueBox([String: OpaquePointer]())
    private let polling = NIOLockedValueBox(true)
    private let pollThreadDone = NIOLockedValueBox<(done: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))
    /// Topic handles are cached for speed; past this many topics, produce by name instead.
    private static let maxCachedTopics = 1024

    /// State reachable from librdkafka's C callbacks.
    final class CallbackContext: Sendable {
        let logger: Logger
        let brokersDown = NIOLockedValueBox(false)
        /// Takes librdkafka's statistics, when metrics are on.
        let statistics: KafkaStatistics?
        init(logger: Logger, statistics: KafkaStatistics?) {
            self.logger = logger
            self.statistics = statistics
        }
    }

    /// - Parameter statistics: takes librdkafka's statistics (the properties must set
    ///   `statistics.interval.ms` for any to come).
    init(properties: [KafkaProperty], statistics: KafkaStatistics? = nil, logger: Logger) throws {
        self.logger = logger
        guard let conf = rd_kafka_conf_new() else {
            throw KafkaClientSetupError(message: "librdkafka could not allocate a configuration")
        }
        for property in properties {
            if let problem = KafkaSinkConfig.apply(property, to: conf) {
                rd_kafka_conf_destroy(conf)
                throw KafkaClientSetupError(message: "property \(property.name): \(problem)")
            }
        }
        let context = Unmanaged.passRetained(CallbackContext(logger: logger, statistics: statistics))
        rd_kafka_conf_set_opaque(conf, context.toOpaque())
        if statistics != nil { rd_kafka_conf_set_stats_cb(conf, kafkaStatistics) }
        rd_kafka_conf_set_dr_msg_cb(conf, kafkaDeliveryReport)
        rd_kafka_conf_set_error_cb(conf, kafkaError)
        rd_kafka_conf_set_log_cb(conf, kafkaLog)

        var errstr = [CChar](repeating: 0, count: 512)
        guard let handle = rd_kafka_new(RD_KAFKA_PRODUCER, conf, &errstr, errstr.count) else {
            // rd_kafka_new does not take ownership of conf on failure.
            rd_kafka_conf_destroy(conf)
            context.release()
            throw KafkaClientSetupError(message: String(cBuffer: errstr))
        }
        self.handle = handle
        self.callbackContext = context
        self.startPollThread()
    }

    deinit {
        self.topics.withLockedValue { topics in
            for topic in topics.values { rd_kafka_topic_destroy(topic) }
        }
        rd_kafka_destroy(self.handle)
        self.callbackContext.release()
    }

    private func startPollThread() {
        let thread = Thread { [self] in
            while self.polling.withLockedValue({ $0 }) {
                rd_kafka_poll(self.handle, 100)
            }
            let waiter = self.pollThreadDone.withLockedValue { state in
                state.done = true
                return state.waiter
            }
            waiter?.resume()
        }
        thread.name = "sluice-kafka-poll"
        thread.start()
    }

    /// The topic to produce to: a cached librdkafka handle, or (past the cache bound) its name.
    enum Destination {
        case handle(OpaquePointer)
        case name(String)
    }

    func destination(_ topic: String) -> Destination {
        self.topicHandle(topic).map { .handle($0) } ?? .name(topic)
    }

    /// Hands `event` to librdkafka with `ticket` (an entry of a run's `KafkaDeliveryTickets`,
    /// written by `KafkaDeliveryTickets.issue`). Returns NO_ERROR when queued: the delivery
    /// report settles the event's slot later, through the ticket. On an error the ticket is
    /// taken back and the slot is not settled (the caller settles it).
    ///
    /// The event is lent in place, a pointer into the caller's array: passed as a value it was
    /// copied for the call (a value-witness copy and a destroy, ~300 instructions per event).
    func produce(_ event: UnsafePointer<Event>, to destination: Destination, ticket: KafkaDeliveryTickets.Ticket) -> rd_kafka_resp_err_t {
        var topic = rd_kafka_vu_t()
        let err: rd_kafka_resp_err_t
        switch destination {
        case .handle(let handle):
            topic.vtype = RD_KAFKA_VTYPE_RKT
            topic.u.rkt = handle
            err = self.produce(event, ticket: ticket, topic: topic)
        case .name(let name):
            err = name.withCString { cName in
                topic.vtype = RD_KAFKA_VTYPE_TOPIC
                topic.u.cstr = cName
                return self.produce(event, ticket: ticket, topic: topic)
            }
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            ticket.takeBack()
        }
        return err
    }

    private func produce(
        _ event: UnsafePointer<Event>,
        ticket: KafkaDeliveryTickets.Ticket,
        topic: rd_kafka_vu_t
    ) -> rd_kafka_resp_err_t {
        let capacity = 7 + event.pointee.headers.count
        return withUnsafeTemporaryAllocation(of: rd_kafka_vu_t.self, capacity: capacity) { entries in
            // A local value, not a local function capturing a counter: the closures below only
            // borrow it, so its accesses are checked at compile time, not per event at run time.
            var list = ProduceArguments(entries: entries)
            list.append { $0 = topic }
            list.append { $0.vtype = RD_KAFKA_VTYPE_MSGFLAGS; $0.u.i = RD_KAFKA_MSG_F_COPY }
            list.append { $0.vtype = RD_KAFKA_VTYPE_OPAQUE; $0.u.ptr = ticket.opaque }
            if let timestamp = event.pointee.timestampMilliseconds {
                list.append { $0.vtype = RD_KAFKA_VTYPE_TIMESTAMP; $0.u.i64 = timestamp }
            }
            if let partition = event.pointee.partition {
                list.append { $0.vtype = RD_KAFKA_VTYPE_PARTITION; $0.u.i32 = partition }
            }
            return event.pointee.value.withUnsafeReadableBytes { value in
                list.append {
                    // A null pointer is a null value (a tombstone); any other, even for no bytes, a value.
                    $0.vtype = RD_KAFKA_VTYPE_VALUE
                    $0.u.mem.ptr = event.pointee.valueIsNull ? nil : UnsafeMutableRawPointer(mutating: value.baseAddress ?? emptyValue)
                    $0.u.mem.size = event.pointee.valueIsNull ? 0 : value.count
                }
                return withOptionalBytes(event.pointee.key) { key in
                    if let key {
                        list.append {
                            $0.vtype = RD_KAFKA_VTYPE_KEY
                            $0.u.mem.ptr = UnsafeMutableRawPointer(mutating: key.baseAddress)
                            $0.u.mem.size = key.count
                        }
                    }
                    return withHeaderArena(event.pointee.headers) { spans in
                        for span in spans {
                            list.append {
                                $0.vtype = RD_KAFKA_VTYPE_HEADER
                                $0.u.header.name = span.name
                                $0.u.header.val = span.value
                                $0.u.header.size = span.count
                            }
                        }
                        defer { entries.baseAddress!.deinitialize(count: list.count) }
                        guard let error = rd_kafka_produceva(self.handle, entries.baseAddress, list.count) else {
                            return RD_KAFKA_RESP_ERR_NO_ERROR
                        }
                        let code = rd_kafka_error_code(error)
                        rd_kafka_error_destroy(error)
                        return code
                    }
                }
            }
        }
    }

    private func topicHandle(_ topic: String) -> OpaquePointer? {
        self.topics.withLockedValue { topics in
            if let handle = topics[topic] { return handle }
            guard topics.count < Self.maxCachedTopics,
                let handle = rd_kafka_topic_new(self.handle, topic, nil)
            else { return nil }
            topics[topic] = handle
            return handle
        }
    }

    /// Events handed to librdkafka whose fate is not yet known.
    var outstanding: Int {
        Int(rd_kafka_outq_len(self.handle))
    }

    /// Whether librdkafka reports every broker down.
    var brokersDown: Bool {
        self.callbackContext.takeUnretainedValue().brokersDown.withLockedValue { $0 }
    }

    /// Asks a broker for cluster metadata; true when one answers within `timeoutMS`. Blocking.
    func probeMetadata(timeoutMS: Int32) -> Bool {
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(self.handle, 0, nil, &metadata, timeoutMS)
        if let metadata { rd_kafka_metadata_destroy(metadata) }
        if err == RD_KAFKA_RESP_ERR_NO_ERROR {
            self.callbackContext.takeUnretainedValue().brokersDown.withLockedValue { $0 = false }
            return true
        }
        return false
    }

    /// librdkafka's fatal error, if one was raised (e.g. the idempotent producer lost its
    /// guarantees). The producer refuses every event from then on.
    var fatalError: String? {
        var errstr = [CChar](repeating: 0, count: 512)
        let err = rd_kafka_fatal_error(self.handle, &errstr, errstr.count)
        guard err != RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
        return "\(KafkaSinkError(err).name): \(String(cBuffer: errstr))"
    }

    /// Waits up to `timeoutMS` for every queued event's delivery report; then purges what is
    /// left (those events fail as retryable), and stops the poll thread. Blocking.
    func flushAndStop(timeoutMS: Int32) -> Int {
        let flushErr = rd_kafka_flush(self.handle, timeoutMS)
        var purged = 0
        if flushErr != RD_KAFKA_RESP_ERR_NO_ERROR {
            purged = self.outstanding
            rd_kafka_purge(self.handle, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT)
            // Serve the purge delivery reports so every request learns its events' fate.
            _ = rd_kafka_flush(self.handle, 1000)
        }
        self.polling.withLockedValue { $0 = false }
        return purged
    }

    /// For a producer that hit a fatal error: purges every queued and in-flight event (each
    /// fails as retryable through its delivery report), serves those reports, and stops the
    /// poll thread. Blocking. Returns how many events were purged.
    func purgeAndStop() -> Int {
        let purged = self.outstanding
        // Requests already on the wire end with their answer or their timeout; purge again as
        // they do, for a bounded time, so every event's budget share comes back.
        for _ in 0..<30 where self.outstanding > 0 {
            rd_kafka_purge(self.handle, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT | RD_KAFKA_PURGE_F_NON_BLOCKING)
            _ = rd_kafka_flush(self.handle, 1000)
        }
        self.polling.withLockedValue { $0 = false }
        return purged
    }

    /// Raises a fatal error as librdkafka would (its testing hook), for the recovery tests.
    func raiseFatalErrorForTesting(_ reason: String) {
        _ = rd_kafka_test_fatal_error(self.handle, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, reason)
    }

    /// Waits until the poll thread has exited.
    func waitForPollThread() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = self.pollThreadDone.withLockedValue { state in
                if state.done { return true }
                state.waiter = continuation
                return false
            }
            if done { continuation.resume() }
        }
    }
}

struct KafkaClientSetupError: Error, CustomStringConvertible {
    var message: String
    var description: String { self.message }
}

/// The delivery tickets of one run of events (one `SharedHold`): what travels through librdkafka
/// to each event's delivery report, as the address of the event's entry (its `opaque`).
///
/// One allocation per run instead of one object per event: each produced event retains the run
/// once, and its delivery report (or a refused produce) gives that back; the last one frees it.
final class KafkaDeliveryTickets: ManagedBuffer<KafkaDeliveryTickets.Header, KafkaDeliveryTickets.Entry>, @unchecked Sendable {
    struct Header {
        /// The budget the run's events hold together.
        let hold: DeliveryLedger.SharedHold
        /// Entries there is room for (the run's events).
        let count: Int
        /// Entries written so far.
        var issued: Int
    }

    /// One event's ticket: written before the event is produced, read once by its report.
    struct Entry {
        /// The run, not retained by the entry: the event's own retain of it keeps it alive.
        let run: Unmanaged<KafkaDeliveryTickets>
        /// The event's slot in its request's tracker.
        let slot: Int
        let bytes: Int
    }

    /// An issued ticket, until librdkafka has it (or refused it).
    struct Ticket {
        let entry: UnsafeMutablePointer<Entry>

        /// What librdkafka hands back in the delivery report.
        var opaque: UnsafeMutableRawPointer { UnsafeMutableRawPointer(self.entry) }

        /// The produce was refused: no report will come, so the event's retain goes back here.
        func takeBack() {
            self.entry.pointee.run.release()
        }
    }

    /// Tickets for at most `count` events of `hold`'s run.
    static func make(hold: DeliveryLedger.SharedHold, count: Int) -> KafkaDeliveryTickets {
        let buffer = Self.create(minimumCapacity: count) { _ in Header(hold: hold, count: count, issued: 0) }
        return unsafeDowncast(buffer, to: KafkaDeliveryTickets.self)
    }

    /// The next ticket: the event in `slot`, of `bytes` bytes. The run is retained for it until
    /// its report (or `takeBack`).
    func issue(slot: Int, bytes: Int) -> Ticket {
        self.withUnsafeMutablePointers { header, entries in
            precondition(header.pointee.issued < header.pointee.count, "more tickets than the run's events")
            let entry = entries + header.pointee.issued
            header.pointee.issued += 1
            entry.initialize(to: Entry(run: Unmanaged.passUnretained(self).retain(), slot: slot, bytes: bytes))
            return Ticket(entry: entry)
        }
    }

    /// Read through the header's pointer: `self.header` is a class's stored property, and each
    /// read of it would be checked for exclusive access at run time.
    var hold: DeliveryLedger.SharedHold { self.withUnsafeMutablePointerToHeader { $0.pointee.hold } }

    /// The entry and run of a delivery report's opaque; the run's retain for the event is now
    /// the caller's (released when the returned value goes).
    static func redeem(_ opaque: UnsafeMutableRawPointer) -> (entry: Entry, run: KafkaDeliveryTickets) {
        let entry = opaque.assumingMemoryBound(to: Entry.self).pointee
        return (entry, entry.run.takeRetainedValue())
    }
}

/// Where an empty (not null) value points: librdkafka reads no byte of it.
private nonisolated(unsafe) let emptyValue = UnsafeRawPointer(UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1))

private func withOptionalBytes<R>(_ buffer: ByteBuffer?, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
    guard let buffer else { return body(nil) }
    return buffer.withUnsafeReadableBytes { body($0) }
}

/// One header as C pointers into an arena that lives for the duration of the call.
struct HeaderSpan {
    var name: UnsafePointer<CChar>
    var value: UnsafeRawPointer
    var count: Int
}

/// Lays out NUL-terminated header names and raw values in one buffer for librdkafka, which
/// copies them during `rd_kafka_produceva`.
private func withHeaderArena<R>(_ headers: [EventHeader], _ body: ([HeaderSpan]) -> R) -> R {
    guard !headers.isEmpty else { return body([]) }
    var arena: [UInt8] = []
    var offsets: [(name: Int, value: Int, count: Int)] = []
    for header in headers {
        let nameStart = arena.count
        arena.append(contentsOf: header.name.utf8)
        arena.append(0)
        let valueStart = arena.count
        arena.append(contentsOf: header.value.utf8)
        offsets.append((nameStart, valueStart, arena.count - valueStart))
    }
    arena.append(0)
    return arena.withUnsafeBufferPointer { raw in
        let base = UnsafeRawPointer(raw.baseAddress!)
        let spans = offsets.map {
            HeaderSpan(name: (base + $0.name).assumingMemoryBound(to: CChar.self), value: base + $0.value, count: $0.count)
        }
        return body(spans)
    }
}

/// The `rd_kafka_vu_t` arguments of one `rd_kafka_produceva` call, written into `entries` in order.
private struct ProduceArguments {
    let entries: UnsafeMutableBufferPointer<rd_kafka_vu_t>
    private(set) var count = 0

    init(entries: UnsafeMutableBufferPointer<rd_kafka_vu_t>) {
        self.entries = entries
    }

    @inline(__always)
    mutating func append(_ fill: (inout rd_kafka_vu_t) -> Void) {
        var vu = rd_kafka_vu_t()
        fill(&vu)
        self.entries.initializeElement(at: self.count, to: vu)
        self.count += 1
    }
}

private let kafkaDeliveryReport:
    @convention(c) (OpaquePointer?, UnsafePointer<rd_kafka_message_t>?, UnsafeMutableRawPointer?) -> Void = {
        _, message, _ in
        guard let message, let opaque = message.pointee._private else { return }
        let (ticket, run) = KafkaDeliveryTickets.redeem(opaque)
        let report = message.pointee
        if report.err == RD_KAFKA_RESP_ERR_NO_ERROR {
            run.hold.settleDelivered(slot: ticket.slot, partition: report.partition, offset: report.offset)
        } else {
            run.hold.settle(slot: ticket.slot, bytes: ticket.bytes, with: .failed(KafkaSinkError(report.err).deliveryFailure))
        }
    }

private let kafkaStatistics: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?, Int, UnsafeMutableRawPointer?) -> Int32 = {
    _, json, length, opaque in
    guard let json, let opaque else { return 0 }
    let context = Unmanaged<KafkaProducerClient.CallbackContext>.fromOpaque(opaque).takeUnretainedValue()
    if context.statistics?.update(json: UnsafeRawBufferPointer(start: json, count: length)) == false {
        context.logger.debug("librdkafka statistics could not be read")
    }
    return 0  // librdkafka frees the document
}

private let kafkaError: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafeMutableRawPointer?) -> Void = {
    _, code, reason, opaque in
    guard let opaque else { return }
    let context = Unmanaged<KafkaProducerClient.CallbackContext>.fromOpaque(opaque).takeUnretainedValue()
    let err = rd_kafka_resp_err_t(rawValue: code)
    if err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN {
        context.brokersDown.withLockedValue { $0 = true }
    }
    let text = reason.map { String(cString: $0) } ?? ""
    context.logger.warning("kafka error", metadata: ["error": "\(KafkaSinkError(err).name)", "reason": "\(text)"])
}

private let kafkaLog: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Void = {
    rk, level, facility, message in
    guard let rk, let opaque = rd_kafka_opaque(rk) else { return }
    let context = Unmanaged<KafkaProducerClient.CallbackContext>.fromOpaque(opaque).takeUnretainedValue()
    let text = message.map { String(cString: $0) } ?? ""
    let fac = facility.map { String(cString: $0) } ?? ""
    // syslog levels: 0-3 error, 4 warning, 5-6 info/notice, 7 debug
    let logLevel: Logger.Level =
        switch level {
        case ...3: .error
        case 4: .warning
        case 5...6: .info
        default: .debug
        }
    context.logger.log(level: logLevel, "librdkafka: \(text)", metadata: ["facility": "\(fac)"])
}
