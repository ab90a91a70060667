import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The real `sluice` binary in front of the real broker that `make test` / `.ci/run` start.
/// Every event answered 2xx must be in the topic, at the partition and offset the response named.
@Suite(.timeLimit(.minutes(6))) struct KafkaIngestTests {
    static let config = """
        listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
        admin: { address: "127.0.0.1:{ADMIN_PORT}" }
        sinks:
          - name: events
            kafka: { bootstrap_servers: ["{KAFKA}"], delivery_timeout: 10s }
        shutdown: { drain_timeout: 10s, flush_timeout: 10s }
        routes:
          - name: ingest
            match: { path: "/v1/events/{topic}", methods: [POST] }
            ingest: { sink: events, topic: "{topic}", key: "header:X-Event-Key", headers_to_kafka: [X-Request-Id, X-Tenant] }
          - name: by-user
            match: { path: "/v1/users/{topic}", methods: [POST] }
            ingest: { sink: events, topic: "{topic}", key: "json:/user/id" }
          - name: by-query
            match: { path: "/v1/q/{topic}", methods: [POST] }
            ingest: { sink: events, topic: "{topic}", key: "query:key" }
          - name: big-events
            match: { path: "/v1/big/{topic}", methods: [POST] }
            ingest: { sink: events, topic: "{topic}", max_event_bytes: 2MiB }
          - name: allow-listed
            match: { path: "/v1/only/{topic}", methods: [POST] }
            ingest: { sink: events, topic: "{topic}", topics_allowed: [orders] }
        """

    init() async throws {
        try await requireBroker()
    }

    /// Checks that the records in `topic` are exactly `values`, at the positions `response` reported.
    func expectDelivered(_ response: CurlResponse, topic: String, values: [String], key: (Int) -> String?) async throws -> [ConsumedRecord] {
        #expect(response.status == 200, "body: \(response.body)")
        #expect(response.json["accepted"] as? Int == values.count)
        let receipts = response.receipts
        #expect(receipts.count == values.count)
        let records = try await consume(topic, expecting: values.count)
        #expect(records.count == values.count)
        for (index, record) in records.enumerated() where index < values.count && index < receipts.count {
            #expect(record.value == values[index])
            #expect(record.partition == receipts[index].partition)
            #expect(record.offset == receipts[index].offset)
            #expect(record.key == key(index))
        }
        return records
    }

    @Test func ndjsonOverHTTP1LandsInKafkaWithKeyHeadersPartitionAndOffset() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        let topic = uniqueTopic("ndjson")
        let values = [#"{"n":1}"#, #"{"n":2,"s":"two"}"#, #"{"n":3}"#]
        let response = try await curl(
            ["-H", "content-type: application/x-ndjson", "-H", "X-Event-Key: k1", "-H", "X-Request-Id: r-1", "-H", "X-Tenant: acme",
             "-H", "X-Not-Copied: no", "\(sluice.baseURL)/v1/events/\(topic)"],
            body: Data((values.joined(separator: "\n") + "\n\n").utf8))
        #expect(response.httpVersion == "1.1")
        let records = try await self.expectDelivered(response, topic: topic, values: values) { _ in "k1" }
        for record in records {
            #expect(record.headers.map(\.0) == ["X-Request-Id", "X-Tenant"])
            #expect(record.headers.map(\.1) == ["r-1", "acme"])
        }
    }

    @Test func ndjsonOverHTTP2PriorKnowledge() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        let topic = uniqueTopic("ndjson-h2")
        let values = (0..<50).map { #"{"i":\#($0)}"# }
        let response = try await curl(
            ["--http2-prior-knowledge", "-H", "content-type: application/x-ndjson", "-H", "X-Event-Key: h2", "-H", "X-Tenant: t2",
             "\(sluice.baseURL)/v1/events/\(topic)"],
            body: Data(values.joined(separator: "\n").utf8))
        #expect(response.httpVersion == "2")
        let records = try await self.expectDelivered(response, topic: topic, values: values) { _ in "h2" }
        for record in records {
            #expect(record.headers.map(\.0) == ["X-Tenant"])
            #expect(record.headers.map(\.1) == ["t2"])
        }
    }

    @Test func jsonArrayIsOneEventPerElementOverBothProtocols() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        for http2 in [false, true] {
            let topic = uniqueTopic(http2 ? "array-h2" : "array-h1")
            let body = #"[{"a":1}, {"b":[1,2]} ,"three",4]"#
            let response = try await curl(
                (http2 ? ["--http2-prior-knowledge"] : []) + ["-H", "content-type: application/json", "\(sluice.baseURL)/v1/events/\(topic)"],
                body: Data(body.utf8))
            #expect(response.httpVersion == (http2 ? "2" : "1.1"))
            _ = try await self.expectDelivered(response, topic: topic, values: [#"{"a":1}"#, #"{"b":[1,2]}"#, #""three""#, "4"]) { _ in nil }
        }
    }

    @Test func jsonObjectAndRawBodiesAreOneEventEach() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        for http2 in [false, true] {
            let objectTopic = uniqueTopic(http2 ? "object-h2" : "object-h1")
            let object = #"{"whole": {"nested": [1, 2]}}"#
            let objectResponse = try await curl(
                (http2 ? ["--http2-prior-knowledge"] : []) + ["-H", "content-type: application/json", "\(sluice.baseURL)/v1/events/\(objectTopic)"],
                body: Data(object.utf8))
            #expect(objectResponse.httpVersion == (http2 ? "2" : "1.1"))
            _ = try await self.expectDelivered(objectResponse, topic: objectTopic, values: [object]) { _ in nil }

            let rawTopic = uniqueTopic(http2 ? "raw-h2" : "raw-h1")
            let raw = "plain text, not JSON\nsecond line stays in the same event"
            let rawResponse = try await curl(
                (http2 ? ["--http2-prior-knowledge"] : []) + ["-H", "content-type: text/plain", "-H", "X-Event-Key: r", "\(sluice.baseURL)/v1/events/\(rawTopic)"],
                body: Data(raw.utf8))
            _ = try await self.expectDelivered(rawResponse, topic: rawTopic, values: [raw]) { _ in "r" }
        }
    }

    @Test func keysFromJSONPointersAndQueryParameters() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        let topic = uniqueTopic("pointer")
        let values = [#"{"user":{"id":"u-1"},"n":1}"#, #"{"user":{"id":42}}"#, #"{"no_user":true}"#]
        let response = try await curl(["-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/v1/users/\(topic)"], body: Data(values.joined(separator: "\n").utf8))
        _ = try await self.expectDelivered(response, topic: topic, values: values) { [Optional("u-1"), "42", nil][$0] }

        let queryTopic = uniqueTopic("query")
        let queryResponse = try await curl(["-H", "content-type: application/json", "\(sluice.baseURL)/v1/q/\(queryTopic)?x=1&key=a%20b"], body: Data(#"{"q":1}"#.utf8))
        _ = try await self.expectDelivered(queryResponse, topic: queryTopic, values: [#"{"q":1}"#]) { _ in "a b" }
    }

    @Test func aLargeUploadIsInvitedWith100ContinueAndStreamedThrough() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        let topic = uniqueTopic("large")
        let lines = (0..<9000).map { #"{"seq":\#($0),"pad":"\#(String(repeating: "p", count: 120))"}"# }
        // curl sends `Expect: 100-continue` for a body this size and waits for the interim response.
        let response = try await curl(
            ["-H", "content-type: application/x-ndjson", "-H", "X-Event-Key: big", "\(sluice.baseURL)/v1/events/\(topic)"],
            body: Data(lines.joined(separator: "\n").utf8))
        #expect(response.headers.contains("HTTP/1.1 100 Continue"))
        #expect(response.status == 200)
        #expect(response.json["accepted"] as? Int == lines.count)
        let records = try await consume(topic, expecting: lines.count)
        #expect(records.count == lines.count)
        #expect(records.first?.value == lines.first)
        #expect(records.last?.value == lines.last)
    }

    @Test func anEventKafkaRefusesFailsAloneAndTheResponseIsNot2xx() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        let topic = uniqueTopic("refused")
        // The route allows 2 MiB events; the producer's message.max.bytes (1 MB) refuses this one.
        let big = #"{"blob":""# + String(repeating: "b", count: 1_200_000) + #""}"#
        let body = [#"{"n":1}"#, big, #"{"n":3}"#].joined(separator: "\n")
        let response = try await curl(["-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/v1/big/\(topic)"], body: Data(body.utf8))
        #expect(response.status == 413, "body: \(response.body.prefix(400))")
        #expect(response.json["accepted"] as? Int == 2)
        #expect(response.json["failed"] as? Int == 1)
        let results = response.json["results"] as? [[String: Any]] ?? []
        #expect(results.count == 3)
        let failure = results.count == 3 ? results[1]["error"] as? [String: Any] : nil
        #expect(failure?["code"] as? String == "kafka_msg_size_too_large")
        #expect(failure?["retryable"] as? Bool == false)
        // Exactly the two accepted events are in the topic, where the response said.
        let records = try await consume(topic, expecting: 2)
        #expect(records.map(\.value) == [#"{"n":1}"#, #"{"n":3}"#])
        let receipts = response.receipts
        #expect(receipts.count == 2)
        for (record, receipt) in zip(records, receipts) {
            #expect(record.partition == receipt.partition && record.offset == receipt.offset)
        }
    }

    @Test func aSaturatedSinkAnswers503WithRetryAfterOnceMaxWaitPasses() async throws {
        // A budget of one event, held for a 1.5 s linger; the request may wait 300 ms for room.
        let config = """
            listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
            admin: { address: "127.0.0.1:{ADMIN_PORT}" }
            sinks:
              - name: slow
                max_in_flight_events: 1
                kafka: { bootstrap_servers: ["{KAFKA}"], properties: { linger.ms: "1500" } }
            routes:
              - name: ingest
                match: { path: "/v1/events/{topic}", methods: [POST] }
                ingest: { sink: slow, topic: "{topic}", max_wait: 300ms }
            """
        let sluice = try await SluiceProcess(config: config)
        let topic = uniqueTopic("saturated")
        let response = try await curl(
            ["-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/v1/events/\(topic)"], body: Data("{\"n\":1}\n{\"n\":2}\n".utf8))
        #expect(response.status == 503, "body: \(response.body)")
        #expect(response.headers.lowercased().contains("retry-after: 1"))
        let error = response.json["error"] as? [String: Any]
        #expect(error?["code"] as? String == "sink_saturated")
        #expect(error?["sink"] as? String == "slow")
        #expect(response.json["accepted"] as? Int == 1)
        let results = response.json["results"] as? [[String: Any]] ?? []
        #expect(results.count == 2)
        #expect(results.first?["offset"] as? Int != nil, "the first event was delivered")
        #expect((results.last?["error"] as? [String: Any])?["code"] as? String == "sink_saturated")
        let records = try await consume(topic, expecting: 1)
        #expect(records.map(\.value) == [#"{"n":1}"#], "only the acknowledged event is in the topic")

        // Operators see the budget on the admin listener.
        let sinks = try await curl(["http://127.0.0.1:\(sluice.adminPort)/sinks"])
        let slow = sinks.json["slow"] as? [String: Any]
        #expect(slow?["max_in_flight_events"] as? Int == 1)
        #expect(slow?["in_flight_events"] as? Int == 0, "every share came back: \(sinks.body)")
        #expect(slow?["ready"] as? Bool == true)
    }

    @Test func http1KeepAliveServesSeveralRequestsOnOneConnection() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        let topic = uniqueTopic("keepalive")
        let url = "\(sluice.baseURL)/v1/events/\(topic)"
        let result = try await runProgram(
            "curl", ["-s", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{num_connects}:%{http_code} ",
                     "-H", "content-type: application/x-ndjson", "--data-binary", #"{"k":1}"#, url, url, url])
        #expect(result.stdout == "1:200 0:200 0:200 ", "three requests, one TCP connection: \(result.stdout)")
        #expect(try await consume(topic, expecting: 3).count == 3)
    }

    @Test func errorsAreJSONAndSayWhatIsWrong() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        let notAllowed = try await curl(["-H", "content-type: application/json", "\(sluice.baseURL)/v1/only/payments"], body: Data("{}".utf8))
        #expect(notAllowed.status == 404)
        #expect((notAllowed.json["error"] as? [String: Any])?["code"] as? String == "unknown_topic")

        let wrongMethod = try await curl(["\(sluice.baseURL)/v1/events/orders"])
        #expect(wrongMethod.status == 405)
        #expect(wrongMethod.headers.lowercased().contains("allow: post"))
        #expect((wrongMethod.json["error"] as? [String: Any])?["code"] as? String == "method_not_allowed")

        let noRoute = try await curl(["--http2-prior-knowledge", "\(sluice.baseURL)/nowhere"])
        #expect(noRoute.status == 404)
        #expect((noRoute.json["error"] as? [String: Any])?["code"] as? String == "no_route")

        let topic = uniqueTopic("badline")
        let badLine = try await curl(
            ["-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/v1/events/\(topic)"], body: Data("{\"ok\":1}\n{\"ok\":2}\n{nope}\n".utf8))
        #expect(badLine.status == 400)
        let error = badLine.json["error"] as? [String: Any]
        #expect(error?["code"] as? String == "invalid_json")
        #expect((error?["message"] as? String)?.hasPrefix("line 3") == true)
    }

    @Test func sigtermLetsAnInFlightUploadFinishFlushesAndExitsZero() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        let topic = uniqueTopic("drain")
        let lines = (0..<2000).map { #"{"seq":\#($0),"pad":"0123456789012345678901234567890123456789"}"# }
        let body = lines.joined(separator: "\n") + "\n"
        let half = body.index(body.startIndex, offsetBy: body.utf8.count / 2)
        // The upload is surely in flight when SIGTERM arrives: Sluice has read its head and invited
        // the body (100 Continue), and has half of the body. A fixed sleep before the signal raced
        // the client's connect on a loaded machine. The whole exchange runs on a thread of its own:
        // a stall of the test runner's few threads between the steps must not stretch the upload.
        let head =
            "POST /v1/events/\(topic) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\n"
            + "Content-Length: \(body.utf8.count)\r\nExpect: 100-continue\r\n\r\n"
        let port = sluice.port
        let exchange = try await offThePool { () throws -> (invited: Bool, runningAfterSignal: Bool, answer: String) in
            let connection = try RawConnection(port: port)
            connection.send(head)
            guard connection.read(until: "100 Continue", timeout: .seconds(20)) else { return (false, false, "") }
            connection.send(String(body[..<half]))
            sluice.sendTerminate()
            Thread.sleep(forTimeInterval: 0.5)
            let running = sluice.process.isRunning
            connection.send(String(body[half...]))
            return (true, running, connection.readUntilClosed(timeout: .seconds(30)).text)
        }
        try #require(exchange.invited, "Sluice answers the head with 100 Continue")
        #expect(exchange.runningAfterSignal, "Sluice waits for the upload in flight:\n\(sluice.log)")
        let status = try await sluice.waitForExit()
        #expect(status == 0, "log:\n\(sluice.log)")
        let response = RawHTTPResponse(exchange.answer)
        #expect(response?.status == 200, "answer: \(exchange.answer.prefix(300))")
        #expect(response?.json["accepted"] as? Int == lines.count)
        #expect(try await consume(topic, expecting: lines.count).count == lines.count)
        #expect(sluice.log.contains("kafka sink flushed"))
    }
}

@Suite(.timeLimit(.minutes(6))) struct CommandLineTests {
    @Test func validateExitsZeroForValidConfigs() async throws {
        let result = try await runProgram(try sluiceBinary(), ["validate", packageRoot.appendingPathComponent("configs/quickstart.yaml").path])
        #expect(result.status == 0)
        #expect(result.stdout.contains("valid"))
    }

    @Test func validatePrintsEveryErrorWithItsPathAndExitsOne() async throws {
        let path = packageRoot.appendingPathComponent("configs/testdata/invalid/duplicate-names.yaml").path
        let result = try await runProgram(try sluiceBinary(), ["validate", path])
        #expect(result.status == 1)
        #expect(result.stdout.contains(#"sinks[1].name: duplicate sink name "events""#))
        #expect(result.stdout.contains(#"routes[1].name: duplicate route name "a""#))
        #expect(result.stdout.contains(#"listeners[1].name: duplicate listener name "main""#))
        let unknown = try await runProgram(try sluiceBinary(), ["validate", packageRoot.appendingPathComponent("configs/testdata/invalid/unknown-sink.yaml").path])
        #expect(unknown.stdout.contains(#"routes[1].ingest.sink: unknown sink "evnts""#))
    }

    @Test func runRefusesAnInvalidConfigWithExitOne() async throws {
        let path = packageRoot.appendingPathComponent("configs/testdata/invalid/bad-units.yaml").path
        let result = try await runProgram(try sluiceBinary(), ["run", "--config", path])
        #expect(result.status == 1)
        #expect(result.stderr.contains(#"routes[0].ingest.max_wait: invalid duration "5""#))
    }

    @Test func theEmbeddedDefaultConfigIsTheQuickstartFile() async throws {
        let result = try await runProgram(try sluiceBinary(), ["default-config"])
        let file = try String(contentsOf: packageRoot.appendingPathComponent("configs/quickstart.yaml"), encoding: .utf8)
        #expect(result.stdout == file)
    }

    @Test func quickstartRunsOnTheEmbeddedConfigAndWritesEventsToFiles() async throws {
        let sluice = try await SluiceProcess(config: nil)
        let response = try await curl(
            ["-H", "content-type: application/x-ndjson", "-H", "X-Event-Key: q", "\(sluice.baseURL)/v1/events/orders"],
            body: Data("{\"id\":1}\n{\"id\":2}\n".utf8))
        #expect(response.status == 200, "body: \(response.body)")
        #expect(response.json["accepted"] as? Int == 2)
        let segment = sluice.workDirectory.appendingPathComponent("data/events/00000000000000000000.ndjson")
        let lines = try String(contentsOf: segment, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines.first?.contains(#""topic":"orders","key":"q""#) == true)
        #expect(lines.first?.hasSuffix(#""value":{"id":1}}"#) == true)
        #expect(try await sluice.terminate() == 0)
    }
}
