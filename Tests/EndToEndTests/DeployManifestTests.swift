import Foundation
import Testing

/// deploy/kubernetes: the manifests pass `kubernetes-validate --strict` (the API's own schemas,
/// unknown fields refused), keep what they promise about Sluice (probes on the admin port, a
/// grace period above preStop + drain + flush, selectors that match: scripts/testing/
/// k8s_manifest_check.py), and carry a configuration the binary accepts.
@Suite(.timeLimit(.minutes(6))) struct DeployManifestTests {
    static let venv = packageRoot.appendingPathComponent(".testbed/catalog/bin")
    static let manifests = packageRoot.appendingPathComponent("deploy/kubernetes")

    static func yamlFiles(in directory: URL) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".yaml") }.sorted()
            .map { directory.appendingPathComponent($0).path }
    }

    static func validate(_ files: [String]) async throws -> ProgramResult {
        try await runProgram(Self.venv.appendingPathComponent("kubernetes-validate").path, ["--strict"] + files)
    }

    /// A copy of the manifests with `edit` applied to one file's text.
    static func copy(editing name: String, _ edit: (String) -> String) throws -> URL {
        let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("k8s-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for file in try Self.yamlFiles(in: Self.manifests) {
            let url = URL(fileURLWithPath: file)
            var text = try String(contentsOf: url, encoding: .utf8)
            if url.lastPathComponent == name {
                let edited = edit(text)
                #expect(edited != text, "the edit of \(name) changed nothing")
                text = edited
            }
            try text.write(to: directory.appendingPathComponent(url.lastPathComponent), atomically: true, encoding: .utf8)
        }
        return directory
    }

    @Test func theManifestsPassStrictValidation() async throws {
        let files = try Self.yamlFiles(in: Self.manifests)
        #expect(files.map { URL(fileURLWithPath: $0).lastPathComponent }.contains("deployment.yaml"))
        let result = try await Self.validate(files)
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        let output = result.stdout + result.stderr
        for resource in [
            "configmap/sluice-config", "deployment/sluice", "service/sluice", "poddisruptionbudget/sluice", "horizontalpodautoscaler/sluice",
            "networkpolicy/sluice", "deployment/sluice-redis", "service/sluice-redis",
        ] {
            #expect(output.contains("passed for resource \(resource) "), "\(resource): \(output)")
        }
        #expect(!output.contains("failed"), "\(output)")
    }

    @Test func aMisspelledFieldIsRefused() async throws {
        let directory = try Self.copy(editing: "deployment.yaml") {
            $0.replacingOccurrences(of: "terminationGracePeriodSeconds:", with: "terminationGracePeriod:")
        }
        defer { try? FileManager.default.removeItem(at: directory) }
        let result = try await Self.validate([directory.appendingPathComponent("deployment.yaml").path])
        #expect(result.status != 0, "\(result.stdout)\n\(result.stderr)")
    }

    @Test func theManifestsKeepTheirPromisesAndCarryAValidConfig() async throws {
        let config = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("k8s-config-\(UUID().uuidString).yaml")
        defer { try? FileManager.default.removeItem(at: config) }
        let check = try await runProgram(
            Self.venv.appendingPathComponent("python").path,
            [packageRoot.appendingPathComponent("scripts/testing/k8s_manifest_check.py").path, Self.manifests.path, config.path])
        #expect(check.status == 0, "\(check.stdout)\n\(check.stderr)")
        let environment = ProcessInfo.processInfo.environment.merging(["KAFKA_BOOTSTRAP": "kafka-bootstrap:9092"]) { $1 }
        let validate = try await runProgram(try sluiceBinary(), ["validate", config.path], environment: environment)
        #expect(validate.status == 0, "\(validate.stdout)\n\(validate.stderr)")
        #expect(validate.stdout.contains("valid (1 listener(s), 1 sink(s)"), "\(validate.stdout)")
    }

    /// The promise checks can fail: a grace period too short for the drain, probes on the data port.
    @Test func brokenPromisesAreFound() async throws {
        for (file, edit, problem) in [
            ("deployment.yaml", { (text: String) in text.replacingOccurrences(of: "terminationGracePeriodSeconds: 45", with: "terminationGracePeriodSeconds: 25") },
             "terminationGracePeriodSeconds 25 is not above"),
            ("deployment.yaml", { (text: String) in text.replacingOccurrences(of: "httpGet: { path: /ready, port: admin }", with: "httpGet: { path: /ready, port: http }") },
             "readinessProbe should be GET /ready"),
            ("configmap.yaml", { (text: String) in text.replacingOccurrences(of: "address: \"0.0.0.0:9901\"", with: "address: \"127.0.0.1:9901\"") },
             "the kubelet's probes cannot reach loopback"),
        ] as [(String, (String) -> String, String)] {
            let directory = try Self.copy(editing: file, edit)
            defer { try? FileManager.default.removeItem(at: directory) }
            let check = try await runProgram(
                Self.venv.appendingPathComponent("python").path,
                [packageRoot.appendingPathComponent("scripts/testing/k8s_manifest_check.py").path, directory.path, directory.appendingPathComponent("out.yaml").path])
            #expect(check.status == 1 && check.stdout.contains(problem), "\(file): \(check.stdout)")
        }
    }
}
