import Crypto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import SluiceGRPC
import Testing

/// The JSON access log through the real binary: exactly one parseable line per request and gRPC
/// call, refused ones (401, 413, 429, 502, 503) included, with the route, status, events, sink or
/// upstream and identity — and no credential anywhere.
@Suite(.timeLimit(.minutes(6))) struct AccessLogEndToEndTests {
    static let key = "key-\(UUID().uuidString.prefix(8))"

    static var config: String {
        """
        listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
        admin: { address: "127.0.0.1:{ADMIN_PORT}" }
        grpc: { address: "127.0.0.1:{GRPC_PORT}" }
        access_log: { path: ./access.log, format: json }
        policies:
          - name: keys
            api_key: { header: X-Api-Key, keys: [{ client: tenant-a, sha256: \(SHA256.hash(data: Array(key.utf8)).map { String(format: "%02x", $0) }.joined()) }] }
          - name: one-per-hour
            rate_limit: { key: client, rate: 1/h, burst: 1 }
        upstreams:
          - name: gone
            endpoints: ["127.0.0.1:{DEAD_PORT}"]
            outlier_detection: { consecutive_failures: 1, base_ejection_time: 1m, max_ejection_percent: 100 }
        sinks:
          - name: archive
            file: { directory: ./events }
        routes:
          - name: open
            match: { path: /open }
            ingest: { sink: archive, topic: open, max_body_bytes: 1KiB }
          - name: guarded
            match: { path: /guarded }
            policies: [keys, one-per-hour]
            ingest: { sink: archive, topic: guarded }
          - name: proxied
            match: { path_prefix: /api }
            proxy: { upstream: gone }
          - name: grpc
            match: { grpc_service: sluice.v1.Ingest }
            ingest: { sink: archive, topic: grpc }
        """
    }

    @Test func everyRequestAndCallHasExactlyOneLine() async throws {
        let dead = try freePort()
        let sluice = try await SluiceProcess(config: Self.config.replacingOccurrences(of: "{DEAD_PORT}", with: String(dead)))
        let json = ["-H", "content-type: application/x-ndjson"]
        var statuses: [Int] = []
        statuses.append(try await curl(json + ["\(sluice.baseURL)/open?token=secret-query"], body: Data("{\"a\":1}\n{\"b\":2}\n".utf8)).status)
        statuses.append(try await curl(json + ["\(sluice.baseURL)/open"], body: Data(repeating: 0x61, count: 4096)).status)
        statuses.append(try await curl(json + ["\(sluice.baseURL)/guarded", "-H", "X-Api-Key: wrong-\(Self.key)"], body: Data("{}".utf8)).status)
        statuses.append(try await curl(json + ["\(sluice.baseURL)/guarded", "-H", "X-Api-Key: \(Self.key)"], body: Data("{}".utf8)).status)
        statuses.append(try await curl(json + ["\(sluice.baseURL)/guarded", "-H", "X-Api-Key: \(Self.key)"], body: Data("{}".utf8)).status)
        statuses.append(try await curl(["-H", "Authorization: Bearer not-logged", "\(sluice.baseURL)/api/x"]).status)
        statuses.append(try await curl(["\(sluice.baseURL)/api/x"]).status)
        statuses.append(try await curl(["\(sluice.baseURL)/nowhere"]).status)
        #expect(statuses == [200, 413, 401, 200, 429, 502, 503, 404])
        let accepted = try await withGRPCClient(
            transport: .http2NIOPosix(target: .ipv4(address: "127.0.0.1", port: sluice.grpcPort), transportSecurity: .plaintext)
        ) { client in
            try await Sluice_V1_Ingest.Client(wrapping: client).publish(.with { $0.events = [.with { $0.value = Data("{}".utf8) }] }).accepted
        }
        #expect(accepted == 1)
        // Lines are written by the log's own thread; all are out once Sluice has stopped.
        #expect(try await sluice.terminate() == 0)

        let text = try String(contentsOf: sluice.workDirectory.appendingPathComponent("access.log"), encoding: .utf8)
        let lines = text.split(separator: "\n")
        #expect(lines.count == statuses.count + 1, "\(text)")
        let records = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(records.count == lines.count, "every line is one JSON object")
        #expect(records.map { $0["status"] as? Int } == (statuses + [0]).map { Optional($0) })
        #expect(records.map { $0["route"] as? String } == ["open", "open", "guarded", "guarded", "guarded", "proxied", "proxied", nil, "grpc"])

        let first = records[0]
        #expect(first["path"] as? String == "/open", "the query string is not logged")
        #expect(first["events"] as? Int == 2 && first["sink"] as? String == "archive" && first["method"] as? String == "POST")
        #expect(first["listener"] as? String == "main" && first["client"] as? String == "127.0.0.1")
        #expect((first["bytes_in"] as? Int) == 16 && ((first["bytes_out"] as? Int) ?? 0) > 0)
        #expect(first["duration_ms"] is Double || first["duration_ms"] is Int)
        #expect((first["time"] as? String)?.hasSuffix("Z") == true)
        #expect(records[2]["denied_by"] as? String == "keys" && records[2]["denial"] as? String == "unauthenticated")
        #expect(records[3]["identity"] as? String == "tenant-a")
        #expect(records[4]["denied_by"] as? String == "one-per-hour" && records[4]["identity"] as? String == "tenant-a")
        #expect(records[5]["upstream"] as? String == "gone")
        #expect(records[8]["protocol"] as? String == "gRPC" && records[8]["grpc_status"] as? String == "ok" && records[8]["events"] as? Int == 1)
        for secret in [Self.key, "secret-query", "not-logged", "Bearer"] {
            #expect(!text.contains(secret), "\(secret) must not be logged")
        }
    }
}
