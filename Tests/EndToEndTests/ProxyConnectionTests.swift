import Crypto
import Foundation
import Testing

/// The event-loop HTTP/1.1 path to cleartext upstreams (HTTP1UpstreamClient): kept-alive
/// connections, their idle timeout, connections the upstream closes without a word, the cap per
/// endpoint, and answers that must not be waited for (HEAD).
@Suite(.timeLimit(.minutes(6))) struct ProxyConnectionTests {
    struct Counts {
        var connections: Int
        var open: Int
        var maxConcurrent: Int
    }

    /// The upstream's connection counts; the request that asks is one connection of them.
    static func counts(_ peer: PeerProcess) async throws -> Counts {
        let json = try await curl([peer.endpoint + "/_control/stats"]).json
        return Counts(
            connections: json["connections"] as? Int ?? -1, open: json["open"] as? Int ?? -1,
            maxConcurrent: json["max_concurrent"] as? Int ?? -1)
    }

    /// A proxy route to `upstream`; `listenerSettings` are added to the listener's mapping,
    /// `settings` at the top level.
    static func sluice(
        _ upstream: PeerProcess, upstreamSettings: String = "", listenerSettings: String = "", settings: String = ""
    ) async throws -> SluiceProcess {
        try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}"\(listenerSettings) }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                \(settings)
                upstreams:
                  - name: app
                    endpoints: ["127.0.0.1:\(upstream.port)"]
                \(upstreamSettings)
                routes:
                  - name: all
                    match: { path_prefix: / }
                    proxy: { upstream: app }
                """)
    }

    @Test func connectionsAreKeptAliveAndClosedWhenIdle() async throws {
        let upstream = try await ProxyTests.upstream("a")
        let sluice = try await Self.sluice(upstream, upstreamSettings: "    timeouts: { idle: 1s }")
        try await ProxyTests.control(upstream, "reset")
        // 40 requests, one client connection (so one event loop): one upstream connection.
        let answers = try await ProxyTests.sequential((0..<40).map { "\(sluice.baseURL)/item/\($0)" })
        #expect(answers.count == 40 && answers.allSatisfy { $0.status == 200 && $0.upstream == "a" }, "\(answers)")
        // HEAD: an answer with a content-length and no body, which must not be waited for.
        let head = try await ProxyTests.sequential(["\(sluice.baseURL)/item/head", "\(sluice.baseURL)/item/after"], ["-I"])
        #expect(head.map(\.status) == [200, 200], "\(head)")
        let busy = try await Self.counts(upstream)
        #expect(busy.connections <= 3, "42 proxied requests took \(busy.connections - 1) upstream connections")
        // idle: 1s: the pooled connection is closed by Sluice (it may be already, on a loaded
        // machine; the count above shows it was reused rather than closed after each request).
        var open = busy.open
        for _ in 0..<100 where open > 1 {
            try await Task.sleep(for: .milliseconds(100))
            open = try await Self.counts(upstream).open
        }
        #expect(open == 1, "only the stats request's own connection is left (\(open) open)")
    }

    /// A small answer (read whole before it is passed on) that comes in several parts, and one
    /// in a single part: the bytes the upstream sent, in order, each time.
    @Test func aSmallAnswerReadInPartsArrivesWhole() async throws {
        let upstream = try await ProxyTests.upstream("a")
        let sluice = try await Self.sluice(upstream)
        // 40,000 bytes: under the whole-answer limit (64 KiB), in four writes 30 ms apart.
        for size in [1, 1000, 40000, 1000] {
            let expected = Data((0..<size).map { UInt8($0 % 256) })
            let digest = SHA256.hash(data: expected).map { String(format: "%02x", $0) }.joined()
            let download = try await runProgram("sh", ["-c", "curl -sS --max-time 30 \(sluice.baseURL)/parts/\(size) | sha256sum"])
            #expect(download.stdout.hasPrefix(digest), "size \(size): \(download.stdout)")
        }
    }

    /// Routes chosen by the request's host: its Host field (any case, port ignored), an
    /// absolute-form target's authority over a Host field that says otherwise, and HTTP/2's
    /// :authority.
    @Test func routesAreChosenByTheRequestsHost() async throws {
        let a = try await ProxyTests.upstream("a")
        let b = try await ProxyTests.upstream("b")
        let sluice = try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                upstreams:
                  - name: a
                    endpoints: ["127.0.0.1:\(a.port)"]
                  - name: b
                    endpoints: ["127.0.0.1:\(b.port)"]
                routes:
                  - name: b-hosts
                    match: { path_prefix: /, host: "*.b.example" }
                    proxy: { upstream: b }
                  - name: rest
                    match: { path_prefix: / }
                    proxy: { upstream: a }
                """)
        let url = "\(sluice.baseURL)/item"
        let port = URL(string: sluice.baseURL)!.port!
        let cases: [(args: [String], upstream: String)] = [
            (["-H", "Host: x.B.example:8080"], "b"),
            (["-H", "Host: b.example"], "a"),
            ([], "a"),
            (["--request-target", "http://y.b.example/item", "-H", "Host: other"], "b"),
            (["--request-target", "http://other/item", "-H", "Host: y.b.example"], "a"),
            (["--http2-prior-knowledge", "-H", "Host: z.b.example"], "b"),
        ]
        for (args, upstream) in cases {
            let answers = try await ProxyTests.sequential([url], args)
            #expect(answers.map(\.upstream) == [upstream], "\(args): \(answers)")
        }
        let viaAuthority = try await ProxyTests.sequential(["http://z.b.example:\(port)/item"], ["--http2-prior-knowledge", "--connect-to", "z.b.example:\(port):127.0.0.1:\(port)"])
        #expect(viaAuthority.map(\.upstream) == ["b"], "\(viaAuthority)")
    }

    @Test func postsWithABodyKeepTheirUpstreamConnection() async throws {
        let upstream = try await ProxyTests.upstream("a")
        let sluice = try await Self.sluice(upstream)
        try await ProxyTests.control(upstream, "reset")
        // Each body goes upstream from its own task (full duplex); once both the request and
        // the answer are complete the connection goes back to the pool. (The request counts as
        // complete when the last byte of its content-length is out, not when that task comes
        // back to say so: an answer arriving in between would find it unfinished and close the
        // connection, which made the POST case of the quiet-close test below flaky under load.)
        let answers = try await ProxyTests.sequential((0..<30).map { "\(sluice.baseURL)/item/\($0)" }, ["-X", "POST", "-d", "x=1"])
        #expect(answers.count == 30 && answers.allSatisfy { $0.status == 200 && $0.upstream == "a" }, "\(answers)")
        let counts = try await Self.counts(upstream)
        #expect(counts.connections <= 3, "30 proxied POSTs took \(counts.connections - 1) upstream connections")
    }

    @Test func aLaterExchangeOnAKeptConnectionStillTimesOut() async throws {
        let upstream = try await ProxyTests.upstream("a")
        let sluice = try await Self.sluice(upstream, upstreamSettings: "    timeouts: { request: 500ms }")
        // One client connection: each slow request follows a fast one on the same upstream
        // connection, whose one watchdog timer was set for the fast one's earlier deadline and
        // must be set again for the slow one's (the slow answer would come after 60 s).
        let base = sluice.baseURL
        let answers = try await ProxyTests.sequential(["\(base)/item/1", "\(base)/delay/60000", "\(base)/item/2", "\(base)/delay/60000", "\(base)/item/3"])
        #expect(answers.map(\.status) == [200, 504, 200, 504, 200], "\(answers)")
    }

    @Test func aClientWaitingLongerThanTheListenersIdleTimeoutIsNotCut() async throws {
        let upstream = try await ProxyTests.upstream("a")
        let sluice = try await Self.sluice(upstream, listenerSettings: ", idle_timeout: 1s")
        // idle_timeout is for connections with no request in progress: the listener's idle
        // timer fires during each 2.5 s wait and must leave the connection alone.
        let answers = try await ProxyTests.sequential(["\(sluice.baseURL)/delay/2500", "\(sluice.baseURL)/delay/2500"])
        #expect(answers.map(\.status) == [200, 200], "\(answers)")
    }

    @Test func aDrainEndsABusyConnectionAfterItsAnswerWhichSaysClose() async throws {
        let upstream = try await ProxyTests.upstream("a")
        let sluice = try await Self.sluice(upstream, settings: "shutdown: { drain_timeout: 60s }")
        try await ProxyTests.control(upstream, "reset")
        let busy = try RawConnection(port: sluice.port)
        // (The upstream answers when released, after the drain has begun: no race with a loaded machine.)
        busy.send("GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        // Wait until the upstream holds the request (the connection is busy, not idle).
        var held = 0
        for _ in 0..<200 where held < 1 {
            try await Task.sleep(for: .milliseconds(50))
            held = try await Self.counts(upstream).maxConcurrent
        }
        #expect(held >= 1)
        sluice.sendTerminate()
        var draining = false
        for _ in 0..<180 where !draining {
            try await Task.sleep(for: .milliseconds(50))
            // (The main listener's line: the admin listener drains at another moment.)
            draining = sluice.log.split(separator: "\n").contains { $0.contains("listener=main") && $0.contains("draining") }
        }
        #expect(draining, "the listener began draining while the answer was awaited")
        try await ProxyTests.control(upstream, "release")
        let (text, closed) = await busy.readUntilClosed(timeout: .seconds(45))
        #expect(closed)
        let answer = try #require(RawHTTPResponse(text), "\(text)")
        #expect(answer.status == 200)
        #expect(answer.headers.contains("connection: close"), "a draining server says it closes: \(answer.headers)\n\(sluice.log.suffix(4000))")
        #expect(try await sluice.waitForExit() == 0)
    }

    @Test func answersAreRelayedWhileTheRequestBodyStillFlows() async throws {
        let upstream = try await ProxyTests.upstream("a")
        let sluice = try await Self.sluice(upstream)
        // Each chunk's echo is read before the next chunk is sent: a half-duplex proxy (the body
        // sent whole before the answer is relayed) never answers the first one.
        let script = packageRoot.appendingPathComponent("scripts/testing/h2c_upstream.py").path
        let result = try await runProgram("python3", [script, "interactive", "--port", String(sluice.port), "--path", "/echo-stream", "--turns", "5"])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stderr)")
        #expect(json["error"] is NSNull, "\(json)")
        #expect(json["echoes"] as? [String] == (0..<5).map { "turn \($0)" })
        // The request's trailer reached the upstream, which sent it back as the answer's.
        #expect((json["trailers"] as? [String: String])?["x-done"] == "yes", "\(json)")
    }

    @Test func aConnectionTheUpstreamClosesAsARequestComesIsRetriedForIdempotentRequests() async throws {
        let upstream = try await ProxyTests.upstream("a")
        let sluice = try await Self.sluice(upstream)
        try await ProxyTests.control(upstream, "reset")
        // After each answer the upstream drops the next request on that connection unanswered
        // (its keep-alive timeout ran out as the request came): a GET goes again on a new one.
        let answers = try await ProxyTests.sequential((0..<20).map { "\(sluice.baseURL)/quiet-close?\($0)" })
        #expect(answers.count == 20 && answers.allSatisfy { $0.status == 200 }, "\(answers.map(\.status))")
        let dropped = try await curl([upstream.endpoint + "/_control/stats"]).json["dropped"] as? Int ?? -1
        #expect(dropped >= 19, "each reused connection was dropped (\(dropped)), and each of those GETs still got its answer")
        // A POST is not sent twice: the client gets 502 (the upstream may have acted on it).
        let post = try await ProxyTests.sequential(
            ["\(sluice.baseURL)/quiet-close", "\(sluice.baseURL)/quiet-close"], ["-X", "POST", "-d", "x=1"])
        #expect(post.map(\.status) == [200, 502], "\(post)")
    }

    @Test func answersThatAreNotHTTPOrNotTheirLengthAreGatewayErrorsAndPoisonNoConnection() async throws {
        let upstream = try await ProxyTests.upstream("a")
        let sluice = try await Self.sluice(upstream)
        // Not HTTP: 502. Cut short of its content-length: 502 (small answers are read whole
        // before the head goes out, so the client never sees half of one).
        let garbage = try await curl(["\(sluice.baseURL)/garbage"])
        #expect(garbage.status == 502, "\(garbage.body)")
        #expect(garbage.body.contains("upstream_unavailable"))
        let short = try await curl(["\(sluice.baseURL)/short"])
        #expect(short.status == 502, "\(short.body)")
        // Five bytes beyond the content-length: the answer is its five bytes, and the connection
        // they came on is not used again — every later answer on the same client connection is
        // intact (the extra bytes would otherwise be read as the start of the next answer).
        let urls = ["\(sluice.baseURL)/overlong"] + (0..<10).map { "\(sluice.baseURL)/item/\($0)" }
        let answers = try await ProxyTests.sequential(urls)
        #expect(answers.count == 11 && answers.allSatisfy { $0.status == 200 }, "\(answers.map(\.status))")
        #expect(answers.dropFirst().allSatisfy { $0.upstream == "a" }, "\(answers)")
    }

    @Test func connectionsPerEndpointAreCappedAndRequestsWaitForOne() async throws {
        let upstream = try await ProxyTests.upstream("a")
        let sluice = try await Self.sluice(upstream, upstreamSettings: "    limits: { max_connections: 2 }\n    timeouts: { connect: 5s }")
        try await ProxyTests.control(upstream, "reset")
        let answers = try await ProxyTests.parallel((0..<8).map { "\(sluice.baseURL)/delay/200?\($0)" })
        #expect(answers.count == 8 && answers.allSatisfy { $0.status == 200 }, "\(answers.map(\.status))")
        let counts = try await Self.counts(upstream)
        #expect(counts.maxConcurrent <= 2, "\(counts.maxConcurrent) requests at once on 2 connections")
        #expect(counts.connections <= 3, "\(counts.connections - 1) upstream connections for max_connections 2")
    }
}
