import Foundation
import Testing

/// `sluice catalog` against the formats' own validators (openapi-spec-validator, the AsyncAPI
/// 3.0.0 JSON Schema, Backstage's entity schemas: scripts/testing/catalog_check.py in the
/// .testbed/catalog venv), and its OpenAPI document against a live gateway with schemathesis.
@Suite(.timeLimit(.minutes(6))) struct CatalogTests {
    static let python = packageRoot.appendingPathComponent(".testbed/catalog/bin/python").path
    static let schemathesis = packageRoot.appendingPathComponent(".testbed/catalog/bin/st").path
    static let checker = packageRoot.appendingPathComponent("scripts/testing/catalog_check.py").path
    /// kafka-full.yaml's SASL password: never in a catalog, which is published.
    static let password = "pw-5f3a9c-never-published"
    /// The environment the example configs name (kafka-full.yaml takes its broker and password from it).
    static let environment = ProcessInfo.processInfo.environment.merging(["KAFKA_HOST": "127.0.0.1", "SLUICE_TEST_PASSWORD": Self.password]) { $1 }

    static func catalog(_ arguments: [String]) async throws -> ProgramResult {
        try await runProgram(try sluiceBinary(), ["catalog"] + arguments, environment: Self.environment)
    }

    /// Runs the checker on `text` as a document of `format`.
    static func check(_ format: String, _ text: String) async throws -> ProgramResult {
        let file = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("catalog-\(UUID().uuidString).\(format == "backstage" ? "yaml" : "json")")
        try Data(text.utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        return try await runProgram(Self.python, [Self.checker, format, file.path])
    }

    /// Every configuration the project ships (the quickstart, the examples, the valid test data).
    static var shippedConfigs: [String] {
        let root = packageRoot.appendingPathComponent("configs")
        let files = ["quickstart.yaml", "kafka.yaml", "zerobus.yaml"].map { root.appendingPathComponent($0).path }
        let valid = (try? FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("testdata/valid").path)) ?? []
        return files + valid.filter { $0.hasSuffix(".yaml") }.sorted().map { root.appendingPathComponent("testdata/valid/\($0)").path }
    }

    @Test(arguments: ["openapi", "asyncapi", "backstage"])
    func everyShippedConfigGivesADocumentItsValidatorAccepts(format: String) async throws {
        #expect(Self.shippedConfigs.count >= 10)
        for config in Self.shippedConfigs {
            let output = try await Self.catalog(["--config", config, "--format", format])
            #expect(output.status == 0, "\(config): \(output.stderr)")
            #expect(!output.stdout.contains(Self.password), "\(config): a secret in the \(format) output")
            let check = try await Self.check(format, output.stdout)
            #expect(check.status == 0, "\(config) \(format): \(check.stdout.prefix(3000)) \(check.stderr.suffix(2000))")
        }
    }

    @Test func theEmbeddedConfigsCatalogNeedsNoFile() async throws {
        let output = try await Self.catalog(["--format", "openapi"])
        #expect(output.status == 0, "\(output.stderr)")
        #expect(output.stdout.contains("\"/v1/events/{topic}\""))
    }

    /// The checker must be able to fail: a document with a fault in each format is refused.
    @Test func theValidatorsRefuseABrokenDocument() async throws {
        let config = packageRoot.appendingPathComponent("configs/testdata/valid/policies.yaml").path
        let openapi = try await Self.catalog(["--config", config, "--format", "openapi"]).stdout
        let noResponses = openapi.replacingOccurrences(of: "\"responses\":", with: "\"answers\":")
        #expect(try await Self.check("openapi", noResponses).status == 1)
        let asyncapi = try await Self.catalog(["--config", config, "--format", "asyncapi"]).stdout
        #expect(try await Self.check("asyncapi", asyncapi.replacingOccurrences(of: "\"action\": \"send\"", with: "\"action\": \"push\"")).status == 1)
        let backstage = try await Self.catalog(["--config", config, "--format", "backstage"]).stdout
        #expect(try await Self.check("backstage", backstage.replacingOccurrences(of: "  owner: unknown\n", with: "")).status == 1)
        #expect(try await Self.check("backstage", backstage.replacingOccurrences(of: "- sluice-http\n", with: "- elsewhere-http\n")).status == 1)
    }

    @Test func anInvalidConfigIsRefusedWithItsErrors() async throws {
        let file = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("catalog-bad-\(UUID().uuidString).yaml")
        try Data("listeners: [{ name: main, address: \"127.0.0.1:8080\" }]\nroutes: []\ncatalog: { owner: \"\" }\n".utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let output = try await Self.catalog(["--config", file.path, "--format", "openapi"])
        #expect(output.status == 1)
        #expect(output.stdout.isEmpty)
        #expect(output.stderr.contains("catalog.owner"), "\(output.stderr)")
        let unknown = try await Self.catalog(["--format", "wsdl"])
        #expect(unknown.status != 0 && unknown.stderr.contains("wsdl"), "\(unknown.stderr)")
    }

    /// The live gateway answers only as its OpenAPI document says: schemathesis sends generated
    /// requests (examples, coverage and fuzzing phases) and checks for server errors,
    /// undocumented statuses, content types, headers and bodies that break the response schemas.
    @Test func schemathesisFindsNothingTheDocumentDoesNotSay() async throws {
        let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("catalog-live-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let schema = directory.appendingPathComponent("order.json")
        try Data(
            ##"""
            {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "required": ["id", "amount"],
             "properties": {"id": {"type": "integer", "minimum": 1}, "amount": {"$ref": "#/$defs/money"}, "note": {"type": "string", "maxLength": 64}},
             "additionalProperties": false, "$defs": {"money": {"type": "number", "minimum": 0}}}
            """##.utf8
        ).write(to: schema)
        // sha256("k-catalog")
        let sluice = try await SluiceProcess(config: """
            listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
            admin: { address: "127.0.0.1:{ADMIN_PORT}" }
            catalog: { title: Catalog test, owner: team-events }
            policies:
              - name: keys
                api_key: { header: X-Api-Key, keys: [{ client: tester, sha256: 650b9b411b5c1de08266a614a47b9c8487db072165cb240a833269f4c21ca7dc }] }
            sinks:
              - name: archive
                file: { directory: ./data }
            routes:
              - name: events
                match: { path: "/v1/events/{topic}", methods: [POST] }
                policies: [keys]
                ingest: { sink: archive, topic: "{topic}", topics_allowed: [orders, clicks], key: header:X-Event-Key, max_events: 50 }
              - name: orders
                match: { path: /v1/orders, methods: [POST] }
                idempotency: { window: 1h }
                ingest: { sink: archive, topic: orders, schema: { json_schema_file: \(schema.path) }, max_events: 50 }
              - name: accepted
                match: { path: "/v1/fast/{topic}", methods: [POST] }
                ingest: { sink: archive, topic: "{topic}", ack: accepted }
              - name: cloud
                match: { path: /v1/cloudevents, methods: [POST] }
                ingest: { api: cloudevents, sink: archive, topic: cloud }
            """)
        let output = try await Self.catalog(["--config", sluice.workDirectory.appendingPathComponent("sluice.yaml").path, "--format", "openapi"])
        #expect(output.status == 0, "\(output.stderr)")
        let document = directory.appendingPathComponent("openapi.json")
        try Data(output.stdout.utf8).write(to: document)

        // The key opens the authenticated route (a wrong one would make every request a 401).
        let probe = try await curl(
            ["-H", "X-Api-Key: k-catalog", "-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/v1/events/orders"], body: Data("{\"a\":1}\n".utf8))
        #expect(probe.status == 200, "\(probe.body)")

        // One worker: with two threads, hypothesis' ast.parse trips CPython 3.11's thread-unsafe
        // AST recursion counter ("SystemError: AST constructor recursion depth mismatch", a
        // crash of the tool seen in a CI run, not a finding).
        func run(_ schema: URL) async throws -> ProgramResult {
            try await runProgram(
                Self.schemathesis,
                [
                    "run", schema.path, "--url", sluice.baseURL,
                    "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
                    "--max-examples", "20", "--seed", "1", "--workers", "1", "--generation-database", "none", "--no-color",
                    "--request-timeout", "10", "-H", "X-Api-Key: k-catalog",
                ],
                // Its cache of failures (.schemathesis/) stays in the test's directory.
                directory: directory)
        }
        let result = try await run(document)
        #expect(result.status == 0, "\(result.stdout.suffix(6000))\n\(result.stderr.suffix(2000))")
        #expect(result.stdout.contains("4 selected / 4 total"), "\(result.stdout.prefix(2000))")
        #expect(!sluice.log.contains("fatal") && !sluice.log.contains("panic"))

        // The same run finds a contradiction when the document is wrong: without 400 among the
        // schema route's statuses, its refusals are undocumented.
        var doctored = try #require(try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any])
        var paths = try #require(doctored["paths"] as? [String: Any])
        var orders = try #require(paths["/v1/orders"] as? [String: Any])
        var post = try #require(orders["post"] as? [String: Any])
        var responses = try #require(post["responses"] as? [String: Any])
        responses["400"] = nil
        post["responses"] = responses
        orders["post"] = post
        paths["/v1/orders"] = orders
        doctored["paths"] = paths
        let wrong = directory.appendingPathComponent("doctored.json")
        try JSONSerialization.data(withJSONObject: doctored).write(to: wrong)
        let caught = try await run(wrong)
        #expect(caught.status != 0)
        #expect(caught.stdout.contains("Undocumented status code"), "\(caught.stdout.suffix(3000))")
        #expect(try await sluice.terminate() == 0)
    }
}
