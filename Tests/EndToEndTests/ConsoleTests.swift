import Foundation
import Testing

/// The ops console in a real headless Chromium (scripts/testing/console_check.py, selenium over
/// Debian's chromium-driver): the page asks for the admin token, its charts get points while
/// traffic flows, and a setting changed in a sink's form is what `GET /sinks/{name}` shows.
@Suite(.timeLimit(.minutes(6))) struct ConsoleTests {
    @Test func theConsoleChartsLiveTrafficAndItsFormRetunesTheSink() async throws {
        let token = "console-token-0123456789abcdef"
        let sluice = try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}", auth: { bearer_token: { env: SLUICE_ADMIN_TOKEN } } }
                sinks:
                  - name: archive
                    file: { directory: "./events" }
                routes:
                  - name: ingest
                    match: { path: /v1/events }
                    ingest: { sink: archive, topic: events }
                """, environment: ["SLUICE_ADMIN_TOKEN": token])
        let stop = ManagedFlag()
        let url = "\(sluice.baseURL)/v1/events"
        let traffic = Task {
            var sent = 0
            while !stop.isSet, sent < 2000 {
                let response = try await curl(["-H", "content-type: application/x-ndjson", url], body: Data("{\"n\":1}\n{\"n\":2}\n".utf8))
                #expect(response.status == 200)
                sent += 1
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/testing/console_check.py").path
        let admin = "http://127.0.0.1:\(sluice.adminPort)"
        let result = try await runProgram("python3", [script, admin, "archive", "max_in_flight_events", "777", "--token", token])
        stop.set()
        try await traffic.value
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        let summary = (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8))) as? [String: Any] ?? [:]
        #expect((summary["points"] as? Int ?? 0) > 0, "\(result.stdout)")
        #expect((summary["busy_samples"] as? Int ?? 0) > 0, "a sample with events charted")
        let charts = summary["charts_with_points"] as? [String] ?? []
        for chart in ["sink:archive:latency", "sink:archive:inflight", "sink:archive:errors", "route:ingest:requests"] {
            #expect(charts.contains(chart), "\(chart) has no points: \(charts)")
        }
        #expect(summary["applied"] as? Bool == true, "\(result.stdout)")

        let detail = try await curl([admin + "/sinks/archive", "-H", "authorization: Bearer \(token)"]).json
        #expect((detail["settings"] as? [String: String])?["max_in_flight_events"] == "777")
        #expect((detail["state"] as? [String: Any])?["max_in_flight_events"] as? Int == 777)
        #expect(try await sluice.terminate() == 0)
    }
}
