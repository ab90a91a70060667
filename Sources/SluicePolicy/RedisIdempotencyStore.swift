import Crypto
import SluiceCore

/// Idempotency keys in Redis, shared by every instance using it and kept across restarts. A key
/// is `{key_prefix}:idem:{sha256 of route, identity and key}`; its value is `P{token}` while the
/// request that claimed it runs (expiring after `in_flight_timeout`, so a dead instance's claim
/// ends), then the kept answer (`IdempotentRecord.encoded`) for the window. Each step is one
/// Lua script, so two instances never both claim a key, and an instance whose claim ran out and
/// was taken over cannot overwrite the newer one.
public final class RedisIdempotencyStore: IdempotencyStore {
    private let redis: RedisClient
    private let keyPrefix: String
    private let window: Duration
    private let inFlightTimeout: Duration

    public init(config: RedisConfig, window: Duration, inFlightTimeout: Duration) {
        self.redis = RedisClient(host: config.host, port: config.port, password: config.password, timeout: config.timeout)
        self.keyPrefix = config.keyPrefix
        self.window = window
        self.inFlightTimeout = inFlightTimeout
    }

    /// KEYS[1] the key; ARGV[1] the claim value, ARGV[2] its lifetime (ms). The value held, or
    /// "CLAIMED".
    static let claimScript = """
        local held = redis.call('GET', KEYS[1])
        if held then return held end
        redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
        return 'CLAIMED'
        """
    /// KEYS[1] the key; ARGV[1] the claim value; ARGV[2] the answer, ARGV[3] its lifetime (ms).
    static let completeScript = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then
          redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
          return 1
        end
        return 0
        """
    /// KEYS[1] the key; ARGV[1] the claim value.
    static let releaseScript = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then
          redis.call('DEL', KEYS[1])
          return 1
        end
        return 0
        """

    private func redisKey(_ key: String) -> String {
        "\(self.keyPrefix):idem:\(Hex.encode(SHA256.hash(data: Array(key.utf8))))"
    }

    public func claim(_ key: String) async throws -> IdempotencyClaim {
        let token = Hex.encode(SystemRandomNumberGenerator.bytes(16))
        let claimValue = "P" + token
        let reply = try await self.run(Self.claimScript, key: self.redisKey(key), [claimValue, String(Self.milliseconds(self.inFlightTimeout))])
        guard let text = reply.text else { throw RedisError("unexpected reply from the idempotency script") }
        if text == "CLAIMED" { return .claimed(IdempotencyTicket(key: key, token: token)) }
        if text.hasPrefix("P") { return .inFlight }
        guard let record = IdempotentRecord.decode(text) else { throw RedisError("an idempotency key in Redis holds something unreadable") }
        return .completed(record)
    }

    public func complete(_ ticket: IdempotencyTicket, with record: IdempotentRecord) async throws {
        _ = try await self.run(
            Self.completeScript, key: self.redisKey(ticket.key), ["P" + ticket.token, record.encoded(), String(Self.milliseconds(self.window))])
    }

    public func release(_ ticket: IdempotencyTicket) async throws {
        _ = try await self.run(Self.releaseScript, key: self.redisKey(ticket.key), ["P" + ticket.token])
    }

    private func run(_ script: String, key: String, _ arguments: [String]) async throws -> RESPValue {
        try await self.redis.command(["EVAL", script, "1", key] + arguments)
    }

    static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return max(1, seconds * 1000 + attoseconds / 1_000_000_000_000_000)
    }
}

extension SystemRandomNumberGenerator {
    static func bytes(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }
}
