import Foundation
import Testing

/// The project's Zerobus test server (connectors/zerobus/testserver) is only worth testing Sluice
/// against if it speaks the real protocol: the official Python SDK (databricks-zerobus-ingest-sdk
/// 1.10.0, in the venv scripts/setup.sh makes) must get through OAuth, ingest, durability acks,
/// recovery after UNAVAILABLE (new stream, unacknowledged records resent) and close_stream_signal.
@Suite(.timeLimit(.minutes(3))) struct ZerobusTestServerTests {
    static let server = packageRoot.appendingPathComponent("connectors/zerobus/testserver/zerobus_test_server.py").path
    static let check = packageRoot.appendingPathComponent("scripts/testing/zerobus_sdk_check.py").path
    static let sdkPython = packageRoot.appendingPathComponent(".testbed/zerobus-sdk/bin/python").path

    @Test func theOfficialSDKIngestsThroughTheTestServer() async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.sdkPython) else {
            throw HarnessError("no SDK venv at \(Self.sdkPython); run scripts/setup.sh")
        }
        let server = try await PeerProcess(
            "zerobus", ["python3", Self.server, "--grpc-port", "{PORT}", "--http-port", "{PORT2}", "--client-id", "sdk-client",
                        "--client-secret", "sdk-secret"])
        let result = try runProgram(
            Self.sdkPython, [Self.check, String(server.port), String(server.port2), "sdk-client", "sdk-secret", "main.default.events"])
        #expect(result.status == 0, "SDK check failed: \(result.stderr.suffix(2000))\n\(server.logText)")
        let summary = result.stdout.split(separator: "\n").last.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(summary?["missing"] as? Int == 0 && summary?["sent"] as? Int == 150, "\(result.stdout.suffix(1000))")
    }
}
