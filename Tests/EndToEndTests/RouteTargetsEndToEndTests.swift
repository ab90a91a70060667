import Foundation
import Testing

/// Routes with several sinks through the real binary, the broker and moto's Kinesis: a fan-out
/// writes every event to Kafka and to Kinesis and answers both receipts; `mode: any` delivers
/// what one reachable sink settled while `mode: all` fails it; a key split keeps each key in
/// one topic.
@Suite(.timeLimit(.minutes(6))) struct RouteTargetsEndToEndTests {
    static func json(_ body: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]
    }

    static func results(_ body: String) -> [[String: Any]] { Self.json(body)["results"] as? [[String: Any]] ?? [] }
    static func sinks(_ result: [String: Any]) -> [[String: Any]] { result["sinks"] as? [[String: Any]] ?? [] }

    @Test func fanOutAnyAllAndSplitAgainstKafkaAndKinesis() async throws {
        try await requireBroker()
        let moto = try await KinesisIngestTests.moto()
        let key = try await KinesisIngestTests.setUp(moto, stream: "fanout", shards: 1)
        let topic = uniqueTopic("targets")
        let sluice = try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                sinks:
                  - name: events
                    kafka: { bootstrap_servers: ["{KAFKA}"], delivery_timeout: 10s }
                  - name: stream
                    kinesis:
                      region: us-east-1
                      endpoint: "\(moto.endpoint)"
                      stream: fanout
                      credentials: { access_key_id: \(key.id), secret_access_key_env: TEST_SECRET }
                  - name: nowhere
                    kafka: { bootstrap_servers: ["127.0.0.1:1"], delivery_timeout: 2s }
                routes:
                  - name: both
                    match: { path: "/v1/both/{topic}", methods: [POST] }
                    ingest: { topic: "{topic}", sinks: [{ sink: events }, { sink: stream, topic: fanout }] }
                  - name: any
                    match: { path: "/v1/any/{topic}", methods: [POST] }
                    ingest: { topic: "{topic}", mode: any, sinks: [{ sink: nowhere }, { sink: events, topic: "{topic}.any" }] }
                  - name: all
                    match: { path: "/v1/all/{topic}", methods: [POST] }
                    ingest: { topic: "{topic}", sinks: [{ sink: events, topic: "{topic}.all" }, { sink: nowhere }] }
                  - name: split
                    match: { path: "/v1/split/{topic}", methods: [POST] }
                    ingest:
                      topic: "{topic}"
                      key: "json:/user"
                      split:
                        by: key
                        targets: [{ sink: events, topic: "{topic}.old", fraction: 0.5 }, { sink: events, topic: "{topic}.new", fraction: 0.5 }]
                """, environment: ["TEST_SECRET": key.secret], waitUntilReady: false)
        // (The unreachable sink is never ready; the admin port answers once the gateway runs.)
        for _ in 0..<100 where (try? await curl(["http://127.0.0.1:\(sluice.adminPort)/health"]))?.status != 200 {
            try await Task.sleep(for: .milliseconds(100))
        }
        let ndjson = ["-H", "content-type: application/x-ndjson"]
        let ten = (0..<10).map { #"{"n":\#($0)}"# }.joined(separator: "\n")

        // Every event in both backends, each with both receipts in the answer.
        let both = try await curl(ndjson + ["\(sluice.baseURL)/v1/both/\(topic)"], body: Data(ten.utf8))
        #expect(both.status == 200, "\(both.body)")
        let answered = Self.results(both.body).map(Self.sinks)
        #expect(answered.count == 10)
        #expect(answered.allSatisfy { $0.map { $0["sink"] as? String } == ["events", "stream"] }, "\(both.body)")
        #expect(answered.allSatisfy { $0[0]["offset"] is Int && $0[1]["sequence_number"] is String }, "\(both.body)")
        let kafkaRecords = try await consume(topic, expecting: 10)
        #expect(kafkaRecords.map(\.value) == (0..<10).map { #"{"n":\#($0)}"# })
        #expect(Set(kafkaRecords.map(\.offset)) == Set(answered.compactMap { $0.first?["offset"] as? Int }))
        let kinesisRecords = try await KinesisIngestTests.read(moto, stream: "fanout", key: key)
        #expect(Set(kinesisRecords.map(\.sequence)) == Set(answered.compactMap { $0.last?["sequence_number"] as? String }))
        #expect(kinesisRecords.count == 10)

        // One unreachable sink: delivered under mode any, failed (retryable, 503) under mode all.
        let three = (0..<3).map { #"{"n":\#($0)}"# }.joined(separator: "\n")
        let any = try await curl(ndjson + ["\(sluice.baseURL)/v1/any/\(topic)"], body: Data(three.utf8))
        #expect(any.status == 200, "\(any.body)")
        let anyTargets = Self.results(any.body).map(Self.sinks)
        #expect(anyTargets.count == 3 && anyTargets.allSatisfy { $0[0]["error"] != nil && $0[1]["offset"] is Int }, "\(any.body)")
        #expect(try await consume("\(topic).any", expecting: 3).count == 3)
        let all = try await curl(ndjson + ["\(sluice.baseURL)/v1/all/\(topic)"], body: Data(three.utf8))
        #expect(all.status == 503, "\(all.body)")
        let allResults = Self.results(all.body)
        #expect(allResults.count == 3 && allResults.allSatisfy { ($0["error"] as? [String: Any])?["retryable"] as? Bool == true }, "\(all.body)")
        #expect(allResults.map(Self.sinks).allSatisfy { $0[0]["offset"] is Int && $0[1]["error"] != nil }, "\(all.body)")

        // A key split: each user's events all in one of the two topics, and both get some.
        let users = (0..<200).map { #"{"user":"u\#($0 % 40)","n":\#($0)}"# }
        let split = try await curl(ndjson + ["\(sluice.baseURL)/v1/split/\(topic)"], body: Data(users.joined(separator: "\n").utf8))
        #expect(split.status == 200, "\(split.body)")
        let named = Self.results(split.body).map { Self.sinks($0).first?["topic"] as? String }
        let old = named.filter { $0 == "\(topic).old" }.count
        #expect(old > 0 && old < 200 && named.allSatisfy { $0 == "\(topic).old" || $0 == "\(topic).new" }, "\(named)")
        let oldKeys = Set(try await consume("\(topic).old", expecting: old).compactMap(\.key))
        let newKeys = Set(try await consume("\(topic).new", expecting: 200 - old).compactMap(\.key))
        #expect(oldKeys.isDisjoint(with: newKeys) && oldKeys.count + newKeys.count == 40, "\(oldKeys) \(newKeys)")
        _ = try await sluice.terminate()
    }
}
