import CRdKafka

/// A validated Kafka sink configuration (`sinks[].kafka`).
public struct KafkaSinkConfig: Sendable, Equatable {
    /// `host:port` of the brokers used for the first connection.
    public var bootstrapServers: [String]
    /// librdkafka properties set by the user; they override `defaultProperties`.
    public var properties: [KafkaProperty]
    /// How long librdkafka may try to deliver one event before reporting it failed
    /// (librdkafka `message.timeout.ms`).
    public var deliveryTimeout: Duration

    public init(bootstrapServers: [String], properties: [KafkaProperty] = [], deliveryTimeout: Duration = .seconds(30)) {
        self.bootstrapServers = bootstrapServers
        self.properties = properties
        self.deliveryTimeout = deliveryTimeout
    }

    /// The producer settings Sluice uses unless a property overrides them: durable
    /// (`acks=all`, idempotent), compressed, and with a bounded local queue.
    public static let defaultProperties: [KafkaProperty] = [
        KafkaProperty("acks", "all"),
        KafkaProperty("enable.idempotence", "true"),
        KafkaProperty("compression.type", "lz4"),
        KafkaProperty("linger.ms", "5"),
    ]

    /// librdkafka's local queue, sized to hold twice the sink's in-flight budget so that the
    /// budget, not a full queue, is what slows producers down. (librdkafka's own default is
    /// 1 GiB, more than a gateway should hold per sink.)
    public static func queueProperties(maxInFlightBytes: Int, maxInFlightEvents: Int) -> [KafkaProperty] {
        [
            KafkaProperty("queue.buffering.max.kbytes", String(min(max(2 * maxInFlightBytes / 1024, 1024), 2_097_151))),
            KafkaProperty("queue.buffering.max.messages", String(min(max(2 * maxInFlightEvents, 1000), 2_147_483_647))),
        ]
    }

    /// Properties that have their own config key and may not be set through `properties`.
    public static let reservedProperties: [String: String] = [
        "bootstrap.servers": "bootstrap_servers",
        "metadata.broker.list": "bootstrap_servers",
        "message.timeout.ms": "delivery_timeout",
        "delivery.timeout.ms": "delivery_timeout",
    ]

    /// Every property handed to librdkafka, in the order it is applied.
    public func effectiveProperties(maxInFlightBytes: Int, maxInFlightEvents: Int) -> [KafkaProperty] {
        var result = Self.defaultProperties
        result.append(contentsOf: Self.queueProperties(maxInFlightBytes: maxInFlightBytes, maxInFlightEvents: maxInFlightEvents))
        result.append(KafkaProperty("bootstrap.servers", self.bootstrapServers.joined(separator: ",")))
        let timeoutMS = self.deliveryTimeout.components.seconds * 1000
            + self.deliveryTimeout.components.attoseconds / 1_000_000_000_000_000
        result.append(KafkaProperty("message.timeout.ms", String(timeoutMS)))
        result.append(contentsOf: self.properties)
        return result
    }

    /// librdkafka's default for property `name` (nil when it has none to show).
    public static func defaultValue(of name: String) -> String? {
        guard let conf = rd_kafka_conf_new() else { return nil }
        defer { rd_kafka_conf_destroy(conf) }
        var size = 0
        guard rd_kafka_conf_get(conf, name, nil, &size) == RD_KAFKA_CONF_OK, size > 0 else { return nil }
        var buffer = [CChar](repeating: 0, count: size)
        guard rd_kafka_conf_get(conf, name, &buffer, &size) == RD_KAFKA_CONF_OK else { return nil }
        return String(cBuffer: buffer)
    }

    /// Checks one property against librdkafka itself; returns librdkafka's complaint, or nil.
    public static func check(_ property: KafkaProperty) -> String? {
        guard let conf = rd_kafka_conf_new() else { return "librdkafka could not allocate a configuration" }
        defer { rd_kafka_conf_destroy(conf) }
        return apply(property, to: conf)
    }

    static func apply(_ property: KafkaProperty, to conf: OpaquePointer) -> String? {
        var errstr = [CChar](repeating: 0, count: 512)
        let result = rd_kafka_conf_set(conf, property.name, property.value, &errstr, errstr.count)
        switch result {
        case RD_KAFKA_CONF_OK:
            return nil
        default:
            return String(cBuffer: errstr)
        }
    }
}

/// One librdkafka configuration property.
public struct KafkaProperty: Sendable, Equatable {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }

    /// Whether the value should never be printed (passwords, keys, tokens).
    public var isSecret: Bool {
        let name = self.name.lowercased()
        return name.contains("password") || name.contains("secret") || name.hasSuffix(".key")
            || name.contains("token") || name.contains("jaas")
    }
}

extension String {
    /// The text of a NUL-terminated buffer that librdkafka filled in.
    init(cBuffer: [CChar]) {
        self = String(decoding: cBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
