import Crypto
import Foundation
import Testing

/// Producers that speak Confluent REST Proxy v2 (`api: confluent_v2`), through the real binary
/// into the real broker: the request bodies and headers REST Proxy documents, its answers and
/// error codes, and every record where its answer says.
@Suite(.timeLimit(.minutes(3))) struct ConfluentRESTProxyTests {
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
