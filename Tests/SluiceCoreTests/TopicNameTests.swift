import SluiceCore
import Testing

/// Kafka's topic name rule: 1-249 of ASCII letters, digits, '.', '_' and '-', and not "." or "..".
@Suite struct TopicNameTests {
    @Test(arguments: ["orders", "a", "Orders.v2_eu-west-1", String(repeating: "x", count: 249), "...", ".a"])
    func acceptsWhatKafkaAccepts(name: String) {
        #expect(TopicName.problem(name) == nil)
    }

    @Test(arguments: ["", ".", "..", String(repeating: "x", count: 250), "orders!", "or ders", "ordérs", "orders/eu", "a\u{0}b", "日本"])
    func refusesWhatKafkaRefuses(name: String) {
        #expect(TopicName.problem(name) != nil)
    }
}
