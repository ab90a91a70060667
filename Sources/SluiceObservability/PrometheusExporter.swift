import CoreMetrics
import NIOConcurrencyHelpers
import Prometheus
import SluiceCore

/// The gateway's metrics registry and its Prometheus text exposition (`GET /metrics` on the admin
/// listener). `factory` is what every module makes its series through (swift-metrics handlers,
/// described by their `MetricDescriptor`s); gauges that are cheaper read than kept (in-flight
/// budgets, endpoint states, process figures) are set by `beforeScrape` hooks when scraped.
public final class PrometheusExporter: Sendable {
    public let registry: PrometheusCollectorRegistry
    public let factory: DescribedPrometheusFactory
    private let hooks = NIOLockedValueBox<[@Sendable () -> Void]>([])
    private let process: ProcessMetrics

    /// - Parameter version: the `version` label of `sluice_build_info`.
    public init(version: String) {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        self.factory = DescribedPrometheusFactory(registry: registry)
        self.process = ProcessMetrics(factory: self.factory)
        MetricCatalogue.buildInfo.gauge(version, factory: self.factory).record(1)
        // Present from the start, so alerts on reload failures see a series (the reload work
        // counts into it).
        for result in ["success", "failure"] { _ = MetricCatalogue.configReloads.counter(result, factory: self.factory) }
    }

    /// Runs `hook` before every scrape (to set gauges read from running state).
    public func beforeScrape(_ hook: @escaping @Sendable () -> Void) {
        self.hooks.withLockedValue { $0.append(hook) }
    }

    /// The exposition, in the Prometheus text format (version 0.0.4).
    public func scrape() -> [UInt8] {
        self.process.update()
        for hook in self.hooks.withLockedValue({ $0 }) { hook() }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(16 * 1024)
        self.registry.emit(into: &buffer)
        self.factory.emitSummaries(into: &buffer)
        return buffer
    }

    /// The content type of `scrape()`'s output.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"
}

/// swift-metrics over a Prometheus registry, with each series' help text and buckets taken from
/// its `MetricDescriptor` (swift-prometheus's own factory has no help text, which promtool
/// flags). A series made without a descriptor gets no help and the default buckets.
public struct DescribedPrometheusFactory: DescribingMetricsFactory {
    public let registry: PrometheusCollectorRegistry
    private let descriptors = NIOLockedValueBox<[String: MetricDescriptor]>([:])
    /// Summaries by name, then by their rendered labels.
    private let summaries = NIOLockedValueBox<[String: [String: WindowSummary]]>([:])

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    public func describe(_ descriptor: MetricDescriptor) {
        self.descriptors.withLockedValue { $0[descriptor.name] = descriptor }
    }

    public func register(_ summary: WindowSummary) {
        let key = Self.render(summary.labels)
        self.summaries.withLockedValue { $0[summary.name, default: [:]][key] = summary }
    }

    /// The summaries in the text format: HELP and TYPE once per name, then each label set's
    /// quantiles, `_sum` and `_count` (those the backend has reported).
    func emitSummaries(into buffer: inout [UInt8]) {
        let byName = self.summaries.withLockedValue { $0 }
        for name in byName.keys.sorted() {
            let reported = byName[name]!.sorted { $0.key < $1.key }.compactMap { key, summary in summary.current.map { (key, $0) } }
            guard !reported.isEmpty else { continue }
            var text = ""
            if let help = self.descriptor(name)?.help { text += "# HELP \(name) \(help)\n" }
            text += "# TYPE \(name) summary\n"
            for (labels, figures) in reported {
                let separator = labels.isEmpty ? "" : ","
                for (quantile, value) in figures.quantiles {
                    text += "\(name){\(labels)\(separator)quantile=\"\(quantile)\"} \(value)\n"
                }
                let braces = labels.isEmpty ? "" : "{\(labels)}"
                text += "\(name)_sum\(braces) \(figures.sum)\n"
                text += "\(name)_count\(braces) \(figures.count)\n"
            }
            buffer.append(contentsOf: text.utf8)
        }
    }

    /// `a="x",b="y"`, values escaped as the text format wants.
    static func render(_ labels: [(String, String)]) -> String {
        labels.map { name, value in
            var escaped = ""
            for character in value {
                switch character {
                case "\\": escaped += "\\\\"
                case "\"": escaped += "\\\""
                case "\n": escaped += "\\n"
                default: escaped.append(character)
                }
            }
            return "\(name)=\"\(escaped)\""
        }.joined(separator: ",")
    }

    private func descriptor(_ name: String) -> MetricDescriptor? {
        self.descriptors.withLockedValue { $0[name] }
    }

    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        self.registry.makeCounter(name: label, labels: dimensions, help: self.descriptor(label)?.help ?? "")
    }

    public func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        self.registry.makeCounter(name: label, labels: dimensions, help: self.descriptor(label)?.help ?? "")
    }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        let descriptor = self.descriptor(label)
        guard aggregate else {
            return self.registry.makeGauge(name: label, labels: dimensions, help: descriptor?.help ?? "")
        }
        let buckets = descriptor?.buckets.isEmpty == false ? descriptor!.buckets : MetricBuckets.batchSize
        return self.registry.makeValueHistogram(name: label, labels: dimensions, buckets: buckets, help: descriptor?.help ?? "")
    }

    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        self.registry.makeGauge(name: label, labels: dimensions, help: self.descriptor(label)?.help ?? "")
    }

    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        let descriptor = self.descriptor(label)
        let seconds = descriptor?.buckets.isEmpty == false ? descriptor!.buckets : MetricBuckets.latencySeconds
        let buckets = seconds.map { Duration.nanoseconds(Int64(($0 * 1_000_000_000).rounded())) }
        return self.registry.makeDurationHistogram(name: label, labels: dimensions, buckets: buckets, help: descriptor?.help ?? "")
    }

    public func destroyCounter(_ handler: any CounterHandler) {
        if let counter = handler as? Prometheus.Counter { self.registry.unregisterCounter(counter) }
    }

    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
        if let counter = handler as? Prometheus.Counter { self.registry.unregisterCounter(counter) }
    }

    public func destroyRecorder(_ handler: any RecorderHandler) {
        if let gauge = handler as? Prometheus.Gauge {
            self.registry.unregisterGauge(gauge)
        } else if let histogram = handler as? ValueHistogram {
            self.registry.unregisterValueHistogram(histogram)
        }
    }

    public func destroyMeter(_ handler: any MeterHandler) {
        if let gauge = handler as? Prometheus.Gauge { self.registry.unregisterGauge(gauge) }
    }

    public func destroyTimer(_ handler: any TimerHandler) {
        if let histogram = handler as? DurationHistogram { self.registry.unregisterDurationHistogram(histogram) }
    }
}
