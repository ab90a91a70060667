import Foundation
import Testing

/// Three Sluice processes behind nginx, sharing one Redis and the test broker, under continuous
/// load (scripts/testing/fleet.py): a rolling restart (each in turn: SIGTERM, drain, exit 0,
/// start, ready) fails no client request and loses no acknowledged event, and a global rate
/// limit holds across the three.
@Suite(.timeLimit(.minutes(6))) struct FleetTests {
    @Test func aRollingRestartUnderLoadFailsNoRequestAndLosesNoEvent() async throws {
        try await requireBroker()
        let result = try await runProgram(
            "python3",
            [packageRoot.appendingPathComponent("scripts/testing/fleet.py").path, "rolling", "--sluice", try sluiceBinary(), "--bootstrap", kafkaBootstrap,
             "--instances", "3", "--clients", "4", "--burst", "30"])
        #expect(result.status == 0, "\(result.stdout.suffix(4000))\n\(result.stderr.suffix(2000))")
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout)")
        let restarts = summary["restarts"] as? [[String: Any]] ?? []
        #expect(restarts.count == 3 && restarts.allSatisfy { $0["exit"] as? Int == 0 && $0["ready"] as? Bool == true }, "\(restarts)")
        #expect(summary["failed"] as? Int == 0, "\(summary["failures"] ?? "")")
        let acked = summary["events_acked"] as? Int ?? 0
        #expect(acked > 0)
        #expect(summary["acked_missing"] as? Int == 0)
        #expect((summary["events_in_topic"] as? Int ?? 0) >= acked)
        let limit = summary["rate_limit"] as? [String: Any] ?? [:]
        #expect(limit["sent"] as? Int == 90 && limit["passed"] as? Int == 30 && limit["limited"] as? Int == 60, "\(limit)")
    }
}
