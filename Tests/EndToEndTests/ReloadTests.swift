import AsyncHTTPClient
import Foundation
import NIOCore
import NIOPosix
import Testing

/// Reloading the real binary while clients send: zero failed requests through route, limit and
/// sink changes and a sink replaced, and every event answered 200 found in Kafka; what a reload
/// keeps (rate-limit buckets, listener sockets) and what it refuses (invalid files, changes
/// only a restart can make).
@Suite(.timeLimit(.minutes(6))) struct ReloadTests {
    /// Generation `step` of the configuration the load test walks through; every sink writes
    /// `topic`.
    static func loadConfig(step: Int, topic: String) -> String {
        let rate = step >= 2 ? "200000/s" : "100000/s"
        let linger = step >= 3 ? "20" : "5"
        let sinks =
            step >= 4
            ? """
              - name: replacement
                kafka: { bootstrap_servers: ["{KAFKA}"], delivery_timeout: 10s, properties: { linger.ms: "2" } }
            """
            : """
              - name: events
                kafka: { bootstrap_servers: ["{KAFKA}"], delivery_timeout: 10s, properties: { linger.ms: "\(linger)" } }
            """
        let sink = step >= 4 ? "replacement" : "events"
        let extra =
            step >= 2
            ? """
              - name: extra
                match: { path: /v1/extra }
                ingest: { sink: \(sink), topic: \(topic) }
            """ : ""
        return """
            listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
            admin: { address: "127.0.0.1:{ADMIN_PORT}" }
            shutdown: { drain_timeout: 10s }
            policies:
              - name: limit
                rate_limit: { key: source_ip, rate: \(rate), burst: 100000 }
            sinks:
            \(sinks)
            routes:
              - name: ingest
                match: { path: /v1/events }
                policies: [limit]
                ingest: { sink: \(sink), topic: \(topic) }
            \(extra)
            """
    }

    static func write(_ config: String, to sluice: SluiceProcess) throws {
        let text = config
            .replacingOccurrences(of: "{PORT}", with: String(sluice.port))
            .replacingOccurrences(of: "{ADMIN_PORT}", with: String(sluice.adminPort))
            .replacingOccurrences(of: "{GRPC_PORT}", with: String(sluice.grpcPort))
            .replacingOccurrences(of: "{KAFKA}", with: kafkaBootstrap)
        let path = sluice.workDirectory.appendingPathComponent("sluice.yaml")
        // Written whole, then renamed: a reader never sees half a file.
        try text.write(to: path, atomically: true, encoding: .utf8)
    }

    /// Sends event `sender-sequence`, records its answer, and sends the next from the answer's
    /// callback until `load` is stopped.
    static func sendNext(_ client: HTTPClient, url: String, sender: Int, sequence: Int, load: LoadProgress) {
        guard !load.isStopped else {
            load.finished(sender)
            return
        }
        let id = "\(sender)-\(sequence)"
        let request: HTTPClient.Request
        do {
            request = try HTTPClient.Request(
                url: url, method: .POST, headers: ["content-type": "application/json"], body: .string(#"{"id":"\#(id)"}"#))
        } catch {
            load.record(id, sender: sender, failure: "\(error)")
            load.finished(sender)
            return
        }
        client.execute(request: request, deadline: .now() + .seconds(30)).whenComplete { result in
            switch result {
            case .success(let response) where response.status == .ok:
                load.record(id, sender: sender, failure: nil)
            case .success(let response):
                load.record(id, sender: sender, failure: "\(response.status.code) \(response.body.map { String(buffer: $0) } ?? "")")
            case .failure(let error):
                load.record(id, sender: sender, failure: "\(error)")
            }
            Self.sendNext(client, url: url, sender: sender, sequence: sequence + 1, load: load)
        }
    }

    static func reload(_ sluice: SluiceProcess) async throws -> CurlResponse {
        try await curl(["-X", "POST", "http://127.0.0.1:\(sluice.adminPort)/reload"])
    }

    @Test func clientsSendingThroughSeveralReloadsSeeNoFailureAndEveryAcknowledgedEventIsInKafka() async throws {
        try await requireBroker()
        let topic = uniqueTopic("reload")
        let sluice = try await SluiceProcess(config: Self.loadConfig(step: 1, topic: topic))
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        let load = LoadProgress(senders: 4)
        let url = "\(sluice.baseURL)/v1/events"

        // The topic exists and the sink delivers before the clients start (the first event to a
        // new topic waits for the broker to create it).
        let first = try await curl(["-H", "content-type: application/json", url], body: Data(#"{"id":"first"}"#.utf8))
        #expect(first.status == 200, "\(first.body)")

        // Four clients, each sending one event per request, back to back, until told to stop.
        // They run on the HTTP client's event loop, request after request from each answer's
        // callback: the test runner's cooperative threads, which other suites' blocking helpers
        // can hold for seconds, never slow them down.
        for sender in 0..<4 { Self.sendNext(client, url: url, sender: sender, sequence: 0, load: load) }
        // Traffic flows on generation 1, then: a route added and a limit changed; the sink's
        // settings changed (by SIGHUP); the sink replaced by another one. Each step waits until
        // every client has had answers on the generation before it, however slow the machine is,
        // so each reload lands in the middle of traffic rather than after a fixed pause.
        var summaries: [[String: Any]] = []
        var progressed: [Bool] = []
        progressed.append(await load.waitForAcknowledgements(each: 10))
        try Self.write(Self.loadConfig(step: 2, topic: topic), to: sluice)
        let second = try await Self.reload(sluice)
        #expect(second.status == 200, "\(second.body)")
        summaries.append(second.json)
        progressed.append(await load.waitForAcknowledgements(each: 10))
        try Self.write(Self.loadConfig(step: 3, topic: topic), to: sluice)
        kill(sluice.process.processIdentifier, SIGHUP)
        // SIGHUP answers nobody: wait for the log line before moving on.
        var sighupApplied = false
        for _ in 0..<300 where !sighupApplied {
            sighupApplied = sluice.log.contains("trigger=SIGHUP")
            if !sighupApplied { try await Task.sleep(for: .milliseconds(100)) }
        }
        progressed.append(await load.waitForAcknowledgements(each: 10))
        try Self.write(Self.loadConfig(step: 4, topic: topic), to: sluice)
        let fourth = try await Self.reload(sluice)
        #expect(fourth.status == 200, "\(fourth.body)")
        summaries.append(fourth.json)
        progressed.append(await load.waitForAcknowledgements(each: 10))
        load.stop()

        let finished = await load.waitUntilSendersFinish()
        #expect(finished, "every client's last request was answered")
        let (acknowledged, failures) = load.outcome
        try await client.shutdown()

        #expect(progressed == [true, true, true, true], "every client had answers before and after each reload: \(progressed) \(load.counts)")
        #expect(failures.isEmpty, "\(failures.count) failed requests, e.g. \(failures.prefix(5))")
        let extra = try await curl(["-H", "content-type: application/json", "\(sluice.baseURL)/v1/extra"], body: Data(#"{"id":"extra"}"#.utf8))
        #expect(extra.status == 200, "the route added by a reload serves: \(extra.body)")

        // What each reload said it did.
        func names(_ summary: [String: Any], _ kind: String, _ key: String) -> [String] {
            ((summary["changes"] as? [String: Any])?[kind] as? [String: Any])?[key] as? [String] ?? []
        }
        #expect(names(summaries[0], "sinks", "kept") == ["events"])
        #expect(names(summaries[0], "routes", "added") == ["extra"])
        #expect(names(summaries[0], "policies", "changed") == ["limit"])
        #expect(names(summaries[1], "sinks", "added") == ["replacement"] && names(summaries[1], "sinks", "removed") == ["events"])
        #expect(sluice.log.contains("trigger=SIGHUP"), "SIGHUP reloads: \(sluice.log.suffix(2000))")
        #expect(sluice.log.contains("changes=sinks: ~events"), "the SIGHUP reload replaced the sink whose settings changed")

        // Every acknowledged event is in Kafka, exactly as many as were acknowledged (and the extra one).
        let expected = acknowledged.count + 2
        let records = try await consume(topic, expecting: expected)
        let stored = Set(records.compactMap { record -> String? in
            (try? JSONSerialization.jsonObject(with: Data(record.value.utf8)) as? [String: Any])?["id"] as? String
        })
        let missing = acknowledged.filter { !stored.contains($0) }
        #expect(missing.isEmpty, "\(missing.count) acknowledged events missing from Kafka, e.g. \(missing.prefix(5))")
        #expect(stored.contains("extra") && stored.contains("first"))

        let metrics = try await curl(["http://127.0.0.1:\(sluice.adminPort)/metrics"]).body
        #expect(metrics.contains(#"sluice_config_reloads_total{result="success"} 3"#), "\(metrics.split(separator: "\n").filter { $0.contains("reloads") })")
        #expect(try await sluice.terminate() == 0)
    }

    static let fileConfig = """
        listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
        admin: { address: "127.0.0.1:{ADMIN_PORT}" }
        policies:
          - name: two-per-hour
            rate_limit: { key: source_ip, rate: 1/h, burst: 2 }
        sinks:
          - name: archive
            file: { directory: "./events" }
        routes:
          - name: ingest
            match: { path: /v1/events }
            policies: [two-per-hour]
            ingest: { sink: archive, topic: events }
        """

    func post(_ sluice: SluiceProcess, _ path: String = "/v1/events", port: Int? = nil) async throws -> Int {
        try await curl(["-H", "content-type: application/json", "http://127.0.0.1:\(port ?? sluice.port)\(path)"], body: Data(#"{"n":1}"#.utf8)).status
    }

    @Test func anUnchangedRateLimitKeepsItsBucketsAndANewListenerServesWhileTheRemovedOneStops() async throws {
        let sluice = try await SluiceProcess(config: Self.fileConfig)
        await #expect(try self.post(sluice) == 200)
        await #expect(try self.post(sluice) == 200)

        // Another listener and another route; the rate limit's entry is the same.
        let otherPort = try freePort()
        let grown = Self.fileConfig
            .replacingOccurrences(
                of: #"listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]"#,
                with: #"listeners: [{ name: main, address: "127.0.0.1:{PORT}" }, { name: side, address: "127.0.0.1:\#(otherPort)" }]"#)
            + """

              - name: other
                match: { path: /v1/other }
                ingest: { sink: archive, topic: other }
            """
        try Self.write(grown, to: sluice)
        let reloaded = try await Self.reload(sluice)
        #expect(reloaded.status == 200, "\(reloaded.body)")
        await #expect(try self.post(sluice) == 429, "the bucket spent before the reload stays spent")
        await #expect(try self.post(sluice, "/v1/other", port: otherPort) == 200, "the new listener and route serve")

        // The first listener goes: its port stops accepting; the other serves on.
        let moved = grown.replacingOccurrences(of: #"{ name: main, address: "127.0.0.1:{PORT}" }, "#, with: "")
        try Self.write(moved, to: sluice)
        let third = try await Self.reload(sluice)
        #expect(third.status == 200, "\(third.body)")
        #expect(((third.json["changes"] as? [String: Any])?["listeners"] as? [String: Any])?["removed"] as? [String] == ["main"])
        var refused = false
        for _ in 0..<50 {
            if await (try? self.post(sluice, "/v1/other")) == 0 {
                refused = true
                break
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(refused, "the removed listener stops accepting")
        await #expect(try self.post(sluice, "/v1/other", port: otherPort) == 200)
        #expect(try await sluice.terminate() == 0)
    }

    @Test func anInvalidFileOrARestartOnlyChangeIsRefusedWithItsPathsAndTheRunningConfigurationServesOn() async throws {
        let sluice = try await SluiceProcess(config: Self.fileConfig)
        let before = try await curl(["http://127.0.0.1:\(sluice.adminPort)/config"]).json
        let broken = Self.fileConfig.replacingOccurrences(of: "topic: events", with: "topc: events")
        try Self.write(broken, to: sluice)
        let refused = try await Self.reload(sluice)
        #expect(refused.status == 422)
        let error = refused.json["error"] as? [String: Any]
        #expect(error?["code"] as? String == "config_invalid")
        let errors = error?["errors"] as? [String] ?? []
        #expect(errors.contains { $0.hasPrefix("routes[0].ingest.topc: unknown key") }, "\(errors)")
        // `sluice validate` says the same.
        let validate = try await runProgram(try sluiceBinary(), ["validate", sluice.workDirectory.appendingPathComponent("sluice.yaml").path])
        #expect(validate.status == 1 && validate.stdout.contains("routes[0].ingest.topc: unknown key"))
        await #expect(try self.post(sluice) == 200, "the running configuration serves on")

        let moved = Self.fileConfig.replacingOccurrences(of: #"admin: { address: "127.0.0.1:{ADMIN_PORT}" }"#, with: #"admin: { address: "127.0.0.1:{ADMIN_PORT}", metrics: false }"#)
        try Self.write(moved, to: sluice)
        let restartOnly = try await Self.reload(sluice)
        #expect(restartOnly.status == 422)
        #expect(((restartOnly.json["error"] as? [String: Any])?["errors"] as? [String] ?? []).contains { $0.hasPrefix("admin:") }, "\(restartOnly.body)")

        let after = try await curl(["http://127.0.0.1:\(sluice.adminPort)/config"]).json
        #expect(after["hash"] as? String == before["hash"] as? String && after["generation"] as? Int == 1)
        let metrics = try await curl(["http://127.0.0.1:\(sluice.adminPort)/metrics"]).body
        #expect(metrics.contains(#"sluice_config_reloads_total{result="failure"} 2"#))
        #expect(try await sluice.terminate() == 0)
    }
}

/// The load test's shared state: a stop flag, each sender's answers, and which have finished.
final class LoadProgress: @unchecked Sendable {
    private let lock = NSLock()
    private var stopped = false
    private var acknowledgedCounts: [Int]
    private var finishedSenders = 0
    private var acknowledged: [String] = []
    private var failures: [String] = []

    init(senders: Int) { self.acknowledgedCounts = Array(repeating: 0, count: senders) }

    var isStopped: Bool { self.lock.withLock { self.stopped } }

    func stop() { self.lock.withLock { self.stopped = true } }

    /// Answers so far per sender.
    var counts: [Int] { self.lock.withLock { self.acknowledgedCounts } }

    /// Every acknowledged event's id and every failure, so far.
    var outcome: (acknowledged: [String], failures: [String]) { self.lock.withLock { (self.acknowledged, self.failures) } }

    func record(_ id: String, sender: Int, failure: String?) {
        self.lock.withLock {
            if let failure {
                self.failures.append("\(id): \(failure)")
            } else {
                self.acknowledged.append(id)
                self.acknowledgedCounts[sender] += 1
            }
        }
    }

    func finished(_ sender: Int) { self.lock.withLock { self.finishedSenders += 1 } }

    /// Waits until every sender has had `each` more acknowledgements than when called; false if
    /// that takes longer than `limit` (a sender stuck or failing).
    func waitForAcknowledgements(each: Int, within limit: Duration = .seconds(90)) async -> Bool {
        let start = self.counts
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if zip(self.counts, start).allSatisfy({ $0 - $1 >= each }) { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    /// Waits (after `stop`) until every sender's last request is answered.
    func waitUntilSendersFinish(within limit: Duration = .seconds(60)) async -> Bool {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if self.lock.withLock({ self.finishedSenders == self.acknowledgedCounts.count }) { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }
}

/// A flag set once, read by many tasks.
final class ManagedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false

    var isSet: Bool { self.lock.withLock { self.value } }

    func set() { self.lock.withLock { self.value = true } }
}
