import Foundation
import Testing

/// CloudEvents through the real binary into the real broker, with the official Python SDK as the
/// client (binary, structured and batched modes) and as the decoder of the Kafka records
/// (scripts/testing/cloudevents_check.py).
@Suite(.timeLimit(.minutes(6))) struct CloudEventsSDKTests {
    @Test func theSDKsEventsComeBackFromKafkaAsSent() async throws {
        try await requireBroker()
        let topic = uniqueTopic("cloudevents")
        let sluice = try await SluiceProcess(config: """
            listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
            admin: { address: "127.0.0.1:{ADMIN_PORT}" }
            sinks:
              - name: events
                kafka: { bootstrap_servers: ["{KAFKA}"], delivery_timeout: 10s }
            routes:
              - name: cloudevents
                match: { path: "/v1/ce/{topic}", methods: [POST] }
                ingest: { api: cloudevents, sink: events, topic: "{topic}" }
            """)
        let check = try await runProgram(
            "python3",
            [packageRoot.appendingPathComponent("scripts/testing/cloudevents_check.py").path, "--url", "\(sluice.baseURL)/v1/ce/\(topic)",
             "--bootstrap", kafkaBootstrap, "--topic", topic])
        #expect(check.status == 0, "\(check.stdout)\n\(check.stderr.suffix(2000))")
        let summary = (try? JSONSerialization.jsonObject(with: Data(check.stdout.utf8))) as? [String: Any] ?? [:]
        #expect(summary["sent"] as? Int == 5 && summary["records"] as? Int == 5, "\(check.stdout)")
        #expect(try await sluice.terminate() == 0)
    }

    @Test func intoKinesisAnEventIsTheStructuredJSONEvent() async throws {
        let moto = try await KinesisIngestTests.moto()
        let key = try await KinesisIngestTests.setUp(moto, stream: "cloudevents", shards: 1)
        let sluice = try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                sinks:
                  - name: stream
                    kinesis:
                      region: us-east-1
                      endpoint: "\(moto.endpoint)"
                      stream: cloudevents
                      credentials: { access_key_id: \(key.id), secret_access_key_env: TEST_SECRET }
                routes:
                  - name: cloudevents
                    match: { path: /ce, methods: [POST] }
                    ingest: { api: cloudevents, sink: stream }
                """,
            environment: ["TEST_SECRET": key.secret])
        // Binary mode in; the JSON event format out, its data as JSON, partitionkey the record's key.
        let binary = try await curl(
            ["-H", "ce-specversion: 1.0", "-H", "ce-id: k-1", "-H", "ce-source: /shop", "-H", "ce-type: order", "-H", "ce-partitionkey: c-9",
             "-H", "ce-subject: a%20b", "-H", "content-type: application/json", "\(sluice.baseURL)/ce"],
            body: Data(#"{"n":1}"#.utf8))
        #expect(binary.status == 200, "\(binary.body)")
        // Structured mode in: stored exactly as sent.
        let structured = #"{"specversion":"1.0","id":"k-2","source":"/shop","type":"note","data_base64":"AAH/"}"#
        let second = try await curl(["-H", "content-type: application/cloudevents+json", "\(sluice.baseURL)/ce"], body: Data(structured.utf8))
        #expect(second.status == 200, "\(second.body)")

        let stored = try await KinesisIngestTests.read(moto, stream: "cloudevents", key: key)
        #expect(stored.count == 2)
        let first = stored.first { $0.data.contains("k-1") }
        #expect(first?.partition_key == "c-9")
        let event = (first.flatMap { try? JSONSerialization.jsonObject(with: Data($0.data.utf8)) }) as? [String: Any] ?? [:]
        #expect(event["specversion"] as? String == "1.0" && event["id"] as? String == "k-1" && event["subject"] as? String == "a b")
        #expect(event["datacontenttype"] as? String == "application/json" && (event["data"] as? [String: Any])?["n"] as? Int == 1, "\(event)")
        #expect(stored.contains { $0.data == structured }, "\(stored.map(\.data))")
        #expect(try await sluice.terminate() == 0)
    }

    @Test func anUnsupportedEventFormatIs415() async throws {
        let sluice = try await SluiceProcess(config: """
            listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
            admin: { address: "127.0.0.1:{ADMIN_PORT}" }
            sinks: [{ name: archive, file: { directory: ./data } }]
            routes:
              - name: cloudevents
                match: { path: /ce, methods: [POST] }
                ingest: { api: cloudevents, sink: archive, topic: clicks }
            """)
        let avro = try await curl(["-H", "content-type: application/cloudevents+avro", "\(sluice.baseURL)/ce"], body: Data("x".utf8))
        #expect(avro.status == 415 && avro.body.contains("unsupported_media_type"), "\(avro.body)")
        let plain = try await curl(["-H", "content-type: application/json", "\(sluice.baseURL)/ce"], body: Data("{}".utf8))
        #expect(plain.status == 400 && plain.body.contains("missing required attribute: id"), "\(plain.body)")
        #expect(try await sluice.terminate() == 0)
    }
}
