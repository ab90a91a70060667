import Foundation
import SluiceConfig
import Testing

/// Every file in configs/testdata/valid must validate; every file in configs/testdata/invalid
/// names, in `# error:` comment lines, each error it must produce.
@Suite struct TestdataTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let environment = ["SLUICE_TEST_PASSWORD": "s3cret", "KAFKA_HOST": "127.0.0.1"]

    static func files(_ kind: String) -> [String] {
        let directory = root.appendingPathComponent("configs/testdata/\(kind)")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0.hasSuffix(".yaml") }.sorted().map { directory.appendingPathComponent($0).path }
    }

    @Test func thereAreTestdataFiles() {
        #expect(Self.files("valid").count >= 3)
        #expect(Self.files("invalid").count >= 10)
    }

    @Test(arguments: files("valid") + [root.appendingPathComponent("configs/quickstart.yaml").path, root.appendingPathComponent("configs/kafka.yaml").path])
    func validFileValidates(path: String) throws {
        do {
            _ = try SluiceConfiguration.load(path: path, environment: Self.environment, sinkKinds: allSinkKinds)
        } catch {
            Issue.record("\(path) should be valid but: \(error)")
        }
    }

    @Test(arguments: files("invalid"))
    func invalidFileProducesTheErrorsItNames(path: String) throws {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let expected = text.split(separator: "\n").compactMap { line -> String? in
            guard line.hasPrefix("# error: ") else { return nil }
            return String(line.dropFirst("# error: ".count))
        }
        #expect(!expected.isEmpty, "\(path) must name its expected errors in '# error: ' lines")
        do {
            _ = try SluiceConfiguration.load(path: path, environment: Self.environment, sinkKinds: allSinkKinds)
            Issue.record("\(path) should be invalid")
        } catch {
            let messages = error.errors.map(\.description)
            for want in expected {
                #expect(messages.contains { $0.contains(want) }, "\(path): expected an error containing \"\(want)\"; got \(messages)")
            }
            #expect(messages.count == expected.count, "\(path): expected exactly \(expected.count) error(s); got \(messages)")
        }
    }
}
