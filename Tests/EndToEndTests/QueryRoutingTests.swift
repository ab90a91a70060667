import Foundation
import Testing

/// `match.query` through the real binary: the same path goes to different routes by a query
/// parameter's value or presence, and falls through to the next route otherwise.
@Suite(.timeLimit(.minutes(6))) struct QueryRoutingTests {
    @Test func queryParametersChooseTheRoute() async throws {
        let sluice = try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                sinks: [{ name: events, file: { directory: ./events } }]
                routes:
                  - name: v2
                    match: { path: /ingest, query: { version: "2" } }
                    ingest: { sink: events, topic: v2 }
                  - name: traced
                    match: { path: /ingest, query: { trace: { present: true } } }
                    ingest: { sink: events, topic: traced }
                  - name: default
                    match: { path: /ingest }
                    ingest: { sink: events, topic: v1 }
                """)
        for query in ["?version=2", "?trace", "?version=3", "", "?a=1&version=%32"] {
            let response = try await curl(["-H", "content-type: application/json", "\(sluice.baseURL)/ingest\(query)"], body: Data(#"{"q":"\#(query)"}"#.utf8))
            #expect(response.status == 200, "\(query): \(response.body)")
        }
        #expect(try await sluice.terminate() == 0)
        let directory = sluice.workDirectory.appendingPathComponent("events")
        let text = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".ndjson") }.sorted()
            .map { try String(contentsOf: directory.appendingPathComponent($0), encoding: .utf8) }.joined()
        let landed = text.split(separator: "\n").compactMap { line -> (String, String)? in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], let topic = object["topic"] as? String,
                let value = object["value"] as? [String: Any], let query = value["q"] as? String
            else { return nil }
            return (query, topic)
        }
        #expect(landed.map(\.0) == ["?version=2", "?trace", "?version=3", "", "?a=1&version=%32"])
        #expect(landed.map(\.1) == ["v2", "traced", "v1", "v1", "v2"], "\(landed)")
    }
}
