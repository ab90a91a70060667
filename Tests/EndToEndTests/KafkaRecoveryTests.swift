import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A broker killed with SIGKILL and restarted on the same data, under continuous load: the
/// test broker loses the tail it had acknowledged, librdkafka's idempotent producer then hits a
/// fatal error (OUT_OF_ORDER_SEQUENCE_NUMBER), and Sluice must replace it and serve again by
/// itself — no 2xx for an event it did not deliver, and every event acknowledged after the
/// restart in the topic where the response said.
@Suite(.timeLimit(.minutes(6))) struct KafkaRecoveryTests {
    @Test func aBrokerKilledAndRestartedUnderLoadLeavesIngestWorking() async throws {
        let broker = try await BrokerProcess()
        let config = """
            listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
            admin: { address: "127.0.0.1:{ADMIN_PORT}" }
            sinks:
              - name: events
                kafka: { bootstrap_servers: ["\(broker.bootstrap)"], delivery_timeout: 5s }
            routes:
              - name: ingest
                match: { path: "/v1/events/{topic}", methods: [POST] }
                ingest: { sink: events, topic: "{topic}" }
            """
        let sluice = try await SluiceProcess(config: config)
        let topic = uniqueTopic("recovery")
        var sequence = 0
        var answers: [(status: Int, values: [String], response: CurlResponse, at: ContinuousClock.Instant)] = []
        let url = "\(sluice.baseURL)/v1/events/\(topic)"
        func post() async throws {
            let values = (0..<10).map { i in #"{"seq":\#(sequence * 10 + i)}"# }
            sequence += 1
            let response = try await curl(["--max-time", "20", "-H", "content-type: application/x-ndjson", url], body: Data(values.joined(separator: "\n").utf8))
            answers.append((response.status, values, response, .now))
        }
        // Load, then SIGKILL the broker while requests are in flight from a second client.
        for _ in 0..<20 { try await post() }
        #expect(answers.allSatisfy { $0.status == 200 }, "\(answers.map(\.status))")
        let baseURL = sluice.baseURL
        let background = Task {
            // A second client keeps requests in flight across the kill.
            var statuses: [Int] = []
            for _ in 0..<30 {
                let body = Data((0..<50).map { #"{"bg":\#($0)}"# }.joined(separator: "\n").utf8)
                let status = (try? await curl(["--max-time", "20", "-H", "content-type: application/x-ndjson", "\(baseURL)/v1/events/\(topic)-bg"],
                                          body: body).status) ?? -1
                statuses.append(status)
            }
            return statuses
        }
        try await Task.sleep(for: .milliseconds(300))
        broker.signal(SIGKILL)
        for _ in 0..<100 where !broker.pids.isEmpty { try await Task.sleep(for: .milliseconds(50)) }
        for _ in 0..<3 { try await post() }
        try await broker.start()
        let restarted = ContinuousClock.now
        // Serving again within seconds, without restarting Sluice.
        var recoveredAt: ContinuousClock.Instant?
        for _ in 0..<60 {
            try await post()
            if answers.last?.status == 200 {
                recoveredAt = .now
                break
            }
            try await Task.sleep(for: .milliseconds(500))
        }
        guard let recoveredAt else {
            Issue.record("ingest did not recover after the broker restart:\n\(sluice.log.suffix(4000))")
            return
        }
        print("recovery: first 200 \(recoveredAt - restarted) after the broker restart")
        #expect(recoveredAt - restarted < .seconds(30))
        let firstAfter = answers.count - 1
        for _ in 0..<20 { try await post() }
        #expect(answers[firstAfter...].allSatisfy { $0.status == 200 }, "after recovery: \(answers[firstAfter...].map(\.status))")
        let backgroundStatuses = try await background.value
        #expect(backgroundStatuses.allSatisfy { [200, 503].contains($0) }, "\(backgroundStatuses)")

        // A failed answer never claims an event delivered; every event acknowledged after the
        // restart is in the topic where its response said.
        for answer in answers where answer.status != 200 {
            #expect(answer.status == 503, "\(answer.status): \(answer.response.body.prefix(300))")
        }
        let after = answers[firstAfter...]
        let expected = after.count * 10
        let records = try await consume(topic, expecting: expected, bootstrap: broker.bootstrap)
        let byPosition = Dictionary(records.map { ("\($0.partition)/\($0.offset)", $0.value) }, uniquingKeysWith: { first, _ in first })
        for answer in after {
            let results = answer.response.json["results"] as? [[String: Any]] ?? []
            #expect(results.count == 10)
            for (value, result) in zip(answer.values, results) {
                let position = "\(result["partition"] as? Int ?? -1)/\(result["offset"] as? Int ?? -1)"
                #expect(byPosition[position] == value, "claimed delivered at \(position) but not found there")
            }
        }
        // Whether this run's broker lost enough to make the producer fatal shows in the log and /sinks.
        let sinks = try await curl(["http://127.0.0.1:\(sluice.adminPort)/sinks"]).json
        let replacements = (sinks["events"] as? [String: Any])?["producer_replacements"] as? Int ?? -1
        print("recovery: producer replacements \(replacements)")
        #expect(replacements >= 0)
        if sluice.log.contains("fatal error") { #expect(replacements >= 1, "a fatal error was logged but no producer replaced") }
    }
}
