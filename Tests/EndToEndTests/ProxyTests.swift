import Crypto
import Foundation
import Testing

/// The reverse proxy through the real binary, against real HTTP/1.1 upstream processes
/// (scripts/testing/proxy_upstream.py) and curl as the client.
@Suite(.timeLimit(.minutes(6))) struct ProxyTests {
    static let upstreamScript = packageRoot.appendingPathComponent("scripts/testing/proxy_upstream.py").path

    static func upstream(_ name: String) async throws -> PeerProcess {
        try await PeerProcess("upstream-\(name)", ["python3", Self.upstreamScript, "--port", "{PORT}", "--name", name])
    }

    static func control(_ peer: PeerProcess, _ path: String) async throws {
        let response = try await curl(["-X", "POST", peer.endpoint + "/_control/" + path])
        guard response.status == 200 else { throw HarnessError("control \(path): \(response.status) \(response.body)") }
    }

    struct Stats {
        var requests: Int
        var byPath: [String: Int]
        var maxConcurrent: Int
        var healthChecks: Int
    }

    static func stats(_ peer: PeerProcess) async throws -> Stats {
        let json = try await curl([peer.endpoint + "/_control/stats"]).json
        return Stats(
            requests: json["requests"] as? Int ?? -1, byPath: json["by_path"] as? [String: Int] ?? [:],
            maxConcurrent: json["max_concurrent"] as? Int ?? -1, healthChecks: json["health_checks"] as? Int ?? -1)
    }

    /// Many requests on one curl process (keep-alive, like a real client); for each the status
    /// and the `x-upstream` header of the answer.
    static func sequential(_ urls: [String], _ extra: [String] = []) async throws -> [(status: Int, upstream: String)] {
        var args = ["-s", "--max-time", "60"] + extra
        for url in urls { args += ["-o", "/dev/null", "-w", "##%{http_code} %header{x-upstream}\\n", url] }
        let result = try await runProgram("curl", args)
        return Self.parseWriteOut(result.stdout)
    }

    /// The same requests all at once (curl --parallel).
    static func parallel(_ urls: [String]) async throws -> [(status: Int, upstream: String)] {
        var args = ["-s", "--max-time", "60", "--parallel", "--parallel-immediate", "--parallel-max", String(urls.count)]
        for url in urls { args += ["-o", "/dev/null", "-w", "##%{http_code} %header{x-upstream}\\n", url] }
        return Self.parseWriteOut(try await runProgram("curl", args).stdout)
    }

    static func parseWriteOut(_ text: String) -> [(status: Int, upstream: String)] {
        text.components(separatedBy: "##").dropFirst().map { entry in
            let parts = entry.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ", maxSplits: 1)
            return (Int(parts.first ?? "") ?? 0, parts.count > 1 ? String(parts[1]) : "")
        }
    }

    /// Resets the process's peak RSS (VmHWM) to its current RSS; returns that RSS.
    static func resetPeak(_ pid: Int32) throws -> Int {
        try "5".write(toFile: "/proc/\(pid)/clear_refs", atomically: false, encoding: .utf8)
        return procStatusBytes(pid, "VmRSS") ?? 0
    }

    // MARK: -

    @Test func forwardsRequestsWithRewritesAndStreamsAnswers() async throws {
        let a = try await Self.upstream("a")
        let sluice = try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                upstreams:
                  - name: app
                    endpoints: ["127.0.0.1:\(a.port)"]
                routes:
                  - name: api
                    match: { path_prefix: /api/ }
                    proxy:
                      upstream: app
                      path_rewrite: /v2/
                      request_headers: { set: { x-gateway: sluice }, remove: [x-internal] }
                      response_headers: { set: { x-served-by: sluice }, remove: [server] }
                  - name: raw
                    match: { path_prefix: /raw/ }
                    proxy: { upstream: app, path_rewrite: / }
                """)
        let body = Data((0..<10_000).map { UInt8($0 % 251) })
        for http2 in [false, true] {
            let response = try await curl(
                (http2 ? ["--http2-prior-knowledge"] : []) + [
                    "-X", "PUT", "\(sluice.baseURL)/api/items/7?q=a%20b&x=1",
                    "-H", "x-internal: secret", "-H", "connection: x-hop", "-H", "x-hop: 1", "-H", "x-forwarded-for: 203.0.113.9",
                    "-H", "content-type: application/octet-stream",
                ], body: body)
            #expect(response.status == 200)
            let echo = response.json
            #expect(echo["method"] as? String == "PUT")
            #expect(echo["path"] as? String == "/v2/items/7?q=a%20b&x=1", "prefix replaced, query kept")
            let headers = echo["headers"] as? [String: String] ?? [:]
            #expect(headers["x-gateway"] == "sluice")
            #expect(headers["x-internal"] == nil, "removed by the route")
            #expect(headers["connection"] == nil)
            if !http2 { #expect(headers["x-hop"] == nil, "headers named by Connection stay on their hop") }
            #expect(headers["x-forwarded-for"] == "203.0.113.9, 127.0.0.1", "the client's address is appended")
            #expect(headers["x-forwarded-proto"] == "http")
            #expect(headers["host"] == "127.0.0.1:\(sluice.port)", "the client's Host is kept")
            #expect(echo["body_bytes"] as? Int == body.count)
            #expect(echo["body_sha256"] as? String == SHA256.hash(data: body).map { String(format: "%02x", $0) }.joined())
            #expect(response.headers.lowercased().contains("x-served-by: sluice"))
            #expect(!response.headers.lowercased().contains("server: proxy-upstream"))
            // Bytes a target may not carry raw, which clients send anyway, reach the upstream
            // percent-encoded (raw, Sluice's HTTP/1.1 encoder would refuse them: a 502).
            let raw = try await curl((http2 ? ["--http2-prior-knowledge"] : []) + ["--globoff", "\(sluice.baseURL)/raw/a|b{c}?q={\"k\":1}"])
            #expect(raw.status == 200, "\(raw.body)")
            #expect(raw.json["path"] as? String == "/a%7Cb%7Bc%7D?q=%7B%22k%22:1%7D")
        }
        // The upstream's own statuses pass through; a path outside the route is Sluice's 404.
        #expect(try await curl(["\(sluice.baseURL)/raw/status/418"]).status == 418)
        // HEAD: the length of the answer a GET would get, and no body.
        let head = try await curl(["-I", "\(sluice.baseURL)/raw/status/201"])
        #expect(head.status == 201 && head.headers.lowercased().contains("content-length: 15") && !head.body.contains("{"), "\(head.headers)")
        let unrouted = try await curl(["\(sluice.baseURL)/other"])
        #expect(unrouted.status == 404 && unrouted.json["error"] != nil)
        await #expect(try Self.stats(a).byPath["/other"] == nil)
    }

    @Test func retriesGoToAnotherEndpointWithinTheBudget() async throws {
        let a = try await Self.upstream("a")
        let b = try await Self.upstream("b")
        let sluice = try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                upstreams:
                  - name: app
                    endpoints: ["127.0.0.1:\(a.port)", "127.0.0.1:\(b.port)"]
                    outlier_detection: { consecutive_failures: 0 }
                routes:
                  - name: retried
                    match: { path_prefix: /retried/ }
                    proxy: { upstream: app, path_rewrite: /, retries: { attempts: 1, on: [gateway_error], backoff: 0s } }
                  - name: once
                    match: { path_prefix: /once/ }
                    proxy: { upstream: app, path_rewrite: / }
                  - name: no-budget
                    match: { path_prefix: /no-budget/ }
                    proxy:
                      upstream: app
                      path_rewrite: /
                      retries: { attempts: 1, on: [gateway_error], budget_percent: 0, min_retry_concurrency: 0 }
                """)
        try await Self.control(a, "fail/503")
        let retried = try await Self.sequential((0..<20).map { "\(sluice.baseURL)/retried/item/\($0)" })
        #expect(retried.count == 20)
        #expect(retried.allSatisfy { $0.status == 200 && $0.upstream == "b" }, "\(retried)")
        let aSaw = try await Self.stats(a).requests
        #expect(aSaw >= 5, "first attempts reached a (and were answered 503): \(aSaw)")
        await #expect(try Self.stats(b).requests == 20)

        let once = try await Self.sequential((0..<20).map { "\(sluice.baseURL)/once/item/\($0)" })
        let failed = once.filter { $0.status == 503 }
        #expect(failed.count >= 5 && failed.allSatisfy { $0.upstream == "a" }, "without retries a's 503 reaches the client: \(once)")

        let noBudget = try await Self.sequential((0..<20).map { "\(sluice.baseURL)/no-budget/item/\($0)" })
        #expect(noBudget.filter { $0.status == 503 }.count >= 5, "an empty retry budget allows no retry: \(noBudget)")
    }

    @Test func unreachableSlowAndResettingUpstreamsGetGatewayErrors() async throws {
        let a = try await Self.upstream("a")
        let closedPort = try freePort()
        let sluice = try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                upstreams:
                  - name: dead
                    endpoints: ["127.0.0.1:\(closedPort)"]
                    timeouts: { connect: 500ms }
                  - name: slow
                    endpoints: ["127.0.0.1:\(a.port)"]
                    timeouts: { request: 300ms }
                  # Endpoints named by host go through the resolver (IP literals are connected to directly).
                  - name: named
                    endpoints: ["localhost:\(a.port)"]
                  - name: dead-named
                    endpoints: ["localhost:\(closedPort)"]
                    timeouts: { connect: 500ms }
                routes:
                  - name: dead
                    match: { path_prefix: /dead/ }
                    proxy: { upstream: dead }
                  - name: named
                    match: { path_prefix: /named/ }
                    proxy: { upstream: named, path_rewrite: / }
                  - name: dead-named
                    match: { path_prefix: /dead-named/ }
                    proxy: { upstream: dead-named }
                  - name: slow
                    match: { path_prefix: /slow/ }
                    proxy: { upstream: slow, path_rewrite: / }
                """)
        let dead = try await curl(["\(sluice.baseURL)/dead/x"])
        #expect(dead.status == 502)
        #expect((dead.json["error"] as? [String: Any])?["code"] as? String == "upstream_unavailable")
        #expect(!dead.body.contains(String(closedPort)), "the answer does not reveal the upstream's address")
        let deadNamed = try await curl(["\(sluice.baseURL)/dead-named/x"])
        #expect(deadNamed.status == 502)
        #expect((deadNamed.json["error"] as? [String: Any])?["code"] as? String == "upstream_unavailable")
        #expect(try await curl(["\(sluice.baseURL)/named/fine"]).status == 200, "an endpoint named by host is resolved")

        // The upstream would answer 200 after 60 s, past curl's own 20 s limit: only Sluice's
        // 300 ms request timeout gives an answer at all (no clock read here; a loaded run may be slow).
        let slow = try await curl(["--max-time", "20", "\(sluice.baseURL)/slow/delay/60000"])
        #expect(slow.status == 504, "answered at the request timeout, not when the upstream finished: \(slow.status)")
        #expect((slow.json["error"] as? [String: Any])?["code"] as? String == "upstream_timeout")

        let reset = try await curl(["\(sluice.baseURL)/slow/reset"])
        #expect(reset.status == 502)
        // Sluice still serves after all that.
        #expect(try await curl(["\(sluice.baseURL)/slow/fine"]).status == 200)
    }

    @Test func circuitBreakingBoundsRequestsInProgress() async throws {
        let a = try await Self.upstream("a")
        let sluice = try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                upstreams:
                  - name: strict
                    endpoints: ["127.0.0.1:\(a.port)"]
                    limits: { max_requests: 2, max_pending: 0 }
                  - name: queued
                    endpoints: ["127.0.0.1:\(a.port)"]
                    limits: { max_requests: 2, max_pending: 10, pending_timeout: 20s }
                routes:
                  - name: strict
                    match: { path_prefix: /strict/ }
                    proxy: { upstream: strict, path_rewrite: / }
                  - name: queued
                    match: { path_prefix: /queued/ }
                    proxy: { upstream: queued, path_rewrite: / }
                """)
        let strict = try await Self.parallel((0..<8).map { "\(sluice.baseURL)/strict/delay/1500?n=\($0)" })
        let ok = strict.filter { $0.status == 200 }.count
        let refused = strict.filter { $0.status == 503 }.count
        #expect(ok + refused == 8, "\(strict)")
        #expect(ok >= 2 && refused >= 1, "two at a time, the rest refused at once: \(strict)")
        await #expect(try Self.stats(a).maxConcurrent <= 2)

        try await Self.control(a, "reset")
        let queued = try await Self.parallel((0..<6).map { "\(sluice.baseURL)/queued/delay/300?n=\($0)" })
        #expect(queued.count == 6 && queued.allSatisfy { $0.status == 200 }, "waiting requests get their turn: \(queued)")
        await #expect(try Self.stats(a).maxConcurrent <= 2)
    }

    @Test func healthChecksAndOutlierDetectionTakeEndpointsOutAndBack() async throws {
        let a = try await Self.upstream("a")
        let b = try await Self.upstream("b")
        let sluice = try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                upstreams:
                  - name: checked
                    endpoints: ["127.0.0.1:\(a.port)", "127.0.0.1:\(b.port)"]
                    health_check: { path: /healthz, interval: 200ms, timeout: 150ms, unhealthy_threshold: 2, healthy_threshold: 1 }
                    outlier_detection: { consecutive_failures: 0 }
                  - name: passive
                    endpoints: ["127.0.0.1:\(a.port)", "127.0.0.1:\(b.port)"]
                    outlier_detection: { consecutive_failures: 3, base_ejection_time: 2s, max_ejection_percent: 50 }
                routes:
                  - name: checked
                    match: { path_prefix: /checked/ }
                    proxy: { upstream: checked, path_rewrite: / }
                  - name: passive
                    match: { path_prefix: /passive/ }
                    proxy: { upstream: passive, path_rewrite: / }
                """)
        try await Self.control(b, "health/down")
        var out = false
        for _ in 0..<50 {
            try await Task.sleep(for: .milliseconds(200))
            if try await Self.sequential((0..<6).map { "\(sluice.baseURL)/checked/x\($0)" }).allSatisfy({ $0.upstream == "a" && $0.status == 200 }) {
                out = true
                break
            }
        }
        #expect(out, "b left the rotation once its health checks failed")
        // The admin API says so.
        let admin = try await curl(["http://127.0.0.1:\(sluice.adminPort)/upstreams"]).json
        let checked = (admin["checked"] as? [String: Any])?["endpoints"] as? [[String: Any]] ?? []
        #expect(checked.count == 2)
        #expect(checked.first { ($0["address"] as? String) == "127.0.0.1:\(b.port)" }?["in_service"] as? Bool == false, "\(admin)")
        #expect(checked.first { ($0["address"] as? String) == "127.0.0.1:\(a.port)" }?["in_service"] as? Bool == true, "\(admin)")
        await #expect(try Self.stats(b).healthChecks >= 2)
        try await Self.control(b, "health/up")
        var back = false
        for _ in 0..<50 {
            try await Task.sleep(for: .milliseconds(200))
            if try await Self.sequential((0..<6).map { "\(sluice.baseURL)/checked/y\($0)" }).contains(where: { $0.upstream == "b" }) {
                back = true
                break
            }
        }
        #expect(back, "b came back once its health checks passed")

        // Passive: b answers 500 to real requests (its health endpoint stays fine).
        // One curl for the failures and the check: a pause between two programs (a busy test
        // run) could outlast the 2 s ejection.
        try await Self.control(b, "fail/500")
        let failingThenEjected = try await Self.sequential(
            (0..<8).map { "\(sluice.baseURL)/passive/p\($0)" } + (0..<10).map { "\(sluice.baseURL)/passive/q\($0)" })
        let whileEjected = failingThenEjected.suffix(10)
        #expect(whileEjected.count == 10 && whileEjected.allSatisfy { $0.upstream == "a" && $0.status == 200 }, "b ejected after 3 failures in a row: \(whileEjected)")
        try await Self.control(b, "fail/0")
        try await Task.sleep(for: .seconds(2.5))
        let afterEjection = try await Self.sequential((0..<6).map { "\(sluice.baseURL)/passive/r\($0)" })
        #expect(afterEjection.contains { $0.upstream == "b" }, "b back after its ejection time: \(afterEjection)")
        #expect(sluice.log.contains("endpoint ejected after consecutive failures"))
    }

    @Test func weightedSplitsConsistentHashingAndMirroring() async throws {
        let blue = try await Self.upstream("blue")
        let green = try await Self.upstream("green")
        let shadow = try await Self.upstream("shadow")
        let sluice = try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                upstreams:
                  - { name: blue, endpoints: ["127.0.0.1:\(blue.port)"] }
                  - { name: green, endpoints: ["127.0.0.1:\(green.port)"] }
                  - { name: shadow, endpoints: ["127.0.0.1:\(shadow.port)"] }
                  - name: sticky
                    endpoints: ["127.0.0.1:\(blue.port)", "127.0.0.1:\(green.port)"]
                    load_balancing: { consistent_hash: { header: x-user } }
                routes:
                  - name: canary
                    match: { path_prefix: /canary/ }
                    proxy: { splits: [{ upstream: blue, weight: 80 }, { upstream: green, weight: 20 }] }
                  - name: sticky
                    match: { path_prefix: /sticky/ }
                    proxy: { upstream: sticky }
                  - name: mirrored
                    match: { path_prefix: /mirrored/ }
                    proxy: { upstream: blue, mirror: { upstream: shadow } }
                """)
        let split = try await Self.sequential((0..<500).map { "\(sluice.baseURL)/canary/\($0)" })
        #expect(split.count == 500 && split.allSatisfy { $0.status == 200 })
        let greenShare = Double(split.filter { $0.upstream == "green" }.count) / 500
        // Binomial(500, 0.2): sd 0.018; 0.1 is 5.6 sd (a false alarm once in 10^8 runs), and still
        // tells 20% from an even split or from no split.
        #expect(abs(greenShare - 0.2) < 0.1, "20% to green within tolerance: \(greenShare)")

        for user in ["alice", "bob", "carol", "dave", "erin", "frank"] {
            let answers = try await Self.sequential((0..<8).map { "\(sluice.baseURL)/sticky/\($0)" }, ["-H", "x-user: \(user)"])
            #expect(Set(answers.map(\.upstream)).count == 1, "one user, one endpoint: \(user) \(answers)")
        }
        var users: [String] = []
        for user in 0..<40 { users.append(try await Self.sequential(["\(sluice.baseURL)/sticky/u"], ["-H", "x-user: user-\(user)"])[0].upstream) }
        #expect(Set(users) == ["blue", "green"], "users spread over both endpoints")

        try await Self.control(shadow, "reset")
        let mirrored = try await Self.sequential((0..<10).map { "\(sluice.baseURL)/mirrored/m\($0)" }, ["-d", "payload"])
        #expect(mirrored.allSatisfy { $0.status == 200 && $0.upstream == "blue" }, "the client sees the primary's answer")
        var copies = 0
        for _ in 0..<50 {
            copies = try await Self.stats(shadow).requests
            if copies >= 10 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(copies == 10, "every request copied to the shadow")
    }

    @Test func largeBodiesStreamBothWaysInBoundedMemory() async throws {
        let a = try await Self.upstream("a")
        let sluice = try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                upstreams:
                  - name: app
                    endpoints: ["127.0.0.1:\(a.port)"]
                    # The echo upstream answers after the whole 96 MiB body; on a loaded CI
                    # machine that can take longer than the default 30 s.
                    timeouts: { request: 3m }
                routes:
                  - name: files
                    match: { path_prefix: /files/ }
                    proxy: { upstream: app, path_rewrite: /, max_body_bytes: 512MiB }
                  - name: small
                    match: { path_prefix: /small/ }
                    proxy: { upstream: app, path_rewrite: /, max_body_bytes: 1MiB }
                """)
        // 96 MiB each way: twice what the memory check allows, while the suite's other tests run.
        let size = 96 * 1024 * 1024
        let file = sluice.workDirectory.appendingPathComponent("upload.bin")
        let chunk = Data((0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        FileManager.default.createFile(atPath: file.path, contents: nil)
        let handle = try FileHandle(forWritingTo: file)
        var digest = SHA256()
        for _ in 0..<(size >> 20) {
            handle.write(chunk)
            digest.update(data: chunk)
        }
        try handle.close()
        let expected = digest.finalize().map { String(format: "%02x", $0) }.joined()

        // curl -T streams the file with its length (and Expect: 100-continue).
        let upload = try await curl(["--max-time", "180", "-X", "POST", "-T", file.path, "\(sluice.baseURL)/files/echo"])
        #expect(upload.status == 200)
        #expect(upload.json["body_bytes"] as? Int == size)
        #expect(upload.json["body_sha256"] as? String == expected)
        // Chunked upload (no length) over HTTP/2.
        for version in ["--http1.1", "--http2-prior-knowledge"] {
            let chunked = try await runProgram("sh", ["-c", "curl -sS --max-time 180 \(version) -X POST -T - \(sluice.baseURL)/files/echo < \(file.path)"])
            #expect(chunked.stdout.contains(expected), "\(version): \(chunked.stdout.prefix(300))")
        }

        let download = try await runProgram("sh", ["-c", "curl -sS --max-time 180 \(sluice.baseURL)/files/stream/\(size) | sha256sum"])
        var pattern = SHA256()
        let block = Data((0..<65536).map { UInt8($0 % 256) })
        for _ in 0..<(size / 65536) { pattern.update(data: block) }
        #expect(download.stdout.hasPrefix(pattern.finalize().map { String(format: "%02x", $0) }.joined()))

        // Backpressure, measured from a reset peak: an upstream reading the 96 MiB upload at
        // 32 MB/s, and a client reading a 96 MiB download at 2 MB/s, hold Sluice to its pace
        // instead of piling the difference up in memory.
        let pid = sluice.process.processIdentifier
        let base = try Self.resetPeak(pid)
        let paced = try await curl(["-X", "POST", "-T", file.path, "\(sluice.baseURL)/files/echo?read_rate=32000000"])
        #expect(paced.status == 200 && paced.json["body_sha256"] as? String == expected)
        _ = try? await runProgram("curl", ["-s", "-o", "/dev/null", "--limit-rate", "2M", "--max-time", "3", "\(sluice.baseURL)/files/stream/\(size)"])
        let peak = procStatusBytes(pid, "VmHWM") ?? Int.max
        #expect(peak - base < 48 * 1024 * 1024, "peak RSS \(peak >> 20) MiB from \(base >> 20) MiB while the far side was slow")

        let tooLarge = try await curl(["-X", "POST", "-T", file.path, "\(sluice.baseURL)/small/echo"])
        #expect(tooLarge.status == 413)
        let streamedTooLarge = try await runProgram("sh", ["-c", "curl -sS --max-time 60 -X POST -T - \(sluice.baseURL)/small/echo < \(file.path)"])
        #expect(streamedTooLarge.stdout.contains("body_too_large"), "\(streamedTooLarge.stdout.prefix(300))")
        // 4 uploads, and the streamed one cut at the limit; the declared one never left Sluice.
        await #expect(try Self.stats(a).byPath["/echo"] == 5, "a declared length over the limit never reaches the upstream")
    }

    @Test func policiesGuardProxyRoutes() async throws {
        let a = try await Self.upstream("a")
        let key = SHA256.hash(data: Array("proxy-key".utf8)).map { String(format: "%02x", $0) }.joined()
        let sluice = try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                policies:
                  - name: keys
                    api_key: { header: X-Api-Key, keys: [{ client: tenant-a, sha256: \(key) }] }
                  - name: limit
                    rate_limit: { key: client, rate: 1/h, burst: 2 }
                upstreams:
                  - { name: app, endpoints: ["127.0.0.1:\(a.port)"] }
                routes:
                  - name: api
                    match: { path_prefix: /api/ }
                    policies: [keys, limit]
                    proxy: { upstream: app }
                """)
        #expect(try await curl(["\(sluice.baseURL)/api/x"]).status == 401)
        #expect(try await curl(["-H", "x-api-key: wrong", "\(sluice.baseURL)/api/x"]).status == 401)
        let allowed = try await curl(["-H", "x-api-key: proxy-key", "\(sluice.baseURL)/api/x"])
        #expect(allowed.status == 200)
        #expect((allowed.json["headers"] as? [String: String])?["x-api-key"] == "proxy-key")
        #expect(try await curl(["-H", "x-api-key: proxy-key", "\(sluice.baseURL)/api/x"]).status == 200)
        let limited = try await curl(["-H", "x-api-key: proxy-key", "\(sluice.baseURL)/api/x"])
        #expect(limited.status == 429 && limited.headers.lowercased().contains("retry-after:"))
        await #expect(try Self.stats(a).requests == 2, "refused requests never reach the upstream")
    }
}

/// Upstreams over TLS: nginx (from Debian) with a certificate from a test CA, HTTP/2 by ALPN,
/// and a client certificate when nginx requires one.
@Suite(.timeLimit(.minutes(6))) struct ProxyTLSTests {
    @Test func upstreamsOverTLSWithHTTP2AndClientCertificates() async throws {
        let pki = try await TLSFixtures(in: URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("sluice-pki-\(UUID().uuidString)"))
        defer { try? FileManager.default.removeItem(at: pki.directory) }
        let answer = #"return 200 "proto=$server_protocol tls=$ssl_protocol client=$ssl_client_s_dn\n";"#
        let open = try await startNginx("nginx-tls") { port in
            """
            listen 127.0.0.1:\(port) ssl http2;
            ssl_certificate \(pki.serverCertificate);
            ssl_certificate_key \(pki.serverKey);
            location / { \(answer) }
            """
        }
        let mutual = try await startNginx("nginx-mtls") { port in
            """
            listen 127.0.0.1:\(port) ssl http2;
            ssl_certificate \(pki.serverCertificate);
            ssl_certificate_key \(pki.serverKey);
            ssl_client_certificate \(pki.caCertificate);
            ssl_verify_client on;
            location / { \(answer) }
            """
        }
        let http1Only = try await startNginx("nginx-tls-h1") { port in
            """
            listen 127.0.0.1:\(port) ssl;
            ssl_certificate \(pki.serverCertificate);
            ssl_certificate_key \(pki.serverKey);
            location / { \(answer) }
            """
        }
        let sluice = try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                upstreams:
                  - name: h2
                    endpoints: ["127.0.0.1:\(open.port)"]
                    tls: { ca_file: \(pki.caCertificate) }
                    http2: true
                  - name: h2-refused
                    endpoints: ["127.0.0.1:\(http1Only.port)"]
                    tls: { ca_file: \(pki.caCertificate) }
                    http2: true
                  - name: h1
                    endpoints: ["127.0.0.1:\(open.port)"]
                    tls: { ca_file: \(pki.caCertificate) }
                  - name: system-roots
                    endpoints: ["127.0.0.1:\(open.port)"]
                    tls: {}
                  - name: mtls
                    endpoints: ["127.0.0.1:\(mutual.port)"]
                    tls: { ca_file: \(pki.caCertificate), certificate_file: \(pki.clientCertificate), key_file: \(pki.clientKey) }
                  - name: mtls-without-certificate
                    endpoints: ["127.0.0.1:\(mutual.port)"]
                    tls: { ca_file: \(pki.caCertificate) }
                routes:
                  - { name: h2, match: { path_prefix: /h2/ }, proxy: { upstream: h2 } }
                  - { name: h2-refused, match: { path_prefix: /h2-refused/ }, proxy: { upstream: h2-refused } }
                  - { name: h1, match: { path_prefix: /h1/ }, proxy: { upstream: h1 } }
                  - { name: roots, match: { path_prefix: /roots/ }, proxy: { upstream: system-roots } }
                  - { name: mtls, match: { path_prefix: /mtls/ }, proxy: { upstream: mtls } }
                  - { name: no-cert, match: { path_prefix: /no-cert/ }, proxy: { upstream: mtls-without-certificate } }
                """)
        let h2 = try await curl(["\(sluice.baseURL)/h2/x"])
        #expect(h2.status == 200 && h2.body.contains("proto=HTTP/2.0") && h2.body.contains("tls=TLSv1."), "\(h2.body)")
        // `http2` means HTTP/2: an endpoint that does not agree to h2 by ALPN is not spoken to.
        let refused = try await curl(["\(sluice.baseURL)/h2-refused/x"])
        #expect(refused.status == 502, "\(refused.body)")
        let h1 = try await curl(["\(sluice.baseURL)/h1/x"])
        #expect(h1.status == 200 && h1.body.contains("proto=HTTP/1.1") && h1.body.contains("tls=TLSv1."), "\(h1.body)")
        let roots = try await curl(["\(sluice.baseURL)/roots/x"])
        #expect(roots.status == 502, "a certificate from an untrusted CA is refused: \(roots.body)")
        let mtls = try await curl(["\(sluice.baseURL)/mtls/x"])
        #expect(mtls.status == 200 && mtls.body.contains("client=CN=client-a"), "\(mtls.body)")
        let noCertificate = try await curl(["\(sluice.baseURL)/no-cert/x"])
        #expect(noCertificate.status == 400 && !noCertificate.body.contains("client=CN"), "nginx refuses a client without a certificate")
    }
}
