import Foundation
import Testing

/// How an ingest answer is written: a long result list streamed in parts (HTTP/1.1 chunked,
/// HTTP/2 data frames) that still parses as one document, and `Prefer: return=minimal`.
@Suite(.timeLimit(.minutes(6))) struct IngestResponseTests {
    static let config = """
        listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
        admin: { address: "127.0.0.1:{ADMIN_PORT}" }
        sinks:
          - name: archive
            file: { directory: ./events }
        routes:
          - name: ingest
            match: { path: /v1/events }
            ingest: { sink: archive, topic: events, max_events: 100000 }
        """

    static func ndjson(_ count: Int) -> Data {
        Data((0..<count).map { #"{"n":\#($0)}"# + "\n" }.joined().utf8)
    }

    @Test func aLongResultListIsStreamedAndParsesWholeOverBothProtocols() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        let body = Self.ndjson(20_000)
        var lastOffset: Int?
        for version in ["--http1.1", "--http2-prior-knowledge"] {
            let response = try await curl([version, "-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/v1/events"], body: body)
            #expect(response.status == 200, "\(version): \(response.body.prefix(300))")
            let headers = response.headers.lowercased()
            #expect(!headers.contains("content-length:"), "\(version): streamed, not sized up front: \(headers)")
            if version == "--http1.1" { #expect(headers.contains("transfer-encoding: chunked")) }
            let json = response.json
            #expect(json["accepted"] as? Int == 20_000)
            let results = json["results"] as? [[String: Any]] ?? []
            #expect(results.count == 20_000, "\(version): every event's result, in order")
            let offsets = results.compactMap { $0["offset"] as? Int }
            #expect(offsets.count == 20_000 && zip(offsets, offsets.dropFirst()).allSatisfy { $0 + 1 == $1 }, "consecutive offsets")
            if let lastOffset, let first = offsets.first { #expect(first == lastOffset + 1) }
            lastOffset = offsets.last
        }
        #expect(try await sluice.terminate() == 0)
    }

    @Test func returnMinimalAnswersCountsAndOnlyTheFailedEventsByIndex() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        let url = "\(sluice.baseURL)/v1/events"
        let minimal = ["-H", "prefer: return=minimal", "-H", "content-type: application/x-ndjson", url]

        let allGood = try await curl(minimal, body: Self.ndjson(5000))
        #expect(allGood.status == 200)
        #expect(allGood.body == #"{"accepted":5000}"#)
        #expect(allGood.headers.lowercased().contains("preference-applied: return=minimal"))

        // Without the preference: the full list, as before.
        let full = try await curl(["-H", "content-type: application/x-ndjson", url], body: Self.ndjson(3))
        #expect((full.json["results"] as? [[String: Any]])?.count == 3)
        #expect(!full.headers.lowercased().contains("preference-applied"))
        #expect(try await sluice.terminate() == 0)
    }

    @Test func returnMinimalListsOnlyTheEventsTheBrokerRefusedByTheirIndex() async throws {
        try await requireBroker()
        let topic = uniqueTopic("minimal")
        // The producer refuses events over 2000 bytes one by one; the others are delivered.
        let sluice = try await SluiceProcess(config: """
            listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
            admin: { address: "127.0.0.1:{ADMIN_PORT}" }
            sinks:
              - name: events
                kafka: { bootstrap_servers: ["{KAFKA}"], delivery_timeout: 10s, properties: { message.max.bytes: "2000" } }
            routes:
              - name: ingest
                match: { path: /v1/events }
                ingest: { sink: events, topic: \(topic), max_events: 100000 }
            """)
        var text = ""
        for index in 0..<6000 {
            text += [7, 5500].contains(index) ? #"{"n":\#(index),"fill":"\#(String(repeating: "x", count: 3000))"}"# : #"{"n":\#(index)}"#
            text += "\n"
        }
        let body = Data(text.utf8)
        let someBad = try await curl(["-H", "prefer: return=minimal", "-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/v1/events"], body: body)
        #expect(someBad.status != 200, "\(someBad.body.prefix(300))")
        let json = someBad.json
        #expect(json["accepted"] as? Int == 5998 && json["failed"] as? Int == 2, "\(someBad.body.prefix(300))")
        let errors = json["errors"] as? [[String: Any]] ?? []
        #expect(errors.compactMap { $0["index"] as? Int } == [7, 5500])
        #expect(errors.allSatisfy { ($0["error"] as? [String: Any])?["code"] as? String == "kafka_msg_size_too_large" }, "\(errors)")
        #expect(json["results"] == nil)
        let records = try await consume(topic, expecting: 5998)
        #expect(records.count == 5998)
        #expect(try await sluice.terminate() == 0)
    }
}
