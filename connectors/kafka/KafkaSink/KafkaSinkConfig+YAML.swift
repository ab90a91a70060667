import SluiceConfigReader
import SluiceCore
import Yams

extension KafkaSink {
    /// `kafka:` under a sink: a librdkafka producer.
    public static let kind = SinkKind(key: "kafka", read: KafkaSinkConfig.read) { config, context in
        try KafkaSink(config: config, context: context)
    }
}

extension KafkaSinkConfig: SinkSettings {
    public var destinations: SinkDestinations { .kafkaTopics }

    /// The bootstrap brokers; `kafka-secure` when the producer speaks TLS (security.protocol ssl/sasl_ssl).
    public var server: SinkServer {
        let security = self.properties.last { $0.name == "security.protocol" }?.value.lowercased() ?? "plaintext"
        let secure = security == "ssl" || security == "sasl_ssl"
        return SinkServer(
            host: self.bootstrapServers.joined(separator: ","), protocol: secure ? "kafka-secure" : "kafka",
            description: "Kafka brokers (idempotent producer, acks=all)")
    }

    /// Reads `kafka:` of a sink entry.
    public static func read(_ node: Node, _ path: String, _ r: ConfigReader) -> KafkaSinkConfig? {
        guard let fields = r.mapping(node, path, allowed: ["bootstrap_servers", "properties", "delivery_timeout"]) else { return nil }
        var ok = true
        let servers = r.required(fields["bootstrap_servers"], in: path, key: "bootstrap_servers") { r.stringList($0, $1) }
        if let servers, servers.isEmpty, case .sequence(let raw)? = fields["bootstrap_servers"]?.0, raw.isEmpty {
            r.error(path + ".bootstrap_servers", "at least one broker address is required")
            ok = false
        }
        var properties: [KafkaProperty] = []
        if let (n, p) = fields["properties"] {
            for entry in r.freeMapping(n, p) {
                guard let value = r.string(entry.value, entry.path) else {
                    ok = false
                    continue
                }
                if let key = KafkaSinkConfig.reservedProperties[entry.key] {
                    r.error(entry.path, "set this with \(path).\(key), not as a librdkafka property")
                    ok = false
                    continue
                }
                let property = KafkaProperty(entry.key, value)
                if let problem = KafkaSinkConfig.check(property) {
                    r.error(entry.path, "librdkafka rejects this property: \(problem)")
                    ok = false
                    continue
                }
                properties.append(property)
            }
        }
        var timeout = Duration.seconds(30)
        if let (n, p) = fields["delivery_timeout"] {
            if let value = r.duration(n, p, min: .milliseconds(1)) { timeout = value } else { ok = false }
        }
        // librdkafka refuses at start-up a linger as long as the delivery timeout; say so now.
        for property in properties where property.name == "linger.ms" || property.name == "queue.buffering.max.ms" {
            if let linger = Double(property.value), Duration.milliseconds(Int64(linger)) >= timeout {
                r.error("\(path).properties.\(property.name)", "must be shorter than \(path).delivery_timeout (\(DurationText.format(timeout)))")
                ok = false
            }
        }
        guard ok, let servers, !servers.isEmpty else { return nil }
        return KafkaSinkConfig(bootstrapServers: servers, properties: properties, deliveryTimeout: timeout)
    }
}
