import Foundation
import Testing

/// `Upgrade: h2c` on a cleartext listener, with the clients that send it: curl (`--http2`
/// upgrades its first request) and nghttp (`-u`; `OPTIONS *` first when the request has a body).
@Suite(.timeLimit(.minutes(6))) struct H2CUpgradeEndToEndTests {
    static func config(h2cUpgrade: Bool? = nil) -> String {
        """
        listeners:
          - name: main
            address: "127.0.0.1:{PORT}"
        \(h2cUpgrade.map { "    h2c_upgrade: \($0)" } ?? "")
        admin: { address: "127.0.0.1:{ADMIN_PORT}" }
        sinks:
          - name: files
            file: { directory: ./data }
        routes:
          - name: ingest
            match: { path: "/v1/events/{topic}", methods: [POST] }
            ingest: { sink: files, topic: "{topic}" }
        """
    }

    /// Everything the file sink has written.
    static func written(_ sluice: SluiceProcess) -> String {
        let directory = sluice.workDirectory.appendingPathComponent("data")
        let files = (FileManager.default.enumerator(at: directory, includingPropertiesForKeys: nil)?.allObjects as? [URL]) ?? []
        return files.compactMap { try? String(contentsOf: $0, encoding: .utf8) }.joined()
    }

    @Test func curlsUpgradedRequestIsRoutedAsHTTP2StreamOne() async throws {
        let sluice = try await SluiceProcess(config: Self.config())
        let response = try await curl(["--http2", "\(sluice.baseURL)/v1/events/orders"])
        #expect(response.headers.contains("HTTP/1.1 101 Switching Protocols"), "\(response.headers)")
        #expect(response.httpVersion == "2")
        // Method and path reached the router from the upgraded request: the route answers 405.
        #expect(response.status == 405)
        #expect(response.headers.lowercased().contains("allow: post"))
        #expect((response.json["error"] as? [String: Any])?["code"] as? String == "method_not_allowed")
    }

    @Test func anUpgradeRequestWithABodyIsServedOverHTTP1Intact() async throws {
        let sluice = try await SluiceProcess(config: Self.config())
        let response = try await curl(
            ["--http2", "-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/v1/events/orders"],
            body: Data("{\"id\":\"with-body\"}\n".utf8))
        #expect(!response.headers.contains("101"), "\(response.headers)")
        #expect(response.httpVersion == "1.1")
        #expect(response.status == 200)
        #expect(response.json["accepted"] as? Int == 1)
        #expect(Self.written(sluice).contains("with-body"))
    }

    @Test func nghttpUpgradesByOptionsThenIngestsOverTheSameConnection() async throws {
        let sluice = try await SluiceProcess(config: Self.config())
        let body = sluice.workDirectory.appendingPathComponent("events.ndjson")
        try Data("{\"id\":\"over-h2c\"}\n{\"id\":\"second\"}\n".utf8).write(to: body)
        let result = try await runProgram(
            "nghttp", ["-v", "-u", "-d", body.path, "-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/v1/events/orders"])
        #expect(result.status == 0, "\(result.stdout.suffix(2000)) \(result.stderr)")
        #expect(result.stdout.contains("HTTP Upgrade success"))
        // Stream 1 (`OPTIONS *`) has no route; the POST that follows on the same connection is ingested.
        #expect(result.stdout.contains("recv (stream_id=1) :status: 404"))
        #expect(result.stdout.range(of: #"recv \(stream_id=(3|5|7|9|11|13)\) :status: 200"#, options: .regularExpression) != nil)
        #expect(result.stdout.contains("\"accepted\":2"))
        let written = Self.written(sluice)
        #expect(written.contains("over-h2c") && written.contains("second"))
    }

    @Test func aListenerWithUpgradesOffAnswersOverHTTP1() async throws {
        let sluice = try await SluiceProcess(config: Self.config(h2cUpgrade: false))
        let response = try await curl(["--http2", "\(sluice.baseURL)/v1/events/orders"])
        #expect(!response.headers.contains("101"))
        #expect(response.httpVersion == "1.1")
        #expect(response.status == 405)
        // Prior knowledge is still served.
        let prior = try await curl(["--http2-prior-knowledge", "\(sluice.baseURL)/v1/events/orders"])
        #expect(prior.httpVersion == "2")
    }
}
