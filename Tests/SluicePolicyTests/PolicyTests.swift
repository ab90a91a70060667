import Crypto
import NIOConcurrencyHelpers
import Testing

@testable import SluicePolicy

/// A clock the test moves by hand.
final class HandClock: Sendable {
    private let value = NIOLockedValueBox(Duration.zero)
    var now: Duration { self.value.withLockedValue { $0 } }
    func advance(_ by: Duration) { self.value.withLockedValue { $0 += by } }
}

func request(
    method: String = "POST", path: String = "/v1/events", query: Substring? = nil, ip: String? = "10.1.2.3", headers: [String: String] = [:]
) -> PolicyRequest {
    let lowered = Dictionary(uniqueKeysWithValues: headers.map { ($0.key.lowercased(), $0.value) })
    return PolicyRequest(method: method, path: path, query: query, sourceIP: ip) { lowered[$0.lowercased()] }
}

func sha256(_ text: String) -> String {
    SHA256.hash(data: Array(text.utf8)).map { String(format: "%02x", $0) }.joined()
}

@Suite struct RateLimitTests {
    func policy(_ clock: HandClock, burst: Int = 3, perSecond: Double = 1, overrides: [String: RateLimitConfig.Limit] = [:], maxKeys: Int = 100)
        -> PolicyChain
    {
        let config = RateLimitConfig(
            key: .header("X-Client"), limit: .init(perSecond: perSecond, burst: burst, text: "\(perSecond)/s"), overrides: overrides,
            maxKeys: maxKeys)
        return PolicyRegistry([PolicyConfig(name: "rl", kind: .rateLimit(config))], now: { clock.now }).chain(["rl"])
    }

    func allowed(_ chain: PolicyChain, _ client: String?, times: Int) async -> Int {
        var count = 0
        for _ in 0..<times {
            if case .success = await chain.evaluate(request(headers: client.map { ["X-Client": $0] } ?? [:])) { count += 1 }
        }
        return count
    }

    @Test func aBucketAllowsItsBurstThenItsRate() async {
        let clock = HandClock()
        let chain = self.policy(clock)
        #expect(await self.allowed(chain, "a", times: 5) == 3, "burst 3")
        clock.advance(.milliseconds(999))
        #expect(await self.allowed(chain, "a", times: 1) == 0, "not a whole token yet")
        clock.advance(.milliseconds(1))
        #expect(await self.allowed(chain, "a", times: 2) == 1, "one token per second")
        clock.advance(.seconds(60))
        #expect(await self.allowed(chain, "a", times: 10) == 3, "refilled to the burst, no more")
    }

    @Test func eventLimitsAdmitWhileNotInDebtAndChargeWhatWasHandled() async throws {
        let clock = HandClock()
        let config = RateLimitConfig(key: .header("X-Client"), unit: .events, limit: .init(perSecond: 2, burst: 10, text: "2/s"))
        let chain = PolicyRegistry([PolicyConfig(name: "ev", kind: .rateLimit(config))], now: { clock.now }).chain(["ev"])
        func handle(_ events: Int) async -> Bool {
            guard case .success = await chain.evaluate(request(headers: ["X-Client": "a"]), events: events, bytes: 999_999) else { return false }
            return true
        }
        #expect(await handle(8), "10 tokens: admitted, 2 left")
        #expect(await handle(5), "2 left is not debt: admitted, now -3")
        #expect(await !handle(1), "in debt: refused")
        clock.advance(.seconds(1))
        #expect(await !handle(1), "-1 after a second: still in debt")
        clock.advance(.milliseconds(600))
        #expect(await handle(100), "+0.2: admitted, and the debt stops at one burst (-10)")
        clock.advance(.seconds(5))
        #expect(await !handle(1), "-10 + 10 = 0: not above zero")
        clock.advance(.milliseconds(500))
        #expect(await handle(0))
        guard case .success = await chain.evaluate(request(headers: ["X-Client": "b"]), events: 25) else {
            Issue.record("b's first request should pass")
            return
        }
        guard case .failure(let refusal) = await chain.evaluate(request(headers: ["X-Client": "b"])) else {
            Issue.record("b should be refused after 25 events against a burst of 10")
            return
        }
        #expect(refusal.status == 429 && refusal.headers["retry-after"] == "6", "10 tokens of debt at 2/s, +1 to be above zero: \(refusal.headers.description)")
    }

    @Test func keysHaveTheirOwnBucketsAndOverridesReplaceTheDefault() async {
        let clock = HandClock()
        let chain = self.policy(clock, overrides: ["big": .init(perSecond: 10, burst: 10, text: "10/s"), "small": .init(perSecond: 1, burst: 1, text: "1/s")])
        #expect(await self.allowed(chain, "a", times: 5) == 3)
        #expect(await self.allowed(chain, "b", times: 5) == 3)
        #expect(await self.allowed(chain, "big", times: 20) == 10, "the override's own limit, not also the default")
        #expect(await self.allowed(chain, "small", times: 5) == 1, "a smaller override too")
        #expect(await self.allowed(chain, nil, times: 5) == 3, "requests without the key share one bucket")
        #expect(await self.allowed(chain, nil, times: 1) == 0)
    }

    @Test func theAnswerSaysWhenToComeBack() async {
        let clock = HandClock()
        let chain = self.policy(clock, burst: 2, perSecond: 0.5)
        _ = await self.allowed(chain, "a", times: 2)
        guard case .failure(let rejection) = await chain.evaluate(request(headers: ["X-Client": "a"])) else {
            Issue.record("not limited")
            return
        }
        #expect(rejection.status == 429 && rejection.code == "rate_limited")
        #expect(rejection.headers["retry-after"] == "2")
        #expect(rejection.headers["ratelimit-limit"] == "2")
        #expect(rejection.headers["ratelimit-remaining"] == "0")
        #expect(rejection.headers["ratelimit-policy"] == "2;w=4")
    }

    @Test func bucketsAreBoundedByMaxKeys() async {
        let clock = HandClock()
        let chain = self.policy(clock, maxKeys: 10)
        for i in 0..<1000 { _ = await self.allowed(chain, "k\(i)", times: 1) }
        guard let limiter = chain.policies.first as? RateLimitPolicy else {
            Issue.record("no rate limit policy")
            return
        }
        #expect(limiter.bucketCount <= 10)
    }
}

@Suite struct AuthenticationAndAuthorizationTests {
    let keys = PolicyConfig(
        name: "keys", kind: .apiKey(APIKeyConfig(source: .header("X-Api-Key"), keys: [sha256("secret-a"): "tenant-a", sha256("secret-b"): "tenant-b"])))

    @Test func anAPIKeyIdentifiesItsClient() async throws {
        let chain = PolicyRegistry([self.keys]).chain(["keys"])
        #expect(try await chain.evaluate(request(headers: ["x-api-key": "secret-a"])).get().client == "tenant-a")
        #expect(await chain.evaluate(request(headers: ["X-Api-Key": "secret-c"])) == .failure(.unauthenticated))
        #expect(await chain.evaluate(request()) == .failure(.unauthenticated), "missing and wrong say the same")
        let query = PolicyRegistry([PolicyConfig(name: "q", kind: .apiKey(APIKeyConfig(source: .query("key"), keys: [sha256("a b"): "spaced"])))])
            .chain(["q"])
        #expect(try await query.evaluate(request(query: "x=1&key=a%20b")).get().client == "spaced")
    }

    @Test func authzRulesDecideInOrder() async throws {
        let authz = PolicyConfig(
            name: "authz",
            kind: .authz(
                AuthzConfig(rules: [
                    .init(allow: false, condition: .init(sourceCIDRs: [try #require(CIDR("10.9.0.0/16"))])),
                    .init(allow: true, condition: .init(clients: ["tenant-a"], methods: ["POST"], pathPrefixes: ["/v1/"])),
                    .init(allow: true, condition: .init(clients: ["tenant-b"], pathPrefixes: ["/v1/b/"])),
                ])))
        // Listed after authz, authentication still runs first.
        let chain = PolicyRegistry([self.keys, authz]).chain(["authz", "keys"])
        func status(_ r: PolicyRequest) async -> Int {
            switch await chain.evaluate(r) {
            case .success: return 200
            case .failure(let rejection): return rejection.status
            }
        }
        #expect(await status(request(headers: ["X-Api-Key": "secret-a"])) == 200)
        #expect(await status(request(method: "GET", headers: ["X-Api-Key": "secret-a"])) == 403)
        #expect(await status(request(ip: "10.9.4.4", headers: ["X-Api-Key": "secret-a"])) == 403, "the deny rule comes first")
        #expect(await status(request(headers: ["X-Api-Key": "secret-b"])) == 403, "no rule allows b on /v1/events: default deny")
        #expect(await status(request(path: "/v1/b/x", headers: ["X-Api-Key": "secret-b"])) == 200)
        #expect(await status(request()) == 401, "authentication answers before authorization")
    }

    @Test func cidrsMatchIPv4AndIPv6() throws {
        let v4 = try #require(CIDR("192.168.0.0/20"))
        #expect(v4.contains("192.168.15.255") && !v4.contains("192.168.16.0"))
        #expect(v4.contains("::ffff:192.168.1.1"), "IPv4-mapped")
        let v6 = try #require(CIDR("fd00::/8"))
        #expect(v6.contains("fd12:3456::1") && !v6.contains("fe80::1") && !v6.contains("10.0.0.1"))
        #expect(try #require(CIDR("::1")).contains("0:0:0:0:0:0:0:1"))
        #expect(CIDR("10.0.0.0/33") == nil && CIDR("10.0.0/8") == nil && CIDR("1::2::3") == nil && CIDR("300.1.1.1") == nil)
        #expect(try #require(CIDR("0.0.0.0/0")).contains("8.8.8.8"))
    }
}
