import Crypto
import Foundation
import Testing

/// Producers that speak Confluent REST Proxy v2 (`api: confluent_v2`), through the real binary
/// into the real broker: the request bodies and headers REST Proxy documents, its answers and
/// error codes, and every record where its answer says.
@Suite(.timeLimit(.minutes(6))) struct ConfluentRESTProxyTests {
    static let key = "rest-key"

    static func config(allowed topics: [String]) -> String {
        """
        listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
        admin: { address: "127.0.0.1:{ADMIN_PORT}" }
        policies:
          - name: keys
            api_key: { header: X-Api-Key, keys: [{ client: rest-client, sha256: \(SHA256.hash(data: Array(Self.key.utf8)).map { String(format: "%02x", $0) }.joined()) }] }
        sinks:
          - name: events
            kafka: { bootstrap_servers: ["{KAFKA}"], delivery_timeout: 10s }
        routes:
          - name: rest-proxy
            match: { path_prefix: /kafka }
            policies: [keys]
            ingest: { api: confluent_v2, sink: events, topics_allowed: [\(topics.joined(separator: ", "))], headers_to_kafka: [X-Tenant] }
        """
    }

    static func post(_ sluice: SluiceProcess, _ path: String, _ body: String, type: String = "application/vnd.kafka.json.v2+json",
                     accept: String = "application/vnd.kafka.v2+json", extra: [String] = []) async throws -> CurlResponse {
        try await curl(
            ["-H", "content-type: \(type)", "-H", "accept: \(accept)", "-H", "x-api-key: \(Self.key)"] + extra
                + ["\(sluice.baseURL)/kafka\(path)"],
            body: Data(body.utf8))
    }

    @Test func jsonAndBinaryRecordsLandWhereTheOffsetsSay() async throws {
        try await requireBroker()
        let topic = uniqueTopic("rest-v2")
        let sluice = try await SluiceProcess(config: Self.config(allowed: [topic]))
        let json = try await Self.post(
            sluice, "/topics/\(topic)",
            #"{"records":[{"key":"user-1","value":{"n":1}},{"value":{"n":2},"partition":0},{"key":{"id":7},"value":null}]}"#,
            extra: ["-H", "x-tenant: acme"])
        #expect(json.status == 200, "\(json.body)")
        #expect(json.headers.lowercased().contains("content-type: application/vnd.kafka.v2+json"))
        let answer = json.json
        #expect(answer.keys.sorted() == ["key_schema_id", "offsets", "value_schema_id"])
        #expect(answer["key_schema_id"] is NSNull && answer["value_schema_id"] is NSNull)
        let offsets = answer["offsets"] as? [[String: Any]] ?? []
        #expect(offsets.count == 3)
        #expect(offsets.allSatisfy { $0["error_code"] is NSNull && $0["error"] is NSNull && $0["offset"] is Int }, "\(offsets)")

        let binary = try await Self.post(
            sluice, "/topics/\(topic)/partitions/0", #"{"records":[{"key":"a2V5","value":"aGVsbG8="}]}"#,
            type: "application/vnd.kafka.binary.v2+json")
        #expect(binary.status == 200, "\(binary.body)")
        let all = offsets + ((binary.json["offsets"] as? [[String: Any]]) ?? [])

        let records = try await consume(topic, expecting: 4)
        #expect(records.count == 4)
        for (answered, record) in zip(all, records) {
            #expect(answered["partition"] as? Int == record.partition && answered["offset"] as? Int == record.offset)
        }
        guard records.count == 4 else { return }
        // The JSON embedded format writes JSON text: a string key keeps its quotes.
        #expect(records[0].key == #""user-1""# && records[0].value == #"{"n":1}"#)
        #expect(records[0].headers.contains { $0.0.lowercased() == "x-tenant" && $0.1 == "acme" }, "\(records[0].headers)")
        #expect(records[1].key == nil && records[1].value == #"{"n":2}"#)
        #expect(records[2].valueIsNull && records[2].key == #"{"id":7}"#, "a null value is a tombstone")
        #expect(records[3].key == "key" && records[3].value == "hello" && records[3].partition == 0)
        #expect(try await sluice.terminate() == 0)
    }

    static func v3Config(allowed topic: String) -> String {
        Self.config(allowed: [topic]).replacingOccurrences(
            of: "ingest: { api: confluent_v2, sink: events,", with: "ingest: { api: confluent_v3, cluster_id: lkc-test, sink: events,")
    }

    @Test func v3RecordsBatchesAndAFullDuplexStreamLandWhereTheReportsSay() async throws {
        try await requireBroker()
        let topic = uniqueTopic("rest-v3")
        let sluice = try await SluiceProcess(config: Self.v3Config(allowed: topic))
        let base = "\(sluice.baseURL)/kafka/v3/clusters/lkc-test/topics/\(topic)"
        let auth = ["-H", "x-api-key: \(Self.key)", "-H", "content-type: application/json"]

        // One record: its report. Its timestamp an hour ago (far older ones may fall to the
        // broker's retention during a long test run).
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let timestamp = formatter.string(from: Date(timeIntervalSinceNow: -3600))
        let single = try await curl(
            auth + [base + "/records"],
            body: Data(#"{"key":{"type":"STRING","data":"user-1"},"value":{"type":"JSON","data":{"n":1}},"headers":[{"name":"trace","value":"dDE="}],"timestamp":"\#(timestamp)"}"#.utf8))
        #expect(single.status == 200, "\(single.body)")
        let report = single.json
        #expect(report["error_code"] as? Int == 200 && report["cluster_id"] as? String == "lkc-test" && report["topic_name"] as? String == topic)
        #expect(report["offset"] as? Int == 0 && report["timestamp"] as? String == timestamp, "\(single.body)")
        #expect((report["key"] as? [String: Any])?["type"] as? String == "STRING" && (report["value"] as? [String: Any])?["size"] as? Int == 7)

        // A batch: 207 with successes and failures by id.
        let batch = try await curl(
            auth + [base + "/records:batch"],
            body: Data(#"{"entries":[{"id":"a","value":{"type":"BINARY","data":"aGVsbG8="}},{"id":"b","value":{"type":"AVRO","data":1}},{"id":"c","value":{"type":"STRING","data":"text"}}]}"#.utf8))
        #expect(batch.status == 207, "\(batch.body)")
        let successes = batch.json["successes"] as? [[String: Any]] ?? []
        let failures = batch.json["failures"] as? [[String: Any]] ?? []
        #expect(successes.compactMap { $0["id"] as? String } == ["a", "c"] && successes.allSatisfy { $0["offset"] is Int })
        #expect(failures.count == 1 && failures.first?["id"] as? String == "b" && failures.first?["error_code"] as? Int == 400, "\(failures)")

        // Streaming mode: each record answered before the next is sent (full duplex), one refused alone.
        let stream = try await runProgram(
            "python3",
            [packageRoot.appendingPathComponent("scripts/testing/confluent_v3_stream.py").path, "--port", String(sluice.port),
             "--path", "/kafka/v3/clusters/lkc-test/topics/\(topic)/records", "--count", "20", "--api-key", Self.key])
        #expect(stream.status == 0, "\(stream.stdout)\n\(stream.stderr)")
        let summary = (try? JSONSerialization.jsonObject(with: Data(stream.stdout.utf8))) as? [String: Any] ?? [:]
        let reports = summary["reports"] as? [[String: Any]] ?? []
        #expect(reports.count == 20)
        #expect(reports.filter { $0["error_code"] as? Int == 200 }.count == 19 && reports[10]["error_code"] as? Int == 400, "\(reports)")
        let streamedOffsets = reports.compactMap { $0["offset"] as? Int }
        #expect(streamedOffsets == Array(3..<22), "in order, after the single record and the batch: \(streamedOffsets)")

        // Metrics count the stream's events once it has ended, as they count any request's.
        var received: Double?
        for _ in 0..<20 {
            let metrics = try await curl(["http://127.0.0.1:\(sluice.adminPort)/metrics"]).body
            received = metrics.split(separator: "\n").first { $0.hasPrefix("sluice_events_received_total{route=\"rest-proxy\"}") }
                .flatMap { $0.split(separator: " ").last }.flatMap { Double($0) }
            if received == 22 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(received == 22, "1 single, 2 from the batch, 19 streamed")

        let records = try await consume(topic, expecting: 22)
        #expect(records.count == 22)
        guard records.count == 22 else { return }
        #expect(records[0].key == "user-1" && records[0].value == #"{"n":1}"# && records[0].headers.contains { $0 == ("trace", "t1") })
        #expect(records[1].value == "hello" && records[2].value == "text")
        #expect(records[3].value == #"{"seq": 0}"# && records[3].key == "k0" && records[3].headers.contains { $0 == ("seq", "0") })

        // A sized body (the usual one-record request) is answered whole and keeps the connection.
        let keepAlive = try await runProgram(
            "curl", ["-s", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{num_connects}:%{http_code} "] + auth
                + ["--data-binary", #"{"value":{"type":"STRING","data":"again"}}"#, base + "/records", base + "/records"])
        #expect(keepAlive.stdout == "1:200 0:200 ", "two requests, one connection: \(keepAlive.stdout)")

        let otherCluster = try await curl(auth + ["\(sluice.baseURL)/kafka/v3/clusters/lkc-other/topics/\(topic)/records"], body: Data("{}".utf8))
        #expect(otherCluster.status == 404 && otherCluster.json["error_code"] as? Int == 404, "\(otherCluster.body)")
        let noKey = try await curl(["-H", "content-type: application/json", base + "/records"], body: Data("{}".utf8))
        #expect(noKey.status == 401 && noKey.json["error_code"] as? Int == 40101, "\(noKey.body)")
        #expect(noKey.headers.lowercased().contains("content-type: application/json"))
        #expect(try await sluice.terminate() == 0)
    }

    @Test func aV3StreamIsChargedItsEventsWhenItEnds() async throws {
        try await requireBroker()
        let topic = uniqueTopic("rest-v3-limit")
        // 10 events a minute per client: a stream of 20 records puts the bucket in debt.
        let config = Self.v3Config(allowed: topic)
            .replacingOccurrences(of: "policies:\n", with: "policies:\n  - name: per-client\n    rate_limit: { key: client, unit: events, rate: 10/min, burst: 10 }\n")
            .replacingOccurrences(of: "policies: [keys]", with: "policies: [keys, per-client]")
        let sluice = try await SluiceProcess(config: config)
        let stream = try await runProgram(
            "python3",
            [packageRoot.appendingPathComponent("scripts/testing/confluent_v3_stream.py").path, "--port", String(sluice.port),
             "--path", "/kafka/v3/clusters/lkc-test/topics/\(topic)/records", "--count", "20", "--api-key", Self.key])
        #expect(stream.status == 0, "\(stream.stdout)\n\(stream.stderr)")
        // The charge lands once the stream has ended; a request soon after finds the bucket in
        // debt. (Uncharged, eight one-event requests would take 8 of the bucket's 10.)
        var refused: CurlResponse?
        for _ in 0..<8 {
            let next = try await curl(
                ["-H", "x-api-key: \(Self.key)", "-H", "content-type: application/json", "\(sluice.baseURL)/kafka/v3/clusters/lkc-test/topics/\(topic)/records"],
                body: Data(#"{"value":{"type":"STRING","data":"x"}}"#.utf8))
            if next.status == 429 {
                refused = next
                break
            }
            try await Task.sleep(for: .milliseconds(250))
        }
        #expect(refused?.json["error_code"] as? Int == 429, "\(refused?.body ?? "never refused")")
        #expect(try await sluice.terminate() == 0)
    }

    @Test func refusalsAreREST_ProxysErrorBodiesAndCodes() async throws {
        try await requireBroker()
        let topic = uniqueTopic("rest-v2-errors")
        let sluice = try await SluiceProcess(config: Self.config(allowed: [topic]))
        let records = #"{"records":[{"value":{"n":1}}]}"#
        func expectError(_ response: CurlResponse, status: Int, code: Int, _ comment: String) {
            #expect(response.status == status, "\(comment): \(response.body)")
            #expect(response.json["error_code"] as? Int == code, "\(comment): \(response.body)")
            #expect(response.json["message"] is String, "\(comment)")
        }
        let noKey = try await curl(
            ["-H", "content-type: application/vnd.kafka.json.v2+json", "\(sluice.baseURL)/kafka/topics/\(topic)"], body: Data(records.utf8))
        expectError(noKey, status: 401, code: 40101, "no API key")
        #expect(noKey.headers.lowercased().contains("content-type: application/vnd.kafka.v2+json"))
        expectError(try await Self.post(sluice, "/topics/not-\(topic)", records), status: 404, code: 40401, "a topic the route does not serve")
        expectError(try await Self.post(sluice, "/consumers/group", records), status: 404, code: 404, "not a produce path")
        expectError(
            try await Self.post(sluice, "/topics/\(topic)", records, type: "application/vnd.kafka.avro.v2+json"), status: 415, code: 415,
            "avro needs Schema Registry")
        expectError(try await Self.post(sluice, "/topics/\(topic)", records, type: "application/json"), status: 415, code: 415, "plain JSON")
        expectError(
            try await Self.post(sluice, "/topics/\(topic)", records, accept: "text/html"), status: 406, code: 406, "Accept")
        expectError(try await Self.post(sluice, "/topics/\(topic)", "{\"records\":"), status: 400, code: 400, "not JSON")
        expectError(try await Self.post(sluice, "/topics/\(topic)", #"{"records":[]}"#), status: 422, code: 422, "no records")
        expectError(
            try await Self.post(sluice, "/topics/\(topic)", #"{"records":[{"value":"%%%"}]}"#, type: "application/vnd.kafka.binary.v2+json"),
            status: 422, code: 42206, "not base64")
        expectError(
            try await curl(["-X", "GET", "-H", "x-api-key: \(Self.key)", "\(sluice.baseURL)/kafka/topics/\(topic)"]), status: 405, code: 405, "GET")

        // A record for a partition the topic does not have fails alone; the others are written.
        let created = try await Self.post(sluice, "/topics/\(topic)", records)
        #expect(created.status == 200, "\(created.body)")
        let mixed = try await Self.post(sluice, "/topics/\(topic)", #"{"records":[{"value":1},{"value":2,"partition":999}]}"#)
        #expect(mixed.status == 200, "REST Proxy answers 200 with each record's error: \(mixed.body)")
        let offsets = mixed.json["offsets"] as? [[String: Any]] ?? []
        #expect(offsets.count == 2)
        #expect(offsets.first?["offset"] is Int && offsets.first?["error_code"] is NSNull, "\(offsets)")
        #expect(offsets.last?["error_code"] as? Int == 40402 && offsets.last?["offset"] is NSNull, "\(offsets)")
        #expect(try await sluice.terminate() == 0)
    }
}
