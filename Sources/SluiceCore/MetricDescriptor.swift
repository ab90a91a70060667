import CoreMetrics
import NIOConcurrencyHelpers

/// A series Sluice exports: its name (Prometheus conventions: base units, `_total` for counters,
/// `_seconds`, `_bytes`), what it means, its label names and, for a histogram, its buckets. Each
/// series is described once, where it is owned (`MetricCatalogue` for the gateway's, a connector
/// for its backend's), and made only through its descriptor, so a name and its help never drift.
public struct MetricDescriptor: Sendable, Hashable {
    public enum Kind: String, Sendable {
        case counter, gauge, histogram
        /// Quantiles a backend computed over its own window (librdkafka's statistics): Prometheus
        /// summary samples, which swift-metrics has no handler for (`WindowSummary`).
        case summary
    }

    public let name: String
    public let help: String
    public let kind: Kind
    public let labels: [String]
    /// Upper bounds of a histogram's buckets (seconds for a duration).
    public let buckets: [Double]

    public init(_ name: String, _ kind: Kind, labels: [String] = [], buckets: [Double] = [], help: String) {
        self.name = name
        self.help = help
        self.kind = kind
        self.labels = labels
        self.buckets = buckets
    }

    /// A counter with these label values (in the order of `labels`).
    public func counter(_ values: String..., factory: any MetricsFactory) -> Counter {
        Counter(label: self.name, dimensions: self.dimensions(values, .counter, factory), factory: factory)
    }

    /// A counter of fractional amounts (seconds of CPU) with these label values.
    public func floatingPointCounter(_ values: String..., factory: any MetricsFactory) -> FloatingPointCounter {
        FloatingPointCounter(label: self.name, dimensions: self.dimensions(values, .counter, factory), factory: factory)
    }

    /// A gauge with these label values.
    public func gauge(_ values: String..., factory: any MetricsFactory) -> Gauge {
        Gauge(label: self.name, dimensions: self.dimensions(values, .gauge, factory), factory: factory)
    }

    /// A histogram of durations with these label values.
    public func timer(_ values: String..., factory: any MetricsFactory) -> Timer {
        Timer(label: self.name, dimensions: self.dimensions(values, .histogram, factory), factory: factory)
    }

    /// A histogram of values (sizes, counts) with these label values.
    public func histogram(_ values: String..., factory: any MetricsFactory) -> Recorder {
        Recorder(label: self.name, dimensions: self.dimensions(values, .histogram, factory), aggregate: true, factory: factory)
    }

    /// A summary with these label values, set whole from a backend's figures.
    public func summary(_ values: String..., factory: any MetricsFactory) -> WindowSummary {
        let summary = WindowSummary(name: self.name, labels: self.dimensions(values, .summary, factory))
        (factory as? any DescribingMetricsFactory)?.register(summary)
        return summary
    }

    private func dimensions(_ values: [String], _ kind: Kind, _ factory: any MetricsFactory) -> [(String, String)] {
        precondition(kind == self.kind, "\(self.name) is a \(self.kind), not a \(kind)")
        precondition(values.count == self.labels.count, "\(self.name) takes labels \(self.labels), given \(values.count) values")
        (factory as? any DescribingMetricsFactory)?.describe(self)
        return Array(zip(self.labels, values))
    }
}

/// A metrics factory that takes each series' help text and buckets before its first handler
/// (the Prometheus one in SluiceObservability).
public protocol DescribingMetricsFactory: MetricsFactory {
    func describe(_ descriptor: MetricDescriptor)
    /// Exports `summary` from now on (the same name and labels replace an earlier one).
    func register(_ summary: WindowSummary)
}

/// Quantiles, sum and count a backend computed over its last window (librdkafka's RTT
/// statistics), exported as a Prometheus summary.
public final class WindowSummary: Sendable {
    public struct Figures: Sendable {
        public var quantiles: [(quantile: String, value: Double)]
        public var sum: Double
        public var count: Double

        public init(quantiles: [(quantile: String, value: Double)], sum: Double, count: Double) {
            self.quantiles = quantiles
            self.sum = sum
            self.count = count
        }
    }

    public let name: String
    public let labels: [(String, String)]
    private let figures = NIOLockedValueBox<Figures?>(nil)

    init(name: String, labels: [(String, String)]) {
        self.name = name
        self.labels = labels
    }

    public func set(_ figures: Figures) {
        self.figures.withLockedValue { $0 = figures }
    }

    /// The latest figures; nil until the backend reported any.
    public var current: Figures? { self.figures.withLockedValue { $0 } }
}

/// Bucket bounds the gateway's histograms share.
public enum MetricBuckets {
    /// Request and acknowledgement latencies, 1 ms to 30 s.
    public static let latencySeconds: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
    /// Events per batch a sink sends.
    public static let batchSize: [Double] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000, 10000]
}

/// The gateway's own series. Label values are bounded: route, sink, upstream, listener and policy
/// names come from the configuration, codes and reasons from the error catalogue — never a topic,
/// a path or anything else a client chooses.
public enum MetricCatalogue {
    // MARK: Requests
    public static let httpRequests = MetricDescriptor(
        "sluice_http_requests_total", .counter, labels: ["listener", "route", "code"],
        help: "HTTP requests answered, by listener, route (\"none\" when no route matched) and status code.")
    public static let httpRequestDuration = MetricDescriptor(
        "sluice_http_request_duration_seconds", .histogram, labels: ["route"], buckets: MetricBuckets.latencySeconds,
        help: "Time from a request's head to the end of its response, by route.")
    public static let grpcRequests = MetricDescriptor(
        "sluice_grpc_requests_total", .counter, labels: ["route", "method", "code"],
        help: "gRPC calls finished, by route, method and gRPC status code name.")
    public static let grpcRequestDuration = MetricDescriptor(
        "sluice_grpc_request_duration_seconds", .histogram, labels: ["route"], buckets: MetricBuckets.latencySeconds,
        help: "Time from a gRPC call's start to its end, by route.")

    // MARK: Events
    public static let eventsReceived = MetricDescriptor(
        "sluice_events_received_total", .counter, labels: ["route"],
        help: "Events decoded from requests and handed to the route's sink.")
    public static let eventsReceivedBytes = MetricDescriptor(
        "sluice_events_received_bytes_total", .counter, labels: ["route"],
        help: "Bytes of the events counted by sluice_events_received_total (value, key and headers).")
    public static let eventsRejected = MetricDescriptor(
        "sluice_events_rejected_total", .counter, labels: ["route", "reason"],
        help: "Events of a route that were not delivered (or, with ack: accepted, not queued), by error code.")
    public static let eventsDeadLettered = MetricDescriptor(
        "sluice_events_dead_lettered_total", .counter, labels: ["route", "reason"],
        help: "Events of a route settled in its dead-letter destination instead of its own, by the error code that sent them there.")

    public static let eventsMirrored = MetricDescriptor(
        "sluice_events_mirrored_total", .counter, labels: ["route", "outcome"],
        help: "Events of a route offered to its mirror: queued (the mirror sink took them) or dropped (it had no room; the response never waits for a mirror).")

    // MARK: Spools (ack: spooled)
    public static let spoolBytes = MetricDescriptor(
        "sluice_spool_bytes", .gauge, labels: ["route"], help: "Bytes of the route's spool segments on disk (bounded by its max_bytes).")
    public static let spoolMaxBytes = MetricDescriptor(
        "sluice_spool_max_bytes", .gauge, labels: ["route"], help: "The route's spool max_bytes: past it, requests wait and then get 503 spool_full.")
    public static let spoolEvents = MetricDescriptor(
        "sluice_spool_events", .gauge, labels: ["route"], help: "Events answered 202 and spooled that the sink has not settled yet.")
    public static let spoolOldestEventAge = MetricDescriptor(
        "sluice_spool_oldest_event_age_seconds", .gauge, labels: ["route"],
        help: "How long the oldest spooled event not yet settled by the sink has waited (0 when none waits).")
    public static let spoolEventsForwarded = MetricDescriptor(
        "sluice_spool_events_forwarded_total", .counter, labels: ["route"], help: "Spooled events the sink settled as delivered.")
    public static let spoolEventsRetried = MetricDescriptor(
        "sluice_spool_events_retried_total", .counter, labels: ["route"],
        help: "Spooled events sent to the sink again after a retryable failure (one per event and attempt).")
    public static let spoolEventsDeadLettered = MetricDescriptor(
        "sluice_spool_events_dead_lettered_total", .counter, labels: ["route"],
        help: "Spooled events the sink refused for good that went to the route's dead-letter destination.")
    public static let spoolEventsDropped = MetricDescriptor(
        "sluice_spool_events_dropped_total", .counter, labels: ["route"],
        help: "Spooled events the sink refused for good with nowhere else to go (each one logged).")
    public static let spoolEventsReplayed = MetricDescriptor(
        "sluice_spool_events_replayed_total", .counter, labels: ["route"],
        help: "Events found in the spool at start and forwarded (spooled by an earlier process).")
    public static let spoolEventsPossiblyDuplicated = MetricDescriptor(
        "sluice_spool_events_possibly_duplicated_total", .counter, labels: ["route"],
        help: "Of the replayed events, those an earlier process had already handed to the sink: the sink may hold them twice.")

    // MARK: Sinks
    public static let sinkEventsSent = MetricDescriptor(
        "sluice_sink_events_sent_total", .counter, labels: ["sink"],
        help: "Events the sink's backend acknowledged.")
    public static let sinkEventsSentBytes = MetricDescriptor(
        "sluice_sink_events_sent_bytes_total", .counter, labels: ["sink"],
        help: "Bytes of the events counted by sluice_sink_events_sent_total, as the sink counts them against max_in_flight_bytes (file: the NDJSON lines written).")
    public static let sinkEventsFailed = MetricDescriptor(
        "sluice_sink_events_failed_total", .counter, labels: ["sink", "error"],
        help: "Events the sink settled as failed (refused, rejected by the backend, timed out), by error code.")
    public static let sinkAckDuration = MetricDescriptor(
        "sluice_sink_ack_duration_seconds", .histogram, labels: ["sink"], buckets: MetricBuckets.latencySeconds,
        help: "Time from the sink taking an event (its in-flight budget) to the backend's acknowledgement or failure.")
    public static let sinkInFlightEvents = MetricDescriptor(
        "sluice_sink_in_flight_events", .gauge, labels: ["sink"],
        help: "Events handed to the sink whose fate is not yet known.")
    public static let sinkInFlightBytes = MetricDescriptor(
        "sluice_sink_in_flight_bytes", .gauge, labels: ["sink"],
        help: "Bytes of the events counted by sluice_sink_in_flight_events.")
    public static let sinkMaxInFlightEvents = MetricDescriptor(
        "sluice_sink_max_in_flight_events", .gauge, labels: ["sink"],
        help: "The sink's max_in_flight_events: in-flight events at which requests wait.")
    public static let sinkMaxInFlightBytes = MetricDescriptor(
        "sluice_sink_max_in_flight_bytes", .gauge, labels: ["sink"],
        help: "The sink's max_in_flight_bytes: in-flight bytes at which requests wait.")
    public static let sinkWaitingRequests = MetricDescriptor(
        "sluice_sink_waiting_requests", .gauge, labels: ["sink"],
        help: "Requests waiting for room in the sink's in-flight budget (backpressure).")
    public static let sinkReady = MetricDescriptor(
        "sluice_sink_ready", .gauge, labels: ["sink"],
        help: "1 while the sink reaches its backend, 0 otherwise.")
    public static let sinkBatchSize = MetricDescriptor(
        "sluice_sink_batch_size", .histogram, labels: ["sink"], buckets: MetricBuckets.batchSize,
        help: "Events per batch the sink sent to its backend (file writes, Kinesis PutRecords calls, Zerobus record batches; Kafka batches are in sluice_kafka_batch_events).")
    public static let sinkRetries = MetricDescriptor(
        "sluice_sink_retries_total", .counter, labels: ["sink"],
        help: "Events or batches the sink sent again after a retryable failure.")

    // MARK: Upstreams
    public static let upstreamRequests = MetricDescriptor(
        "sluice_upstream_requests_total", .counter, labels: ["upstream", "code"],
        help: "Requests proxied to the upstream, by the upstream's status code (\"error\" when no response came).")
    public static let upstreamRequestDuration = MetricDescriptor(
        "sluice_upstream_request_duration_seconds", .histogram, labels: ["upstream"], buckets: MetricBuckets.latencySeconds,
        help: "Time from sending a request to the upstream to its response head.")
    public static let upstreamEndpoints = MetricDescriptor(
        "sluice_upstream_endpoints", .gauge, labels: ["upstream", "state"],
        help: "The upstream's endpoints by state: in_service, unhealthy (active checks), ejected (outlier detection).")
    public static let upstreamRetries = MetricDescriptor(
        "sluice_upstream_retries_total", .counter, labels: ["upstream"],
        help: "Requests sent to the upstream again after a retryable failure.")
    public static let upstreamOverflows = MetricDescriptor(
        "sluice_upstream_overflows_total", .counter, labels: ["upstream"],
        help: "Requests refused because the upstream's circuit breaker (max requests and queue) was full.")

    // MARK: Policies, configuration, process
    public static let policyDenied = MetricDescriptor(
        "sluice_policy_denied_total", .counter, labels: ["policy", "reason"],
        help: "Requests a policy refused (401, 403, 429), by policy name and error code.")
    public static let configReloads = MetricDescriptor(
        "sluice_config_reloads_total", .counter, labels: ["result"],
        help: "Configuration reloads, by result (success, failure).")
    public static let buildInfo = MetricDescriptor(
        "sluice_build_info", .gauge, labels: ["version"],
        help: "Always 1; the running Sluice's version.")
    public static let processResidentMemory = MetricDescriptor(
        "process_resident_memory_bytes", .gauge, help: "Resident memory size in bytes.")
    public static let processOpenFDs = MetricDescriptor(
        "process_open_fds", .gauge, help: "Open file descriptors.")
    public static let processMaxFDs = MetricDescriptor(
        "process_max_fds", .gauge, help: "The process's limit on open file descriptors.")
    public static let processCPU = MetricDescriptor(
        "process_cpu_seconds_total", .counter, help: "User and system CPU time spent, in seconds.")
    public static let processStartTime = MetricDescriptor(
        "process_start_time_seconds", .gauge, help: "Start time of the process since the Unix epoch, in seconds.")

    /// Every series the gateway itself exports (connectors add their backend's).
    public static let all: [MetricDescriptor] = [
        httpRequests, httpRequestDuration, grpcRequests, grpcRequestDuration,
        eventsReceived, eventsReceivedBytes, eventsRejected, eventsDeadLettered, eventsMirrored,
        spoolBytes, spoolMaxBytes, spoolEvents, spoolOldestEventAge, spoolEventsForwarded, spoolEventsRetried, spoolEventsDeadLettered,
        spoolEventsDropped, spoolEventsReplayed, spoolEventsPossiblyDuplicated,
        sinkEventsSent, sinkEventsSentBytes, sinkEventsFailed, sinkAckDuration, sinkInFlightEvents, sinkInFlightBytes,
        sinkMaxInFlightEvents, sinkMaxInFlightBytes, sinkWaitingRequests, sinkReady, sinkBatchSize, sinkRetries,
        upstreamRequests, upstreamRequestDuration, upstreamEndpoints, upstreamRetries, upstreamOverflows,
        policyDenied, configReloads, buildInfo,
        processResidentMemory, processOpenFDs, processMaxFDs, processCPU, processStartTime,
    ]
}
