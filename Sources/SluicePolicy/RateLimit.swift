import Crypto
import Logging
import NIOConcurrencyHelpers
import SluiceCore

/// `rate_limit` with `scope: local`: a token bucket per key value, in this process.
///
/// A bucket holds up to `burst` tokens and gains `rate` per second; a request takes one or is
/// answered 429 with `Retry-After` (whole seconds until a token is there) and the `RateLimit-*`
/// fields of draft-ietf-httpapi-ratelimit-headers. A key value with an override uses only its own
/// limit. Requests without the key's value (no such header, no client) share one bucket.
final class RateLimitPolicy: ChargedRateLimit {
    let name: String
    let config: RateLimitConfig
    let now: @Sendable () -> Duration
    private let buckets = NIOLockedValueBox<[String: Bucket]>([:])

    struct Bucket {
        var tokens: Double
        var updated: Duration
    }

    var stage: PolicyStage { .rateLimit }
    var unit: RateLimitConfig.Unit { self.config.unit }

    init(name: String, config: RateLimitConfig, now: @escaping @Sendable () -> Duration) {
        self.name = name
        self.config = config
        self.now = now
    }

    func admit(_ request: PolicyRequest, _ identity: PolicyIdentity) -> (PolicyRejection?, RateLimitCharge?) {
        let (value, limit) = self.config.keyValueAndLimit(request, identity)
        let key = value ?? ""
        let now = self.now()
        // Events and bytes are known only once the request is handled: admit while the bucket
        // is not in debt, and charge afterwards (see `charge`).
        let cost: Double = self.config.unit == .requests ? 1 : 0
        let charge = cost == 0 ? RateLimitCharge(key: key, limit: limit) : nil
        let wait: Double? = self.buckets.withLockedValue { buckets in
            var bucket = Self.refilled(buckets[key], limit: limit, now: now)
            defer {
                if buckets[key] == nil, buckets.count >= self.config.maxKeys { self.evict(&buckets, now: now) }
                buckets[key] = bucket
            }
            if cost == 0 ? bucket.tokens > 0 : bucket.tokens >= cost {
                bucket.tokens -= cost
                return nil
            }
            return (max(cost, 1) - bucket.tokens) / limit.perSecond
        }
        guard let wait else { return (nil, charge) }
        return (Self.rejection(limit, wait: wait), nil)
    }

    /// 429 with `Retry-After` (whole seconds until a token is there) and the `RateLimit-*` fields.
    static func rejection(_ limit: RateLimitConfig.Limit, wait: Double) -> PolicyRejection {
        let retry = max(1, Int(wait.rounded(.up)))
        let window = max(1, Int((Double(limit.burst) / limit.perSecond).rounded(.up)))
        return PolicyRejection(
            .rateLimited, message: "rate limit \(limit.text) exceeded; retry in \(retry)s",
            headers: [
                "retry-after": String(retry), "ratelimit-limit": String(limit.burst), "ratelimit-remaining": "0",
                "ratelimit-reset": String(retry), "ratelimit-policy": "\(limit.burst);w=\(window)",
            ])
    }

    /// Takes `amount` tokens for a request already admitted (unit events or bytes). The bucket
    /// may go into debt, at most one burst deep: later requests of that key wait it out.
    func charge(key: String, limit: RateLimitConfig.Limit, amount: Int) {
        guard amount > 0 else { return }
        let now = self.now()
        self.buckets.withLockedValue { buckets in
            var bucket = Self.refilled(buckets[key], limit: limit, now: now)
            bucket.tokens = max(-Double(limit.burst), bucket.tokens - Double(amount))
            buckets[key] = bucket
        }
    }

    /// A key's bucket as of `now`: refilled at the limit's rate up to its burst (a new key starts full).
    private static func refilled(_ bucket: Bucket?, limit: RateLimitConfig.Limit, now: Duration) -> Bucket {
        guard var bucket else { return Bucket(tokens: Double(limit.burst), updated: now) }
        bucket.tokens = min(Double(limit.burst), bucket.tokens + max(0, Self.seconds(now - bucket.updated)) * limit.perSecond)
        bucket.updated = now
        return bucket
    }

    /// Makes room: drops buckets that have refilled (nothing to remember), else a tenth of them.
    private func evict(_ buckets: inout [String: Bucket], now: Duration) {
        let full = buckets.filter { entry in
            let limit = self.config.overrides[entry.key] ?? self.config.limit
            return entry.value.tokens + Self.seconds(now - entry.value.updated) * limit.perSecond >= Double(limit.burst)
        }
        if !full.isEmpty {
            for key in full.keys { buckets[key] = nil }
            return
        }
        for key in buckets.keys.prefix(max(1, buckets.count / 10)) { buckets[key] = nil }
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}

extension RateLimitConfig {
    /// The request's value of the key (nil when it has none: such requests share one bucket),
    /// and the limit for it: its override, or the default.
    func keyValueAndLimit(_ request: PolicyRequest, _ identity: PolicyIdentity) -> (value: String?, limit: Limit) {
        let value: String? =
            switch self.key {
            case .sourceIP: request.sourceIP
            case .header(let name): request.header(name)
            case .client: identity.client
            case .claim(let name): identity.claims[name]
            }
        return (value, value.flatMap { self.overrides[$0] } ?? self.limit)
    }
}

/// A rate limit: admits a request while its bucket has a token; one counted in events or bytes
/// charges them once the request is handled (before it is answered: the client's next request
/// sees the charge, on any instance for global ones).
protocol ChargedRateLimit: Policy {
    var unit: RateLimitConfig.Unit { get }
    /// The refusal, or what the request will owe once handled (nil for a limit in requests, which
    /// takes its token here).
    func admit(_ request: PolicyRequest, _ identity: PolicyIdentity) async -> (PolicyRejection?, RateLimitCharge?)
    func charge(key: String, limit: RateLimitConfig.Limit, amount: Int) async
}

extension ChargedRateLimit {
    func handle<Response: PolicyResponse>(
        _ request: PolicyRequest, _ identity: PolicyIdentity,
        next: (PolicyRequest, PolicyIdentity) async -> PolicyOutcome<Response>
    ) async -> PolicyOutcome<Response> {
        let (rejection, charge) = await self.admit(request, identity)
        if let rejection { return .answered(rejection) }
        let outcome = await next(request, identity)
        if let charge, case .handled(let response) = outcome {
            let unit = self.unit
            await response.whenFinished { events, bytes in
                await self.charge(key: charge.key, limit: charge.limit, amount: unit == .events ? events : bytes)
            }
        }
        return outcome
    }
}

/// What a request owes a rate limit counted in events or bytes, charged after the handler.
struct RateLimitCharge: Sendable {
    let key: String
    let limit: RateLimitConfig.Limit
}

extension RateLimitPolicy {
    /// Buckets kept now (for tests and operators).
    var bucketCount: Int { self.buckets.withLockedValue { $0.count } }
}

/// `rate_limit` with `scope: global`: the same token buckets, kept in Redis so every Sluice
/// instance draws from them. One Lua script per request takes a token atomically; it reads
/// Redis's own clock, so instances with skewed clocks agree. Instances share a bucket when their
/// policies have the same name and key value.
///
/// When Redis cannot answer in time, `failure_mode` decides: `open` lets the request through
/// (and logs, at most once per 10 s), `closed` answers 503.
final class GlobalRateLimitPolicy: ChargedRateLimit {
    let name: String
    let config: RateLimitConfig
    let global: RateLimitConfig.Global
    let redis: RedisClient
    private let lastWarning = NIOLockedValueBox<ContinuousClock.Instant?>(nil)
    static let logger = Logger(label: "sluice")

    var stage: PolicyStage { .rateLimit }
    var unit: RateLimitConfig.Unit { self.config.unit }

    /// KEYS[1]: the bucket; ARGV: tokens per second, burst, cost, mode (`take`: one request's
    /// tokens if there are enough; `admit`: allowed while not in debt, nothing taken; `charge`:
    /// take `cost` after the fact, at most one burst into debt). Returns {allowed, tokens left
    /// (as text: Lua numbers become integers on the way out)}.
    static let script = """
        local now = redis.call('TIME')
        local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
        local rate = tonumber(ARGV[1])
        local burst = tonumber(ARGV[2])
        local cost = tonumber(ARGV[3])
        local mode = ARGV[4]
        local state = redis.call('HMGET', KEYS[1], 'tokens', 'ms')
        local tokens = tonumber(state[1])
        local last = tonumber(state[2])
        if tokens == nil or last == nil then
          tokens = burst
          last = ms
        end
        tokens = math.min(burst, tokens + math.max(0, ms - last) * rate / 1000)
        local allowed = 0
        if mode == 'charge' then
          tokens = math.max(-burst, tokens - cost)
          allowed = 1
        elseif mode == 'admit' then
          if tokens > 0 then allowed = 1 end
        elseif tokens >= cost then
          tokens = tokens - cost
          allowed = 1
        end
        redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ms', tostring(ms))
        redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
        return {allowed, tostring(tokens)}
        """
    static let scriptSHA1: String = Hex.encode(Array(Insecure.SHA1.hash(data: Array(script.utf8))))

    init(name: String, config: RateLimitConfig, global: RateLimitConfig.Global) {
        self.name = name
        self.config = config
        self.global = global
        self.redis = RedisClient(host: global.host, port: global.port, password: global.password, timeout: global.timeout)
    }

    func admit(_ request: PolicyRequest, _ identity: PolicyIdentity) async -> (PolicyRejection?, RateLimitCharge?) {
        let (value, limit) = self.config.keyValueAndLimit(request, identity)
        // Long or odd values are hashed: the key stays short and printable.
        let part = value.map { $0.utf8.count <= 128 && $0.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F } ? $0 : Hex.encode(Array(SHA256.hash(data: Array($0.utf8)))) } ?? ""
        let key = "\(self.global.keyPrefix):rl:\(self.name):\(part)"
        let counted = self.config.unit != .requests
        let charge = counted ? RateLimitCharge(key: key, limit: limit) : nil
        let reply: RESPValue
        do {
            reply = try await self.run(key: key, limit: limit, cost: counted ? 0 : 1, mode: counted ? "admit" : "take")
        } catch {
            return (self.unavailable(error), charge)
        }
        guard case .array(let items?) = reply, items.count == 2, case .integer(let allowed) = items[0],
            let tokens = items[1].text.flatMap(Double.init)
        else {
            return (self.unavailable(RedisError("unexpected reply from the rate-limit script")), charge)
        }
        if allowed == 1 { return (nil, charge) }
        return (RateLimitPolicy.rejection(limit, wait: (1 - tokens) / limit.perSecond), nil)
    }

    private func run(key: String, limit: RateLimitConfig.Limit, cost: Int, mode: String) async throws -> RESPValue {
        let arguments = [key, String(limit.perSecond), String(limit.burst), String(cost), mode]
        do {
            return try await self.redis.command(["EVALSHA", Self.scriptSHA1, "1"] + arguments)
        } catch let error as RedisError where error.description.hasPrefix("NOSCRIPT") {
            return try await self.redis.command(["EVAL", Self.script, "1"] + arguments)
        }
    }

    /// Takes what a handled request counted (`key` is the bucket's Redis key). Redis being
    /// unavailable loses the charge (logged): the request has been served already.
    func charge(key: String, limit: RateLimitConfig.Limit, amount: Int) async {
        guard amount > 0 else { return }
        do {
            _ = try await self.run(key: key, limit: limit, cost: amount, mode: "charge")
        } catch {
            _ = self.unavailable(error)
        }
    }

    private func unavailable(_ error: any Error) -> PolicyRejection? {
        let now = ContinuousClock.now
        let warn = self.lastWarning.withLockedValue { last -> Bool in
            guard last.map({ now - $0 >= .seconds(10) }) ?? true else { return false }
            last = now
            return true
        }
        if warn {
            let mode = self.global.failOpen ? "letting requests through (failure_mode: open)" : "refusing requests (failure_mode: closed)"
            Self.logger.warning(
                "rate limit store unavailable",
                metadata: ["policy": "\(self.name)", "redis": "\(self.global.host):\(self.global.port)", "error": "\(error)", "then": "\(mode)"])
        }
        if self.global.failOpen { return nil }
        return PolicyRejection(.rateLimitUnavailable, message: "the rate limit cannot be checked right now", headers: ["retry-after": "1"])
    }
}
