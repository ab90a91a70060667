import Crypto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import SluiceCore
import SluiceGRPC
import Testing

/// `GET /metrics` on the admin listener through the real binary: exact counts after known
/// traffic (HTTP, gRPC, refusals), clean under `promtool check metrics`, and scraped by a real
/// Prometheus server whose query API returns the same counts.
@Suite(.timeLimit(.minutes(6))) struct MetricsTests {
    static let config = """
        listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
        admin: { address: "127.0.0.1:{ADMIN_PORT}" }
        grpc: { address: "127.0.0.1:{GRPC_PORT}" }
        policies:
          - name: keys
            api_key: { header: X-Api-Key, keys: [{ client: tenant-a, sha256: \(SHA256.hash(data: Array("key-a".utf8)).map { String(format: "%02x", $0) }.joined()) }] }
          - name: per-client
            rate_limit: { key: client, rate: 1/h, burst: 2 }
        sinks:
          - name: events
            kafka: { bootstrap_servers: ["{KAFKA}"], delivery_timeout: 10s, properties: { statistics.interval.ms: "1000" } }
        routes:
          - name: open
            match: { path: /open }
            ingest: { sink: events, topic: "{TOPIC}" }
          - name: guarded
            match: { path: /guarded }
            policies: [keys, per-client]
            ingest: { sink: events, topic: "{TOPIC}" }
          - name: grpc
            match: { grpc_service: sluice.v1.Ingest }
            ingest: { sink: events, topic: "{TOPIC}", max_event_bytes: 100 }
        """

    init() async throws {
        try await requireBroker()
    }

    /// The traffic every test here sends, and what it must count: 3 requests of 2 events on
    /// `open`; on `guarded` 2 refused without a key (401), 2 accepted, 1 over the rate limit
    /// (429); 1 request no route matches (404); one gRPC Publish of 3 events, one too large.
    func sendKnownTraffic(_ sluice: SluiceProcess) async throws {
        for _ in 0..<3 {
            let response = try await curl(
                ["-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/open"], body: Data("{\"a\":1}\n{\"b\":2}\n".utf8))
            #expect(response.status == 200, "\(response.body)")
        }
        var guarded: [Int] = []
        for key in [nil, nil, "key-a", "key-a", "key-a"] as [String?] {
            var arguments = ["-H", "content-type: application/json", "\(sluice.baseURL)/guarded"]
            if let key { arguments += ["-H", "X-Api-Key: \(key)"] }
            guarded.append(try await curl(arguments, body: Data(#"{"n":1}"#.utf8)).status)
        }
        #expect(guarded == [401, 401, 200, 200, 429])
        #expect(try await curl(["\(sluice.baseURL)/nowhere"]).status == 404)

        let response = try await withGRPCClient(
            transport: .http2NIOPosix(target: .ipv4(address: "127.0.0.1", port: sluice.grpcPort), transportSecurity: .plaintext)
        ) { client in
            try await Sluice_V1_Ingest.Client(wrapping: client).publish(
                .with {
                    $0.events = [
                        .with { $0.value = Data(#"{"g":1}"#.utf8) },
                        .with { $0.value = Data(repeating: 0x61, count: 200) },
                        .with { $0.value = Data(#"{"g":3}"#.utf8) },
                    ]
                })
        }
        #expect(response.accepted == 2)
    }

    /// The expected samples (name and labels as the exposition writes them, value).
    static let expected: [(String, Double)] = [
        (#"sluice_http_requests_total{listener="main",route="open",code="200"}"#, 3),
        (#"sluice_http_requests_total{listener="main",route="guarded",code="401"}"#, 2),
        (#"sluice_http_requests_total{listener="main",route="guarded",code="200"}"#, 2),
        (#"sluice_http_requests_total{listener="main",route="guarded",code="429"}"#, 1),
        (#"sluice_http_requests_total{listener="main",route="none",code="404"}"#, 1),
        (#"sluice_http_request_duration_seconds_count{route="open"}"#, 3),
        (#"sluice_grpc_requests_total{route="grpc",method="Publish",code="ok"}"#, 1),
        (#"sluice_events_received_total{route="open"}"#, 6),
        (#"sluice_events_received_total{route="guarded"}"#, 2),
        (#"sluice_events_received_total{route="grpc"}"#, 2),
        (#"sluice_events_rejected_total{route="grpc",reason="event_too_large"}"#, 1),
        (#"sluice_policy_denied_total{policy="keys",reason="unauthenticated"}"#, 2),
        (#"sluice_policy_denied_total{policy="per-client",reason="rate_limited"}"#, 1),
        (#"sluice_sink_events_sent_total{sink="events"}"#, 10),
        // One observation per run of a request's events that took their budget together: 3 on
        // `open`, 2 on `guarded`, 2 for the gRPC call (the too-large event splits its three).
        (#"sluice_sink_ack_duration_seconds_count{sink="events"}"#, 7),
        (#"sluice_sink_in_flight_events{sink="events"}"#, 0),
        (#"sluice_sink_ready{sink="events"}"#, 1),
        (#"sluice_build_info{version="0.15.0"}"#, 1),
    ]

    static func samples(_ exposition: String) -> [String: Double] {
        var samples: [String: Double] = [:]
        for line in exposition.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            samples[String(line[..<space])] = value
        }
        return samples
    }

    @Test func metricsCountWhatHappenedAndPassPromtool() async throws {
        let topic = uniqueTopic("metrics")
        let sluice = try await SluiceProcess(config: Self.config.replacingOccurrences(of: "{TOPIC}", with: topic))
        try await self.sendKnownTraffic(sluice)

        // librdkafka's statistics arrive every second.
        var exposition = ""
        for _ in 0..<50 {
            let scrape = try await curl(["http://127.0.0.1:\(sluice.adminPort)/metrics"])
            #expect(scrape.status == 200)
            #expect(scrape.headers.lowercased().contains("content-type: text/plain; version=0.0.4"))
            exposition = scrape.body
            if exposition.contains("sluice_kafka_broker_rtt_seconds_count") { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        let samples = Self.samples(exposition)
        for (series, value) in Self.expected {
            let found: Double? = samples[series]
            #expect(found == value, "\(series): \(String(describing: found))")
        }
        #expect(exposition.contains(#"sluice_kafka_broker_rtt_seconds{sink="events",broker="#))
        #expect(exposition.contains(#"sluice_kafka_queue_messages{sink="events"}"#))
        #expect((samples["process_resident_memory_bytes"] ?? 0) > 1_000_000)
        #expect((samples["process_open_fds"] ?? 0) > 0)
        // Bounded labels: no topic and no client-chosen path among them.
        #expect(!exposition.contains(topic) && !exposition.contains("nowhere"))
        #expect(!exposition.contains("key-a"), "no credential in the metrics")

        let dump = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-metrics-\(UUID().uuidString).txt")
        try exposition.write(to: dump, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: dump) }
        let lint = try await runProgram("/bin/sh", ["-c", "promtool check metrics < '\(dump.path)'"])
        #expect(lint.status == 0, "promtool: \(lint.stdout)\(lint.stderr)")
        #expect(try await sluice.terminate() == 0)
    }

    @Test func aRealPrometheusScrapesTheExactCounts() async throws {
        let topic = uniqueTopic("metrics-prom")
        let sluice = try await SluiceProcess(config: Self.config.replacingOccurrences(of: "{TOPIC}", with: topic))
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-prometheus-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let configFile = directory.appendingPathComponent("prometheus.yml")
        let alerts = packageRoot.appendingPathComponent("configs/prometheus-alerts.yaml").path
        try """
        global: { scrape_interval: 1s, evaluation_interval: 1s }
        rule_files: ["\(alerts)"]
        scrape_configs:
          - job_name: sluice
            static_configs: [{ targets: ["127.0.0.1:\(sluice.adminPort)"] }]
        """.write(to: configFile, atomically: true, encoding: .utf8)
        let prometheus = try await PeerProcess(
            "prometheus",
            [
                try which("prometheus"), "--config.file=\(configFile.path)", "--storage.tsdb.path=\(directory.appendingPathComponent("data").path)",
                "--web.listen-address=127.0.0.1:{PORT}",
            ])
        try await self.sendKnownTraffic(sluice)

        func query(_ expression: String) async throws -> Double? {
            let encoded = expression.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? expression
            let response = try await curl(["\(prometheus.endpoint)/api/v1/query?query=\(encoded)"])
            guard response.status == 200, let data = response.json["data"] as? [String: Any],
                let result = (data["result"] as? [[String: Any]])?.first, let value = result["value"] as? [Any], value.count == 2,
                let text = value[1] as? String
            else { return nil }
            return Double(text)
        }
        let wanted: [(String, Double)] = [
            (#"sluice_events_received_total{job="sluice",route="open"}"#, 6),
            (#"sluice_sink_events_sent_total{job="sluice",sink="events"}"#, 10),
            (#"sum(sluice_http_requests_total{job="sluice",route="guarded"})"#, 5),
            (#"sluice_policy_denied_total{job="sluice",policy="keys",reason="unauthenticated"}"#, 2),
            (#"sluice_events_rejected_total{job="sluice",route="grpc",reason="event_too_large"}"#, 1),
            (#"up{job="sluice"}"#, 1),
        ]
        var seen: [String: Double?] = [:]
        for _ in 0..<60 {
            seen = [:]
            for (expression, _) in wanted { seen[expression] = try await query(expression) }
            if wanted.allSatisfy({ seen[$0.0] == $0.1 }) { break }
            try await Task.sleep(for: .milliseconds(500))
        }
        for (expression, value) in wanted {
            let found: Double?? = seen[expression]
            #expect(found == value, "\(expression): \(String(describing: found)) (prometheus: \(prometheus.logText.suffix(500)))")
        }

        // The shipped alert rules load and evaluate; every query of the shipped dashboard runs.
        var rules: [[String: Any]] = []
        for _ in 0..<40 {
            let groups = ((try await curl(["\(prometheus.endpoint)/api/v1/rules"]).json["data"] as? [String: Any])?["groups"] as? [[String: Any]]) ?? []
            rules = groups.flatMap { ($0["rules"] as? [[String: Any]]) ?? [] }
            if rules.count == 8, rules.allSatisfy({ $0["health"] as? String == "ok" }) { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        #expect(rules.count == 8 && rules.allSatisfy { $0["health"] as? String == "ok" }, "\(rules)")
        let dashboard = try JSONSerialization.jsonObject(
            with: Data(contentsOf: packageRoot.appendingPathComponent("configs/grafana-dashboard.json"))) as? [String: Any]
        let expressions = ((dashboard?["panels"] as? [[String: Any]]) ?? []).flatMap { panel in
            ((panel["targets"] as? [[String: Any]]) ?? []).compactMap { $0["expr"] as? String }
        }
        #expect(expressions.count >= 12)
        for expression in expressions {
            let concrete = expression.replacingOccurrences(of: "$__rate_interval", with: "1m")
                .replacingOccurrences(of: "$instance", with: ".*").replacingOccurrences(of: "$job", with: ".*")
            let encoded = concrete.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? concrete
            let response = try await curl(["\(prometheus.endpoint)/api/v1/query?query=\(encoded)"])
            #expect(response.json["status"] as? String == "success", "\(concrete): \(response.body)")
        }
        prometheus.stop()
        #expect(try await sluice.terminate() == 0)
    }

    /// Every series the README lists is one Sluice exports, and the dashboard and alerts use only
    /// listed ones.
    @Test func theREADMEsMetricTableNamesEverySeries() throws {
        let readme = try String(contentsOf: packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let section = try #require(readme.components(separatedBy: "## Observing Sluice").dropFirst().first?.components(separatedBy: "\n## ").first)
        let tableNames = Set(section.split(separator: "\n").filter { $0.hasPrefix("| `") }.flatMap { line in
            line.split(separator: "|")[0].split(separator: "`").enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
        })
        for descriptor in MetricCatalogue.all {
            #expect(tableNames.contains(descriptor.name), "\(descriptor.name) is not in the README's table")
        }
        for name in ["sluice_kafka_broker_rtt_seconds", "sluice_kafka_queue_messages", "sluice_access_log_dropped_lines_total"] {
            #expect(tableNames.contains(name))
        }
        let used = try ["configs/grafana-dashboard.json", "configs/prometheus-alerts.yaml"].map {
            try String(contentsOf: packageRoot.appendingPathComponent($0), encoding: .utf8)
        }.joined()
        let pattern = try Regex(#"\b(sluice|process)_[a-z_]+"#)
        for match in used.matches(of: pattern) {
            var name = String(used[match.range])
            for suffix in ["_bucket", "_count", "_sum"] where name.hasSuffix(suffix) && !tableNames.contains(name) {
                name = String(name.dropLast(suffix.count))
            }
            #expect(tableNames.contains(name), "\(name) is used by the dashboard or alerts but not listed")
        }
    }

    @Test func metricsOffMeansNoEndpoint() async throws {
        let config = """
            listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
            admin: { address: "127.0.0.1:{ADMIN_PORT}", metrics: false }
            sinks: [{ name: archive, file: { directory: ./events } }]
            routes: [{ name: open, match: { path: /open }, ingest: { sink: archive, topic: t } }]
            """
        let sluice = try await SluiceProcess(config: config)
        let response = try await curl(["http://127.0.0.1:\(sluice.adminPort)/metrics"])
        #expect(response.status == 404)
        #expect(response.body.contains("metrics are off"))
        #expect(try await sluice.terminate() == 0)
    }
}
