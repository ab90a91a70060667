import CoreMetrics
import NIOConcurrencyHelpers
import SluiceCore

/// librdkafka's statistics (`statistics.interval.ms`, JSON handed to the stats callback on the
/// poll thread) turned into the sink's `sluice_kafka_*` series. Parsed by a small JSON reader of
/// its own: no Foundation on the poll thread.
final class KafkaStatistics: Sendable {
    static let brokerRTT = MetricDescriptor(
        "sluice_kafka_broker_rtt_seconds", .summary, labels: ["sink", "broker"],
        help: "Round-trip time of requests to a broker over librdkafka's last statistics window (quantiles, sum and count of that window).")
    static let brokerThrottle = MetricDescriptor(
        "sluice_kafka_broker_throttle_seconds", .gauge, labels: ["sink", "broker"],
        help: "Average time the broker throttled the producer over librdkafka's last statistics window.")
    static let brokerTransmitErrors = MetricDescriptor(
        "sluice_kafka_broker_transmit_errors_total", .counter, labels: ["sink", "broker"],
        help: "Requests to the broker that failed to be sent (librdkafka txerrs).")
    static let brokerTransmitRetries = MetricDescriptor(
        "sluice_kafka_broker_transmit_retries_total", .counter, labels: ["sink", "broker"],
        help: "Requests librdkafka sent to the broker again (txretries).")
    static let queueMessages = MetricDescriptor(
        "sluice_kafka_queue_messages", .gauge, labels: ["sink"],
        help: "Messages in the producer's queues, waiting or in flight (librdkafka msg_cnt).")
    static let batchEvents = MetricDescriptor(
        "sluice_kafka_batch_events_average", .gauge, labels: ["sink"],
        help: "Average events per produce batch over librdkafka's last statistics window (all topics).")
    static let batchBytes = MetricDescriptor(
        "sluice_kafka_batch_bytes_average", .gauge, labels: ["sink"],
        help: "Average bytes per produce batch over librdkafka's last statistics window (all topics).")

    /// Every series this connector exports.
    static let all = [brokerRTT, brokerThrottle, brokerTransmitErrors, brokerTransmitRetries, queueMessages, batchEvents, batchBytes]

    /// The interval asked of librdkafka when metrics are on and the configuration sets none.
    static let defaultIntervalMilliseconds = 5000

    private struct Broker {
        let rtt: WindowSummary
        let throttle: Gauge
        let transmitErrors: Counter
        let transmitRetries: Counter
        var countedErrors = 0
        var countedRetries = 0
    }

    private let sink: String
    private let factory: any MetricsFactory
    private let queue: Gauge
    private let batchEvents: Gauge
    private let batchBytes: Gauge
    /// By broker name; brokers come from the cluster's metadata (bounded by its size).
    private let brokers = NIOLockedValueBox<[String: Broker]>([:])

    init(sink: String, factory: any MetricsFactory) {
        self.sink = sink
        self.factory = factory
        self.queue = Self.queueMessages.gauge(sink, factory: factory)
        self.batchEvents = Self.batchEvents.gauge(sink, factory: factory)
        self.batchBytes = Self.batchBytes.gauge(sink, factory: factory)
    }

    /// A running total from the document as an Int: 0 when absent, negative or not a number,
    /// at most Int.max (converting a larger Double would trap; found by fuzzing).
    static func total(_ value: Double?) -> Int {
        guard let value, value.isFinite, value > 0 else { return 0 }
        return value >= Double(Int.max) ? Int.max : Int(value)
    }

    /// Takes one statistics document. Returns false if it is not the JSON librdkafka sends.
    @discardableResult
    func update(json: UnsafeRawBufferPointer) -> Bool {
        var reader = TinyJSON(json)
        guard let root = reader.parse() else { return false }
        if let count = root["msg_cnt"]?.number { self.queue.record(count) }

        var batches = 0.0
        var batchEventSum = 0.0
        var batchByteSum = 0.0
        for (_, topic) in root["topics"]?.members ?? [] {
            if let count = topic["batchcnt"]?["cnt"]?.number, count > 0 {
                batches += count
                batchEventSum += topic["batchcnt"]?["sum"]?.number ?? 0
                batchByteSum += topic["batchsize"]?["sum"]?.number ?? 0
            }
        }
        if batches > 0 {
            self.batchEvents.record(batchEventSum / batches)
            self.batchBytes.record(batchByteSum / batches)
        }

        for (name, broker) in root["brokers"]?.members ?? [] {
            // Bootstrap entries (node id -1) stand for addresses, not brokers.
            guard let node = broker["nodeid"]?.number, node >= 0 else { continue }
            let rtt = broker["rtt"]
            let throttle = broker["throttle"]
            let errors = Self.total(broker["txerrs"]?.number)
            let retries = Self.total(broker["txretries"]?.number)
            let (gauges, newErrors, newRetries) = self.brokers.withLockedValue { brokers -> (Broker, Int, Int) in
                var entry = brokers[name] ?? self.makeBroker(name)
                // librdkafka's totals restart with a new producer (after a fatal error).
                let newErrors = errors >= entry.countedErrors ? errors - entry.countedErrors : errors
                let newRetries = retries >= entry.countedRetries ? retries - entry.countedRetries : retries
                entry.countedErrors = errors
                entry.countedRetries = retries
                brokers[name] = entry
                return (entry, newErrors, newRetries)
            }
            // librdkafka reports microseconds.
            if let rtt, let count = rtt["cnt"]?.number, count > 0 {
                let quantiles = [("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99")].compactMap { quantile, field in
                    rtt[field]?.number.map { (quantile: quantile, value: $0 / 1_000_000) }
                }
                gauges.rtt.set(.init(quantiles: quantiles, sum: (rtt["sum"]?.number ?? 0) / 1_000_000, count: count))
            }
            if let average = throttle?["avg"]?.number { gauges.throttle.record(average / 1000) }
            if newErrors > 0 { gauges.transmitErrors.increment(by: newErrors) }
            if newRetries > 0 { gauges.transmitRetries.increment(by: newRetries) }
        }
        return true
    }

    private func makeBroker(_ name: String) -> Broker {
        Broker(
            rtt: Self.brokerRTT.summary(self.sink, name, factory: self.factory),
            throttle: Self.brokerThrottle.gauge(self.sink, name, factory: self.factory),
            transmitErrors: Self.brokerTransmitErrors.counter(self.sink, name, factory: self.factory),
            transmitRetries: Self.brokerTransmitRetries.counter(self.sink, name, factory: self.factory))
    }
}

/// A JSON value, as far as the statistics need: numbers, strings, objects, arrays.
indirect enum JSONValue {
    case number(Double)
    case string(String)
    case bool(Bool)
    case null
    case array([JSONValue])
    case object([(String, JSONValue)])

    subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.0 == key }?.1
    }

    var number: Double? {
        if case .number(let value) = self { return value }
        return nil
    }

    var members: [(String, JSONValue)] {
        if case .object(let members) = self { return members }
        return []
    }
}

/// A small recursive-descent JSON reader (RFC 8259's grammar, UTF-8 checked), bounded in
/// nesting (`maxDepth`). Returns nil for anything malformed. Fuzzed against Sluice's JSON
/// validator (scripts/fuzz.sh kafka_statistics).
struct TinyJSON {
    private let bytes: UnsafeRawBufferPointer
    private var index = 0
    private var depth = 0
    static let maxDepth = 32

    init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    mutating func parse() -> JSONValue? {
        guard let value = self.value() else { return nil }
        self.skipSpace()
        return self.index == self.bytes.count ? value : nil
    }

    private mutating func skipSpace() {
        while self.index < self.bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(self.bytes[self.index]) { self.index += 1 }
    }

    private mutating func value() -> JSONValue? {
        self.skipSpace()
        guard self.index < self.bytes.count else { return nil }
        switch self.bytes[self.index] {
        case UInt8(ascii: "{"): return self.object()
        case UInt8(ascii: "["): return self.array()
        case UInt8(ascii: "\""): return self.string().map { .string($0) }
        case UInt8(ascii: "t"): return self.literal("true", .bool(true))
        case UInt8(ascii: "f"): return self.literal("false", .bool(false))
        case UInt8(ascii: "n"): return self.literal("null", .null)
        default: return self.number()
        }
    }

    private mutating func literal(_ word: String, _ value: JSONValue) -> JSONValue? {
        let utf8 = Array(word.utf8)
        guard self.index + utf8.count <= self.bytes.count else { return nil }
        for (offset, byte) in utf8.enumerated() where self.bytes[self.index + offset] != byte { return nil }
        self.index += utf8.count
        return value
    }

    private mutating func object() -> JSONValue? {
        guard self.depth < Self.maxDepth else { return nil }
        self.depth += 1
        defer { self.depth -= 1 }
        self.index += 1
        var members: [(String, JSONValue)] = []
        self.skipSpace()
        if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "}") {
            self.index += 1
            return .object(members)
        }
        while true {
            self.skipSpace()
            guard self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "\""), let key = self.string() else { return nil }
            self.skipSpace()
            guard self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: ":") else { return nil }
            self.index += 1
            guard let value = self.value() else { return nil }
            members.append((key, value))
            self.skipSpace()
            guard self.index < self.bytes.count else { return nil }
            if self.bytes[self.index] == UInt8(ascii: ",") {
                self.index += 1
                continue
            }
            guard self.bytes[self.index] == UInt8(ascii: "}") else { return nil }
            self.index += 1
            return .object(members)
        }
    }

    private mutating func array() -> JSONValue? {
        guard self.depth < Self.maxDepth else { return nil }
        self.depth += 1
        defer { self.depth -= 1 }
        self.index += 1
        var elements: [JSONValue] = []
        self.skipSpace()
        if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "]") {
            self.index += 1
            return .array(elements)
        }
        while true {
            guard let value = self.value() else { return nil }
            elements.append(value)
            self.skipSpace()
            guard self.index < self.bytes.count else { return nil }
            if self.bytes[self.index] == UInt8(ascii: ",") {
                self.index += 1
                continue
            }
            guard self.bytes[self.index] == UInt8(ascii: "]") else { return nil }
            self.index += 1
            return .array(elements)
        }
    }

    /// A string: escapes decoded (`\uXXXX` too, surrogate pairs joined), control characters
    /// and invalid UTF-8 refused.
    private mutating func string() -> String? {
        self.index += 1
        var out: [UInt8] = []
        while self.index < self.bytes.count {
            let byte = self.bytes[self.index]
            self.index += 1
            switch byte {
            case UInt8(ascii: "\""):
                return String(validating: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard self.index < self.bytes.count else { return nil }
                let escaped = self.bytes[self.index]
                self.index += 1
                if let byte = JSONString.unescaped(escaped) {
                    out.append(byte)
                    continue
                }
                switch escaped {
                case UInt8(ascii: "u"):
                    guard var scalar = self.hex4() else { return nil }
                    // A lone surrogate is valid JSON (RFC 8259 allows it) but no character:
                    // it reads as U+FFFD.
                    if (0xD800..<0xDC00).contains(scalar), self.index + 5 < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "\\"),
                        self.bytes[self.index + 1] == UInt8(ascii: "u")
                    {
                        let mark = self.index
                        self.index += 2
                        if let low = self.hex4(), (0xDC00..<0xE000).contains(low) {
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        } else {
                            self.index = mark
                        }
                    }
                    if (0xD800..<0xE000).contains(scalar) { scalar = 0xFFFD }
                    guard let unicode = Unicode.Scalar(scalar) else { return nil }
                    out.append(contentsOf: Array(String(Character(unicode)).utf8))
                default:
                    return nil
                }
            case 0..<0x20:
                return nil
            default:
                out.append(byte)
            }
        }
        return nil
    }

    private mutating func hex4() -> UInt32? {
        guard self.index + 4 <= self.bytes.count else { return nil }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = self.bytes[self.index]
            self.index += 1
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    /// A number as JSON writes it: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    private mutating func number() -> JSONValue? {
        let start = self.index
        func digits() -> Int {
            var count = 0
            while self.index < self.bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self.bytes[self.index]) {
                self.index += 1
                count += 1
            }
            return count
        }
        if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "-") { self.index += 1 }
        guard self.index < self.bytes.count else { return nil }
        if self.bytes[self.index] == UInt8(ascii: "0") {
            self.index += 1
        } else if digits() == 0 {
            return nil
        }
        if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: ".") {
            self.index += 1
            guard digits() > 0 else { return nil }
        }
        if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "e") || self.bytes[self.index] == UInt8(ascii: "E") {
            self.index += 1
            if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "+") || self.bytes[self.index] == UInt8(ascii: "-") {
                self.index += 1
            }
            guard digits() > 0 else { return nil }
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: self.bytes[start..<self.index]), as: UTF8.self)
        // Out of Double's range (1e999) is still JSON: it reads as infinity.
        return .number(Double(text) ?? (text.hasPrefix("-") ? -.infinity : .infinity))
    }
}
