import CoreMetrics
import NIOConcurrencyHelpers

/// One sink's delivery series (`sluice_sink_*`): the recorder its ledger tells about every settled
/// event, batch and retry. Handlers are made once per sink, not looked up per event; failures
/// (rare, a bounded set of error codes) keep a handler per code.
public final class SinkDeliveryMetrics: DeliveryRecorder {
    private let factory: any MetricsFactory
    private let sink: String
    private let sent: Counter
    private let sentBytes: Counter
    private let ack: Timer
    private let batch: Recorder
    private let retries: Counter
    private let failed = NIOLockedValueBox<[String: Counter]>([:])

    public init(sink: String, factory: any MetricsFactory) {
        self.factory = factory
        self.sink = sink
        self.sent = MetricCatalogue.sinkEventsSent.counter(sink, factory: factory)
        self.sentBytes = MetricCatalogue.sinkEventsSentBytes.counter(sink, factory: factory)
        self.ack = MetricCatalogue.sinkAckDuration.timer(sink, factory: factory)
        self.batch = MetricCatalogue.sinkBatchSize.histogram(sink, factory: factory)
        self.retries = MetricCatalogue.sinkRetries.counter(sink, factory: factory)
    }

    public func recordSettled(sink: String, outcome: DeliveryOutcome, count: Int, bytes: Int, latency: Duration?) {
        switch outcome {
        case .delivered:
            self.sent.increment(by: count)
            self.sentBytes.increment(by: bytes)
        case .failed(let failure):
            self.failedCounter(failure.code).increment(by: count)
        }
        if let latency {
            // One observation per settlement: a batch settled as one shares its latency.
            self.ack.record(latency)
        }
    }

    public func recordBatch(size: Int) {
        self.batch.record(size)
    }

    public func recordRetries(_ count: Int) {
        self.retries.increment(by: count)
    }

    private func failedCounter(_ code: String) -> Counter {
        self.failed.withLockedValue { counters in
            if let counter = counters[code] { return counter }
            let counter = MetricCatalogue.sinkEventsFailed.counter(self.sink, code, factory: self.factory)
            counters[code] = counter
            return counter
        }
    }
}

extension Timer {
    /// Records `duration` (clamped at zero).
    @inlinable
    public func record(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self.recordNanoseconds(max(0, seconds &* 1_000_000_000 &+ attoseconds / 1_000_000_000))
    }
}
