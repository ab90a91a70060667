import Foundation
import Testing

/// `schema: { …, registry }` through the real binary: the schema id that frames Avro and
/// Protobuf values is looked up in a Schema Registry (scripts/testing/schema_registry.py, which
/// follows Confluent's REST API; no real registry installs here), and the records are read back
/// with Confluent's own client and deserializer (confluent-kafka, in .testbed/confluent-kafka).
@Suite(.timeLimit(.minutes(6))) struct SchemaRegistryEndToEndTests {
    static let registryScript = packageRoot.appendingPathComponent("scripts/testing/schema_registry.py").path
    static let decodeScript = packageRoot.appendingPathComponent("scripts/testing/registry_decode.py").path
    static let confluentPython = packageRoot.appendingPathComponent(".testbed/confluent-kafka/bin/python").path

    static let orderSchema = #"{"type": "record", "name": "Order", "namespace": "shop", "fields": [{"name": "id", "type": "long"}, {"name": "sku", "type": "string"}]}"#

    /// Registers `schema` under `subject` with Confluent's SchemaRegistryClient; its id.
    static func register(_ registry: PeerProcess, subject: String, schema: URL) async throws -> Int {
        let result = try await runProgram(
            Self.confluentPython, [Self.decodeScript, "register", "--registry", registry.endpoint, "--subject", subject, "--schema", schema.path])
        guard result.status == 0, let id = Int(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw HarnessError("register failed: \(result.stderr)")
        }
        return id
    }

    /// The registry's calls so far, as "METHOD path".
    static func calls(_ registry: PeerProcess) async throws -> [String] {
        let response = try await curl([registry.endpoint + "/calls"])
        let list = (try? JSONSerialization.jsonObject(with: Data(response.body.utf8))) as? [[String]] ?? []
        return list.map { $0.joined(separator: " ") }
    }

    @Test func avroIdsComeFromTheRegistryAndConfluentsDeserializerReadsTheRecords() async throws {
        try await requireBroker()
        let registry = try await PeerProcess("schema-registry", ["python3", Self.registryScript, "--port", "{PORT}"])
        try await SchemaValidationEndToEndTests.withSchemaFiles { directory in
            let avsc = directory.appendingPathComponent("order.avsc")
            try Self.orderSchema.write(to: avsc, atomically: true, encoding: .utf8)
            let other = directory.appendingPathComponent("other.avsc")
            try #"{"type": "string"}"#.write(to: other, atomically: true, encoding: .utf8)
            // Another schema first, so the route's id is not 1 by chance.
            #expect(try await Self.register(registry, subject: "unrelated-value", schema: other) == 1)

            let topic = uniqueTopic("registry-avro")
            let sluice = try await SchemaValidationEndToEndTests.start(
                routes: """
                      - name: avro
                        match: { path: /v1/orders, methods: [POST] }
                        ingest: { sink: events, topic: \(topic), schema: { avro_file: "\(avsc.path)", registry: { url: "\(registry.endpoint)", retry_after: 200ms } } }
                    """)
            let post = { (body: String) in
                try await curl(["-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/v1/orders"], body: Data(body.utf8))
            }
            // Not registered under the topic's subject: nothing is sent, and the answer says to retry.
            let refused = try await post(#"{"id": 1, "sku": "a"}"#)
            #expect(refused.status == 503, "\(refused.body)")
            #expect(refused.body.contains(#""code":"schema_not_registered""#) && refused.headers.lowercased().contains("retry-after:"), "\(refused.body)")
            #expect(!refused.body.contains(String(registry.port)), "the registry's address stays in the log")

            let id = try await Self.register(registry, subject: "\(topic)-value", schema: avsc)
            #expect(id == 2)
            try await Task.sleep(for: .milliseconds(400))  // past retry_after
            let first = try await post(#"{"id": 1, "sku": "a"}"# + "\n" + #"{"id": 2, "sku": "b"}"#)
            #expect(first.status == 200, "\(first.body)")
            let second = try await post(#"{"id": 3, "sku": "c"}"#)
            #expect(second.status == 200, "\(second.body)")
            let lookups = try await Self.calls(registry).filter { $0 == "POST /subjects/\(topic)-value" }
            #expect(lookups.count == 2, "one failed lookup, then one that is kept: \(lookups)")

            _ = try await consume(topic, expecting: 3)
            let decoded = try await runProgram(
                Self.confluentPython,
                [Self.decodeScript, "avro", "--registry", registry.endpoint, "--bootstrap", kafkaBootstrap, "--topic", topic, "--count", "3"])
            #expect(decoded.status == 0, "\(decoded.stderr)")
            let lines = decoded.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            #expect(lines.count == 3, "\(decoded.stdout)")
            #expect(lines.allSatisfy { $0["schema_id"] as? Int == id }, "\(decoded.stdout)")
            #expect(lines.compactMap { ($0["value"] as? [String: Any])?["sku"] as? String } == ["a", "b", "c"], "\(decoded.stdout)")
            #expect(try await sluice.terminate() == 0)
        }
    }

    /// Protobuf with `auto_register` and basic auth: Sluice registers the `.proto` under the
    /// subject and frames with the id the registry gave; once the registry is gone a subject
    /// already looked up keeps working and a new one is answered 503.
    @Test func protobufIsRegisteredWhenAskedAndAnUnreachableRegistryIs503() async throws {
        try await requireBroker()
        let registry = try await PeerProcess(
            "schema-registry", ["python3", Self.registryScript, "--port", "{PORT}", "--username", "sluice", "--password", "registry-secret"])
        try await SchemaValidationEndToEndTests.withSchemaFiles { directory in
            let proto = directory.appendingPathComponent("order.proto")
            try #"""
                syntax = "proto3";
                package shop.v1;
                message Order { int64 id = 1; string sku = 2; }
                """#.write(to: proto, atomically: true, encoding: .utf8)
            let descriptors = directory.appendingPathComponent("order.desc").path
            let protoc = try await runProgram(
                "python3", ["-m", "grpc_tools.protoc", "-I", directory.path, "--include_imports", "--descriptor_set_out=\(descriptors)", "order.proto"])
            try #require(protoc.status == 0, "\(protoc.stderr)")
            let password = directory.appendingPathComponent("password")
            try "registry-secret\n".write(to: password, atomically: true, encoding: .utf8)
            let topic = uniqueTopic("registry-protobuf")
            let sluice = try await SchemaValidationEndToEndTests.start(
                routes: """
                      - name: protobuf
                        match: { path: "/v1/orders/{topic}", methods: [POST] }
                        ingest:
                          sink: events
                          topic: "{topic}"
                          schema:
                            protobuf: { descriptor_set: "\(descriptors)", message: shop.v1.Order }
                            registry: { url: "\(registry.endpoint)", auto_register: true, schema_file: "\(proto.path)", username: sluice, password: { file: "\(password.path)" }, timeout: 1s }
                    """)
            let response = try await curl(
                ["-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/v1/orders/\(topic)"], body: Data(#"{"id": 5, "sku": "p"}"#.utf8))
            #expect(response.status == 200, "\(response.body)")
            let latest = try await curl(["-u", "sluice:registry-secret", "\(registry.endpoint)/subjects/\(topic)-value/versions/latest"])
            let registered = latest.json
            #expect(registered["schemaType"] as? String == "PROTOBUF" && (registered["schema"] as? String)?.contains("message Order") == true, "\(latest.body)")
            let id = registered["id"] as? Int

            _ = try await consume(topic, expecting: 1)
            let decoded = try await runProgram(
                "python3", [packageRoot.appendingPathComponent("scripts/testing/protobuf_decode.py").path, "--bootstrap", kafkaBootstrap, "--topic", topic,
                            "--descriptor-set", descriptors, "--message", "shop.v1.Order", "--framed", "--count", "1"])
            let line = decoded.stdout.split(separator: "\n").first.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            #expect(id != nil && line?["schema_id"] as? Int == id, "\(decoded.stdout) \(decoded.stderr)")
            #expect((line?["value"] as? [String: Any])?["sku"] as? String == "p", "\(decoded.stdout)")

            registry.stop()
            let again = try await curl(
                ["-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/v1/orders/\(topic)"], body: Data(#"{"id": 6, "sku": "q"}"#.utf8))
            #expect(again.status == 200, "an id once known is kept: \(again.body)")
            let unknown = try await curl(
                ["-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/v1/orders/\(topic)-new"], body: Data(#"{"id": 7, "sku": "r"}"#.utf8))
            #expect(unknown.status == 503, "\(unknown.body)")
            #expect(unknown.body.contains(#""code":"schema_registry_unavailable""#) && unknown.headers.lowercased().contains("retry-after:"), "\(unknown.body)")
            #expect(!unknown.body.contains(String(registry.port)) && !unknown.body.contains("registry-secret"))
            #expect(sluice.log.contains("schema registry lookup failed") && !sluice.log.contains("registry-secret"))
            #expect(try await sluice.terminate() == 0)
        }
    }
}
