import Foundation
import Testing

/// CloudEvents through the real binary into the real broker, with the official Python SDK as the
/// client (binary, structured and batched modes) and as the decoder of the Kafka records
/// (scripts/testing/cloudevents_check.py).
@Suite(.timeLimit(.minutes(3))) struct CloudEventsSDKTests {
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
