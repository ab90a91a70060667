import Foundation
import Testing

/// Proxy routes to cleartext HTTP/2 upstreams (`http2: true` without `tls`): gRPC proxying with
/// grpcio on both ends (scripts/testing/grpc_proxy_peer.py), and plain HTTP through python-hyper's
/// `h2` as the upstream (scripts/testing/h2c_upstream.py): trailers both ways, full duplex, one
/// pooled connection per event loop.
@Suite(.timeLimit(.minutes(6))) struct H2CProxyTests {
    static let grpcPeer = packageRoot.appendingPathComponent("scripts/testing/grpc_proxy_peer.py").path
    static let h2cPeer = packageRoot.appendingPathComponent("scripts/testing/h2c_upstream.py").path

    static func config(grpcPort: Int, h2cPort: Int, closedPort: Int) -> String {
        """
        listeners:
          - name: main
            address: "127.0.0.1:{PORT}"
        admin: { address: "127.0.0.1:{ADMIN_PORT}" }
        policies:
          - name: bytes
            rate_limit: { key: header:X-Tenant, unit: bytes, rate: 1/h, burst: 3000 }
        upstreams:
          - name: echo
            endpoints: ["127.0.0.1:\(grpcPort)"]
            http2: true
            timeouts: { request: 1s }
          - name: down
            endpoints: ["127.0.0.1:\(closedPort)"]
            http2: true
          - name: plain
            endpoints: ["127.0.0.1:\(h2cPort)"]
            http2: true
        routes:
          - name: grpc
            match: { path_prefix: /sluice.test.Echo/ }
            proxy: { upstream: echo }
          - name: down
            match: { path_prefix: /down.Echo/ }
            proxy: { upstream: down }
          - name: limited
            match: { path_prefix: /limited/ }
            policies: [bytes]
            proxy: { upstream: plain, path_rewrite: / }
          - name: plain
            match: { path_prefix: /plain/ }
            proxy: { upstream: plain, path_rewrite: / }
        """
    }

    struct Peers {
        let grpc: PeerProcess
        let h2c: PeerProcess
        let sluice: SluiceProcess
    }

    static func start() async throws -> Peers {
        let grpc = try await PeerProcess("grpc-upstream", ["python3", Self.grpcPeer, "serve", "--port", "{PORT}"])
        let h2c = try await PeerProcess("h2c-upstream", ["python3", Self.h2cPeer, "serve", "--port", "{PORT}"])
        let sluice = try await SluiceProcess(config: Self.config(grpcPort: grpc.port, h2cPort: h2c.port, closedPort: try freePort()))
        return Peers(grpc: grpc, h2c: h2c, sluice: sluice)
    }

    struct CallResult {
        var code: String
        var details: String?
        var messages: [String]
        var initial: [String: String]
        var trailing: [String: String]
    }

    /// One gRPC call with grpcio's client, through Sluice's listener (h2c, prior knowledge).
    static func call(_ sluice: SluiceProcess, _ method: String, _ arguments: [String] = []) async throws -> CallResult {
        let result = try await runProgram(
            "python3", [Self.grpcPeer, "client", "--target", "127.0.0.1:\(sluice.port)", "--case", method] + arguments)
        guard let line = result.stdout.split(separator: "\n").last,
            let json = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        else { throw HarnessError("grpc client printed no result: \(result.stdout) \(result.stderr)") }
        return CallResult(
            code: json["code"] as? String ?? "?", details: json["details"] as? String, messages: json["messages"] as? [String] ?? [],
            initial: json["initial"] as? [String: String] ?? [:], trailing: json["trailing"] as? [String: String] ?? [:])
    }

    @Test func grpcCallsOfEveryShapePassThrough() async throws {
        let peers = try await Self.start()
        let sluice = peers.sluice
        defer { withExtendedLifetime(peers) {} }

        // Unary: the message, the initial metadata and the trailers (x-trailer, grpc-status).
        let unary = try await Self.call(sluice, "Unary", ["--count", "70000", "--timeout", "10"])
        #expect(unary.code == "OK", "\(unary)")
        #expect(unary.messages == [String(repeating: "x", count: 70000)])
        #expect(unary.initial["x-initial"] == "yes")
        #expect(unary.trailing["x-trailer"] == "70000")

        // Server streaming: 2000 messages, in order.
        let server = try await Self.call(sluice, "ServerStream", ["--count", "2000", "--timeout", "10"])
        #expect(server.code == "OK", "\(server.code) \(server.details ?? "")")
        #expect(server.messages == (0..<2000).map { "message \($0)" })

        // Client streaming: 50 messages of 1000 bytes.
        let client = try await Self.call(sluice, "ClientStream", ["--count", "50", "--timeout", "10"])
        #expect(client.code == "OK", "\(client)")
        #expect(client.messages == ["50000"])

        // Bidirectional, one message at a time, each echo awaited before the next is sent: only
        // a full-duplex path gets past the first (a half-duplex one waits for the end of the
        // request body that the client never sends: DEADLINE_EXCEEDED).
        let bidi = try await Self.call(sluice, "Bidi", ["--count", "40", "--timeout", "10"])
        #expect(bidi.code == "OK", "\(bidi)")
        #expect(bidi.messages == (0..<40).map { "turn \($0)" })
    }

    @Test func statusesDeadlinesAndSluicesOwnRefusalsReachTheCallerAsGRPCStatuses() async throws {
        let peers = try await Self.start()
        let sluice = peers.sluice
        defer { withExtendedLifetime(peers) {} }

        // The upstream's error (a Trailers-Only answer) with its message and trailing metadata.
        let failed = try await Self.call(sluice, "Fail", ["--timeout", "10"])
        #expect(failed.code == "NOT_FOUND", "\(failed)")
        #expect(failed.details == "nothing here: ünïcode 100%")
        #expect(failed.trailing["x-why"] == "test")

        // The caller's deadline reaches the upstream (as what is left of it), with the caller's
        // metadata and the forwarded headers; a call without one is given none.
        let withDeadline = try await Self.call(sluice, "Metadata", ["--timeout", "5"])
        #expect(withDeadline.code == "OK", "\(withDeadline)")
        let seen = try #require(
            withDeadline.messages.first.flatMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] })
        let remaining = try #require(seen["time_remaining"] as? Double)
        #expect(remaining > 0 && remaining <= 5)
        let metadata = seen["metadata"] as? [String: String] ?? [:]
        #expect(metadata["x-caller"] == "test")
        #expect(metadata["x-forwarded-for"] == "127.0.0.1")
        let noDeadline = try await Self.call(sluice, "Metadata")
        let seenWithout = noDeadline.messages.first.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        // (grpcio reports "no deadline" as an enormous time remaining.)
        #expect((seenWithout?["time_remaining"] as? Double ?? 0) > 1e9, "\(noDeadline)")

        // The upstream takes 3 s; the caller gave 500 ms: DEADLINE_EXCEEDED.
        let late = try await Self.call(sluice, "Slow", ["--timeout", "0.5"])
        #expect(late.code == "DEADLINE_EXCEEDED", "\(late)")
        // No caller deadline, but the upstream's `timeouts.request` (1 s) passes first: Sluice's
        // own answer, as a gRPC status with its message.
        let timedOut = try await Self.call(sluice, "Slow")
        #expect(timedOut.code == "DEADLINE_EXCEEDED", "\(timedOut)")
        #expect(timedOut.details == "the upstream did not answer in time")

        // An unreachable upstream and a path no route serves: Sluice's refusals as statuses.
        let down = try await Self.call(sluice, "Unary", ["--service", "down.Echo", "--timeout", "10"])
        #expect(down.code == "UNAVAILABLE", "\(down)")
        #expect(down.details == "the upstream could not be reached or cut the connection")
        let unrouted = try await Self.call(sluice, "Unary", ["--service", "nowhere.Echo", "--timeout", "10"])
        #expect(unrouted.code == "NOT_FOUND", "\(unrouted)")

        // Plain HTTP callers still get JSON errors from the same route.
        let plainDown = try await curl(["-X", "POST", "http://127.0.0.1:\(sluice.port)/down.Echo/Unary"])
        #expect(plainDown.status == 502)
        #expect(plainDown.body.contains("upstream_unavailable"))
    }

    @Test func idleConnectionsCloseAndGoAwayMovesRequestsToANewConnection() async throws {
        let h2c = try await PeerProcess("h2c-upstream", ["python3", Self.h2cPeer, "serve", "--port", "{PORT}"])
        let sluice = try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                upstreams:
                  - name: plain
                    endpoints: ["127.0.0.1:\(h2c.port)"]
                    http2: true
                    timeouts: { idle: 3s }
                routes:
                  - { name: plain, match: { path_prefix: / }, proxy: { upstream: plain } }
                """)
        defer { withExtendedLifetime(h2c) {} }
        // The upstream says GOAWAY after each answer: every request still gets its answer, each
        // on a connection of its own (none is sent on a connection that is going away).
        let before = try await curl(["\(sluice.baseURL)/_stats"]).json["connections"] as? Int ?? 0
        let answers = try await ProxyTests.sequential(Array(repeating: "\(sluice.baseURL)/goaway", count: 5))
        #expect(answers.map(\.status) == [200, 200, 200, 200, 200], "\(answers)")
        var stats = try await curl(["\(sluice.baseURL)/_stats"]).json
        #expect((stats["connections"] as? Int ?? 0) - before >= 5, "\(stats)")
        #expect(stats["refused"] == nil, "a stream was sent on a connection after its GOAWAY: \(stats)")
        // A stream refused unprocessed (REFUSED_STREAM) is opened once more: the client sees
        // nothing of it.
        let refusedBefore = stats["refused"] as? Int ?? 0
        let afterRefusal = try await ProxyTests.sequential(["\(sluice.baseURL)/refuse-next", "\(sluice.baseURL)/item"])
        #expect(afterRefusal.map(\.status) == [200, 200], "\(afterRefusal)")
        let refusedAfter = try await curl(["\(sluice.baseURL)/_stats"]).json["refused"] as? Int ?? 0
        #expect(refusedAfter - refusedBefore == 1, "the upstream refused one stream (\(refusedAfter))")

        // idle: 3s (not less: /item must find /refuse-next's connection still open, which a loaded
        // machine once took over 1 s to get to): with no stream left, every connection is closed.
        stats = try await curl(["\(sluice.baseURL)/_stats"]).json
        var open = stats["open"] as? Int ?? -1
        for _ in 0..<100 where open > 0 {
            try await Task.sleep(for: .milliseconds(100))
            open = (try? JSONSerialization.jsonObject(with: Data(try await runProgram(
                "python3", ["-c", Self.statsOverH2C, String(h2c.port)]).stdout.utf8)) as? [String: Any])?["open"] as? Int ?? -1
            open -= 1  // the probe's own connection
        }
        #expect(open == 0, "connections left open after the idle timeout: \(open)")
    }

    /// Reads the h2c upstream's /_stats directly (its own connection, counted as open).
    static let statsOverH2C = """
        import socket, sys, h2.connection, h2.config, h2.events, json
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
        c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        c.initiate_connection()
        c.send_headers(1, [(":method", "GET"), (":path", "/_stats"), (":scheme", "http"), (":authority", "x")], end_stream=True)
        s.sendall(c.data_to_send())
        body = b""
        done = False
        while not done:
            for e in c.receive_data(s.recv(65536)):
                if isinstance(e, h2.events.DataReceived):
                    body += e.data
                if isinstance(e, h2.events.StreamEnded):
                    done = True
            s.sendall(c.data_to_send())
        print(body.decode())
        """

    @Test func manyConcurrentStreamsToAnNginxH2CUpstreamAllGetAnswers() async throws {
        // nginx as the h2c upstream, 2000 requests over 4 connections x 16 streams: every one
        // answered (a bodiless request once went as HEADERS plus a separate empty DATA frame,
        // and nginx then stalled other streams of the connection until the request timeout).
        let nginx = try await startNginx("nginx-h2c") { port in
            "listen 127.0.0.1:\(port) http2; location / { return 200 'from nginx'; }"
        }
        let sluice = try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                upstreams:
                  - name: nginx
                    endpoints: ["127.0.0.1:\(nginx.port)"]
                    http2: true
                    timeouts: { request: 5s }
                routes:
                  - { name: all, match: { path_prefix: / }, proxy: { upstream: nginx } }
                """)
        defer { withExtendedLifetime(nginx) {} }
        let load = try await runProgram("h2load", ["-c", "4", "-m", "16", "-n", "2000", "\(sluice.baseURL)/item"])
        #expect(load.stdout.contains("status codes: 2000 2xx"), "\(load.stdout)")
    }

    @Test func grpcUpstreamsOverTLSAreReachedByH2() async throws {
        let pki = try await TLSFixtures(in: URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("sluice-pki-\(UUID().uuidString)"))
        defer { try? FileManager.default.removeItem(at: pki.directory) }
        let grpc = try await PeerProcess(
            "grpc-tls-upstream", ["python3", Self.grpcPeer, "serve", "--port", "{PORT}", "--cert", pki.serverCertificate, "--key", pki.serverKey])
        let sluice = try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                upstreams:
                  - name: echo
                    endpoints: ["127.0.0.1:\(grpc.port)"]
                    tls: { ca_file: \(pki.caCertificate) }
                    http2: true
                  - name: untrusted
                    endpoints: ["127.0.0.1:\(grpc.port)"]
                    tls: {}
                    http2: true
                routes:
                  - { name: grpc, match: { path_prefix: /sluice.test.Echo/ }, proxy: { upstream: echo } }
                  - { name: untrusted, match: { path_prefix: /untrusted.Echo/ }, proxy: { upstream: untrusted } }
                """)
        defer { withExtendedLifetime(grpc) {} }
        let unary = try await Self.call(sluice, "Unary", ["--count", "1000", "--timeout", "10"])
        #expect(unary.code == "OK", "\(unary)")
        #expect(unary.trailing["x-trailer"] == "1000")
        let bidi = try await Self.call(sluice, "Bidi", ["--count", "10", "--timeout", "10"])
        #expect(bidi.messages == (0..<10).map { "turn \($0)" }, "\(bidi)")
        // A certificate Sluice does not trust: the endpoint is unavailable.
        let untrusted = try await Self.call(sluice, "Unary", ["--service", "untrusted.Echo", "--timeout", "10"])
        #expect(untrusted.code == "UNAVAILABLE", "\(untrusted)")
    }

    @Test func plainHTTPToAnH2CUpstreamCarriesTrailersBothWaysInFullDuplex() async throws {
        let peers = try await Self.start()
        let sluice = peers.sluice
        defer { withExtendedLifetime(peers) {} }

        // An HTTP/1.1 client sends a chunked body with a trailer, three times on one connection:
        // the upstream sees the trailer, the client gets the upstream's trailer in the chunked answer.
        let result = try await runProgram("python3", [Self.h2cPeer, "client", "--port", String(sluice.port), "--path", "/plain/echo", "--repeat", "3"])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stderr)")
        #expect(json["reused"] as? Bool == true, "\(json)")
        let answers = json["answers"] as? [[String: Any]] ?? []
        #expect(answers.count == 3)
        for answer in answers {
            #expect(answer["status"] as? Int == 200, "\(answer)")
            #expect((answer["trailers"] as? [String: String])?["x-upstream-trailer"] == "done", "\(answer)")
            let body = (answer["body"] as? String).flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            #expect(body?["path"] as? String == "/echo")
            #expect(body?["body_bytes"] as? Int == 10)
            #expect((body?["trailers"] as? [String: String])?["x-checksum"] == "1234", "\(answer)")
            #expect((body?["headers"] as? [String: String])?["te"] == "trailers")
        }

        // /duplex answers before the request ends and echoes each part: relayed as it comes,
        // with its trailer; the client's connection is kept for the next request.
        let duplex = try await runProgram("python3", [Self.h2cPeer, "client", "--port", String(sluice.port), "--path", "/plain/duplex", "--repeat", "2"])
        let duplexJSON = try #require(try JSONSerialization.jsonObject(with: Data(duplex.stdout.utf8)) as? [String: Any], "\(duplex.stderr)")
        #expect(duplexJSON["reused"] as? Bool == true, "\(duplexJSON)")
        for answer in duplexJSON["answers"] as? [[String: Any]] ?? [] {
            #expect(answer["body"] as? String == "helloworld", "\(answer)")
            #expect((answer["trailers"] as? [String: String])?["x-echoed-bytes"] == "10")
        }

        // An HTTP/1.1 client that waits for each chunk's echo before sending the next.
        let turns = try await runProgram("python3", [Self.h2cPeer, "interactive", "--port", String(sluice.port), "--path", "/plain/duplex", "--turns", "5"])
        let turnsJSON = try #require(try JSONSerialization.jsonObject(with: Data(turns.stdout.utf8)) as? [String: Any], "\(turns.stderr)")
        #expect(turnsJSON["error"] is NSNull, "\(turnsJSON)")
        #expect(turnsJSON["echoes"] as? [String] == (0..<5).map { "turn \($0)" })
        #expect((turnsJSON["trailers"] as? [String: String])?["x-echoed-bytes"] == "30")

        // An upstream that resets its stream mid-answer: the client's answer is cut too (HTTP/1.1:
        // the chunked body never ends; HTTP/2: the stream is reset), never a complete-looking one.
        for version in ["--http1.1", "--http2-prior-knowledge"] {
            let cut = try await runProgram("curl", ["-sS", "--max-time", "10", version, "http://127.0.0.1:\(sluice.port)/plain/cut"])
            #expect(cut.status != 0, "\(version): \(cut.stdout) \(cut.stderr)")
        }

        // A body sent full duplex is charged to a byte rate limit once its task has read it:
        // 5000 bytes put the tenant's 3000-byte bucket in debt, and its next request waits.
        let upload = Data(repeating: UInt8(ascii: "z"), count: 5000)
        let first = try await curl(["http://127.0.0.1:\(sluice.port)/limited/echo", "-H", "X-Tenant: t1"], body: upload)
        #expect(first.status == 200, "\(first.body)")
        #expect(first.json["body_bytes"] as? Int == 5000)
        var refused = try await curl(["http://127.0.0.1:\(sluice.port)/limited/echo", "-H", "X-Tenant: t1", "-d", "x"])
        // (The charge lands as the first exchange's body task ends, a moment after its answer.)
        for _ in 0..<20 where refused.status != 429 {
            try await Task.sleep(for: .milliseconds(100))
            refused = try await curl(["http://127.0.0.1:\(sluice.port)/limited/echo", "-H", "X-Tenant: t1", "-d", "x"])
        }
        #expect(refused.status == 429, "\(refused.body)")

        // Requests share the upstream connections: at most one per event loop, however many
        // client connections come.
        let before = try await curl(["http://127.0.0.1:\(sluice.port)/plain/_stats"]).json
        for index in 0..<20 {
            let response = try await curl(["http://127.0.0.1:\(sluice.port)/plain/n\(index)", "--http2-prior-knowledge"])
            #expect(response.status == 200)
        }
        let after = try await curl(["http://127.0.0.1:\(sluice.port)/plain/_stats"]).json
        let newConnections = (after["connections"] as? Int ?? 0) - (before["connections"] as? Int ?? 0)
        #expect(newConnections <= ProcessInfo.processInfo.activeProcessorCount, "\(before) -> \(after)")
        #expect((after["streams"] as? Int ?? 0) - (before["streams"] as? Int ?? 0) == 21)
    }
}
