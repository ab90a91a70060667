import Foundation
import Testing

/// An ingest route with `schema: { json_schema_file }`, through the real binary into the real
/// broker: the events that break the schema are answered `schema_violation` in their place, the
/// others are in the topic, and nothing else is.
@Suite(.timeLimit(.minutes(2))) struct SchemaValidationEndToEndTests {
    @Test func badEventsAreAnsweredInTheirPlaceAndOnlyGoodOnesReachTheTopic() async throws {
        try await requireBroker()
        let topic = uniqueTopic("schema")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-schema-e2e-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try #"{"type": "object", "required": ["user"], "properties": {"user": {"$ref": "user.json"}}}"#
            .write(to: directory.appendingPathComponent("event.json"), atomically: true, encoding: .utf8)
        try #"{"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"], "unevaluatedProperties": false}"#
            .write(to: directory.appendingPathComponent("user.json"), atomically: true, encoding: .utf8)
        let sluice = try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                sinks:
                  - name: events
                    kafka: { bootstrap_servers: ["{KAFKA}"], delivery_timeout: 10s }
                routes:
                  - name: checked
                    match: { path: /v1/events, methods: [POST] }
                    ingest: { sink: events, topic: \(topic), schema: { json_schema_file: "\(directory.appendingPathComponent("event.json").path)" } }
                  - name: lettered
                    match: { path: /v1/lettered, methods: [POST] }
                    ingest:
                      sink: events
                      topic: \(topic)-main
                      schema: { json_schema_file: "\(directory.appendingPathComponent("event.json").path)" }
                      dead_letter: { sink: events, topic: \(topic)-dlq }
                """)
        let body = [
            #"{"user":{"id":1}}"#, #"{"user":{"id":"two"}}"#, #"{"user":{"id":3,"name":"x"}}"#, #"{}"#, #"{"user":{"id":5}}"#,
        ].joined(separator: "\n")
        let response = try await curl(["-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/v1/events"], body: Data(body.utf8))
        #expect(response.status == 422, "\(response.body)")
        #expect(response.json["accepted"] as? Int == 2 && response.json["failed"] as? Int == 3)
        let results = response.json["results"] as? [[String: Any]] ?? []
        let messages = results.map { ($0["error"] as? [String: Any])?["message"] as? String }
        #expect(results.count == 5)
        #expect(messages[0] == nil && messages[4] == nil)
        #expect(messages[1] == "line 2: /user/id: type: expected integer, got string")
        #expect(messages[2] == "line 3: /user/name: unevaluatedProperties: not allowed here")
        #expect(messages[3] == #"line 4: /: required: missing required property "user""#)
        #expect(results.compactMap { ($0["error"] as? [String: Any])?["code"] as? String } == Array(repeating: "schema_violation", count: 3))
        let records = try await consume(topic, expecting: 2)
        #expect(records.map(\.value) == [#"{"user":{"id":1}}"#, #"{"user":{"id":5}}"#])

        // With dead_letter: the same request is settled (200); each bad event is in the
        // dead-letter topic with why and whence, where its result says.
        let lettered = try await curl(["-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/v1/lettered"], body: Data(body.utf8))
        #expect(lettered.status == 200, "\(lettered.body)")
        let letteredResults = lettered.json["results"] as? [[String: Any]] ?? []
        let notes = letteredResults.compactMap { $0["dead_letter"] as? [String: Any] }
        #expect(notes.count == 3 && notes.allSatisfy { $0["topic"] as? String == "\(topic)-dlq" })
        let letters = try await consume("\(topic)-dlq", expecting: 3)
        #expect(letters.map(\.value) == [#"{"user":{"id":"two"}}"#, #"{"user":{"id":3,"name":"x"}}"#, #"{}"#])
        for (letter, note) in zip(letters, notes) {
            #expect(letter.offset == note["offset"] as? Int && letter.partition == note["partition"] as? Int)
            let headers = Dictionary(letter.headers, uniquingKeysWith: { $1 })
            #expect(headers["sluice-error-code"] == "schema_violation")
            #expect(headers["sluice-original-topic"] == "\(topic)-main" && headers["sluice-route"] == "lettered")
            #expect(headers["sluice-error-message"] == (note["error"] as? [String: Any])?["message"] as? String)
        }
        #expect(try await consume("\(topic)-main", expecting: 2).map(\.value) == [#"{"user":{"id":1}}"#, #"{"user":{"id":5}}"#])

        // Counted by route and reason.
        let samples = MetricsTests.samples(try await curl(["http://127.0.0.1:\(sluice.adminPort)/metrics"]).body)
        #expect(samples[#"sluice_events_rejected_total{route="checked",reason="schema_violation"}"#] == 3)
        #expect(samples[#"sluice_events_dead_lettered_total{route="lettered",reason="schema_violation"}"#] == 3)
        #expect(samples[#"sluice_events_rejected_total{route="lettered",reason="schema_violation"}"#] == nil, "settled, not rejected")
        #expect(try await sluice.terminate() == 0)
    }
}
