import Foundation
import Testing

/// Each listener limit, triggered on purpose against the real binary (file sink: no broker needed).
@Suite(.timeLimit(.minutes(6))) struct ListenerLimitTests {
    static let config = """
        listeners:
          - name: main
            address: "127.0.0.1:{PORT}"
            idle_timeout: 3s
            body_read_timeout: 3s
            min_body_rate: 1KiB/s
            max_header_bytes: 4KiB
            max_connections: 3
            max_concurrent_streams: 7
        admin: { address: "127.0.0.1:{ADMIN_PORT}" }
        sinks:
          - name: files
            file: { directory: ./data }
        routes:
          - name: ingest
            match: { path: "/v1/events/{topic}", methods: [POST] }
            ingest: { sink: files, topic: "{topic}", max_body_bytes: 1KiB, max_events: 3, max_event_bytes: 100 }
        """

    @Test func anOversizedRequestHeadGets431() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        let response = try await curl(["-H", "X-Big: \(String(repeating: "x", count: 5000))", "-H", "content-type: application/json",
                                 "\(sluice.baseURL)/v1/events/t"], body: Data("{}".utf8))
        #expect(response.status == 431)
        #expect((response.json["error"] as? [String: Any])?["code"] as? String == "headers_too_large")
        #expect(((response.json["error"] as? [String: Any])?["message"] as? String)?.contains("max_header_bytes (4096 bytes)") == true)
    }

    @Test func bodyLimitsGive413NamingTheLimit() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        let url = "\(sluice.baseURL)/v1/events/t"
        let body = try await curl(["-H", "content-type: application/x-ndjson", url], body: Data(String(repeating: "{\"a\":1}\n", count: 200).utf8))
        #expect(body.status == 413)
        #expect(((body.json["error"] as? [String: Any])?["message"] as? String)?.contains("max_body_bytes (1024 bytes)") == true)
        let line = try await curl(["-H", "content-type: application/x-ndjson", url], body: Data("{\"a\":1}\n{\"b\":\"\(String(repeating: "y", count: 150))\"}\n".utf8))
        #expect(line.status == 413)
        #expect(((line.json["error"] as? [String: Any])?["message"] as? String)?.hasPrefix("line 2 is longer than max_event_bytes (100 bytes)") == true)
        let events = try await curl(["-H", "content-type: application/x-ndjson", url], body: Data("1\n2\n3\n4\n".utf8))
        #expect(events.status == 413)
        #expect(((events.json["error"] as? [String: Any])?["code"] as? String) == "too_many_events")
    }

    @Test func aStalledBodyClosesThatConnectionOnly() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        let stalled = try RawConnection(port: sluice.port)
        stalled.send("POST /v1/events/t HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 500\r\n\r\n{\"a\":1}\n")
        // Another client is served meanwhile.
        let other = try await curl(["-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/v1/events/t"], body: Data("{\"ok\":1}\n".utf8))
        #expect(other.status == 200)
        let (_, closed) = await stalled.readUntilClosed(timeout: .seconds(10))
        #expect(closed, "the connection that stopped sending its body is closed after body_read_timeout")
    }

    @Test func aBodyDrippedBelowTheMinimumRateIsClosedOthersAreServed() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        let dripper = try RawConnection(port: sluice.port)
        dripper.send("POST /v1/events/t HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 1000\r\n\r\n")
        // 8 bytes every 100 ms: never a 3 s stall, but ~80 B/s against a 1 KiB/s minimum.
        var closed = false
        for _ in 0..<150 {
            dripper.send("{\"a\":1}\n")
            if await dripper.readUntilClosed(timeout: .milliseconds(100)).closed {
                closed = true
                break
            }
        }
        #expect(closed, "a drip-fed body must be cut off by min_body_rate")
        let other = try await curl(["-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/v1/events/t"], body: Data("{\"ok\":1}\n".utf8))
        #expect(other.status == 200, "\(other.headers) \(other.body) running=\(sluice.process.isRunning) log:\n\(sluice.log.suffix(3000))")
    }

    @Test func aSlowRequestHeadIsClosedAfterTheIdleTimeout() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        let slow = try RawConnection(port: sluice.port)
        slow.send("POST /v1/events/t HTTP/1.1\r\nHost: x\r\n")
        let (_, closed) = await slow.readUntilClosed(timeout: .seconds(10))
        #expect(closed)
    }

    @Test func aServedConnectionIsClosedOnceIdleForTheIdleTimeout() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        let kept = try RawConnection(port: sluice.port)
        // Two requests on the connection (the idle timer is set once and looked at again when
        // it fires, not set per request), then nothing: closed after idle_timeout (3s).
        for _ in 0..<2 {
            kept.send("GET /not-routed HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(kept.read(until: "\r\n\r\n", timeout: .seconds(10)))
        }
        let (_, closed) = await kept.readUntilClosed(timeout: .seconds(15))
        #expect(closed, "a kept-alive connection left idle is closed")
    }

    @Test func pipelinedRequestsAreAnsweredInOrderAndAHalfClosingClientStillGetsItsAnswers() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        let connection = try RawConnection(port: sluice.port)
        // Three requests in one write, then the client's side closes (as `nc` does at the end
        // of its input): each is answered, in order, then the connection closes.
        let body = "{\"n\":1}"
        connection.send(
            "POST /v1/events/t HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
                + "GET /first-missing HTTP/1.1\r\nHost: x\r\n\r\n"
                + "GET /second-missing HTTP/1.1\r\nHost: x\r\n\r\n")
        connection.shutdownWrite()
        let (text, closed) = await connection.readUntilClosed(timeout: .seconds(15))
        #expect(closed, "closed once the answers are out")
        let statuses = Self.statusLines(in: text)
        #expect(statuses == ["200", "404", "404"], "\(text)")
        let first = try #require(text.range(of: "/first-missing")), second = try #require(text.range(of: "/second-missing"))
        #expect(first.lowerBound < second.lowerBound, "answers in the order asked")
    }

    @Test func aMalformedRequestPipelinedBehindAGoodOneIsAnsweredAfterIt() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        let connection = try RawConnection(port: sluice.port)
        // Both arrive in one read: the parse error is found while the good request's answer is
        // still owed, and its 400 must not go out first (or in the middle of it).
        connection.send("GET /missing HTTP/1.1\r\nHost: x\r\n\r\nNOT HTTP AT ALL\r\n\r\n")
        let (text, closed) = await connection.readUntilClosed(timeout: .seconds(15))
        #expect(closed)
        let statuses = Self.statusLines(in: text)
        #expect(statuses == ["404", "400"], "\(text)")
    }

    @Test func connectionsPastTheLimitAreClosedAtOnce() async throws {
        // Long timeouts here, so that only max_connections can close a connection.
        let config = Self.config.replacingOccurrences(of: "idle_timeout: 3s", with: "idle_timeout: 30s")
            .replacingOccurrences(of: "body_read_timeout: 3s", with: "body_read_timeout: 30s")
        let sluice = try await SluiceProcess(config: config)
        var held = try (0..<3).map { _ in try RawConnection(port: sluice.port) }
        // Each held connection is served once (and stays open): all three are counted before the
        // fourth arrives. (Connections are counted on their own event loops: under load a later
        // one could otherwise be counted first.)
        for connection in held {
            connection.send("GET /not-routed HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(connection.read(until: "\r\n\r\n", timeout: .seconds(10)))
        }
        let extra = try RawConnection(port: sluice.port)
        let (_, closed) = await extra.readUntilClosed(timeout: .seconds(5))
        #expect(closed, "a fourth connection is closed without being served")
        let (_, heldClosed) = await held[0].readUntilClosed(timeout: .milliseconds(200))
        #expect(!heldClosed, "the connections within the limit stay open")
        // Once the held connections are gone, new ones are served again.
        held.removeAll()
        try await Task.sleep(for: .milliseconds(300))
        let after = try await curl(["-H", "content-type: application/json", "\(sluice.baseURL)/v1/events/t"], body: Data("{}".utf8))
        #expect(after.status == 200)
    }

    @Test func http2AdvertisesTheStreamAndHeaderLimits() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        let result = try await runProgram("nghttp", ["-v", "-n", "\(sluice.baseURL)/nowhere"])
        #expect(result.stdout.contains("[SETTINGS_MAX_CONCURRENT_STREAMS(0x03):7]"), "\(result.stdout.prefix(2000))")
        #expect(result.stdout.contains("[SETTINGS_MAX_HEADER_LIST_SIZE(0x06):4096]"))
    }

    /// The status codes of the status lines in what a raw connection read (`HTTP/1.1 404 Not
    /// Found`; an error message that quotes "HTTP/1.1 (" is not one).
    static func statusLines(in text: String) -> [String] {
        let pattern = try! NSRegularExpression(pattern: "HTTP/1\\.1 ([0-9]{3}) [A-Za-z]")
        return pattern.matches(in: text, range: NSRange(text.startIndex..., in: text)).compactMap {
            Range($0.range(at: 1), in: text).map { String(text[$0]) }
        }
    }
}
