import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import SluiceGRPC
import Testing

/// HTTP and gRPC ingest through the real binary into the project's Zerobus test server
/// (connectors/zerobus/testserver, proven against the official SDK by ZerobusTestServerTests):
/// tokens, offsets, durability acks, and recovery from the faults the server injects.
@Suite(.timeLimit(.minutes(6))) struct ZerobusIngestTests {
    static let secret = "zb-secret-\(UUID().uuidString.prefix(8))"

    static func server(_ extra: [String] = []) async throws -> PeerProcess {
        try await PeerProcess(
            "zerobus",
            ["python3", ZerobusTestServerTests.server, "--grpc-port", "{PORT}", "--http-port", "{PORT2}", "--client-id", "sluice",
             "--client-secret", Self.secret] + extra)
    }

    static func config(_ server: PeerProcess, sink extra: String = "", endpoint: String? = nil) -> String {
        """
        shutdown: { drain_timeout: 1s, flush_timeout: 2s }
        listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
        admin: { address: "127.0.0.1:{ADMIN_PORT}" }
        grpc: { address: "127.0.0.1:{GRPC_PORT}" }
        sinks:
          - name: lake
            zerobus:
              endpoint: "\(endpoint ?? "http://127.0.0.1:\(server.port)")"
              workspace_url: "http://127.0.0.1:\(server.port2)"
              client_id: sluice
              client_secret: { env: ZB_SECRET }
              table: main.events.clicks
        \(extra.split(separator: "\n").map { "      " + $0 }.joined(separator: "\n"))
        routes:
          - name: clicks
            match: { path: /clicks }
            ingest: { sink: lake }
          - name: async
            match: { path: /async }
            ingest: { sink: lake, ack: accepted }
          - name: tables
            match: { path: "/tables/{table}" }
            ingest: { sink: lake, topic: "main.events.{table}" }
          - name: stream
            match: { grpc_service: sluice.v1.Ingest }
            ingest: { sink: lake, topic: "{topic}" }
        """
    }

    static func sluice(_ server: PeerProcess, sink extra: String = "", endpoint: String? = nil) async throws -> SluiceProcess {
        try await SluiceProcess(config: Self.config(server, sink: extra, endpoint: endpoint), environment: ["ZB_SECRET": Self.secret])
    }

    struct Stats: Decodable {
        struct Stream: Decodable {
            var stream_id: String
            var table: String
            var token: String
            var records: Int
            var end: String?
        }
        struct Committed: Decodable {
            var table: String
            var record: String
        }
        struct Rejected: Decodable {
            var table: String
            var code: String
        }
        struct TokenRequest: Decodable {
            var tables: [String]?
        }
        var streams: [Stream]
        var committed: [Committed]
        var received_records: Int
        var close_signals_sent: Int
        var records_after_close_signal: Int
        var acks_dropped: Int
        var max_unacked_records: Int
        var streams_cut_on_token_expiry: Int
        var rejected_streams: [Rejected]
        var token_requests: [TokenRequest]
    }

    static func stats(_ server: PeerProcess) async throws -> Stats {
        let response = try await curl(["http://127.0.0.1:\(server.port2)/_stats"])
        return try JSONDecoder().decode(Stats.self, from: Data(response.body.utf8))
    }

    static func faults(_ server: PeerProcess, _ json: String) async throws {
        let response = try await curl(["-X", "POST", "-d", json, "http://127.0.0.1:\(server.port2)/_faults"])
        guard response.status == 200 else { throw HarnessError("faults: \(response.status) \(response.body)") }
    }

    struct Result: Decodable {
        var error: Failure?
        struct Failure: Decodable {
            var code: String
            var retryable: Bool
        }
    }

    static func post(_ sluice: SluiceProcess, _ path: String, _ lines: [String]) async throws -> (status: Int, results: [Result], body: String) {
        let response = try await curl(
            ["-X", "POST", "-H", "content-type: application/x-ndjson", "\(sluice.baseURL)\(path)"], body: Data(lines.joined(separator: "\n").utf8))
        struct Body: Decodable { var results: [Result] }
        let results = (try? JSONDecoder().decode(Body.self, from: Data(response.body.utf8)))?.results ?? []
        return (response.status, results, response.body)
    }

    /// Parses a committed JSON record back to its "id" (the server stores JSON records as sent).
    static func ids(_ committed: [Stats.Committed], table: String = "main.events.clicks") -> [String] {
        committed.filter { $0.table == table }.compactMap { record in
            (try? JSONSerialization.jsonObject(with: Data(record.record.utf8)) as? [String: Any])?["id"] as? String
        }
    }

    @Test func everyAcknowledgedEventIsCommittedAcrossUnavailableCloseSignalsAndLostAcks() async throws {
        let server = try await Self.server(["--ack-delay-ms", "5"])
        // Lost acks are noticed after ack_timeout without one: the stream is half-closed (the server
        // then acknowledges what it holds) and what stays unacknowledged is sent again.
        let sluice = try await Self.sluice(server, sink: "batch: { max_records: 20 }\nmax_in_flight_records: 200\nack_timeout: 1s")
        var answered: [String] = []
        for request in 0..<30 {
            switch request {
            case 3: try await Self.faults(server, #"{"unavailable_after_records": 150}"#)
            case 8: try await Self.faults(server, #"{"close_stream_after_records": 120, "close_stream_duration_ms": 200}"#)
            case 13: try await Self.faults(server, #"{"drop_acks": 3}"#)
            case 18: try await Self.faults(server, #"{"unavailable_after_records": 70}"#)
            case 23: try await Self.faults(server, #"{"close_stream_after_records": 10}"#)
            default: break
            }
            let lines = (0..<100).map { #"{"id":"r\#(request)-\#($0)","n":\#($0)}"# }
            let answer = try await Self.post(sluice, "/clicks", lines)
            #expect(answer.status == 200, "request \(request): \(answer.body.prefix(400))")
            for (i, result) in answer.results.enumerated() where result.error == nil { answered.append("r\(request)-\(i)") }
        }
        #expect(answered.count == 3000, "every event delivered in the end (the faults are all retryable)")

        let stats = try await Self.stats(server)
        let committed = Self.ids(stats.committed)
        let stored = Set(committed)
        let missing = answered.filter { !stored.contains($0) }
        #expect(missing.isEmpty, "answered 2xx but not committed: \(missing.prefix(10))")
        #expect(committed.count >= 3000, "at least once")
        let ends = stats.streams.compactMap(\.end)
        #expect(ends.filter { $0.hasPrefix("UNAVAILABLE") }.count == 2, "\(ends)")
        #expect(stats.close_signals_sent == 2)
        // Records already on the wire when a signal left the server still arrive after it, at most the
        // in-flight window (200) per signal; a client that kept sending would add the remaining requests.
        #expect(stats.records_after_close_signal <= 2 * 200, "sending stops at close_stream_signal (\(stats.records_after_close_signal))")
        #expect(stats.acks_dropped == 3)
        #expect(stats.streams.count >= 5, "a new stream after each UNAVAILABLE and each close signal")
        #expect(stats.rejected_streams.isEmpty)
        #expect(try await sluice.terminate() == 0)
        #expect(!sluice.log.contains(Self.secret), "the client secret is never logged")
    }

    @Test func nothingIsAnsweredDeliveredBeforeTheServerAcknowledgesIt() async throws {
        // Acks come 10 minutes late (far beyond any stall of a loaded test run); events fail at
        // their 2 s delivery timeout, retryable, while the server has received them and committed none.
        let server = try await Self.server(["--ack-delay-ms", "600000"])
        let sluice = try await Self.sluice(server, sink: "delivery_timeout: 2s")
        let answer = try await Self.post(sluice, "/clicks", (0..<50).map { #"{"id":"late-\#($0)"}"# })
        #expect(answer.status == 503, "\(answer.body.prefix(300))")
        #expect(answer.results.count == 50)
        #expect(answer.results.allSatisfy { $0.error?.code == "zerobus_delivery_timeout" && $0.error?.retryable == true })
        let stats = try await Self.stats(server)
        #expect(stats.received_records == 50)
        // The server commits what is pending when the client half-closes a stream; Sluice may
        // have closed its stream by now (a loaded run is slow), but only after giving up.
        let halfClosedOnly = stats.streams.allSatisfy { $0.end == nil || $0.end == "OK (client half-closed)" }
        #expect(stats.committed.isEmpty || halfClosedOnly, "\(stats.streams.map(\.end))")
        #expect(try await sluice.terminate() == 0)
    }

    @Test func aSlowServiceHoldsSendingToTheInFlightLimit() async throws {
        // Acks 100 ms late; at most 50 records unacknowledged per stream, and a sink budget of 100
        // events: the 1000-event request is read as acks free room, never more on the wire.
        let server = try await Self.server(["--ack-delay-ms", "100"])
        let sluice = try await SluiceProcess(
            config: Self.config(server, sink: "max_in_flight_records: 50\nbatch: { max_records: 10 }")
                .replacingOccurrences(of: "  - name: lake\n", with: "  - name: lake\n    max_in_flight_events: 100\n"),
            environment: ["ZB_SECRET": Self.secret])
        let answer = try await Self.post(sluice, "/clicks", (0..<1000).map { #"{"id":"b\#($0)"}"# })
        #expect(answer.status == 200, "\(answer.body.prefix(300))")
        let stats = try await Self.stats(server)
        #expect(Set(Self.ids(stats.committed)).count == 1000)
        #expect(stats.max_unacked_records <= 50, "\(stats.max_unacked_records) records were unacknowledged at once")
        #expect(stats.max_unacked_records >= 10, "the window was used")
        #expect(try await sluice.terminate() == 0)
    }

    @Test func shutdownGivesUpOnMissingAcksAfterTheFlushTimeout() async throws {
        // Acks 60 s late, events accepted without waiting (ack: accepted), delivery and ack
        // timeouts 120 s:
        // on SIGTERM the sink waits flush_timeout (2 s) for acks, then fails what is left and
        // exits, instead of waiting for the delivery timeout.
        let server = try await Self.server(["--ack-delay-ms", "60000"])
        let sluice = try await Self.sluice(server, sink: "delivery_timeout: 120s\nack_timeout: 120s")
        let accepted = try await Self.post(sluice, "/async", (0..<20).map { #"{"id":"a\#($0)"}"# })
        #expect(accepted.status == 202, "\(accepted.body)")
        // (A `for … where` would go on asking the server a hundred times after the last record
        // came, past the 60 s the acks are held back on a busy machine.)
        let deadline = ContinuousClock.now + .seconds(20)
        while try await Self.stats(server).received_records < 20, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(100)) }
        await #expect(try Self.stats(server).received_records == 20)
        #expect(try await sluice.terminate(timeout: .seconds(30)) == 0)
        #expect(sluice.log.contains("flush timeout passed"))
    }

    @Test func refusalsFailOnlyTheAffectedEventsWithTheServicesAnswer() async throws {
        let server = try await Self.server()
        // A long delivery timeout: a refusal retried by mistake would hang the request.
        let sluice = try await Self.sluice(server, sink: "delivery_timeout: 120s")
        try await Self.faults(
            server, #"{"denied_tables": ["main.events.secret"], "unknown_tables": ["main.events.gone"], "reject_records_containing": "poison"}"#)

        let denied = try await Self.post(sluice, "/tables/secret", [#"{"id":"d1"}"#, #"{"id":"d2"}"#])
        #expect(denied.status == 403, "\(denied.body)")
        #expect(denied.results.map { $0.error?.code } == ["zerobus_permission_denied", "zerobus_permission_denied"])
        let gone = try await Self.post(sluice, "/tables/gone", [#"{"id":"g1"}"#])
        #expect(gone.status == 404 && gone.results.first?.error?.code == "zerobus_not_found", "\(gone.body)")

        // Records that cannot be Zerobus JSON records never leave Sluice; the rest go through.
        let mixed = try await Self.post(sluice, "/clicks", [#"{"id":"m1"}"#, "[1,2]", #""text""#, #"{"id":"m2"}"#])
        #expect(mixed.results.map { $0.error?.code } == [nil, "invalid_record", "invalid_record", nil], "\(mixed.body)")
        // An invalid table name in the path never leaves Sluice either.
        let badName = try await curl(["-X", "POST", "-d", #"{"id":"x"}"#, "\(sluice.baseURL)/tables/a.b"])
        #expect(badName.status == 400 && badName.body.contains("invalid_topic"), "\(badName.body)")

        // A record the service refuses fails its stream: what was unacknowledged on it fails with
        // the answer; the next request goes through on a new stream.
        let poisoned = try await Self.post(sluice, "/clicks", [#"{"id":"poison"}"#])
        #expect(poisoned.status == 400 && poisoned.results.first?.error?.code == "zerobus_invalid_argument", "\(poisoned.body)")
        let after = try await Self.post(sluice, "/clicks", [#"{"id":"after"}"#])
        #expect(after.status == 200, "\(after.body)")

        let stats = try await Self.stats(server)
        #expect(Set(Self.ids(stats.committed)) == ["m1", "m2", "after"])
        #expect(Set(stats.rejected_streams.map(\.code)) == ["PERMISSION_DENIED", "NOT_FOUND"])
        // Refused tables, refused again (no retry loop): one stream attempt per request.
        #expect(stats.rejected_streams.count == 2, "\(stats.rejected_streams.map(\.code))")
        #expect(try await sluice.terminate() == 0)
    }

    @Test func tokensAreRenewedWhileStreamingAndARevokedTokenIsReplaced() async throws {
        // Tokens live 3 s (renewed 1.5 s before expiry); close signals make Sluice open new streams
        // while it keeps sending, each with a token good at that moment.
        let server = try await Self.server(["--token-ttl", "3"])
        let sluice = try await Self.sluice(server)
        // At least 12 requests over at least 7 s (the suite may run slower than that, never faster).
        var delivered = 0
        let start = ContinuousClock.now
        var request = 0
        while request < 12 || ContinuousClock.now - start < .seconds(7) {
            if request % 3 == 2 { try await Self.faults(server, #"{"close_stream_after_records": 1, "close_stream_duration_ms": 100}"#) }
            let answer = try await Self.post(sluice, "/clicks", (0..<10).map { #"{"id":"t\#(request)-\#($0)"}"# })
            #expect(answer.status == 200, "\(answer.body.prefix(300))")
            delivered += answer.results.filter { $0.error == nil }.count
            request += 1
            try await Task.sleep(for: .milliseconds(500))
        }
        var stats = try await Self.stats(server)
        #expect(delivered == request * 10)
        #expect(Set(Self.ids(stats.committed)).count == request * 10)
        #expect(stats.rejected_streams.isEmpty, "no stream was opened with an expired token: \(stats.rejected_streams.map(\.code))")
        let clickTokens = stats.token_requests.filter { $0.tables == ["main.events.clicks"] }.count
        #expect(clickTokens >= 3, "renewed while streaming (\(clickTokens) tokens)")
        #expect(Set(stats.streams.map(\.token)).count >= 2, "streams opened with different tokens")

        // Streams cut with UNAUTHENTICATED when their token expires, while records wait for their
        // (300 ms late) acks: new streams with new tokens take over what was not acknowledged.
        try await Self.faults(server, #"{"end_streams_on_token_expiry": true, "ack_delay_ms": 300}"#)
        let cutStart = ContinuousClock.now
        var cutRequest = 0
        while cutRequest < 12 || ContinuousClock.now - cutStart < .seconds(7) {
            let answer = try await Self.post(sluice, "/clicks", (0..<10).map { #"{"id":"x\#(cutRequest)-\#($0)"}"# })
            #expect(answer.status == 200, "\(answer.body.prefix(300))")
            cutRequest += 1
        }
        stats = try await Self.stats(server)
        #expect(stats.streams_cut_on_token_expiry >= 1, "a stream outlived its token")
        let cutIDs = Set(Self.ids(stats.committed).filter { $0.hasPrefix("x") })
        #expect(cutIDs.count == cutRequest * 10, "every event answered 200 is committed")
        #expect(try await curl(["http://127.0.0.1:\(sluice.adminPort)/ready"]).status == 200, "an expired token is not a broken sink")
        try await Self.faults(server, #"{"end_streams_on_token_expiry": false, "ack_delay_ms": 0}"#)

        // Every token refused (revoked): one retry with a new token, then the events fail, and
        // the sink reports not ready until a stream opens again.
        try await Self.faults(server, #"{"close_stream_after_records": 1, "close_stream_duration_ms": 100}"#)
        await #expect(try Self.post(sluice, "/clicks", [#"{"id":"before-revoke"}"#]).status == 200)
        try await Self.faults(server, #"{"reject_tokens": true}"#)
        let refused = try await Self.post(sluice, "/clicks", [#"{"id":"revoked"}"#])
        #expect(refused.status == 502 && refused.results.first?.error?.code == "zerobus_unauthenticated", "\(refused.body)")
        stats = try await Self.stats(server)
        #expect(stats.rejected_streams.filter { $0.code == "UNAUTHENTICATED" }.count == 2, "the cached token, then a new one")
        #expect(try await curl(["http://127.0.0.1:\(sluice.adminPort)/ready"]).status == 503)
        try await Self.faults(server, #"{"reject_tokens": false}"#)
        try await sluice.waitUntilReady(timeout: .seconds(30))  // the sink's probe opens a stream
        await #expect(try Self.post(sluice, "/clicks", [#"{"id":"after-revoke"}"#]).status == 200)
        #expect(try await sluice.terminate() == 0)
        #expect(!sluice.log.contains(Self.secret))
    }

    @Test func aGRPCStreamIsAcknowledgedDurableOnlyForCommittedEventsAcrossAnOutage() async throws {
        let server = try await Self.server(["--ack-delay-ms", "2"])
        let sluice = try await Self.sluice(server, sink: "batch: { max_records: 50 }")
        try await Self.faults(server, #"{"unavailable_after_records": 2500}"#)
        let batches = 100
        let perBatch = 50
        let acks = try await withGRPCClient(
            transport: .http2NIOPosix(target: .ipv4(address: "127.0.0.1", port: sluice.grpcPort), transportSecurity: .plaintext)
        ) { client in
            try await Sluice_V1_Ingest.Client(wrapping: client).publishStream { writer in
                for batch in 0..<batches {
                    try await writer.write(
                        .with {
                            $0.sequence = UInt64(batch)
                            $0.topic = "main.events.grpc"
                            $0.events = (0..<perBatch).map { i in .with { $0.value = Data(#"{"id":"g\#(batch)-\#(i)"}"#.utf8) } }
                        })
                }
            } onResponse: { response in
                var acks: [UInt64: Sluice_V1_PublishAck] = [:]
                for try await ack in response.messages { acks[ack.sequence] = ack }
                return acks
            }
        }
        #expect(acks.count == batches)
        #expect(acks.values.allSatisfy { $0.durable && $0.results.count == perBatch })
        let stats = try await Self.stats(server)
        let stored = Set(Self.ids(stats.committed, table: "main.events.grpc"))
        let missing = (0..<batches).flatMap { b in (0..<perBatch).map { "g\(b)-\($0)" } }.filter { !stored.contains($0) }
        #expect(missing.isEmpty, "acknowledged durable, not committed: \(missing.count) \(missing.prefix(5)) streams \(stats.streams.map { ($0.records, $0.end ?? "open") })")
        #expect(stats.streams.compactMap(\.end).contains { $0.hasPrefix("UNAVAILABLE") })
        #expect(try await sluice.terminate() == 0)
    }

    @Test func anHTTPSEndpointIsReachedOverVerifiedTLSOnly() async throws {
        let dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("zb-tls-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let server = try await Self.server(["--tls-dir", dir.path])
        let https = "https://127.0.0.1:\(server.port)"
        let ca = dir.appendingPathComponent("cert.pem").path

        // Trusting the server's certificate: delivered over TLS.
        let trusting = try await Self.sluice(server, sink: "ca_file: \(ca)", endpoint: https)
        let delivered = try await Self.post(trusting, "/clicks", [#"{"id":"tls-1"}"#, #"{"id":"tls-2"}"#])
        #expect(delivered.status == 200, "\(delivered.body)")
        #expect(try await trusting.terminate() == 0)

        // With the system's roots only, the self-signed certificate is refused: nothing is sent,
        // nothing is answered delivered.
        let untrusting = try await Self.sluice(server, sink: "delivery_timeout: 2s\nopen_timeout: 1s", endpoint: https)
        let refused = try await Self.post(untrusting, "/clicks", [#"{"id":"untrusted"}"#])
        #expect(refused.status == 503 && refused.results.first?.error?.retryable == true, "\(refused.body)")
        #expect(try await untrusting.terminate() == 0)

        // Plaintext to a TLS port does not get through either.
        let plain = try await Self.sluice(server, sink: "delivery_timeout: 2s\nopen_timeout: 1s", endpoint: "http://127.0.0.1:\(server.port)")
        await #expect(try Self.post(plain, "/clicks", [#"{"id":"plain"}"#]).status == 503)
        #expect(try await plain.terminate() == 0)

        let stats = try await Self.stats(server)
        #expect(Set(Self.ids(stats.committed)) == ["tls-1", "tls-2"])
        #expect(stats.streams.count == 1)
    }

    @Test func protoRecordsAreSentWithTheirDescriptorAndDecodedByTheServer() async throws {
        // A descriptor set from the proto compiler the test server itself uses (grpcio-tools).
        let work = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("zb-proto-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        try """
            syntax = "proto2";
            package shop;
            message Click {
              optional string user = 1;
              optional int64 n = 2;
              enum Kind { VIEW = 0; BUY = 1; }
              optional Kind kind = 3;
            }
            """.write(to: work.appendingPathComponent("click.proto"), atomically: true, encoding: .utf8)
        let descriptors = work.appendingPathComponent("click.desc").path
        let protoc = try await runProgram(
            "python3", ["-m", "grpc_tools.protoc", "--proto_path=\(work.path)", "--descriptor_set_out=\(descriptors)", "click.proto"])
        #expect(protoc.status == 0, "\(protoc.stderr)")

        let server = try await Self.server()
        let sluice = try await Self.sluice(server, sink: "record_type: proto\ndescriptor_set: \(descriptors)\nmessage: shop.Click")
        // user (1, length-delimited), n (2, varint), kind (3, varint)
        func click(_ user: String, _ n: UInt8) -> Data { Data([0x0A, UInt8(user.utf8.count)] + Array(user.utf8) + [0x10, n, 0x18, 1]) }
        let response = try await withGRPCClient(
            transport: .http2NIOPosix(target: .ipv4(address: "127.0.0.1", port: sluice.grpcPort), transportSecurity: .plaintext)
        ) { client in
            try await Sluice_V1_Ingest.Client(wrapping: client).publish(
                .with {
                    $0.topic = "main.shop.clicks"
                    $0.events = (0..<20).map { i in .with { $0.value = click("u\(i)", UInt8(i)) } } + [.with { $0.value = Data([0x0A, 0x05, 0x41]) }]
                })
        }
        #expect(response.results.count == 21)
        #expect(response.results.prefix(20).allSatisfy { if case .delivered = $0.result { true } else { false } })
        if case .failed(let failure)? = response.results.last?.result {
            #expect(failure.code == "invalid_record")
        } else {
            Issue.record("a truncated proto record must fail before sending: \(String(describing: response.results.last))")
        }
        // One raw HTTP body is one event too.
        let raw = try await curl(
            ["-X", "POST", "-H", "content-type: application/x-protobuf", "\(sluice.baseURL)/tables/http"], body: click("http-user", 7))
        #expect(raw.status == 200, "\(raw.body)")

        let stats = try await Self.stats(server)
        #expect(stats.streams.allSatisfy { $0.end == nil || $0.end!.hasPrefix("OK") })
        let decoded = stats.committed.compactMap { try? JSONSerialization.jsonObject(with: Data($0.record.utf8)) as? [String: Any] }
        #expect(decoded.count == 21)
        #expect(Set(decoded.compactMap { $0["user"] as? String }) == Set((0..<20).map { "u\($0)" } + ["http-user"]))
        #expect(decoded.allSatisfy { $0["kind"] as? String == "BUY" })
        #expect(try await sluice.terminate() == 0)
    }
}
