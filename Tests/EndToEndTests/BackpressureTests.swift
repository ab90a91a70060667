import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Backpressure end to end: a slow sink slows the client instead of filling Sluice's memory.
@Suite(.timeLimit(.minutes(6))) struct BackpressureTests {
    @Test func aPausedBrokerStallsTheUploadAndMemoryStaysBounded() async throws {
        let broker = try await BrokerProcess()
        let config = """
            listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
            admin: { address: "127.0.0.1:{ADMIN_PORT}" }
            sinks:
              - name: events
                max_in_flight_bytes: 8MiB
                kafka: { bootstrap_servers: ["\(broker.bootstrap)"], delivery_timeout: 120s }
            routes:
              - name: ingest
                match: { path: "/v1/events/{topic}", methods: [POST] }
                ingest: { sink: events, topic: "{topic}", max_body_bytes: 1GiB, max_events: 100000, max_event_bytes: 1MB, max_wait: 120s }
            """
        let sluice = try await SluiceProcess(config: config)
        let topic = uniqueTopic("backpressure")

        // 1400 events of 300 KB: a 420 MB body, larger than the 256 MiB memory bound.
        let eventCount = 1400
        let file = sluice.workDirectory.appendingPathComponent("upload.ndjson")
        _ = FileManager.default.createFile(atPath: file.path, contents: nil)
        let writer = try FileHandle(forWritingTo: file)
        let filler = String(repeating: "z", count: 300_000)
        for i in 0..<eventCount {
            writer.write(Data(#"{"seq":\#(i),"fill":"\#(filler)"}"#.utf8 + [0x0A]))
        }
        try writer.close()
        let fileSize = try FileManager.default.attributesOfItem(atPath: file.path)[.size] as! Int

        broker.pause()
        let output = sluice.workDirectory.appendingPathComponent("response.json")
        let upload = Process()
        upload.executableURL = URL(fileURLWithPath: try which("curl"))
        upload.arguments = ["-sS", "-o", output.path, "-w", "%{http_code}", "-H", "content-type: application/x-ndjson",
                            "-X", "POST", "-T", file.path, "\(sluice.baseURL)/v1/events/\(topic)"]  // -T streams the file
        let statusPipe = try spawnSerially {
            let pipe = Pipe()
            upload.standardOutput = pipe
            try upload.run()
            return pipe
        }

        // While the broker is paused the upload stalls: curl stops reading its file.
        try await Task.sleep(for: .seconds(3))
        let readAt3s = procReadBytes(upload.processIdentifier) ?? 0
        try await Task.sleep(for: .seconds(1))
        let readAt4s = procReadBytes(upload.processIdentifier) ?? 0
        #expect(upload.isRunning, "the upload must not finish while the sink is paused")
        #expect(readAt4s - readAt3s < 4 << 20, "curl kept sending \(readAt4s - readAt3s) bytes/s into a paused sink")
        #expect(readAt4s < fileSize / 2, "only a bounded part of the body was taken in (\(readAt4s) of \(fileSize) bytes)")

        broker.resume()
        let statusData = statusPipe.fileHandleForReading.readDataToEndOfFile()
        upload.waitUntilExit()
        let peak = procStatusBytes(sluice.process.processIdentifier, "VmHWM") ?? Int.max
        #expect(String(decoding: statusData, as: UTF8.self) == "200")
        let response = (try? JSONSerialization.jsonObject(with: Data(contentsOf: output))) as? [String: Any] ?? [:]
        #expect(response["accepted"] as? Int == eventCount)
        #expect(peak < 256 << 20, "peak RSS \(peak >> 20) MiB for a \(fileSize >> 20) MiB upload")
        print("backpressure: \(fileSize >> 20) MiB body; curl read \(readAt4s >> 20) MiB of it while the broker was paused; Sluice peak RSS \(peak >> 20) MiB")

        // Every event arrived once the broker resumed.
        let counted = try await runProgram("kcat", ["-C", "-b", broker.bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%S\\n", "-m", "10"])
        let sizes = counted.stdout.split(separator: "\n")
        #expect(sizes.count == eventCount)
        #expect(sizes.allSatisfy { Int($0) ?? 0 > 300_000 })
    }

    @Test func aBrokerOutageGivesRetryable503sAndNoFalse2xx() async throws {
        let broker = try await BrokerProcess()
        let config = """
            listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
            admin: { address: "127.0.0.1:{ADMIN_PORT}" }
            sinks:
              - name: events
                kafka: { bootstrap_servers: ["\(broker.bootstrap)"], delivery_timeout: 3s }
            routes:
              - name: ingest
                match: { path: "/v1/events/{topic}", methods: [POST] }
                ingest: { sink: events, topic: "{topic}" }
            """
        let sluice = try await SluiceProcess(config: config)
        let topic = uniqueTopic("outage")
        var sequence = 0
        var answers: [(status: Int, values: [String], response: CurlResponse)] = []
        func post() async throws {
            let values = (0..<5).map { i in #"{"seq":\#(sequence * 5 + i)}"# }
            sequence += 1
            let response = try await curl(["-H", "content-type: application/x-ndjson", "\(sluice.baseURL)/v1/events/\(topic)"],
                                    body: Data(values.joined(separator: "\n").utf8))
            answers.append((response.status, values, response))
        }
        for _ in 0..<5 { try await post() }
        let stopping = ContinuousClock.now
        await broker.stop()
        print("outage: broker stop took \(ContinuousClock.now - stopping)")
        let stopped = ContinuousClock.now
        for _ in 0..<3 {
            let started = ContinuousClock.now
            try await post()
            let took = ContinuousClock.now - started
            print("outage: a request during the outage was answered \(answers.last!.status) after \(took)")
            // The answer comes at the sink's 3 s delivery timeout, not whenever librdkafka gives up
            // (its own message timeout is minutes): a bound with room for a busy test run.
            #expect(took < .seconds(20), "answered after \(took): \(answers.last!.response.body.prefix(300))")
        }
        print("outage: three requests during the outage took \(ContinuousClock.now - stopped)")
        let restarting = ContinuousClock.now
        try await broker.start()
        print("outage: broker restart took \(ContinuousClock.now - restarting)")
        // Sluice reconnects on its own; new requests succeed again within a bounded time.
        var recovered = false
        for _ in 0..<40 {
            try await post()
            if answers.last?.status == 200 {
                recovered = true
                break
            }
            try await Task.sleep(for: .milliseconds(500))
        }
        for _ in 0..<5 { try await post() }
        #expect(recovered, "requests must succeed again after the broker returns, without restarting Sluice:\n\(sluice.log.suffix(3000))")

        let down = answers[5..<8]
        #expect(down.allSatisfy { $0.status == 503 }, "while the broker is down: \(down.map(\.status))")
        #expect(down.allSatisfy { $0.response.headers.lowercased().contains("retry-after:") })

        // Every event a response claims delivered is in the topic, where the response said.
        let records = try await consume(topic, expecting: answers.filter { $0.status == 200 }.count * 5, bootstrap: broker.bootstrap)
        let byPosition = Dictionary(records.map { ("\($0.partition)/\($0.offset)", $0.value) }, uniquingKeysWith: { first, _ in first })
        var claimed = 0
        for answer in answers {
            let results = answer.response.json["results"] as? [[String: Any]] ?? []
            #expect(results.count == answer.values.count)
            for (value, result) in zip(answer.values, results) {
                guard let partition = result["partition"] as? Int, let offset = result["offset"] as? Int else {
                    #expect(answer.status != 200, "a 200 lists every event as delivered")
                    continue
                }
                claimed += 1
                #expect(byPosition["\(partition)/\(offset)"] == value, "claimed delivered at \(partition)/\(offset) but not found there")
            }
        }
        #expect(claimed >= 50)
        print("outage: statuses \(answers.map(\.status)); \(claimed) events claimed delivered, \(records.count) in the topic")
    }

    @Test func http2AStreamStalledOnASaturatedSinkDoesNotBlockAnotherStream() async throws {
        let broker = try await BrokerProcess()
        let config = """
            listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
            admin: { address: "127.0.0.1:{ADMIN_PORT}" }
            sinks:
              - name: slow
                max_in_flight_bytes: 64KiB
                kafka: { bootstrap_servers: ["\(broker.bootstrap)"], delivery_timeout: 120s }
              - name: fast
                file: { directory: ./fast }
            routes:
              - name: slow
                match: { path: "/v1/slow/{topic}", methods: [POST] }
                ingest: { sink: slow, topic: "{topic}", max_body_bytes: 64MiB, max_events: 1000000, max_wait: 120s }
              - name: fast
                match: { path: "/v1/fast/{topic}", methods: [POST] }
                ingest: { sink: fast, topic: "{topic}" }
            """
        let sluice = try await SluiceProcess(config: config)
        let topic = uniqueTopic("h2-stalled")
        broker.pause()
        // One HTTP/2 connection, two streams, driven by python-hyper's h2: a 5 MB upload to the
        // stalled sink, then a small event to the file sink.
        let client = Process()
        client.executableURL = URL(fileURLWithPath: try which("python3"))
        client.arguments = [
            packageRoot.appendingPathComponent("scripts/testing/h2_two_streams.py").path, String(sluice.port),
            "/v1/slow/\(topic)", "/v1/fast/orders", String(5_000_000),
        ]
        let output = try spawnSerially {
            let pipe = Pipe()
            client.standardOutput = pipe
            try client.run()
            return pipe
        }
        let reader = output.fileHandleForReading

        // The small stream is answered while the big one is still stalled behind its paused sink.
        var firstLines = ""
        while !firstLines.contains("slow "), client.isRunning || !firstLines.isEmpty {
            let chunk = reader.availableData
            if chunk.isEmpty { break }
            firstLines += String(decoding: chunk, as: UTF8.self)
        }
        #expect(firstLines.contains("fast 200"), "client said: \(firstLines)")
        #expect(firstLines.contains("slow pending"), "client said: \(firstLines)")
        let segment = sluice.workDirectory.appendingPathComponent("fast/00000000000000000000.ndjson")
        #expect((try? String(contentsOf: segment, encoding: .utf8))?.contains(#""fast":true"#) == true)

        broker.resume()
        let rest = String(decoding: reader.readDataToEndOfFile(), as: UTF8.self)
        client.waitUntilExit()
        #expect(client.terminationStatus == 0)
        #expect(rest.contains("slow 200"), "client said: \(rest)")
        let events = 5_000_000 / 211
        #expect(try await consume(topic, expecting: events, bootstrap: broker.bootstrap).count == events)
    }
}
