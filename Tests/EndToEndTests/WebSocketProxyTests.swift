import Foundation
import Testing

/// WebSocket through a proxy route (`upgrade: { protocols: [websocket] }`), with a real
/// WebSocket server and client on both ends (scripts/testing/websocket_peer.py, PyPI
/// `websockets`).
@Suite(.timeLimit(.minutes(6))) struct WebSocketProxyTests {
    static let script = packageRoot.appendingPathComponent("scripts/testing/websocket_peer.py").path

    static func config(upstreamPort: Int, closedPort: Int) -> String {
        """
        listeners:
          - name: main
            address: "127.0.0.1:{PORT}"
        admin: { address: "127.0.0.1:{ADMIN_PORT}" }
        upstreams:
          - name: ws
            endpoints: ["127.0.0.1:\(upstreamPort)"]
          - name: one-at-a-time
            endpoints: ["127.0.0.1:\(upstreamPort)"]
            limits: { max_requests: 1, max_pending: 4, pending_timeout: 500ms }
          - name: down
            endpoints: ["127.0.0.1:\(closedPort)"]
        routes:
          - name: ws
            match: { path_prefix: /ws/ }
            proxy:
              upstream: ws
              upgrade: { protocols: [websocket] }
          - name: idle
            match: { path_prefix: /idle/ }
            proxy:
              upstream: one-at-a-time
              upgrade: { protocols: [websocket], idle_timeout: 1s }
          - name: down
            match: { path_prefix: /down/ }
            proxy:
              upstream: down
              upgrade: { protocols: [websocket] }
          - name: plain
            match: { path_prefix: /plain/ }
            proxy: { upstream: ws }
        """
    }

    struct ClientResult {
        var status: Int?
        var headers: [String: String]
        var echoed: Int
        var closedByPeer: Bool
        var error: String?
        var body: String?
    }

    static func client(_ url: String, _ arguments: [String] = []) async throws -> ClientResult {
        let result = try await runProgram("python3", [Self.script, "client", "--url", url] + arguments)
        guard let line = result.stdout.split(separator: "\n").last,
            let json = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        else { throw HarnessError("websocket client printed no result: \(result.stdout) \(result.stderr)") }
        return ClientResult(
            status: json["status"] as? Int, headers: json["headers"] as? [String: String] ?? [:], echoed: json["echoed"] as? Int ?? 0,
            closedByPeer: json["closed_by_peer"] as? Bool ?? false, error: json["error"] as? String, body: json["body"] as? String)
    }

    static func start() async throws -> (PeerProcess, SluiceProcess) {
        let peer = try await PeerProcess("websocket", ["python3", Self.script, "serve", "--port", "{PORT}"])
        let sluice = try await SluiceProcess(config: Self.config(upstreamPort: peer.port, closedPort: try freePort()))
        return (peer, sluice)
    }

    static func openAtUpstream(_ peer: PeerProcess) async throws -> Int {
        try await curl([peer.endpoint + "/_open"]).json["open"] as? Int ?? -1
    }

    @Test func messagesEchoBothWaysThroughTheTunnel() async throws {
        let (peer, sluice) = try await Self.start()
        let base = "ws://127.0.0.1:\(sluice.port)"
        // "hello", 1 MiB of random bytes, then 100 small messages, each echoed intact.
        let result = try await Self.client(base + "/ws/headers", ["--big", "1048576", "--count", "100"])
        #expect(result.error == nil, "\(result)")
        #expect(result.status == 101)
        #expect(result.echoed == 102)
        // The upstream saw the handshake as a proxied request: forwarded-for, the upgrade itself.
        #expect(result.headers["x-forwarded-for"] == "127.0.0.1")
        #expect(result.headers["upgrade"]?.lowercased() == "websocket")
        #expect(result.headers["sec-websocket-key"] != nil)
        // Once the client has closed, the upstream's side is closed too.
        var open = try await Self.openAtUpstream(peer)
        var waited = 0
        while open != 0, waited < 50 {
            try await Task.sleep(for: .milliseconds(100))
            open = try await Self.openAtUpstream(peer)
            waited += 1
        }
        #expect(open == 0)
    }

    @Test func aRouteWithoutUpgradeDropsTheUpgradeHeader() async throws {
        let (peer, sluice) = try await Self.start()
        defer { withExtendedLifetime(peer) {} }  // the upstream runs as long as the test
        // The upstream gets a plain GET and answers 426 Upgrade Required, which reaches the client.
        let result = try await Self.client("ws://127.0.0.1:\(sluice.port)/plain/x")
        #expect(result.status == 426, "\(result)")
    }

    @Test func theUpstreamsRefusalReachesTheClient() async throws {
        let (peer, sluice) = try await Self.start()
        defer { withExtendedLifetime(peer) {} }  // the upstream runs as long as the test
        let result = try await Self.client("ws://127.0.0.1:\(sluice.port)/ws/deny")
        #expect(result.status == 403, "\(result)")
        #expect(result.body == "denied by upstream")
        #expect(result.headers["x-denied"] == "yes")
    }

    @Test func anUnreachableUpstreamIs502AndSluiceServesOn() async throws {
        let (peer, sluice) = try await Self.start()
        defer { withExtendedLifetime(peer) {} }
        let down = try await Self.client("ws://127.0.0.1:\(sluice.port)/down/x")
        #expect(down.status == 502, "\(down)")
        #expect(down.body?.contains("upstream_unavailable") == true)
        let after = try await Self.client("ws://127.0.0.1:\(sluice.port)/ws/x")
        #expect(after.status == 101 && after.echoed == 2, "\(after)")
    }

    /// 64 MiB written at full speed (raw socket, only TCP stops it) to an upstream that reads
    /// nothing for 3 s: the relay stops reading the client while the upstream cannot take more,
    /// so Sluice's memory does not grow with what is in flight (a relay that reads regardless
    /// grows by ~60 MiB here); every message then arrives and comes back intact.
    @Test func aSlowUpstreamSlowsTheClientWithoutGrowingMemory() async throws {
        let (peer, sluice) = try await Self.start()
        defer { withExtendedLifetime(peer) {} }
        let pid = sluice.process.processIdentifier
        let before = try ProxyTests.resetPeak(pid)
        let result = try await Self.client("ws://127.0.0.1:\(sluice.port)/ws/slow", ["--flood", "64", "--size", "1048576"])
        #expect(result.error == nil && result.echoed == 64, "\(result)")
        let peak = procStatusBytes(pid, "VmHWM") ?? 0
        #expect(peak - before < 24 * 1024 * 1024, "Sluice's RSS grew by \((peak - before) >> 20) MiB while 64 MiB went through")
    }

    @Test func anIdleTunnelIsClosedAndGivesItsRequestSlotBack() async throws {
        let (peer, sluice) = try await Self.start()
        let url = "ws://127.0.0.1:\(sluice.port)/idle/x"
        // Quiet for longer than idle_timeout (1s): Sluice closes it.
        let first = try await Self.client(url, ["--hold", "8"])
        #expect(first.status == 101 && first.echoed == 2, "\(first)")
        #expect(first.closedByPeer, "the idle tunnel was closed by Sluice")
        // The upstream allows one request at a time: a second tunnel opens only if the first
        // gave its slot back (otherwise 503 after pending_timeout).
        let second = try await Self.client(url)
        #expect(second.status == 101 && second.echoed == 2, "\(second)")
        #expect(try await Self.openAtUpstream(peer) <= 1)
    }
}
