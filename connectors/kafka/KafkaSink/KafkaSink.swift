import CRdKafka
import Logging
import NIOConcurrencyHelpers
import NIOPosix
import ServiceLifecycle
import Synchronization
import SluiceConfigReader
import SluiceCore

/// Delivers events to Apache Kafka through one librdkafka producer shared by every route.
///
/// Delivery: with the defaults (`acks=all`, idempotence on) an event is reported
/// delivered only when every in-sync replica has it.
///
/// Backpressure: each event takes its share of the sink's in-flight budget before it is
/// produced and gives it back in its delivery report. When the budget is spent `enqueue`
/// waits, up to the caller's deadline — and the request waiting in it reads no more body.
///
/// Lifecycle: as a `Service`, the sink runs until graceful shutdown, then flushes what
/// is queued for at most `flushTimeout`; whatever is left fails as retryable.
///
/// Recovery: a fatal producer error (the idempotent producer lost its guarantees, e.g.
/// OUT_OF_ORDER_SEQUENCE_NUMBER after a broker lost acknowledged data) ends a librdkafka
/// producer for good. The sink then builds a new producer with the same properties and sends
/// to it; the old one's queued and in-flight events are purged and fail as retryable (never
/// reported delivered), and it is destroyed.
public final class KafkaSink: TunableSink {
    public let name: String
    /// The producer's properties now (an operator's retuning changes them).
    private let currentProperties: NIOLockedValueBox<[KafkaProperty]>
    private var properties: [KafkaProperty] { self.currentProperties.withLockedValue { $0 } }
    /// Producers replaced by a retuning, flushing what they hold (shutdown waits for them).
    private let flushing = NIOLockedValueBox<[Task<Void, Never>]>([])
    /// The producer events go to; replaced after a fatal error.
    private let current: NIOLockedValueBox<KafkaProducerClient>
    private var client: KafkaProducerClient { self.current.withLockedValue { $0 } }
    private let replacements = NIOLockedValueBox(0)
    private let logger: Logger
    private let flushTimeout: Duration
    public var budget: InFlightBudget { self.ledger.budget }
    private let ledger: DeliveryLedger
    private let statistics: KafkaStatistics?
    private let state = NIOLockedValueBox(State())
    /// Set once by `shutdown`; read for every event `enqueue` hands over (an atomic, not the lock).
    private let closed = Atomic<Bool>(false)

    private struct State {
        var ready = false
        /// A producer was replaced: probe at once rather than at the next interval.
        var probeNow = false
    }

    /// Each event holds its share of `context.budget` from `enqueue` until its delivery report.
    public init(config: KafkaSinkConfig, context: SinkContext) throws {
        self.name = context.name
        var logger = context.logger
        logger[metadataKey: "sink"] = "\(context.name)"
        self.logger = logger
        self.flushTimeout = context.flushTimeout
        let budget = context.budget
        self.ledger = context.ledger
        self.settleTimeout = config.deliveryTimeout
        // With metrics on, librdkafka's statistics feed the sluice_kafka_* series: every 5 s
        // unless the configuration's properties say otherwise (0 turns them off).
        self.statistics = context.exportsMetrics ? KafkaStatistics(sink: context.name, factory: context.metrics) : nil
        let properties = Self.producerProperties(config, budget: budget, statistics: self.statistics != nil)
        let statistics = self.statistics
        self.currentProperties = NIOLockedValueBox(properties)
        self.current = NIOLockedValueBox(
            try KafkaProducerClient(properties: properties, statistics: statistics, logger: logger))
        let shown = properties.map { "\($0.name)=\($0.isSecret ? "***" : $0.value)" }
        logger.info("kafka producer created", metadata: ["properties": "\(shown.joined(separator: ", "))"])
    }

    /// The librdkafka properties of a producer for `config`.
    static func producerProperties(_ config: KafkaSinkConfig, budget: InFlightBudget, statistics: Bool) -> [KafkaProperty] {
        var properties = config.effectiveProperties(maxInFlightBytes: budget.maxBytes, maxInFlightEvents: budget.maxEvents)
        if statistics, !properties.contains(where: { $0.name == "statistics.interval.ms" }) {
            properties.insert(KafkaProperty("statistics.interval.ms", String(KafkaStatistics.defaultIntervalMilliseconds)), at: 0)
        }
        return properties
    }

    // MARK: Tuning

    /// The producer properties an operator may change while the sink runs.
    static let tunableProperties: [(name: String, help: String)] = [
        ("linger.ms", "how long the producer waits to fill a batch, in milliseconds (0 to 900000)"),
        ("batch.size", "the largest batch per partition, in bytes"),
        ("batch.num.messages", "the most messages per batch"),
    ]

    public var tunables: [SinkTunable] {
        let properties = self.properties
        return Self.tunableProperties.map { tunable in
            let value = properties.last { $0.name == tunable.name }?.value ?? KafkaSinkConfig.defaultValue(of: tunable.name) ?? "default"
            return SinkTunable(path: ["properties", tunable.name], value: value, help: tunable.help)
        }
    }

    /// Takes the producer properties of `settings`: builds a producer with them and sends new
    /// events to it; the one it replaces flushes what it holds (each event settles as usual,
    /// within the flush timeout) and is destroyed. Events produced just before and just after
    /// the swap may reach a partition out of order (two producers).
    public func retune(to settings: any SinkSettings) async throws(SinkTuningError) {
        guard let settings = settings as? KafkaSinkConfig else {
            throw SinkTuningError(field: "", message: "not the settings of a kafka sink")
        }
        let properties = Self.producerProperties(settings, budget: self.budget, statistics: self.statistics != nil)
        guard properties != self.properties else { return }
        guard !self.closed.load(ordering: .acquiring) else {
            throw SinkTuningError(field: "", message: "the sink is shutting down")
        }
        let fresh: KafkaProducerClient
        do {
            fresh = try KafkaProducerClient(properties: properties, statistics: self.statistics, logger: self.logger)
        } catch {
            throw SinkTuningError(field: "properties", message: "librdkafka refused the new producer: \(error)")
        }
        let old = self.current.withLockedValue { current in
            defer { current = fresh }
            return current
        }
        self.currentProperties.withLockedValue { $0 = properties }
        let timeout = self.flushTimeout
        let timeoutMS = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        let logger = self.logger
        let task = Task {
            let outstanding = old.outstanding
            let purged = (try? await NIOThreadPool.singleton.runIfActive { old.flushAndStop(timeoutMS: timeoutMS) }) ?? old.flushAndStop(timeoutMS: 0)
            await old.waitForPollThread()
            logger.info("kafka producer replaced after retuning; the old one flushed", metadata: ["flushed": "\(outstanding)", "purged": "\(purged)"])
        }
        self.flushing.withLockedValue { $0.append(task) }
        let shown = Self.tunableProperties.compactMap { tunable in properties.last { $0.name == tunable.name }.map { "\($0.name)=\($0.value)" } }
        self.logger.info("kafka producer retuned", metadata: ["properties": "\(shown.joined(separator: ", "))"])
    }

    /// librdkafka's `message.timeout.ms`: by then every produced event has a delivery report.
    public let settleTimeout: Duration?

    public var messagingSystem: String { "kafka" }

    public var isReady: Bool {
        self.state.withLockedValue { $0.ready } && !self.closed.load(ordering: .acquiring) && !self.client.brokersDown
    }

    /// Producers replaced after a fatal error since start.
    public var producerReplacements: Int { self.replacements.withLockedValue { $0 } }

    public var counters: [(name: String, value: Int)] {
        [("producer_replacements", self.producerReplacements)]
    }

    /// The most events one budget take covers (a request's run; see `enqueue`).
    static let maxRunEvents = 256

    public func enqueue(
        _ events: [Event],
        topic: String,
        tracker: DeliveryTracker,
        firstIndex: Int,
        deadline: ContinuousClock.Instant
    ) async -> Int {
        var index = 0
        var backoff = Duration.microseconds(500)
        // One producer for the whole call: if it is replaced meanwhile, the rest of these events
        // fail with its fatal error (retryable) and the next request goes to the new one.
        let client = self.client
        let destination = client.destination(topic)
        // A run takes at most half the budget, so another request always finds room beside it.
        let budget = self.ledger.budget
        let runLimit = (bytes: budget.maxBytes / 2, events: min(Self.maxRunEvents, max(1, budget.maxEvents / 2)))
        while index < events.count {
            // Budget for a run of the next events at once while there is room (one settlement
            // for the run, see SharedHold), else for one event, waiting for room until the deadline.
            let slot = firstIndex + index
            let run = Self.runExtent(events, from: index, limit: runLimit)
            let hold: DeliveryLedger.SharedHold
            if let shared = self.ledger.tryTakeShared(tracker: tracker, firstSlot: slot, count: run.count, bytes: run.bytes) {
                hold = shared
            } else if let one = await self.ledger.takeShared(tracker: tracker, firstSlot: slot, count: 1, bytes: events[index].size, deadline: deadline) {
                hold = one
            } else {
                self.ledger.refuse(tracker: tracker, slots: slot..<(firstIndex + events.count), with: .queueFull(sink: self.name))
                return index
            }
            let runEnd = index + hold.held.count
            while true {
                let start = index
                let produced = self.produce(events, index..<runEnd, firstIndex: firstIndex, client: client, destination: destination, hold: hold)
                index = produced.index
                if index > start { backoff = .microseconds(500) }
                if produced.stop == .done { break }
                if produced.stop == .queueFull, ContinuousClock.now < deadline {
                    // librdkafka's queue is sized to twice the budget, so it is full only when the
                    // budget was raised past it; wait for delivery reports to drain it.
                    try? await Task.sleep(for: backoff)
                    backoff = min(backoff * 2, .milliseconds(20))
                    continue
                }
                // Ends the call: this event and the rest of the run fail (they hold budget in the
                // run), the events after the run are refused.
                let failure: DeliveryFailure = produced.stop == .closed ? .shuttingDown(sink: self.name) : .queueFull(sink: self.name)
                for rest in index..<runEnd {
                    hold.settle(slot: firstIndex + rest, bytes: events[rest].size, with: .failed(failure))
                }
                self.ledger.refuse(tracker: tracker, slots: (firstIndex + runEnd)..<(firstIndex + events.count), with: failure)
                return index
            }
        }
        return index
    }

    /// Why producing a run stopped.
    private enum RunStop {
        /// Every event of the range was handed over (or refused alone and settled).
        case done
        /// librdkafka's queue is full: the caller waits, then goes on from the returned index.
        case queueFull
        /// The sink is shutting down.
        case closed
    }

    /// How many of the events from `start` one budget take covers, and their bytes: at most
    /// `limit.events`, and past the first event no more than `limit.bytes`.
    private static func runExtent(_ events: [Event], from start: Int, limit: (bytes: Int, events: Int)) -> (count: Int, bytes: Int) {
        events.withUnsafeBufferPointer { events in
            var count = 0
            var bytes = 0
            while start + count < events.count, count < limit.events {
                let size = events[start + count].size
                if count > 0, bytes + size > limit.bytes { break }
                bytes += size
                count += 1
            }
            return (count, bytes)
        }
    }

    /// Hands `events[range]` (slots from `firstIndex`) to librdkafka under `hold`, synchronously:
    /// the async loop this replaced copied each event twice across its potential suspension
    /// points. An event librdkafka refuses alone (too large, bad topic) is settled failed here
    /// and the rest go on. Returns the index it stopped at.
    private func produce(
        _ events: [Event], _ range: Range<Int>, firstIndex: Int, client: KafkaProducerClient,
        destination: KafkaProducerClient.Destination, hold: DeliveryLedger.SharedHold
    ) -> (index: Int, stop: RunStop) {
        let tickets = KafkaDeliveryTickets.make(hold: hold, count: range.count)
        // Each event is lent to the producer in place (see KafkaProducerClient.produce).
        return events.withUnsafeBufferPointer { events in
            for index in range {
                if self.closed.load(ordering: .acquiring) { return (index, .closed) }
                let ticket = tickets.issue(slot: firstIndex + index, bytes: events[index].size)
                let err = client.produce(events.baseAddress! + index, to: destination, ticket: ticket)
                switch err {
                case RD_KAFKA_RESP_ERR_NO_ERROR:
                    continue
                case RD_KAFKA_RESP_ERR__QUEUE_FULL:
                    return (index, .queueFull)
                default:
                    hold.settle(slot: firstIndex + index, bytes: events[index].size, with: .failed(KafkaSinkError(err).deliveryFailure))
                }
            }
            return (range.upperBound, .done)
        }
    }

    public func run() async throws {
        // Two watches side by side: fatal producer errors every 250 ms, and the cluster's
        // reachability (readiness). A probe may block for its whole timeout, or wait for a
        // thread of the shared blocking pool; recovery from a fatal error never waits on one.
        await cancelWhenGracefulShutdown { [self] in
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.replaceProducersAfterFatalErrors() }
                group.addTask { await self.probeCluster() }
                await group.waitForAll()
            }
        }
        await self.shutdown()
    }

    /// A fatal producer error is permanent for that producer: replace it (with growing pauses
    /// while a new one cannot be built).
    private func replaceProducersAfterFatalErrors() async {
        var failedReplacements = 0
        while !Task.isCancelled {
            if let fatal = self.client.fatalError {
                self.state.withLockedValue { $0.ready = false }
                if await self.replaceProducer(after: fatal) {
                    failedReplacements = 0
                    self.state.withLockedValue { $0.probeNow = true }
                } else {
                    failedReplacements += 1
                    guard (try? await Task.sleep(for: .seconds(min(1 << min(failedReplacements, 5), 30)))) != nil else { return }
                    continue
                }
            }
            // Looked for often: the sink serves again within a second or so.
            guard (try? await Task.sleep(for: .milliseconds(250))) != nil else { return }
        }
    }

    /// Probes the cluster until a broker answers, then keeps watching; readiness follows.
    private func probeCluster() async {
        var nextProbe = ContinuousClock.now
        while !Task.isCancelled {
            let due = self.state.withLockedValue { state in
                defer { state.probeNow = false }
                return state.probeNow
            }
            if due || ContinuousClock.now >= nextProbe {
                let client = self.client
                let answered = (try? await NIOThreadPool.singleton.runIfActive { client.probeMetadata(timeoutMS: 2000) }) ?? false
                // A producer in its fatal state is not ready, whatever the brokers say.
                let reachable = answered && self.client.fatalError == nil
                let changed = self.state.withLockedValue { state in
                    defer { state.ready = reachable }
                    return state.ready != reachable
                }
                if changed {
                    if reachable {
                        self.logger.info("kafka sink ready")
                    } else if answered {
                        self.logger.warning("kafka producer unusable until replaced; sink not ready")
                    } else {
                        self.logger.warning("kafka brokers unreachable; sink not ready")
                    }
                }
                nextProbe = .now + (reachable ? .seconds(5) : .seconds(1))
            }
            guard (try? await Task.sleep(for: .milliseconds(250))) != nil else { return }
        }
    }

    /// Puts the current producer in librdkafka's fatal state (tests of the recovery).
    func raiseFatalErrorForTesting() {
        self.client.raiseFatalErrorForTesting("raised by a test")
    }

    /// Builds a new producer, sends new events to it, then purges the dead one (its events fail
    /// as retryable) and stops it. Returns false when a new producer could not be built.
    private func replaceProducer(after fatal: String) async -> Bool {
        let fresh: KafkaProducerClient
        do {
            fresh = try KafkaProducerClient(properties: self.properties, statistics: self.statistics, logger: self.logger)
        } catch {
            self.logger.error("kafka producer hit a fatal error and a new one could not be built", metadata: ["error": "\(fatal)", "reason": "\(error)"])
            return false
        }
        let (dead, count) = self.current.withLockedValue { current in
            defer { current = fresh }
            return (current, self.replacements.withLockedValue { count in
                count += 1
                return count
            })
        }
        let outstanding = dead.outstanding
        self.logger.error(
            "kafka producer hit a fatal error; replaced it with a new producer, its undelivered events fail as retryable",
            metadata: ["error": "\(fatal)", "undelivered": "\(outstanding)", "replacements": "\(count)"])
        // Every event the dead producer held gets its delivery report (purged: retryable) before it goes.
        _ = (try? await NIOThreadPool.singleton.runIfActive { dead.purgeAndStop() }) ?? dead.purgeAndStop()
        await dead.waitForPollThread()
        return true
    }

    /// Stops accepting events, flushes what is queued (bounded), and stops the producer.
    public func shutdown() async {
        let alreadyClosed = self.closed.exchange(true, ordering: .acquiringAndReleasing)
        guard !alreadyClosed else { return }
        for task in self.flushing.withLockedValue({ $0 }) { await task.value }
        let pending = self.client.outstanding
        self.logger.info("kafka sink flushing", metadata: ["outstanding": "\(pending)"])
        let timeout = self.flushTimeout
        let timeoutMS = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        let purged = (try? await NIOThreadPool.singleton.runIfActive { [client] in
            client.flushAndStop(timeoutMS: timeoutMS)
        }) ?? self.client.flushAndStop(timeoutMS: 0)
        await self.client.waitForPollThread()
        if purged > 0 {
            self.logger.error("kafka sink flush timed out; events failed as retryable", metadata: ["purged": "\(purged)"])
        } else {
            self.logger.info("kafka sink flushed")
        }
    }
}
