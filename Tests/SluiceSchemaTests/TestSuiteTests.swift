import Foundation
import SluiceSchema
import Testing

/// The official JSON-Schema-Test-Suite (Tests/Fixtures/JSON-Schema-Test-Suite): every required
/// test of draft 2020-12 and draft-07 must pass; the optional format tests (run with format
/// assertion on) are counted and must not fall below the rate the README records.
@Suite struct JSONSchemaTestSuiteTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")
    static let suite = Self.fixtures.appendingPathComponent("JSON-Schema-Test-Suite")

    /// The documents tests refer to: the suite's remotes (served at http://localhost:1234/ in
    /// its own harness) and the drafts' metaschemas.
    static func load(_ uri: String) -> JSONValue? {
        var file: URL?
        if uri.hasPrefix("http://localhost:1234/") {
            file = Self.suite.appendingPathComponent("remotes").appendingPathComponent(String(uri.dropFirst("http://localhost:1234/".count)))
        } else if uri.hasPrefix("https://json-schema.org/draft/2020-12/") {
            let rest = String(uri.dropFirst("https://json-schema.org/draft/2020-12/".count))
            file = Self.fixtures.appendingPathComponent("json-schema-metaschemas/draft2020-12").appendingPathComponent(rest + ".json")
        } else if uri == "http://json-schema.org/draft-07/schema" {
            file = Self.fixtures.appendingPathComponent("json-schema-metaschemas/draft-07/schema.json")
        }
        guard let file, let text = try? String(contentsOf: file, encoding: .utf8) else { return nil }
        return try? JSONParser.parse(text)
    }

    struct Outcome {
        var passed = 0
        var failed: [String] = []
        var total: Int { self.passed + self.failed.count }
    }

    static func run(_ folder: String, draft: JSONSchemaDraft, formatAssertion: Bool = false) throws -> Outcome {
        let directory = Self.suite.appendingPathComponent("tests").appendingPathComponent(folder)
        var outcome = Outcome()
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".json") }.sorted()
        #expect(!files.isEmpty, "no test files in \(directory.path)")
        for file in files {
            let text = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
            guard case .array(let groups) = try JSONParser.parse(text) else {
                Issue.record("\(file) is not a list of test groups")
                continue
            }
            for group in groups {
                guard case .object(let object) = group, let schema = object["schema"], case .array(let tests)? = object["tests"] else { continue }
                let description = (object["description"]).flatMap { if case .string(let text) = $0 { text } else { nil } } ?? "?"
                let compiled: JSONSchema
                do {
                    compiled = try JSONSchema.compile(schema, draft: draft, baseURI: "urn:sluice:test-suite", formatAssertion: formatAssertion, loader: Self.load)
                } catch {
                    for _ in tests { outcome.failed.append("\(folder)/\(file): \(description): does not compile: \(error)") }
                    continue
                }
                for test in tests {
                    guard case .object(let testObject) = test, let data = testObject["data"], case .bool(let expected)? = testObject["valid"] else { continue }
                    let name = (testObject["description"]).flatMap { if case .string(let text) = $0 { text } else { nil } } ?? "?"
                    let violations = compiled.validate(data)
                    if violations.isEmpty == expected && compiled.isValid(data) == expected {
                        outcome.passed += 1
                    } else {
                        outcome.failed.append("\(folder)/\(file): \(description): \(name): expected \(expected ? "valid" : "invalid") \(violations.prefix(2))")
                    }
                }
            }
        }
        return outcome
    }

    @Test(arguments: [("draft2020-12", JSONSchemaDraft.draft2020_12), ("draft7", .draft7)])
    func everyRequiredTestPasses(folder: String, draft: JSONSchemaDraft) throws {
        let outcome = try Self.run(folder, draft: draft)
        #expect(outcome.total > 800, "the suite's required tests are all read")
        #expect(outcome.failed.isEmpty, "\(outcome.failed.count) of \(outcome.total) failed:\n\(outcome.failed.joined(separator: "\n"))")
        print("JSON-Schema-Test-Suite \(folder) required: \(outcome.passed)/\(outcome.total)")
    }

    /// Optional format tests with `format_assertion: true`: the floor is what the README records.
    @Test(arguments: [("draft2020-12/optional/format", JSONSchemaDraft.draft2020_12, 685), ("draft7/optional/format", .draft7, 600)])
    func optionalFormatTestsStayAtTheirRecordedRate(folder: String, draft: JSONSchemaDraft, floor: Int) throws {
        let outcome = try Self.run(folder, draft: draft, formatAssertion: true)
        print("JSON-Schema-Test-Suite \(folder): \(outcome.passed)/\(outcome.total)\n" + outcome.failed.joined(separator: "\n"))
        #expect(outcome.passed >= floor, "\(outcome.passed)/\(outcome.total), recorded floor \(floor)")
    }
}
