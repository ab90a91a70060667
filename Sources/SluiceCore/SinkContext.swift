import CoreMetrics
import Logging

/// What the gateway gives every sink it builds: its name, its delivery ledger (in-flight budget and
/// the recorder that sees every settled event), how long it may take to flush at shutdown, where
/// it logs, and the process environment (for secrets named by `{ env: VARIABLE }`). One value per
/// sink, built by the gateway; connectors never read the process-wide state these stand for.
public struct SinkContext: Sendable {
    /// The sink's name in the configuration.
    public var name: String
    /// The one way the sink takes and gives back budget and settles events; it tells the
    /// recorder (metrics) about every settled event.
    public var ledger: DeliveryLedger
    /// Bytes and events handed to the sink whose fate is not yet known.
    public var budget: InFlightBudget { self.ledger.budget }
    /// How long the sink may take at shutdown to settle what it holds (`shutdown.flush_timeout`).
    public var flushTimeout: Duration
    public var logger: Logger
    public var environment: [String: String]
    /// Where the sink makes series of its own (a connector's backend figures, such as
    /// librdkafka's statistics), through their `MetricDescriptor`s. A no-op factory when metrics
    /// are off.
    public var metrics: any MetricsFactory

    /// The sink's running totals for operators (admin API, console, `sluice top`).
    public var liveStats: SinkLiveStats

    /// - Parameter recorder: told about every settled event besides `liveStats` (the sink's
    ///   Prometheus series).
    public init(
        name: String, budget: InFlightBudget, flushTimeout: Duration, logger: Logger, environment: [String: String],
        recorder: (any DeliveryRecorder)? = nil, metrics: any MetricsFactory = NOOPMetricsHandler.instance,
        liveStats: SinkLiveStats = SinkLiveStats(measuresLatency: false)
    ) {
        self.name = name
        self.liveStats = liveStats
        let recorders: [any DeliveryRecorder] = [liveStats] + (recorder.map { [$0] } ?? [])
        self.ledger = DeliveryLedger(sink: name, budget: budget, recorder: recorders.count == 1 ? liveStats : DeliveryRecorders(recorders))
        self.flushTimeout = flushTimeout
        self.logger = logger
        self.environment = environment
        self.metrics = metrics
    }

    /// Whether series made through `metrics` are exported (a sink may skip gathering figures,
    /// such as librdkafka's statistics, when they are not).
    public var exportsMetrics: Bool { !(self.metrics is NOOPMetricsHandler) }
}
