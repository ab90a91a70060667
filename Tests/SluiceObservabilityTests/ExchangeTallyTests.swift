import SluiceCore
import Testing

@testable import SluiceObservability

/// The per-request observers keep the last label set and tally to skip hashing names: runs of
/// one route, alternating routes, statuses and upstreams must still land on the right series.
@Suite(.timeLimit(.minutes(6))) struct ExchangeTallyTests {
    static func record(route: String?, upstream: String? = nil, listener: String = "main", status: Int = 200, events: Int = 0) -> ExchangeRecord {
        var facts = ExchangeFacts(route: route, upstream: upstream)
        facts.events = events
        return ExchangeRecord(
            transport: .http, listener: listener, method: "POST", path: "/", protocolName: "HTTP/1.1", status: status,
            facts: facts, bytesIn: 10, bytesOut: 5, duration: .milliseconds(1), client: nil, startedAt: 0)
    }

    /// The sequence both tests observe: runs, alternations, and a label that changes alone.
    static let records: [ExchangeRecord] = [
        record(route: "a", events: 2), record(route: "a", events: 3), record(route: "b", upstream: "up1"),
        record(route: "a", events: 1), record(route: "b", upstream: "up2", status: 502), record(route: "b", upstream: "up1"),
        record(route: "a", listener: "other"), record(route: "a", status: 404), record(route: nil, upstream: "up2"),
        record(route: "a", events: 4),
    ]

    @Test func liveTotalsLandOnTheirRouteAndUpstream() {
        let stats = LiveExchangeStats()
        for record in Self.records { stats.observe(record) }
        let (routes, upstreams) = stats.snapshot
        #expect(routes.keys.sorted() == ["a", "b"])
        #expect(routes["a"]?.requests == 6 && routes["a"]?.events == 10 && routes["a"]?.bytes == 60 && routes["a"]?.errors == 0)
        #expect(routes["b"]?.requests == 3 && routes["b"]?.errors == 1)
        #expect(upstreams["up1"]?.requests == 2 && upstreams["up1"]?.errors == 0)
        #expect(upstreams["up2"]?.requests == 2 && upstreams["up2"]?.errors == 1)
    }

    @Test func requestSeriesLandOnTheirLabels() throws {
        let exporter = PrometheusExporter(version: "test")
        let metrics = ExchangeMetrics(factory: exporter.factory)
        for record in Self.records { metrics.observe(record) }
        let text = String(decoding: exporter.scrape(), as: UTF8.self)
        let lines = Set(text.split(separator: "\n").map(String.init))
        for (listener, route, code, count) in [
            ("main", "a", "200", 4), ("main", "b", "200", 2), ("main", "b", "502", 1), ("other", "a", "200", 1),
            ("main", "a", "404", 1), ("main", "none", "200", 1),
        ] {
            let line = "sluice_http_requests_total{listener=\"\(listener)\",route=\"\(route)\",code=\"\(code)\"} \(count)"
            #expect(lines.contains(line), "\(line) in:\n\(text)")
        }
        #expect(lines.contains("sluice_events_received_total{route=\"a\"} 10"), "\(text)")
        #expect(text.contains("sluice_http_request_duration_seconds_count{route=\"b\"} 3"), "\(text)")
    }
}
