import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import GRPCProtobuf
import SluiceGRPC
import Testing

/// gRPC ingest through the real binary into the real broker, with grpc-swift-2's client.
@Suite(.timeLimit(.minutes(6))) struct GRPCIngestTests {
    static let config = """
        listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
        admin: { address: "127.0.0.1:{ADMIN_PORT}" }
        grpc: { address: "127.0.0.1:{GRPC_PORT}" }
        sinks:
          - name: events
            kafka: { bootstrap_servers: ["{KAFKA}"], delivery_timeout: 10s }
        routes:
          - name: tenant-only
            match: { grpc_service: sluice.v1.Ingest, grpc_method: Publish, headers: { x-tenant: acme } }
            ingest: { sink: events, topic: "{topic}", max_event_bytes: 1KiB }
          - name: streams
            match: { grpc_service: sluice.v1.Ingest, grpc_method: PublishStream }
            ingest: { sink: events, topic: "{topic}" }
        """

    init() async throws {
        try await requireBroker()
    }

    func withIngestClient<R: Sendable>(
        _ sluice: SluiceProcess, _ body: @Sendable (Sluice_V1_Ingest.Client<HTTP2ClientTransport.Posix>) async throws -> R
    ) async throws -> R {
        try await withGRPCClient(
            transport: .http2NIOPosix(target: .ipv4(address: "127.0.0.1", port: sluice.grpcPort), transportSecurity: .plaintext)
        ) { client in
            try await body(Sluice_V1_Ingest.Client(wrapping: client))
        }
    }

    @Test func aStreamOfBatchesIsAcknowledgedPerSequenceAndLandsInKafka() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        let topic = uniqueTopic("grpc-stream")
        let batches = 1000
        let perBatch = 100
        @Sendable func value(_ batch: Int, _ i: Int) -> String { #"{"batch":\#(batch),"i":\#(i)}"# }
        let acks = try await self.withIngestClient(sluice) { ingest in
            try await ingest.publishStream { writer in
                for batch in 0..<batches {
                    try await writer.write(
                        .with {
                            $0.sequence = UInt64(batch)
                            $0.topic = topic
                            $0.events = (0..<perBatch).map { i in
                                .with {
                                    $0.value = Data(value(batch, i).utf8)
                                    $0.key = Data("k\(i % 7)".utf8)
                                    $0.headers = ["source": "grpc"]
                                }
                            }
                        })
                }
            } onResponse: { response in
                var acks: [UInt64: Sluice_V1_PublishAck] = [:]
                for try await ack in response.messages { acks[ack.sequence] = ack }
                return acks
            }
        }
        #expect(acks.count == batches)
        #expect(acks.values.allSatisfy { $0.durable && $0.results.count == perBatch })

        // Every acknowledged event is in the topic where its ack said, with its key and headers.
        let records = try await consume(topic, expecting: batches * perBatch)
        #expect(records.count == batches * perBatch)
        let byPosition = Dictionary(records.map { ("\($0.partition)/\($0.offset)", $0) }, uniquingKeysWith: { first, _ in first })
        var checked = 0
        for (sequence, ack) in acks {
            for (i, result) in ack.results.enumerated() {
                guard case .delivered(let delivered)? = result.result,
                    let record = byPosition["\(delivered.partition)/\(delivered.offset)"]
                else { continue }
                if record.value == value(Int(sequence), i), record.key == "k\(i % 7)", record.headers.first?.1 == "grpc" {
                    checked += 1
                }
            }
        }
        #expect(checked == batches * perBatch)
    }

    @Test func grpcioPublishesAHundredThousandEventsOverOneStream() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        let topic = uniqueTopic("grpcio")
        let (batches, perBatch) = (1000, 100)
        let result = try await runProgram(
            "python3",
            [packageRoot.appendingPathComponent("scripts/testing/grpc_publish_stream.py").path, String(sluice.grpcPort), topic,
             String(batches), String(perBatch)])
        #expect(result.status == 0, "\(result.stderr.suffix(2000))")
        let summary = (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8))) as? [String: Any] ?? [:]
        #expect(summary["acks"] as? Int == batches)
        #expect(summary["durable"] as? Bool == true)
        let delivered = summary["delivered"] as? [[Int]] ?? []
        #expect(delivered.count == batches * perBatch)

        // Every acknowledged event is in the topic, at the position its ack gave.
        let records = try await consume(topic, expecting: batches * perBatch)
        #expect(records.count == batches * perBatch)
        let byPosition = Dictionary(records.map { ("\($0.partition)/\($0.offset)", $0) }, uniquingKeysWith: { first, _ in first })
        let found = delivered.filter { entry in
            guard entry.count == 4, let record = byPosition["\(entry[2])/\(entry[3])"] else { return false }
            return record.value == #"{"py":\#(entry[0]),"i":\#(entry[1])}"# && record.key == "k\(entry[1] % 5)"
        }
        #expect(found.count == batches * perBatch)
    }

    @Test func unaryPublishReportsEachEventsFate() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        let topic = uniqueTopic("grpc-unary")
        let response = try await self.withIngestClient(sluice) { ingest in
            try await ingest.publish(
                .with {
                    $0.topic = topic
                    $0.events = [
                        .with { $0.value = Data("small".utf8) },
                        .with { $0.value = Data(repeating: 0x61, count: 2048) },
                        .with {
                            $0.value = Data("small too".utf8)
                            $0.timestampMs = 1_700_000_000_000
                        },
                    ]
                }, metadata: ["x-tenant": "acme"])
        }
        #expect(response.accepted == 2)
        #expect(response.results.count == 3)
        guard case .failed(let failure)? = response.results[1].result else {
            Issue.record("the oversized event must fail: \(response.results[1])")
            return
        }
        #expect(failure.code == "event_too_large")
        #expect(!failure.retryable)
        let records = try await consume(topic, expecting: 2)
        #expect(records.map(\.value) == ["small", "small too"])
    }

    /// With a dead_letter, an event past max_event_bytes goes to the dead-letter topic whole;
    /// gRPC, which has no word for it, reports it failed and says where it went.
    @Test func anEventPastMaxEventBytesIsDeadLetteredWhenTheRouteHasADeadLetter() async throws {
        let letters = uniqueTopic("grpc-letters")
        let sluice = try await SluiceProcess(
            config: Self.config + """

                  - name: lettered
                    match: { grpc_service: sluice.v1.Ingest, grpc_method: Publish, headers: { x-tenant: lettered } }
                    ingest: { sink: events, topic: "{topic}", max_event_bytes: 1KiB, dead_letter: { sink: events, topic: \(letters) } }
                """)
        let topic = uniqueTopic("grpc-oversize")
        let response = try await self.withIngestClient(sluice) { ingest in
            try await ingest.publish(
                .with {
                    $0.topic = topic
                    $0.events = [
                        .with { $0.value = Data("small".utf8) },
                        .with { $0.value = Data(repeating: 0x61, count: 2048) },
                        .with { $0.value = Data("small too".utf8) },
                    ]
                }, metadata: ["x-tenant": "lettered"])
        }
        #expect(response.results.count == 3)
        guard case .failed(let failure)? = response.results.count == 3 ? response.results[1].result : nil else {
            Issue.record("the oversized event is reported failed: \(response.results)")
            return
        }
        #expect(failure.code == "event_too_large")
        #expect(failure.message.contains("dead-lettered to events/\(letters)"), "\(failure.message)")
        #expect(try await consume(topic, expecting: 2).map(\.value) == ["small", "small too"])
        let letter = try await consume(letters, expecting: 1)
        #expect(letter.map(\.value) == [String(repeating: "a", count: 2048)])
        #expect(letter.first?.headers.contains { $0.0 == "sluice-error-code" && $0.1 == "event_too_large" } == true)
        #expect(letter.first?.headers.contains { $0.0 == "sluice-original-topic" && $0.1 == topic } == true)
    }

    @Test func unaryCallsWhereEveryEventFailsGetACallStatus() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        func code(_ request: Sluice_V1_PublishRequest) async throws -> RPCError.Code? {
            do {
                _ = try await self.withIngestClient(sluice) { try await $0.publish(request, metadata: ["x-tenant": "acme"]) }
                return nil
            } catch let error as RPCError {
                return error.code
            }
        }
        let oversized = Sluice_V1_Event.with { $0.value = Data(repeating: 0x62, count: 4096) }
        #expect(try await code(.with { $0.topic = "t"; $0.events = [oversized] }) == .invalidArgument)
        #expect(try await code(.with { $0.topic = "bad topic!"; $0.events = [.with { $0.value = Data("x".utf8) }] }) == .invalidArgument)
    }

    /// Bytes sent as they are, for messages no well-behaved client writes.
    struct RawBytes: MessageSerializer {
        func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
    }

    @Test func aMessageThatIsNotAPublishRequestIsInvalidArgumentAndTheServerServesOn() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        let topic = uniqueTopic("grpc-raw")
        let malformed: [[UInt8]] = [
            [0x12, 0x02, 0xc3, 0x28],  // topic not UTF-8
            [0x1a, 0x05, 0x0a, 0x09, 0x61],  // event value longer than the event
            [0x0f],  // wire type 7
        ]
        try await withGRPCClient(
            transport: .http2NIOPosix(target: .ipv4(address: "127.0.0.1", port: sluice.grpcPort), transportSecurity: .plaintext)
        ) { client in
            for bytes in malformed {
                do {
                    _ = try await client.unary(
                        request: ClientRequest(message: bytes, metadata: ["x-tenant": "acme"]),
                        descriptor: Sluice_V1_Ingest.Method.Publish.descriptor, serializer: RawBytes(),
                        deserializer: GRPCProtobuf.ProtobufDeserializer<Sluice_V1_PublishResponse>(), options: .defaults
                    ) { try $0.message }
                    Issue.record("\(bytes) was taken")
                } catch let error as RPCError {
                    #expect(error.code == .invalidArgument)
                    #expect(error.message.contains("sluice.v1.PublishRequest"))
                }
            }
            // The same connection still serves a good request, written by hand the same way.
            var good: [UInt8] = [0x12, UInt8(topic.utf8.count)] + Array(topic.utf8)
            good += [0x1a, 0x05, 0x0a, 0x03] + Array("abc".utf8)
            let response = try await client.unary(
                request: ClientRequest(message: good, metadata: ["x-tenant": "acme"]),
                descriptor: Sluice_V1_Ingest.Method.Publish.descriptor, serializer: RawBytes(),
                deserializer: GRPCProtobuf.ProtobufDeserializer<Sluice_V1_PublishResponse>(), options: .defaults
            ) { try $0.message }
            #expect(response.accepted == 1)
        }
        let records = try await consume(topic, expecting: 1)
        #expect(records.map(\.value) == ["abc"])
    }

    @Test func aCallNoRouteServesIsNotFound() async throws {
        let sluice = try await SluiceProcess(config: Self.config)
        await #expect(throws: RPCError.self) {
            _ = try await self.withIngestClient(sluice) { ingest in
                try await ingest.publish(.with { $0.topic = "t"; $0.events = [.with { $0.value = Data("x".utf8) }] })
            }
        }
        do {
            _ = try await self.withIngestClient(sluice) { ingest in
                try await ingest.publish(.with { $0.topic = "t"; $0.events = [.with { $0.value = Data("x".utf8) }] })
            }
        } catch let error as RPCError {
            #expect(error.code == .notFound)
        }
    }

    @Test func healthFollowsTheBrokerPerSinkAndOverall() async throws {
        let broker = try await BrokerProcess()
        let config = Self.config.replacingOccurrences(of: "{KAFKA}", with: broker.bootstrap)
        let sluice = try await SluiceProcess(config: config)
        func status(_ service: String) async throws -> Grpc_Health_V1_HealthCheckResponse.ServingStatus {
            try await withGRPCClient(
                transport: .http2NIOPosix(target: .ipv4(address: "127.0.0.1", port: sluice.grpcPort), transportSecurity: .plaintext)
            ) { client in
                try await Grpc_Health_V1_Health.Client(wrapping: client).check(.with { $0.service = service }).status
            }
        }
        func waitFor(_ wanted: Grpc_Health_V1_HealthCheckResponse.ServingStatus, _ service: String) async throws -> Bool {
            for _ in 0..<60 {
                if try await status(service) == wanted { return true }
                try await Task.sleep(for: .milliseconds(500))
            }
            return false
        }
        #expect(try await status("") == .serving)
        #expect(try await status("sluice.v1.Ingest") == .serving)
        #expect(try await status("sluice.sink.events") == .serving)
        await #expect(throws: RPCError.self) { _ = try await status("no.such.Service") }

        await broker.stop()
        #expect(try await waitFor(.notServing, ""), "overall health must turn NOT_SERVING with the broker down")
        #expect(try await status("sluice.sink.events") == .notServing)
        try await broker.start()
        #expect(try await waitFor(.serving, "sluice.sink.events"), "and SERVING again when it returns")
    }

    @Test func aPausedSinkStallsAStreamingClientWithoutGrowingMemory() async throws {
        let broker = try await BrokerProcess()
        let config = """
            listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
            admin: { address: "127.0.0.1:{ADMIN_PORT}" }
            grpc: { address: "127.0.0.1:{GRPC_PORT}" }
            sinks:
              - name: events
                max_in_flight_bytes: 8MiB
                kafka: { bootstrap_servers: ["\(broker.bootstrap)"], delivery_timeout: 30s }
            routes:
              - name: unary
                match: { grpc_service: sluice.v1.Ingest, grpc_method: Publish }
                ingest: { sink: events, topic: "{topic}", max_wait: 300ms }
              - name: streams
                match: { grpc_service: sluice.v1.Ingest, grpc_method: PublishStream }
                ingest: { sink: events, topic: "{topic}", max_wait: 120s }
            """
        let sluice = try await SluiceProcess(config: config)
        let topic = uniqueTopic("grpc-paused")
        let (requests, perRequest) = (300, 10)  // 300 requests of 10 x 100 KB: 300 MB
        let written = Counter()
        broker.pause()
        let client = Task {
            try await self.withIngestClient(sluice) { ingest in
                try await ingest.publishStream { writer in
                    let filler = Data(repeating: 0x7A, count: 100_000)
                    for r in 0..<requests {
                        try await writer.write(.with {
                            $0.sequence = UInt64(r)
                            $0.topic = topic
                            $0.events = (0..<perRequest).map { _ in .with { $0.value = filler } }
                        })
                        written.increment()
                    }
                } onResponse: { response in
                    var acks: [Sluice_V1_PublishAck] = []
                    for try await ack in response.messages { acks.append(ack) }
                    return acks
                }
            }
        }
        try await Task.sleep(for: .seconds(3))
        let writtenWhilePaused = written.value
        // The budget (8 MiB) and the HTTP/2 windows hold a few requests, not the 300 MB stream.
        #expect(writtenWhilePaused < 60, "the client wrote \(writtenWhilePaused) MB into a paused sink")

        // A unary call that cannot get room within its route's max_wait is UNAVAILABLE.
        do {
            _ = try await self.withIngestClient(sluice) {
                try await $0.publish(.with { $0.topic = topic; $0.events = [.with { $0.value = Data("u".utf8) }] })
            }
            Issue.record("a saturated sink must refuse the call")
        } catch let error as RPCError {
            #expect(error.code == .unavailable)
        }

        // A deadline is honoured: the call ends DEADLINE_EXCEEDED while its events wait for room,
        // and the server stops waiting for it (no waiter is left behind on the sink's budget).
        do {
            _ = try await self.withIngestClient(sluice) { ingest in
                var options = CallOptions.defaults
                options.timeout = .milliseconds(200)
                return try await ingest.publish(
                    .with { $0.topic = topic; $0.events = [.with { $0.value = Data("d".utf8) }] }, options: options)
            }
            Issue.record("the call must not outlive its deadline")
        } catch let error as RPCError {
            #expect(error.code == .deadlineExceeded || error.code == .unavailable, "\(error)")
        }

        try await Task.sleep(for: .milliseconds(500))
        let sinks = try await curl(["http://127.0.0.1:\(sluice.adminPort)/sinks"])
        #expect((sinks.json["events"] as? [String: Any])?["waiting_requests"] as? Int ?? -1 <= 1, "only the stream may still wait: \(sinks.body)")

        broker.resume()
        let acks = try await client.value
        let peak = procStatusBytes(sluice.process.processIdentifier, "VmHWM") ?? Int.max
        #expect(peak < 256 << 20, "peak RSS \(peak >> 20) MiB")
        // Every request is answered; an event is either delivered or failed retryable (never lost
        // silently), and every event claimed delivered is in the topic.
        #expect(acks.count == requests)
        var delivered = 0
        for ack in acks {
            for result in ack.results {
                switch result.result {
                case .delivered?: delivered += 1
                case .failed(let failure)?: #expect(failure.retryable, "\(failure)")
                case nil: Issue.record("an event without a result")
                }
            }
        }
        #expect(try await consume(topic, expecting: delivered, bootstrap: broker.bootstrap).count >= delivered)
        print("grpc backpressure: \(writtenWhilePaused) of \(requests) requests written while paused; "
            + "\(acks.filter(\.durable).count) acked durable; peak RSS \(peak >> 20) MiB")
    }

    /// A cancelled stream stops at once: the request waiting for room is withdrawn (never
    /// produced), nothing more is read, no waiter or budget is left behind, and only what the
    /// sink had already taken reaches the topic.
    @Test func aCancelledStreamWithdrawsWhatTheSinkHasNotTaken() async throws {
        let broker = try await BrokerProcess()
        let config = """
            listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
            admin: { address: "127.0.0.1:{ADMIN_PORT}" }
            grpc: { address: "127.0.0.1:{GRPC_PORT}" }
            sinks:
              - name: events
                max_in_flight_events: 10
                kafka: { bootstrap_servers: ["\(broker.bootstrap)"], delivery_timeout: 30s }
            routes:
              - name: streams
                match: { grpc_service: sluice.v1.Ingest, grpc_method: PublishStream }
                ingest: { sink: events, topic: "{topic}", max_wait: 120s }
            """
        let sluice = try await SluiceProcess(config: config)
        let topic = uniqueTopic("grpc-cancelled")
        @Sendable func request(_ sequence: Int, _ label: String) -> Sluice_V1_PublishRequest {
            .with {
                $0.sequence = UInt64(sequence)
                $0.topic = topic
                $0.events = (0..<10).map { i in .with { $0.value = Data("\(label)-\(i)".utf8) } }
            }
        }
        func waitingRequests() async throws -> Int {
            let sinks = try await curl(["http://127.0.0.1:\(sluice.adminPort)/sinks"])
            return (sinks.json["events"] as? [String: Any])?["waiting_requests"] as? Int ?? -1
        }

        broker.pause()
        let acksBeforeCancel = Counter()
        let client = Task {
            try await self.withIngestClient(sluice) { ingest in
                try await ingest.publishStream { writer in
                    // The first request takes the whole budget (10 events); the second waits for room.
                    try await writer.write(request(0, "taken"))
                    try await writer.write(request(1, "withdrawn"))
                    try await Task.sleep(for: .seconds(600))
                } onResponse: { response in
                    for try await _ in response.messages { acksBeforeCancel.increment() }
                }
            }
        }
        var waited = false
        for _ in 0..<100 where !waited {
            waited = try await waitingRequests() == 1
            if !waited { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(waited, "the second request must be waiting for the paused sink's budget")

        client.cancel()
        _ = await client.result
        var withdrawn = false
        for _ in 0..<100 where !withdrawn {
            withdrawn = try await waitingRequests() == 0
            if !withdrawn { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(withdrawn, "the cancelled stream's waiting request must leave the sink's queue")
        #expect(acksBeforeCancel.value == 0, "nothing was durable while the broker was paused")

        broker.resume()
        // The budget the first request took comes back with its delivery reports: a new stream
        // gets room and is acknowledged durable.
        let acks = try await self.withIngestClient(sluice) { ingest in
            try await ingest.publishStream { writer in
                try await writer.write(request(0, "after"))
            } onResponse: { response in
                var acks: [Sluice_V1_PublishAck] = []
                for try await ack in response.messages { acks.append(ack) }
                return acks
            }
        }
        #expect(acks.count == 1 && acks.allSatisfy(\.durable), "\(acks)")

        let values = Set(try await consume(topic, expecting: 20, bootstrap: broker.bootstrap).map(\.value))
        #expect(values == Set((0..<10).flatMap { ["taken-\($0)", "after-\($0)"] }), "\(values.sorted())")
        // Nothing withdrawn turns up later either.
        try await Task.sleep(for: .seconds(1))
        #expect(try await consume(topic, expecting: 21, bootstrap: broker.bootstrap).count == 20)
    }
}
