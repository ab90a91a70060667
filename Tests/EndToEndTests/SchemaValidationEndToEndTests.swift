import Foundation
import Testing

/// An ingest route with `schema: { json_schema_file }`, through the real binary into the real
/// broker: the events that break the schema are answered `schema_violation` in their place, the
/// others are in the topic, and nothing else is.
@Suite(.timeLimit(.minutes(6))) struct SchemaValidationEndToEndTests {
    /// A directory for the test's schema files, removed by `body`'s end.
    static func withSchemaFiles<T>(_ body: (URL) async throws -> T) async throws -> T {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-schema-e2e-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        return try await body(directory)
    }

    /// Sluice with one Kafka sink, `events`, and `routes` (YAML list items).
    static func start(routes: String) async throws -> SluiceProcess {
        try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                sinks:
                  - name: events
                    kafka: { bootstrap_servers: ["{KAFKA}"], delivery_timeout: 10s }
                routes:
                """ + "\n" + routes)
    }

    @Test func badEventsAreAnsweredInTheirPlaceAndOnlyGoodOnesReachTheTopic() async throws {
        try await requireBroker()
        let topic = uniqueTopic("schema")
        try await Self.withSchemaFiles { directory in
        try #"{"type": "object", "required": ["user"], "properties": {"user": {"$ref": "user.json"}}}"#
            .write(to: directory.appendingPathComponent("event.json"), atomically: true, encoding: .utf8)
        try #"{"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"], "unevaluatedProperties": false}"#
            .write(to: directory.appendingPathComponent("user.json"), atomically: true, encoding: .utf8)
        let sluice = try await Self.start(
            routes: """
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

    /// `schema: { avro_file, schema_id }`: JSON events go out as Avro in Confluent's wire format,
    /// read back from the topic and decoded by fastavro (the reference Python implementation).
    @Test func avroEventsAreTranscodedAndFramedForASchemaRegistryConsumer() async throws {
        try await requireBroker()
        let topic = uniqueTopic("avro")
        try await Self.withSchemaFiles { directory in
        let avsc = directory.appendingPathComponent("order.avsc")
        try #"""
            {"type": "record", "name": "Order", "namespace": "shop", "fields": [
              {"name": "id", "type": "long"}, {"name": "sku", "type": "string"},
              {"name": "note", "type": ["null", "string"], "default": null},
              {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}, "default": "NEW"},
              {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "Line", "fields": [
                {"name": "qty", "type": "int"}, {"name": "price", "type": "double"}]}}, "default": []}
            ]}
            """#.write(to: avsc, atomically: true, encoding: .utf8)
        let sluice = try await Self.start(
            routes: """
                  - name: avro
                    match: { path: /v1/orders, methods: [POST] }
                    ingest: { sink: events, topic: \(topic), schema: { avro_file: "\(avsc.path)", schema_id: 42 } }
                """)
        let body = [
            #"{"id": 1, "sku": "a-1", "lines": [{"qty": 2, "price": 9.5}]}"#,
            #"{"id": 2, "sku": "b-2", "note": "gift", "status": "PAID"}"#,
            #"{"id": "three", "sku": "c"}"#,
        ].joined(separator: "\n")
        let response = try await curl(["-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/v1/orders"], body: Data(body.utf8))
        #expect(response.status == 422, "\(response.body)")
        #expect(response.json["accepted"] as? Int == 2)
        #expect(response.body.contains("line 3: /id: avro: expected long, got string"), "\(response.body)")

        _ = try await consume(topic, expecting: 2)
        let decoded = try await runProgram(
            "python3", [packageRoot.appendingPathComponent("scripts/testing/avro_decode.py").path, "--bootstrap", kafkaBootstrap, "--topic", topic,
                        "--schema", avsc.path, "--framed", "--count", "2"])
        #expect(decoded.status == 0, "\(decoded.stderr)")
        let lines = decoded.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(lines.count == 2, "\(decoded.stdout)")
        #expect(lines.allSatisfy { $0["schema_id"] as? Int == 42 })
        let values = lines.compactMap { $0["value"] as? [String: Any] }
        #expect(values.count == 2)
        guard values.count == 2 else { return }
        #expect(values[0]["id"] as? Int == 1 && values[0]["sku"] as? String == "a-1" && values[0]["note"] is NSNull && values[0]["status"] as? String == "NEW")
        #expect((values[0]["lines"] as? [[String: Any]])?.first?["price"] as? Double == 9.5)
        #expect(values[1]["note"] as? String == "gift" && values[1]["status"] as? String == "PAID" && (values[1]["lines"] as? [Any])?.isEmpty == true)
        #expect(try await sluice.terminate() == 0)
        }
    }

    /// `schema: { protobuf: { descriptor_set, message } }`: JSON events go out as the message's
    /// binary encoding in Confluent's wire format (with the message indexes of a nested message),
    /// decoded by the official protobuf library from a descriptor set protoc made.
    @Test func protobufEventsAreTranscodedAndFramedForASchemaRegistryConsumer() async throws {
        try await requireBroker()
        let topic = uniqueTopic("protobuf")
        try await Self.withSchemaFiles { directory in
        try #"""
            syntax = "proto3";
            package shop.v1;
            import "google/protobuf/timestamp.proto";
            import "google/protobuf/duration.proto";
            import "google/protobuf/wrappers.proto";
            import "google/protobuf/struct.proto";
            message Envelope {
              message Order {
                enum Status { NEW = 0; PAID = 1; }
                int64 id = 1;
                string sku = 2;
                Status status = 3;
                repeated int32 quantities = 4;
                map<string, string> labels = 5;
                bytes token = 6;
                double amount = 7;
                Line first_line = 8;
                google.protobuf.Timestamp created_at = 9;
                google.protobuf.Duration ttl = 10;
                google.protobuf.StringValue channel = 11;
                google.protobuf.Struct attributes = 12;
              }
              message Line { uint32 qty = 1; sint64 delta = 2; }
            }
            """#.write(to: directory.appendingPathComponent("order.proto"), atomically: true, encoding: .utf8)
        let descriptors = directory.appendingPathComponent("order.desc").path
        let protoc = try await runProgram(
            "python3", ["-m", "grpc_tools.protoc", "-I", directory.path, "--include_imports", "--descriptor_set_out=\(descriptors)", "order.proto"])
        try #require(protoc.status == 0, "\(protoc.stderr)")
        let sluice = try await Self.start(
            routes: """
                  - name: protobuf
                    match: { path: /v1/orders, methods: [POST] }
                    ingest:
                      sink: events
                      topic: \(topic)
                      schema: { protobuf: { descriptor_set: "\(descriptors)", message: shop.v1.Envelope.Order }, schema_id: 7 }
                """)
        let body = [
            #"{"id": "9007199254740993", "sku": "a-1", "status": "PAID", "quantities": [1, 2, 300], "labels": {"gift": "yes"}, "token": "AQID", "amount": 9.5, "firstLine": {"qty": 2, "delta": -5}, "createdAt": "2026-12-03T11:15:30.25+01:00", "ttl": "-1.5s", "channel": "web", "attributes": {"a": 1, "tags": ["x", null]}}"#,
            #"{"id": 2, "sku": "b"}"#,
            #"{"id": 3, "colour": "red"}"#,
        ].joined(separator: "\n")
        let response = try await curl(["-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/v1/orders"], body: Data(body.utf8))
        #expect(response.status == 422, "\(response.body)")
        #expect(response.json["accepted"] as? Int == 2)
        #expect(response.body.contains(#"line 3: /colour: protobuf: shop.v1.Envelope.Order has no field \"colour\""#), "\(response.body)")

        _ = try await consume(topic, expecting: 2)
        let decoded = try await runProgram(
            "python3", [packageRoot.appendingPathComponent("scripts/testing/protobuf_decode.py").path, "--bootstrap", kafkaBootstrap, "--topic", topic,
                        "--descriptor-set", descriptors, "--message", "shop.v1.Envelope.Order", "--framed", "--count", "2"])
        #expect(decoded.status == 0, "\(decoded.stderr)")
        let lines = decoded.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(lines.count == 2, "\(decoded.stdout)")
        #expect(lines.allSatisfy { $0["schema_id"] as? Int == 7 && ($0["indexes"] as? [Int]) == [0, 0] }, "Envelope (0) then Order (0)")
        let values = lines.compactMap { $0["value"] as? [String: Any] }
        guard values.count == 2 else { return }
        #expect(values[0]["id"] as? String == "9007199254740993", "an int64 given as a string keeps every digit")
        #expect(values[0]["status"] as? String == "PAID" && values[0]["sku"] as? String == "a-1")
        #expect(values[0]["quantities"] as? [Int] == [1, 2, 300])
        #expect(values[0]["labels"] as? [String: String] == ["gift": "yes"])
        #expect(values[0]["token"] as? String == "AQID" && values[0]["amount"] as? Double == 9.5)
        #expect((values[0]["first_line"] as? [String: Any])?["delta"] as? String == "-5")
        #expect(values[0]["created_at"] as? String == "2026-12-03T10:15:30.250Z", "a Timestamp in its RFC 3339 form, offset applied")
        #expect(values[0]["ttl"] as? String == "-1.500s" && values[0]["channel"] as? String == "web", "Duration and wrappers in their JSON forms")
        let attributes = values[0]["attributes"] as? [String: Any]
        #expect(attributes?["a"] as? Double == 1 && (attributes?["tags"] as? [Any])?.count == 2, "a Struct as a JSON object: \(values[0])")
        #expect(values[1]["id"] as? String == "2" && values[1]["sku"] as? String == "b")
        #expect(try await sluice.terminate() == 0)
        }
    }

    /// `dead_letter` without a schema: an event the broker-side producer refuses for good (larger
    /// than the sink's message.max.bytes) goes to the dead-letter sink, the rest to the topic.
    @Test func anEventTheSinkRefusesForGoodIsDeadLettered() async throws {
        try await requireBroker()
        let topic = uniqueTopic("refused")
        let sluice = try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                sinks:
                  - name: events
                    kafka: { bootstrap_servers: ["{KAFKA}"], delivery_timeout: 10s, properties: { message.max.bytes: "1000" } }
                  - name: letters
                    kafka: { bootstrap_servers: ["{KAFKA}"], delivery_timeout: 10s }
                routes:
                  - name: small
                    match: { path: /v1/small, methods: [POST] }
                    ingest: { sink: events, topic: \(topic), dead_letter: { sink: letters, topic: \(topic)-dlq } }
                """)
        let large = #"{"pad":""# + String(repeating: "x", count: 1500) + #""}"#
        let body = [#"{"n":1}"#, large, #"{"n":3}"#].joined(separator: "\n")
        let response = try await curl(["-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/v1/small"], body: Data(body.utf8))
        #expect(response.status == 200, "\(response.body)")
        let results = response.json["results"] as? [[String: Any]] ?? []
        let note = results.count == 3 ? results[1]["dead_letter"] as? [String: Any] : nil
        #expect(note?["sink"] as? String == "letters" && note?["topic"] as? String == "\(topic)-dlq", "\(response.body)")
        #expect((note?["error"] as? [String: Any])?["code"] as? String == "kafka_msg_size_too_large")
        #expect(try await consume(topic, expecting: 2).map(\.value) == [#"{"n":1}"#, #"{"n":3}"#])
        let letters = try await consume("\(topic)-dlq", expecting: 1)
        #expect(letters.map(\.value) == [large])
        #expect(letters.first?.headers.contains { $0.0 == "sluice-error-code" && $0.1 == "kafka_msg_size_too_large" } == true)
        #expect(letters.first?.offset == note?["offset"] as? Int)
        #expect(try await sluice.terminate() == 0)
    }

    /// `dead_letter` and max_event_bytes: an NDJSON line past the limit is read whole and
    /// dead-lettered, and the lines after it still go.
    @Test func anEventPastMaxEventBytesIsDeadLetteredWholeAndTheBodyGoesOn() async throws {
        try await requireBroker()
        let topic = uniqueTopic("oversize")
        let sluice = try await Self.start(
            routes: """
                  - name: small
                    match: { path: /v1/small, methods: [POST] }
                    ingest: { sink: events, topic: \(topic), max_event_bytes: 1KiB, dead_letter: { sink: events, topic: \(topic)-dlq } }
                """)
        let large = #"{"pad":""# + String(repeating: "x", count: 3000) + #""}"#
        let body = [#"{"n":1}"#, large, #"{"n":3}"#].joined(separator: "\n") + "\n"
        let response = try await curl(["-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/v1/small"], body: Data(body.utf8))
        #expect(response.status == 200, "\(response.body)")
        let results = response.json["results"] as? [[String: Any]] ?? []
        let note = results.count == 3 ? results[1]["dead_letter"] as? [String: Any] : nil
        #expect((note?["error"] as? [String: Any])?["message"] as? String == "line 2 is 3010 bytes, more than max_event_bytes (1024)", "\(response.body)")
        #expect(try await consume(topic, expecting: 2).map(\.value) == [#"{"n":1}"#, #"{"n":3}"#])
        let letters = try await consume("\(topic)-dlq", expecting: 1)
        #expect(letters.map(\.value) == [large])
        #expect(letters.first?.headers.contains { $0.0 == "sluice-error-code" && $0.1 == "event_too_large" } == true)
        let samples = MetricsTests.samples(try await curl(["http://127.0.0.1:\(sluice.adminPort)/metrics"]).body)
        #expect(samples[#"sluice_events_dead_lettered_total{route="small",reason="event_too_large"}"#] == 1)
        #expect(try await sluice.terminate() == 0)
    }
}
