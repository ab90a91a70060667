import Crypto
import NIOConcurrencyHelpers
import NIOCore
import SluiceCore

/// `idempotency:` on an ingest route (the IETF httpapi Idempotency-Key draft): a request that
/// carries `Idempotency-Key` is answered once; a retry with the same key and the same request
/// gets that answer again without producing again.
public struct IdempotencyConfig: Sendable, Equatable {
    /// How long a key is remembered, from the first request's answer.
    public var window: Duration
    public var store: Store
    /// Keys remembered at once (in the memory store): past it the oldest answered key is
    /// forgotten; when every one is still in flight, new keys get 503.
    public var maxKeys: Int
    /// Bytes of kept answers at once (in the memory store): past it the oldest are forgotten.
    public var maxBytes: Int
    /// An answer body larger than this is not kept: a replay repeats its status only.
    public var maxResponseBytes: Int
    /// How long a claimed key stays "in flight" in Redis when its instance never answers (it
    /// died): then a retry runs again.
    public var inFlightTimeout: Duration
    /// Refuse requests without the header (400) instead of running them unprotected.
    public var required: Bool

    public enum Store: Sendable, Equatable {
        /// In this process: lost on restart, not shared between instances.
        case memory
        /// In Redis: shared by every instance that uses it, kept across restarts.
        case redis(RedisConfig)
    }

    public init(
        window: Duration = Self.defaultWindow, store: Store = .memory, maxKeys: Int = Self.defaultMaxKeys, maxBytes: Int = Self.defaultMaxBytes,
        maxResponseBytes: Int = Self.defaultMaxResponseBytes, inFlightTimeout: Duration = Self.defaultInFlightTimeout, required: Bool = false
    ) {
        self.window = window
        self.store = store
        self.maxKeys = maxKeys
        self.maxBytes = maxBytes
        self.maxResponseBytes = maxResponseBytes
        self.inFlightTimeout = inFlightTimeout
        self.required = required
    }

    public static let defaultWindow = Duration.seconds(24 * 3600)
    public static let defaultMaxKeys = 100_000
    public static let defaultMaxBytes = 64 * 1024 * 1024
    public static let defaultMaxResponseBytes = 64 * 1024
    public static let defaultInFlightTimeout = Duration.seconds(300)
    /// Longest key accepted.
    public static let maxKeyLength = 255
    /// Largest `max_response_bytes` with the Redis store (a kept answer is one Redis value, base64).
    public static let maxRedisResponseBytes = 512 * 1024
}

/// The `Idempotency-Key` request header.
public enum IdempotencyKey {
    public static let headerName = "idempotency-key"

    /// The key in a header value: an RFC 8941 string (`"…"`, as the draft defines it) or, as
    /// most clients send it, a bare token of visible ASCII; 1 to 255 characters.
    public static func parse(_ value: String) -> Result<String, IdempotencyKeyProblem> {
        let bytes = Array(value.utf8)
        var start = 0
        var end = bytes.count
        while start < end, bytes[start] == 0x20 || bytes[start] == 0x09 { start += 1 }
        while end > start, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 { end -= 1 }
        var key: [UInt8] = []
        if start < end, bytes[start] == UInt8(ascii: "\"") {
            var i = start + 1
            var closed = false
            while i < end {
                let byte = bytes[i]
                if byte == UInt8(ascii: "\\") {
                    guard i + 1 < end, bytes[i + 1] == UInt8(ascii: "\"") || bytes[i + 1] == UInt8(ascii: "\\") else {
                        return .failure(.init("a quoted Idempotency-Key may escape only \" and \\"))
                    }
                    key.append(bytes[i + 1])
                    i += 2
                    continue
                }
                if byte == UInt8(ascii: "\"") {
                    closed = i == end - 1
                    if !closed { return .failure(.init("the Idempotency-Key string ends before the header does")) }
                    break
                }
                guard byte >= 0x20, byte < 0x7F else { return .failure(.init("an Idempotency-Key holds printable ASCII only")) }
                key.append(byte)
                i += 1
            }
            guard closed else { return .failure(.init("the quoted Idempotency-Key is not closed")) }
        } else {
            for byte in bytes[start..<end] {
                guard byte > 0x20, byte < 0x7F, byte != UInt8(ascii: "\"") else {
                    return .failure(.init("an Idempotency-Key holds visible ASCII only (quote it as a string to use spaces)"))
                }
                key.append(byte)
            }
        }
        guard !key.isEmpty else { return .failure(.init("the Idempotency-Key is empty")) }
        guard key.count <= IdempotencyConfig.maxKeyLength else {
            return .failure(.init("the Idempotency-Key is longer than \(IdempotencyConfig.maxKeyLength) characters"))
        }
        return .success(String(decoding: key, as: UTF8.self))
    }
}

public struct IdempotencyKeyProblem: Error, Sendable, Equatable {
    public var message: String
    init(_ message: String) { self.message = message }
}

/// What identifies a request beyond its key: SHA-256 over its method, target, the headers that
/// shape its events and its body, fed as the body streams. Each field is length-prefixed, so
/// moving bytes between fields changes the digest.
public struct RequestFingerprint: Sendable {
    private var hash = SHA256()

    public init() {}

    public mutating func add(field: String) {
        var length = UInt64(field.utf8.count).bigEndian
        withUnsafeBytes(of: &length) { self.hash.update(bufferPointer: $0) }
        self.hash.update(data: Array(field.utf8))
    }

    /// Body bytes, in the order they arrive.
    public mutating func add(body: ByteBuffer) {
        body.withUnsafeReadableBytes { self.hash.update(bufferPointer: $0) }
    }

    /// The digest, lower-case hex.
    public func finish() -> String {
        Hex.encode(self.hash.finalize())
    }
}

/// A kept answer: what a replay sends.
public struct IdempotentRecord: Sendable, Equatable {
    /// The first request's fingerprint (hex SHA-256).
    public var fingerprint: String
    public var status: Int
    public var headers: [Header]
    /// nil when the body was larger than `max_response_bytes` (or sent in parts).
    public var body: [UInt8]?
    /// The size of the first answer's body.
    public var bodyBytes: Int

    public struct Header: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    public init(fingerprint: String, status: Int, headers: [Header], body: [UInt8]?, bodyBytes: Int) {
        self.fingerprint = fingerprint
        self.status = status
        self.headers = headers
        self.body = body
        self.bodyBytes = bodyBytes
    }

    /// Bytes it holds in memory, about.
    var footprint: Int {
        128 + self.fingerprint.utf8.count + (self.body?.count ?? 0) + self.headers.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 32 }
    }

    /// One line of text (the Redis value): `D1 <fingerprint> <status> <bodyBytes> <kept 0|1>`,
    /// then a line per header (`name: value`), an empty line, and the body in base64.
    public func encoded() -> String {
        var text = "D1 \(self.fingerprint) \(self.status) \(self.bodyBytes) \(self.body == nil ? 0 : 1)\n"
        for header in self.headers { text += "\(header.name): \(header.value)\n" }
        text += "\n"
        if let body = self.body {
            var out: [UInt8] = []
            out.reserveCapacity((body.count + 2) / 3 * 4)
            body.withUnsafeBytes { Base64.append($0, to: &out) }
            text += String(decoding: out, as: UTF8.self)
        }
        return text
    }

    public static func decode(_ text: String) -> IdempotentRecord? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard let first = lines.first else { return nil }
        let fields = first.split(separator: " ")
        guard fields.count == 5, fields[0] == "D1", fields[1].utf8.count == 64, let status = Int(fields[2]), (100..<600).contains(status),
            let bodyBytes = Int(fields[3]), bodyBytes >= 0, fields[4] == "0" || fields[4] == "1"
        else { return nil }
        var headers: [Header] = []
        var index = 1
        while index < lines.count, !lines[index].isEmpty {
            guard let colon = lines[index].firstIndex(of: ":") else { return nil }
            let name = String(lines[index][..<colon])
            let value = String(lines[index][lines[index].index(after: colon)...].dropFirst())
            headers.append(Header(name: name, value: value))
            index += 1
        }
        guard index < lines.count else { return nil }
        var body: [UInt8]?
        if fields[4] == "1" {
            let encoded = lines[(index + 1)...].joined(separator: "\n")
            guard let decoded = Array(encoded.utf8).withUnsafeBytes({ Base64.decode($0) }) else { return nil }
            body = decoded
        }
        return IdempotentRecord(fingerprint: String(fields[1]), status: status, headers: headers, body: body, bodyBytes: bodyBytes)
    }
}

/// What a store says about a key a request brings.
public enum IdempotencyClaim: Sendable {
    /// New: the request runs, and its answer is kept with `complete` (or the key let go with `release`).
    case claimed(IdempotencyTicket)
    /// Another request with this key has not been answered yet.
    case inFlight
    /// Answered before: replay it (same fingerprint) or refuse (another).
    case completed(IdempotentRecord)
    /// The store holds as many keys in flight as it may.
    case full
}

/// A claim on a key, for the request that holds it.
public struct IdempotencyTicket: Sendable {
    public let key: String
    let token: String
}

/// Where keys and their answers live. `claim` throws when the store cannot be reached.
public protocol IdempotencyStore: Sendable {
    func claim(_ key: String) async throws -> IdempotencyClaim
    /// Keeps the answer for the window (from now).
    func complete(_ ticket: IdempotencyTicket, with record: IdempotentRecord) async throws
    /// Forgets the key: the next request with it runs.
    func release(_ ticket: IdempotencyTicket) async throws
}

/// Keys in this process's memory, bounded by `max_keys` and `max_bytes`: past either, the
/// oldest answered keys are forgotten first; keys in flight are never forgotten.
public final class MemoryIdempotencyStore: IdempotencyStore {
    private struct Entry {
        var token: UInt64
        var record: IdempotentRecord?
        var expires: Duration
        var footprint: Int
    }

    private struct State {
        var entries: [String: Entry] = [:]
        /// Answered keys in the order they were answered (so in expiry order); a key replaced
        /// or forgotten since leaves a stale element, skipped by token.
        var answered = CircularBuffer<(key: String, token: UInt64)>()
        var bytes = 0
        var nextToken: UInt64 = 1
        var forgotten = 0
    }

    private let state = NIOLockedValueBox(State())
    private let window: Duration
    private let maxKeys: Int
    private let maxBytes: Int
    private let now: @Sendable () -> Duration

    public init(window: Duration, maxKeys: Int, maxBytes: Int, now: @escaping @Sendable () -> Duration = MemoryIdempotencyStore.monotonicNow) {
        self.window = window
        self.maxKeys = maxKeys
        self.maxBytes = maxBytes
        self.now = now
    }

    public static func monotonicNow() -> Duration {
        ContinuousClock.now - Self.origin
    }
    private static let origin = ContinuousClock.now

    /// Answered keys forgotten before their window ended (to stay within the bounds).
    public var forgottenEarly: Int { self.state.withLockedValue { $0.forgotten } }
    /// Keys held now, answered or in flight.
    public var count: Int { self.state.withLockedValue { $0.entries.count } }

    public func claim(_ key: String) async -> IdempotencyClaim {
        let now = self.now()
        return self.state.withLockedValue { state in
            Self.expire(&state, now: now)
            if let entry = state.entries[key] {
                if let record = entry.record { return .completed(record) }
                return .inFlight
            }
            if state.entries.count >= self.maxKeys {
                Self.forgetOldest(&state)
                if state.entries.count >= self.maxKeys { return .full }
            }
            let token = state.nextToken
            state.nextToken += 1
            let footprint = 96 + key.utf8.count
            state.entries[key] = Entry(token: token, record: nil, expires: .zero, footprint: footprint)
            state.bytes += footprint
            return .claimed(IdempotencyTicket(key: key, token: String(token)))
        }
    }

    public func complete(_ ticket: IdempotencyTicket, with record: IdempotentRecord) async {
        let now = self.now()
        self.state.withLockedValue { state in
            guard let token = UInt64(ticket.token), var entry = state.entries[ticket.key], entry.token == token, entry.record == nil else { return }
            entry.record = record
            entry.expires = now + self.window
            state.bytes += record.footprint
            entry.footprint += record.footprint
            state.entries[ticket.key] = entry
            state.answered.append((ticket.key, token))
            while state.bytes > self.maxBytes, !state.answered.isEmpty { Self.forgetOldest(&state) }
        }
    }

    public func release(_ ticket: IdempotencyTicket) async {
        self.state.withLockedValue { state in
            guard let token = UInt64(ticket.token), let entry = state.entries[ticket.key], entry.token == token, entry.record == nil else { return }
            state.entries[ticket.key] = nil
            state.bytes -= entry.footprint
        }
    }

    private static func expire(_ state: inout State, now: Duration) {
        while let first = state.answered.first {
            guard let entry = state.entries[first.key], entry.token == first.token else {
                state.answered.removeFirst()
                continue
            }
            guard entry.expires <= now else { return }
            state.answered.removeFirst()
            state.entries[first.key] = nil
            state.bytes -= entry.footprint
        }
    }

    /// Forgets the oldest answered key still held (none: nothing to do).
    private static func forgetOldest(_ state: inout State) {
        while let first = state.answered.popFirst() {
            guard let entry = state.entries[first.key], entry.token == first.token else { continue }
            state.entries[first.key] = nil
            state.bytes -= entry.footprint
            state.forgotten += 1
            return
        }
    }
}
