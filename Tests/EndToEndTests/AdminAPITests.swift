import Foundation
import Testing

/// The operators' admin API through the real binary: the bearer token, `GET /config` with its
/// secrets redacted, `GET`/`PATCH /sinks/{name}` retuning each connector (Kafka by replacing its
/// producer while events flow), and `sluice top`.
@Suite(.timeLimit(.minutes(6))) struct AdminAPITests {
    static let token = "admin-token-0123456789abcdef"

    static func config(topic: String) -> String {
        """
        listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
        admin:
          address: "127.0.0.1:{ADMIN_PORT}"
          auth: { bearer_token: { env: SLUICE_ADMIN_TOKEN } }
        sinks:
          - name: events
            kafka:
              bootstrap_servers: ["{KAFKA}"]
              delivery_timeout: 10s
              properties: { linger.ms: "5", ssl.key.password: "hunter2-inline-secret" }
          - name: stream
            kinesis:
              region: us-east-1
              endpoint: "http://127.0.0.1:9"
              stream: events
              credentials: { access_key_id: AKIDEXAMPLE, secret_access_key_env: SLUICE_TEST_AWS_SECRET }
          - name: table
            zerobus:
              endpoint: "http://127.0.0.1:9"
              workspace_url: "http://127.0.0.1:9"
              client_id: sluice
              client_secret: { env: SLUICE_TEST_ZB_SECRET }
              table: main.events.clicks
        routes:
          - name: ingest
            match: { path: /v1/events }
            ingest: { sink: events, topic: \(topic) }
        """
    }

    static let environment = [
        "SLUICE_ADMIN_TOKEN": token, "SLUICE_TEST_AWS_SECRET": "aws-secret-value-never-shown", "SLUICE_TEST_ZB_SECRET": "zb-secret-value-never-shown",
    ]

    /// Starts sluice and waits for its admin listener (the Kinesis and Zerobus sinks point at a
    /// closed port: never ready, but retunable).
    static func start(topic: String) async throws -> SluiceProcess {
        let sluice = try await SluiceProcess(config: Self.config(topic: topic), environment: Self.environment, waitUntilReady: false)
        for _ in 0..<300 {
            if let health = try? await curl(["http://127.0.0.1:\(sluice.adminPort)/health"]), health.status == 200 { return sluice }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw HarnessError("the admin listener did not answer:\n\(sluice.log)")
    }

    func admin(_ sluice: SluiceProcess, _ path: String, method: String = "GET", body: String? = nil, token: String? = AdminAPITests.token) async throws
        -> CurlResponse
    {
        var arguments = ["-X", method, "http://127.0.0.1:\(sluice.adminPort)\(path)"]
        if let token { arguments += ["-H", "authorization: Bearer \(token)"] }
        if body != nil { arguments += ["-H", "content-type: application/json"] }
        return try await curl(arguments, body: body.map { Data($0.utf8) })
    }

    func settings(_ sluice: SluiceProcess, _ sink: String) async throws -> [String: String] {
        await (try self.admin(sluice, "/sinks/\(sink)").json["settings"] as? [String: String]) ?? [:]
    }

    @Test func theTokenGuardsEverythingButProbesAndConfigShowsNoSecret() async throws {
        try await requireBroker()
        let sluice = try await Self.start(topic: uniqueTopic("admin"))
        await #expect(try self.admin(sluice, "/health", token: nil).status == 200)
        await #expect([200, 503].contains(try self.admin(sluice, "/ready", token: nil).status), "probes need no token")
        for path in ["/sinks", "/config", "/stats", "/metrics", "/sinks/events"] {
            let refused = try await self.admin(sluice, path, token: nil)
            #expect(refused.status == 401, "\(path)")
            #expect((refused.json["error"] as? [String: Any])?["code"] as? String == "admin_unauthorized")
            #expect(refused.headers.lowercased().contains("www-authenticate: bearer"))
            await #expect(try self.admin(sluice, path, token: "wrong-token-0123456789").status == 401)
        }
        await #expect(try self.admin(sluice, "/reload", method: "POST", token: nil).status == 401)
        await #expect(try self.admin(sluice, "/", token: nil).status == 200, "the console page holds no data")

        let config = try await self.admin(sluice, "/config")
        #expect(config.status == 200)
        for secret in [Self.token, "hunter2-inline-secret", "aws-secret-value-never-shown", "zb-secret-value-never-shown"] {
            #expect(!config.body.contains(secret), "GET /config shows a secret")
        }
        #expect(config.body.contains(#""ssl.key.password":"[redacted]""#), "\(config.body)")
        #expect(config.body.contains(#""client_secret":{"env":"SLUICE_TEST_ZB_SECRET"}"#), "a reference is shown")
        #expect((config.json["hash"] as? String)?.hasPrefix("sha256:") == true)
        #expect(config.json["generation"] as? Int == 1)
        #expect(!sluice.log.contains("hunter2-inline-secret") && !sluice.log.contains(Self.token))
        #expect(try await sluice.terminate() == 0)
    }

    @Test func kinesisAndZerobusKnobsAreRetunedAndRefusedLikeTheConfigurationFile() async throws {
        try await requireBroker()
        let sluice = try await Self.start(topic: uniqueTopic("admin"))
        let kinesis = try await self.admin(sluice, "/sinks/stream", method: "PATCH", body: #"{"linger": "50ms", "max_batch_records": 100, "max_concurrent_requests": 4}"#)
        #expect(kinesis.status == 200, "\(kinesis.body)")
        let changed = kinesis.json["changed"] as? [String: [String: String]]
        #expect(changed?["linger"]?["before"] == "10ms" && changed?["linger"]?["after"] == "50ms", "\(kinesis.body)")
        let stream = try await self.settings(sluice, "stream")
        #expect(stream["linger"] == "50ms" && stream["max_batch_records"] == "100" && stream["max_concurrent_requests"] == "4", "\(stream)")

        // Refused, naming the field, by the configuration's own rules; nothing changes.
        for (body, field, words) in [
            (#"{"linger": "11s"}"#, "linger", "at most 10s"),
            (#"{"max_batch_records": 501}"#, "max_batch_records", "1...500"),
            (#"{"max_in_flight_events": -1}"#, "max_in_flight_events", "1...10000000"),
            (#"{"region": "eu-west-1"}"#, "region", "can change while it runs"),
            (#"{"max_wait": "1h"}"#, "max_wait", "at most 5m"),
        ] {
            let refused = try await self.admin(sluice, "/sinks/stream", method: "PATCH", body: body)
            let error = refused.json["error"] as? [String: Any]
            #expect(refused.status == 422, "\(body): \(refused.body)")
            #expect(error?["field"] as? String == field && (error?["message"] as? String)?.contains(words) == true, "\(body): \(refused.body)")
        }
        await #expect(try self.settings(sluice, "stream")["linger"] == "50ms")
        await #expect(try self.admin(sluice, "/sinks/nope", method: "PATCH", body: #"{"linger": "1s"}"#).status == 404)

        let zerobus = try await self.admin(sluice, "/sinks/table", method: "PATCH", body: #"{"batch.max_records": 50, "max_in_flight_records": 1000}"#)
        #expect(zerobus.status == 200, "\(zerobus.body)")
        let table = try await self.settings(sluice, "table")
        #expect(table["batch.max_records"] == "50" && table["max_in_flight_records"] == "1000", "\(table)")

        // Overrides show in GET /config until the next reload, with who made them.
        let overrides = try await self.admin(sluice, "/config").json["runtime_overrides"] as? [String: [String: [String: String]]]
        #expect(overrides?["sinks.stream"]?["linger"]?["value"] == "50ms")
        #expect(overrides?["sinks.stream"]?["linger"]?["configured"] == "default")
        #expect(overrides?["sinks.table"]?["batch.max_records"]?["by"] == "127.0.0.1")
        #expect(sluice.log.contains("sink retuned") && sluice.log.contains("setting=linger"))
        let reloaded = try await self.admin(sluice, "/reload", method: "POST")
        #expect(reloaded.status == 200, "\(reloaded.body)")
        await #expect((try self.admin(sluice, "/config").json["runtime_overrides"] as? [String: Any])?.isEmpty == true)
        await #expect(try self.settings(sluice, "stream")["linger"] == "10ms", "a reload returns the sink to its entry")
        #expect(try await sluice.terminate() == 0)
    }

    @Test func kafkaLingerChangesWhileEventsFlowWithoutLosingOneAndTopShowsTheSink() async throws {
        try await requireBroker()
        let topic = uniqueTopic("admin-kafka")
        let sluice = try await Self.start(topic: topic)
        let url = "\(sluice.baseURL)/v1/events"
        let batch = Data((0..<20).map { #"{"n":\#($0)}"# }.joined(separator: "\n").utf8)
        let sending = Task { () -> (acknowledged: Int, failures: [String]) in
            var acknowledged = 0
            var failures: [String] = []
            for _ in 0..<30 {
                let response = try await curl(["-H", "content-type: application/x-ndjson", url], body: batch)
                if response.status == 200 { acknowledged += 20 } else { failures.append("\(response.status) \(response.body)") }
            }
            return (acknowledged, failures)
        }
        try await Task.sleep(for: .milliseconds(300))
        let patched = try await self.admin(sluice, "/sinks/events", method: "PATCH", body: #"{"linger.ms": 50, "batch.size": "65536"}"#)
        #expect(patched.status == 200, "\(patched.body)")
        let (acknowledged, failures) = try await sending.value
        #expect(failures.isEmpty, "\(failures)")
        let settings = try await self.settings(sluice, "events")
        #expect(settings["linger.ms"] == "50" && settings["batch.size"] == "65536", "\(settings)")
        #expect(sluice.log.contains("kafka producer retuned"))
        let records = try await consume(topic, expecting: acknowledged)
        #expect(records.count == acknowledged, "every acknowledged event, no more")

        let refused = try await self.admin(sluice, "/sinks/events", method: "PATCH", body: #"{"linger.ms": "soon"}"#)
        #expect(refused.status == 422 && refused.body.contains("linger.ms"), "\(refused.body)")

        // The sink's detail: totals and ack latency from the traffic above.
        let detail = try await self.admin(sluice, "/sinks/events").json
        #expect((detail["totals"] as? [String: Any])?["delivered_events"] as? Int == acknowledged)
        #expect((detail["ack_latency_seconds"] as? [String: Any])?["p99"] is Double)

        // sluice top, once: the sink's row and the route's.
        let top = try await runProgram(
                try sluiceBinary(), ["top", "--once", "--admin", "http://127.0.0.1:\(sluice.adminPort)", "--token-env", "SLUICE_ADMIN_TOKEN"],
                environment: ProcessInfo.processInfo.environment.merging(Self.environment) { $1 })
        #expect(top.status == 0, "\(top.stderr)")
        let lines = top.stdout.split(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("SINK") && $0.contains("EVENTS/S") && $0.contains("P99") }, "\(top.stdout)")
        #expect(lines.contains { $0.hasPrefix("events ") }, "\(top.stdout)")
        #expect(lines.contains { $0.hasPrefix("ingest ") }, "\(top.stdout)")
        let unauthorized = try await runProgram(try sluiceBinary(), ["top", "--once", "--admin", "http://127.0.0.1:\(sluice.adminPort)"])
        #expect(unauthorized.status != 0 && unauthorized.stderr.contains("401"))
        #expect(try await sluice.terminate() == 0)
    }

    @Test func mutualTLSOnTheAdminListenerAdmitsOnlyCertifiedOperatorsAndNamesThemInTheLog() async throws {
        let pki = try await TLSFixtures(in: URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("sluice-pki-\(UUID().uuidString)"))
        defer { try? FileManager.default.removeItem(at: pki.directory) }
        let sluice = try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin:
                  address: "127.0.0.1:{ADMIN_PORT}"
                  tls:
                    certificates: [{ certificate_file: \(pki.serverCertificate), key_file: \(pki.serverKey) }]
                    client_certificates: required
                    client_ca_file: \(pki.caCertificate)
                sinks:
                  - name: archive
                    file: { directory: ./events }
                routes:
                  - name: ingest
                    match: { path: /v1/events }
                    ingest: { sink: archive, topic: events }
                """, waitUntilReady: false)
        let admin = "https://127.0.0.1:\(sluice.adminPort)"
        let operatorCertificate = ["--cacert", pki.caCertificate, "--cert", pki.clientCertificate, "--key", pki.clientKey]

        // Ready over mTLS (the harness's plain-HTTP probe cannot reach this listener).
        var ready = false
        for _ in 0..<300 where !ready {
            ready = (try? await curl(operatorCertificate + ["\(admin)/ready"]))?.status == 200
            if !ready { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(ready, "\(sluice.log.suffix(2000))")

        // No client certificate: the handshake fails, no HTTP answer at all; plain HTTP neither.
        let anonymous = try await curl(["--cacert", pki.caCertificate, "\(admin)/config"])
        #expect(anonymous.status == 0, "without a client certificate: \(anonymous.status) \(anonymous.body)")
        let plain = try await curl(["http://127.0.0.1:\(sluice.adminPort)/config"])
        #expect(plain.status != 200, "plain HTTP on the TLS admin port")

        let config = try await curl(operatorCertificate + ["\(admin)/config"])
        #expect(config.status == 200 && config.body.contains("\"hash\""), "\(config.body)")
        let patched = try await curl(operatorCertificate + ["-X", "PATCH", "-H", "content-type: application/json", "\(admin)/sinks/archive"], body: Data(#"{"max_in_flight_events": 1234}"#.utf8))
        #expect(patched.status == 200, "\(patched.body)")
        #expect(sluice.log.contains("by=spiffe://sluice.test/client-a@127.0.0.1") || sluice.log.contains("by=client-a"),
                "the change is logged with the operator's certificate: \(sluice.log.suffix(1500))")
        #expect(try await sluice.terminate() == 0)
    }
}
