import CRdKafka
public import Logging
import NIOConcurrencyHelpers
import NIOPosix
public import ServiceLifecycle
public import SluiceCore

/// Delivers events to Apache Kafka through one librdkafka producer shared by every route.
///
/// Delivery: with the defaults (`acks=all`, idempotence on) an event is reported
/// delivered only when every in-sync replica has it. The producer's queue is bounded;
/// when it is full `enqueue` waits, up to the caller's deadline.
///
/// Lifecycle: as a `Service`, the sink runs until graceful shutdown, then flushes what
/// is queued for at most `flushTimeout`; whatever is left fails as retryable.
public final class KafkaSink: Sink, Service {
    public let name: String
    private let client: KafkaProducerClient
    private let logger: Logger
    private let flushTimeout: Duration
    private let state = NIOLockedValueBox(State())

    private struct State {
        var ready = false
        var closed = false
    }

    public init(name: String, config: KafkaSinkConfig, flushTimeout: Duration, logger: Logger) throws {
        self.name = name
        var logger = logger
        logger[metadataKey: "sink"] = "\(name)"
        self.logger = logger
        self.flushTimeout = flushTimeout
        self.client = try KafkaProducerClient(config: config, logger: logger)
        let shown = config.effectiveProperties.map { "\($0.name)=\($0.isSecret ? "***" : $0.value)" }
        logger.info("kafka producer created", metadata: ["properties": "\(shown.joined(separator: ", "))"])
    }

    public var isReady: Bool {
        self.state.withLockedValue { $0.ready && !$0.closed } && !self.client.brokersDown
    }

    public func enqueue(
        _ events: [Event],
        topic: String,
        tracker: DeliveryTracker,
        firstIndex: Int,
        deadline: ContinuousClock.Instant
    ) async -> Int {
        var index = 0
        var backoff = Duration.microseconds(500)
        let destination = self.client.destination(topic)
        while index < events.count {
            if self.state.withLockedValue({ $0.closed }) {
                self.fail(from: index, count: events.count, firstIndex: firstIndex, tracker: tracker, with: .shuttingDown(sink: self.name))
                return index
            }
            let err = self.client.produce(events[index], to: destination, tracker: tracker, index: firstIndex + index)
            switch err {
            case RD_KAFKA_RESP_ERR_NO_ERROR:
                index += 1
                backoff = .microseconds(500)
            case RD_KAFKA_RESP_ERR__QUEUE_FULL:
                // The bounded producer queue is full: wait for delivery reports to drain it.
                if ContinuousClock.now >= deadline {
                    self.fail(from: index, count: events.count, firstIndex: firstIndex, tracker: tracker, with: .queueFull(sink: self.name))
                    return index
                }
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .milliseconds(20))
            default:
                // This event alone was refused (too large, bad topic, ...); the rest may proceed.
                tracker.complete(firstIndex + index, with: .failed(KafkaSinkError(err).deliveryFailure))
                index += 1
            }
        }
        return index
    }

    private func fail(from start: Int, count: Int, firstIndex: Int, tracker: DeliveryTracker, with failure: DeliveryFailure) {
        for index in start..<count {
            tracker.complete(firstIndex + index, with: .failed(failure))
        }
    }

    public func run() async throws {
        // Probe the cluster until a broker answers, then keep watching; readiness follows.
        try? await cancelWhenGracefulShutdown { [self] in
            while !Task.isCancelled {
                let reachable = (try? await NIOThreadPool.singleton.runIfActive { [client] in
                    client.probeMetadata(timeoutMS: 2000)
                }) ?? false
                let changed = self.state.withLockedValue { state in
                    defer { state.ready = reachable }
                    return state.ready != reachable
                }
                if changed {
                    if reachable {
                        self.logger.info("kafka sink ready")
                    } else {
                        self.logger.warning("kafka brokers unreachable; sink not ready")
                    }
                }
                try await Task.sleep(for: reachable ? .seconds(5) : .seconds(1))
            }
        }
        await self.shutdown()
    }

    /// Stops accepting events, flushes what is queued (bounded), and stops the producer.
    public func shutdown() async {
        let alreadyClosed = self.state.withLockedValue { state in
            defer { state.closed = true }
            return state.closed
        }
        guard !alreadyClosed else { return }
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
