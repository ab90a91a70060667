import Foundation
import Testing

/// `mirror` through the real binary and the broker: every event the route delivers is also in
/// the mirror topic; a mirror whose broker cannot be reached never touches the answers.
@Suite(.timeLimit(.minutes(6))) struct MirrorEndToEndTests {
    @Test func eventsAreMirroredAndADeadMirrorChangesNoAnswer() async throws {
        try await requireBroker()
        let topic = uniqueTopic("mirrored")
        let sluice = try await SluiceProcess(
            config: """
                listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
                admin: { address: "127.0.0.1:{ADMIN_PORT}" }
                sinks:
                  - name: events
                    kafka: { bootstrap_servers: ["{KAFKA}"], delivery_timeout: 10s }
                  - name: nowhere
                    max_in_flight_events: 5
                    kafka: { bootstrap_servers: ["127.0.0.1:1"], delivery_timeout: 10s }
                routes:
                  - name: mirrored
                    match: { path: "/v1/mirrored/{topic}", methods: [POST] }
                    ingest: { sink: events, topic: "{topic}", mirror: { sink: events, topic: "{topic}.copy" } }
                  - name: dead-mirror
                    match: { path: "/v1/dead/{topic}", methods: [POST] }
                    ingest: { sink: events, topic: "{topic}", mirror: { sink: nowhere } }
                """, waitUntilReady: false)
        // (The unreachable mirror sink is never ready; the admin port answers once the gateway runs.)
        for _ in 0..<100 where (try? await curl(["http://127.0.0.1:\(sluice.adminPort)/health"]))?.status != 200 {
            try await Task.sleep(for: .milliseconds(100))
        }
        let body = (0..<10).map { #"{"n":\#($0)}"# }.joined(separator: "\n")
        let mirrored = try await curl(["-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/v1/mirrored/\(topic)"], body: Data(body.utf8))
        #expect(mirrored.status == 200, "\(mirrored.body)")
        #expect(try await consume(topic, expecting: 10).count == 10)
        #expect(try await consume("\(topic).copy", expecting: 10).map(\.value) == (0..<10).map { #"{"n":\#($0)}"# })

        // The dead mirror takes five into its budget, then has no room: the rest are dropped.
        for round in 0..<3 {
            let response = try await curl(["-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/v1/dead/\(topic)-dead"], body: Data(body.utf8))
            #expect(response.status == 200, "round \(round): \(response.body)")
        }
        #expect(try await consume("\(topic)-dead", expecting: 30).count == 30)
        let samples = MetricsTests.samples(try await curl(["http://127.0.0.1:\(sluice.adminPort)/metrics"]).body)
        #expect(samples[#"sluice_events_mirrored_total{route="mirrored",outcome="queued"}"#] == 10)
        #expect(samples[#"sluice_events_mirrored_total{route="dead-mirror",outcome="queued"}"#] == 5)
        #expect(samples[#"sluice_events_mirrored_total{route="dead-mirror",outcome="dropped"}"#] == 25)
        _ = try await sluice.terminate()
    }
}
