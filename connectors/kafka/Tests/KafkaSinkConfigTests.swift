import KafkaSink
import Testing

@Suite struct KafkaSinkConfigTests {
    @Test func defaultsAreDurableAndUserPropertiesWin() {
        let config = KafkaSinkConfig(
            bootstrapServers: ["a:9092", "b:9092"], properties: [KafkaProperty("linger.ms", "50")], deliveryTimeout: .milliseconds(2500))
        let properties = config.effectiveProperties(maxInFlightBytes: 32 << 20, maxInFlightEvents: 50_000)
        func last(_ name: String) -> String? { properties.last { $0.name == name }?.value }
        #expect(last("acks") == "all")
        #expect(last("enable.idempotence") == "true")
        #expect(last("compression.type") == "lz4")
        #expect(last("linger.ms") == "50")
        #expect(last("bootstrap.servers") == "a:9092,b:9092")
        #expect(last("message.timeout.ms") == "2500")
        #expect(last("queue.buffering.max.kbytes") == "65536", "twice the budget")
        #expect(last("queue.buffering.max.messages") == "100000")
    }

    @Test func librdkafkaJudgesProperties() {
        #expect(KafkaSinkConfig.check(KafkaProperty("linger.ms", "5")) == nil)
        #expect(KafkaSinkConfig.check(KafkaProperty("linger.mss", "5"))?.contains("No such configuration property") == true)
        #expect(KafkaSinkConfig.check(KafkaProperty("acks", "maybe")) != nil)
        let queue = KafkaSinkConfig.queueProperties(maxInFlightBytes: 1 << 40, maxInFlightEvents: 1 << 40)
        for property in KafkaSinkConfig.defaultProperties + queue {
            #expect(KafkaSinkConfig.check(property) == nil, "default \(property.name) must be valid")
        }
    }

    @Test func secretsAreRecognised() {
        #expect(KafkaProperty("sasl.password", "x").isSecret)
        #expect(KafkaProperty("ssl.key.password", "x").isSecret)
        #expect(KafkaProperty("sasl.oauthbearer.client.secret", "x").isSecret)
        #expect(!KafkaProperty("linger.ms", "5").isSecret)
    }
}
