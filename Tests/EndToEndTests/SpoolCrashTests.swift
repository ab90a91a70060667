import Foundation
import Testing

/// `ack: spooled` through the real binary: under load, with the backend frozen (SIGSTOP), Sluice
/// is killed with SIGKILL and started again on the same spool — every event answered 202 reaches
/// the backend (a Kafka-protocol broker; moto's Kinesis), and the duplicates are at most what was
/// spooled and not yet acknowledged at the kill. A full disk (a 2 MiB tmpfs the test mounts)
/// is answered 503, and the spool reads back intact.
@Suite(.serialized, .timeLimit(.minutes(6))) struct SpoolCrashTests {
    /// A spool directory outside any one Sluice's work directory, so a restart finds it.
    static func withSpoolDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-spool-e2e-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        return try await body(directory)
    }

    static func route(spool: String, sink: String, topic: String = "\"{topic}\"", extra: String = "") -> String {
        """
          - name: spooled
            match: { path: "/v1/spooled/{topic}", methods: [POST] }
            ingest: { sink: \(sink), topic: \(topic), ack: spooled, max_body_bytes: 256KiB, max_wait: 1s\(extra), spool: { directory: "\(spool)", max_bytes: 8MiB, segment_bytes: 256KiB } }
        """
    }

    /// Posts `requests` requests of `perRequest` events each (`{"id":"<prefix>-<n>"}`); the ids of
    /// the events answered 202, and the statuses seen.
    static func post(_ sluice: SluiceProcess, topic: String, prefix: String, requests: Int, perRequest: Int) async throws -> (ids: [String], statuses: [Int]) {
        var accepted: [String] = []
        var statuses: [Int] = []
        for request in 0..<requests {
            let ids = (0..<perRequest).map { "\(prefix)-\(request * perRequest + $0)" }
            let body = ids.map { #"{"id":"\#($0)"}"# }.joined(separator: "\n")
            let response = try await curl(["-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/v1/spooled/\(topic)"], body: Data(body.utf8))
            statuses.append(response.status)
            if response.status == 202 { accepted += ids }
        }
        return (accepted, statuses)
    }

    /// The ids `read` finds, read again each second until every accepted one is there (at most 90 s).
    static func arrivals(of accepted: [String], _ read: () async throws -> [String]) async throws -> [String] {
        let deadline = ContinuousClock.now + .seconds(90)
        var arrived = try await read()
        while Set(arrived).count < Set(accepted).count, ContinuousClock.now < deadline {
            try await Task.sleep(for: .seconds(1))
            arrived = try await read()
        }
        return arrived
    }

    static func ids(in values: [String]) -> [String] {
        values.compactMap { value in (try? JSONSerialization.jsonObject(with: Data(value.utf8)) as? [String: Any])?["id"] as? String }
    }

    /// Checks that every accepted id arrived and that duplicates are bounded; prints the figures.
    @discardableResult
    static func check(_ arrived: [String], accepted: [String], inFlightAtKill: Int, what: String) -> Int {
        let counts = Dictionary(arrived.map { ($0, 1) }, uniquingKeysWith: +)
        let missing = accepted.filter { counts[$0] == nil }
        let duplicates = arrived.count - counts.count
        print("spool crash (\(what)): \(accepted.count) events answered 202, \(counts.count) distinct arrived, \(duplicates) duplicates, \(inFlightAtKill) spooled at the kill")
        #expect(missing.isEmpty, "\(missing.count) events answered 202 never arrived, e.g. \(missing.prefix(5))")
        let unexpected = Set(counts.keys).subtracting(accepted)
        #expect(unexpected.isEmpty, "\(unexpected.count) events arrived that were not answered as accepted, e.g. \(unexpected.sorted().prefix(5))")
        #expect(duplicates <= inFlightAtKill, "duplicates are bounded by what was spooled and unacknowledged at the kill")
        return duplicates
    }

    @Test func aKillWhileTheBrokerIsFrozenLosesNoEventAnswered202() async throws {
        let broker = try await BrokerProcess()
        try await Self.withSpoolDirectory { spool in
            let config = """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                sinks:
                  - name: events
                    kafka: { bootstrap_servers: ["\(broker.bootstrap)"], delivery_timeout: 10s }
                routes:
                """ + "\n" + Self.route(spool: spool, sink: "events")
            let topic = uniqueTopic("spooled")
            var sluice = try await SluiceProcess(config: config)
            // While the broker answers: forwarded and acknowledged.
            let before = try await Self.post(sluice, topic: topic, prefix: "before", requests: 5, perRequest: 20)
            #expect(before.statuses.allSatisfy { $0 == 202 }, "\(before.statuses)")
            let early = try await consume(topic, expecting: 100, bootstrap: broker.bootstrap)
            #expect(early.count >= 100, "forwarded while the broker runs: \(early.count)")

            // Frozen broker: requests are still answered 202 (from the spool), then Sluice dies.
            broker.pause()
            let during = try await Self.post(sluice, topic: topic, prefix: "during", requests: 20, perRequest: 20)
            #expect(during.statuses.allSatisfy { $0 == 202 }, "the spool answers while the broker is frozen: \(during.statuses)")
            kill(sluice.process.processIdentifier, SIGKILL)
            _ = try? await sluice.waitForExit(timeout: .seconds(10))
            broker.resume()

            sluice = try await SluiceProcess(config: config)
            let accepted = before.ids + during.ids
            let arrived = try await Self.arrivals(of: accepted) { Self.ids(in: try await consume(topic, expecting: accepted.count, bootstrap: broker.bootstrap).map(\.value)) }
            let duplicates = Self.check(arrived, accepted: accepted, inFlightAtKill: during.ids.count, what: "kafka")
            #expect(sluice.log.contains("spool opened with events to forward again"), "\(sluice.log.suffix(2000))")
            let metrics = MetricsTests.samples(try await curl(["http://127.0.0.1:\(sluice.adminPort)/metrics"]).body)
            let replayed = metrics[#"sluice_spool_events_replayed_total{route="spooled"}"#] ?? 0
            let possiblyDuplicated = metrics[#"sluice_spool_events_possibly_duplicated_total{route="spooled"}"#] ?? -1
            #expect(replayed >= 1 && replayed <= Double(during.ids.count), "replays are counted: \(replayed)")
            #expect(possiblyDuplicated >= Double(duplicates) && possiblyDuplicated <= replayed, "every duplicate was counted as possible: \(possiblyDuplicated) of \(replayed)")
            #expect(metrics[#"sluice_spool_events{route="spooled"}"#] == 0 && metrics[#"sluice_spool_oldest_event_age_seconds{route="spooled"}"#] == 0)
            #expect(try await sluice.terminate() == 0)
        }
        await broker.stop()
    }

    @Test func aKillWhileKinesisIsFrozenLosesNoEventAnswered202() async throws {
        let moto = try await KinesisIngestTests.moto()
        let key = try await KinesisIngestTests.setUp(moto, stream: "spooled", shards: 1)
        try await Self.withSpoolDirectory { spool in
            let config = """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                sinks:
                  - name: stream
                    kinesis:
                      region: us-east-1
                      endpoint: "\(moto.endpoint)"
                      stream: spooled
                      credentials: { access_key_id: \(key.id), secret_access_key_env: TEST_SECRET }
                      max_concurrent_requests: 1
                routes:
                """ + "\n" + Self.route(spool: spool, sink: "stream", topic: "spooled")
            var sluice = try await SluiceProcess(config: config, environment: ["TEST_SECRET": key.secret])
            let before = try await Self.post(sluice, topic: "spooled", prefix: "before", requests: 3, perRequest: 20)
            #expect(before.statuses.allSatisfy { $0 == 202 }, "\(before.statuses)")
            kill(moto.process.processIdentifier, SIGSTOP)
            let during = try await Self.post(sluice, topic: "spooled", prefix: "during", requests: 10, perRequest: 20)
            #expect(during.statuses.allSatisfy { $0 == 202 }, "\(during.statuses)")
            kill(sluice.process.processIdentifier, SIGKILL)
            _ = try? await sluice.waitForExit(timeout: .seconds(10))
            kill(moto.process.processIdentifier, SIGCONT)

            sluice = try await SluiceProcess(config: config, environment: ["TEST_SECRET": key.secret])
            let accepted = before.ids + during.ids
            let arrived = try await Self.arrivals(of: accepted) { Self.ids(in: try await KinesisIngestTests.read(moto, stream: "spooled", key: key).map(\.data)) }
            Self.check(arrived, accepted: accepted, inFlightAtKill: during.ids.count + before.ids.count, what: "kinesis")
            #expect(try await sluice.terminate() == 0)
        }
    }

    /// A spool on a 2 MiB tmpfs with the broker frozen: once the disk is full requests get 503
    /// (never a 202 that was not written), and after a restart every 202 still reaches the topic.
    @Test func aFullDiskIs503AndTheSpoolStaysIntact() async throws {
        let broker = try await BrokerProcess()
        try await Self.withSpoolDirectory { directory in
            // Root mounts; anyone else through sudo, as scripts/setup.sh installs packages.
            let (program, prefix) = getuid() == 0 ? ("mount", [String]()) : ("sudo", ["-n", "mount"])
            let mount = try await runProgram(program, prefix + ["-t", "tmpfs", "-o", "size=2m,mode=1777", "tmpfs", directory])
            try #require(mount.status == 0, "the test mounts a 2 MiB tmpfs (root or sudo): \(mount.stderr)")
            let unmount = { _ = try? await runProgram(getuid() == 0 ? "umount" : "sudo", (getuid() == 0 ? [] : ["-n", "umount"]) + [directory]) }
            do {
                try await Self.fillTheDisk(directory, broker: broker)
            } catch {
                await unmount()
                throw error
            }
            await unmount()
        }
        await broker.stop()
    }

    static func fillTheDisk(_ directory: String, broker: BrokerProcess) async throws {
        // max_bytes past the disk: the disk fills before the spool's own bound.
        let config = """
            listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
            admin: { address: "127.0.0.1:{ADMIN_PORT}" }
            sinks:
              - name: events
                kafka: { bootstrap_servers: ["\(broker.bootstrap)"], delivery_timeout: 10s }
            routes:
              - name: spooled
                match: { path: "/v1/spooled/{topic}", methods: [POST] }
                ingest: { sink: events, topic: "{topic}", ack: spooled, max_body_bytes: 64KiB, max_wait: 200ms, spool: { directory: "\(directory)/spool", max_bytes: 64MiB, segment_bytes: 512KiB } }
            """
        let topic = uniqueTopic("diskfull")
        var sluice = try await SluiceProcess(config: config)
        broker.pause()
        let padding = String(repeating: "p", count: 900)
        var accepted: [String] = []
        var statuses: [Int] = []
        for request in 0..<60 {
            let ids = (0..<50).map { "full-\(request * 50 + $0)" }
            let body = ids.map { #"{"id":"\#($0)","pad":"\#(padding)"}"# }.joined(separator: "\n")
            let response = try await curl(["-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/v1/spooled/\(topic)"], body: Data(body.utf8))
            statuses.append(response.status)
            if response.status == 202 { accepted += ids }
            if response.status == 503 {
                #expect(response.body.contains("spool_write_failed") && response.body.contains("disk is full"), "\(response.body)")
                // The events of the request's reads before the full disk were spooled: its first `accepted`.
                accepted += ids.prefix(response.json["accepted"] as? Int ?? 0)
            }
        }
        #expect(statuses.contains(202) && statuses.contains(503), "fills up, then 503: \(statuses)")
        #expect(!statuses.contains { $0 != 202 && $0 != 503 }, "\(statuses)")
        kill(sluice.process.processIdentifier, SIGKILL)
        _ = try? await sluice.waitForExit(timeout: .seconds(10))
        broker.resume()
        sluice = try await SluiceProcess(config: config)
        let arrived = try await Self.arrivals(of: accepted) { Self.ids(in: try await consume(topic, expecting: accepted.count, bootstrap: broker.bootstrap).map(\.value)) }
        Self.check(arrived, accepted: accepted, inFlightAtKill: accepted.count, what: "disk full")
        #expect(try await sluice.terminate() == 0)
    }
}
