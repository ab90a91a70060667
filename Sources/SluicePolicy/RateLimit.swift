import NIOConcurrencyHelpers

/// `rate_limit` with `scope: local`: a token bucket per key value, in this process.
///
/// A bucket holds up to `burst` tokens and gains `rate` per second; a request takes one or is
/// answered 429 with `Retry-After` (whole seconds until a token is there) and the `RateLimit-*`
/// fields of draft-ietf-httpapi-ratelimit-headers. A key value with an override uses only its own
/// limit. Requests without the key's value (no such header, no client) share one bucket.
final class RateLimitPolicy: Policy {
    let name: String
    let config: RateLimitConfig
    let now: @Sendable () -> Duration
    private let buckets = NIOLockedValueBox<[String: Bucket]>([:])

    struct Bucket {
        var tokens: Double
        var updated: Duration
    }

    var stage: PolicyStage { .rateLimit }

    init(name: String, config: RateLimitConfig, now: @escaping @Sendable () -> Duration) {
        self.name = name
        self.config = config
        self.now = now
    }

    func keyValue(_ request: PolicyRequest, _ identity: PolicyIdentity) -> String? {
        switch self.config.key {
        case .sourceIP: return request.sourceIP
        case .header(let name): return request.header(name)
        case .client: return identity.client
        case .claim(let name): return identity.claims[name]
        }
    }

    func evaluate(_ request: PolicyRequest, identity: inout PolicyIdentity) -> PolicyRejection? {
        let value = self.keyValue(request, identity)
        let key = value ?? ""
        let limit = value.flatMap { self.config.overrides[$0] } ?? self.config.limit
        let now = self.now()
        let wait: Double? = self.buckets.withLockedValue { buckets in
            var bucket = buckets[key] ?? Bucket(tokens: Double(limit.burst), updated: now)
            let elapsed = Self.seconds(now - bucket.updated)
            bucket.tokens = min(Double(limit.burst), bucket.tokens + max(0, elapsed) * limit.perSecond)
            bucket.updated = now
            defer {
                if buckets[key] == nil, buckets.count >= self.config.maxKeys { self.evict(&buckets, now: now) }
                buckets[key] = bucket
            }
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                return nil
            }
            return (1 - bucket.tokens) / limit.perSecond
        }
        guard let wait else { return nil }
        let retry = max(1, Int(wait.rounded(.up)))
        let window = max(1, Int((Double(limit.burst) / limit.perSecond).rounded(.up)))
        return PolicyRejection(
            status: 429, code: "rate_limited", message: "rate limit \(limit.text) exceeded; retry in \(retry)s",
            headers: [
                "retry-after": String(retry), "ratelimit-limit": String(limit.burst), "ratelimit-remaining": "0",
                "ratelimit-reset": String(retry), "ratelimit-policy": "\(limit.burst);w=\(window)",
            ])
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

extension RateLimitPolicy {
    /// Buckets kept now (for tests and operators).
    var bucketCount: Int { self.buckets.withLockedValue { $0.count } }
}
