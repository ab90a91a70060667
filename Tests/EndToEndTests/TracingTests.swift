import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import SluiceGRPC
import Testing

/// OpenTelemetry traces through the real binary: spans exported over OTLP/HTTP to a receiver
/// built on the official opentelemetry-proto package (scripts/testing/otlp_receiver.py), the
/// client's trace continued, the messaging and HTTP conventions followed, and the trace context
/// carried into the Kafka records and to the proxied upstream.
@Suite(.timeLimit(.minutes(6))) struct TracingTests {
    static let receiverScript = packageRoot.appendingPathComponent("scripts/testing/otlp_receiver.py").path
    static let upstreamScript = packageRoot.appendingPathComponent("scripts/testing/proxy_upstream.py").path

    static let config = """
        listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
        admin: { address: "127.0.0.1:{ADMIN_PORT}" }
        grpc: { address: "127.0.0.1:{GRPC_PORT}" }
        access_log: { path: ./access.log }
        tracing:
          otlp: { endpoint: "http://127.0.0.1:{OTLP_PORT}", protocol: http/protobuf }
          sample_ratio: 1
          service_name: sluice-under-test
        upstreams:
          - name: echo
            endpoints: ["127.0.0.1:{UPSTREAM_PORT}"]
        sinks:
          - name: events
            kafka: { bootstrap_servers: ["{KAFKA}"], delivery_timeout: 10s }
        routes:
          - name: ingest
            match: { path: "/v1/events/{topic}", methods: [POST] }
            ingest: { sink: events, topic: "{topic}", headers_to_kafka: [traceparent, x-tenant] }
          - name: api
            match: { path_prefix: /api }
            proxy: { upstream: echo }
          - name: grpc
            match: { grpc_service: sluice.v1.Ingest }
            ingest: { sink: events, topic: "{topic}" }
        """

    struct ExportedSpan {
        var traceID: String
        var spanID: String
        var parentSpanID: String
        var name: String
        var kind: String
        var attributes: [String: Any]
        var service: String?
        var via: String
    }

    static func spans(_ receiver: PeerProcess) async throws -> [ExportedSpan] {
        let response = try await curl([receiver.endpoint + "/spans"])
        let list = (try? JSONSerialization.jsonObject(with: Data(response.body.utf8))) as? [[String: Any]] ?? []
        return list.map {
            ExportedSpan(
                traceID: $0["trace_id"] as? String ?? "", spanID: $0["span_id"] as? String ?? "", parentSpanID: $0["parent_span_id"] as? String ?? "",
                name: $0["name"] as? String ?? "", kind: $0["kind"] as? String ?? "", attributes: $0["attributes"] as? [String: Any] ?? [:],
                service: $0["service"] as? String, via: $0["via"] as? String ?? "")
        }
    }

    /// Waits until the receiver holds spans of `traceID` that satisfy `done`.
    static func spans(of traceID: String, _ receiver: PeerProcess, until done: ([ExportedSpan]) -> Bool) async throws -> [ExportedSpan] {
        var found: [ExportedSpan] = []
        for _ in 0..<100 {
            found = try await Self.spans(receiver).filter { $0.traceID == traceID }
            if done(found) { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        return found
    }

    static func randomHex(_ bytes: Int) -> String {
        (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }

    init() async throws {
        try await requireBroker()
    }

    @Test func theClientsTraceContinuesThroughSluiceIntoKafkaAndTheUpstream() async throws {
        let receiver = try await PeerProcess("otlp-receiver", ["python3", Self.receiverScript, "{PORT}"])
        let upstream = try await PeerProcess("upstream-echo", ["python3", Self.upstreamScript, "--port", "{PORT}", "--name", "echo"])
        let config = Self.config
            .replacingOccurrences(of: "{OTLP_PORT}", with: String(receiver.port))
            .replacingOccurrences(of: "{UPSTREAM_PORT}", with: String(upstream.port))
        let sluice = try await SluiceProcess(config: config, environment: ["OTEL_BSP_SCHEDULE_DELAY": "100"])
        let topic = uniqueTopic("traced")

        // HTTP ingest: the client's traceparent (sampled) is continued; the records carry
        // Sluice's producer span in its place, although the route copies traceparent headers.
        let traceID = Self.randomHex(16)
        let clientSpan = Self.randomHex(8)
        let posted = try await curl(
            [
                "-H", "content-type: application/x-ndjson", "-H", "traceparent: 00-\(traceID)-\(clientSpan)-01", "-H", "x-tenant: acme",
                "\(sluice.baseURL)/v1/events/\(topic)",
            ], body: Data("{\"a\":1}\n{\"b\":2}\n".utf8))
        #expect(posted.status == 200, "\(posted.body)")

        let spans = try await Self.spans(of: traceID, receiver) { found in
            found.contains { $0.kind == "SPAN_KIND_SERVER" } && found.contains { $0.kind == "SPAN_KIND_PRODUCER" }
        }
        let server = try #require(spans.first { $0.kind == "SPAN_KIND_SERVER" }, "spans: \(spans.map(\.name)); receiver: \(receiver.logText)")
        #expect(server.parentSpanID == clientSpan, "the server span's parent is the client's span")
        #expect(server.name == "POST /v1/events/{topic}")
        #expect(server.service == "sluice-under-test")
        #expect(server.attributes["http.request.method"] as? String == "POST")
        #expect(server.attributes["http.route"] as? String == "/v1/events/{topic}")
        #expect(server.attributes["http.response.status_code"] as? Int == 200)
        #expect(server.attributes["url.path"] as? String == "/v1/events/\(topic)")
        let producer = try #require(spans.first { $0.kind == "SPAN_KIND_PRODUCER" })
        #expect(producer.parentSpanID == server.spanID)
        #expect(producer.name == "send \(topic)")
        #expect(producer.attributes["messaging.system"] as? String == "kafka")
        #expect(producer.attributes["messaging.destination.name"] as? String == topic)
        #expect(producer.attributes["messaging.operation.type"] as? String == "send")
        #expect(producer.attributes["messaging.batch.message_count"] as? Int == 2)

        let records = try await consume(topic, expecting: 2)
        #expect(records.count == 2)
        for record in records {
            let parents = record.headers.filter { $0.0 == "traceparent" }.map(\.1)
            #expect(parents == ["00-\(traceID)-\(producer.spanID)-01"], "one traceparent, the producer span's: \(record.headers)")
            #expect(record.headers.contains { $0 == ("x-tenant", "acme") })
        }

        // The access log names the trace.
        _ = try await curl(["\(sluice.baseURL)/nowhere"])

        // Proxy: a client span per attempt; the upstream sees its context, not the client's.
        let proxiedTrace = Self.randomHex(16)
        let proxied = try await curl(["-H", "traceparent: 00-\(proxiedTrace)-\(Self.randomHex(8))-01", "\(sluice.baseURL)/api/hello"])
        #expect(proxied.status == 200)
        let echoed = (proxied.json["headers"] as? [String: Any]) ?? [:]
        let forwarded = (echoed["traceparent"] as? String) ?? (echoed["Traceparent"] as? String) ?? ""
        let proxySpans = try await Self.spans(of: proxiedTrace, receiver) { found in
            found.contains { $0.kind == "SPAN_KIND_CLIENT" } && found.contains { $0.kind == "SPAN_KIND_SERVER" }
        }
        let client = try #require(proxySpans.first { $0.kind == "SPAN_KIND_CLIENT" }, "\(proxySpans.map(\.name))")
        #expect(forwarded == "00-\(proxiedTrace)-\(client.spanID)-01", "\(echoed)")
        #expect(client.attributes["http.response.status_code"] as? Int == 200)
        #expect(client.attributes["server.port"] as? Int == upstream.port)
        #expect(client.attributes["sluice.upstream"] as? String == "echo")

        // gRPC: the call's metadata carries the trace in.
        let grpcTrace = Self.randomHex(16)
        let grpcParent = Self.randomHex(8)
        let accepted = try await withGRPCClient(
            transport: .http2NIOPosix(target: .ipv4(address: "127.0.0.1", port: sluice.grpcPort), transportSecurity: .plaintext)
        ) { grpc in
            try await Sluice_V1_Ingest.Client(wrapping: grpc).publish(
                .with {
                    $0.topic = topic
                    $0.events = [.with { $0.value = Data("{}".utf8) }]
                }, metadata: ["traceparent": "00-\(grpcTrace)-\(grpcParent)-01"]
            ).accepted
        }
        #expect(accepted == 1)
        let grpcSpans = try await Self.spans(of: grpcTrace, receiver) { found in
            found.contains { $0.kind == "SPAN_KIND_SERVER" } && found.contains { $0.kind == "SPAN_KIND_PRODUCER" }
        }
        let call = try #require(grpcSpans.first { $0.kind == "SPAN_KIND_SERVER" }, "\(grpcSpans.map(\.name))")
        #expect(call.parentSpanID == grpcParent && call.name == "sluice.v1.Ingest/Publish")
        #expect(call.attributes["rpc.system"] as? String == "grpc" && call.attributes["rpc.grpc.status_code"] as? Int == 0)
        let grpcProducer = try #require(grpcSpans.first { $0.kind == "SPAN_KIND_PRODUCER" })
        #expect(grpcProducer.parentSpanID == call.spanID)
        #expect(grpcProducer.attributes["messaging.kafka.offset"] != nil, "a single event's offset is on its span")
        let grpcRecords = try await consume(topic, expecting: 3)
        #expect(grpcRecords.contains { record in record.headers.contains { $0.0 == "traceparent" && $0.1.contains(grpcTrace) } })

        #expect(try await sluice.terminate() == 0)
        let log = try String(contentsOf: sluice.workDirectory.appendingPathComponent("access.log"), encoding: .utf8)
        let lines = log.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(lines.first?["trace_id"] as? String == traceID)
        #expect(lines.contains { $0["trace_id"] as? String == proxiedTrace })
        #expect(lines.contains { $0["trace_id"] as? String == grpcTrace })
        #expect(lines.count == 4)
    }

    static let fileConfig = """
        listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
        admin: { address: "127.0.0.1:{ADMIN_PORT}" }
        {TRACING}
        sinks: [{ name: archive, file: { directory: ./events } }]
        routes: [{ name: open, match: { path: /open }, ingest: { sink: archive, topic: open } }]
        """

    /// Posts one traced request and returns the spans of its trace once both arrived.
    func tracedRequest(_ sluice: SluiceProcess, _ receiver: PeerProcess) async throws -> [ExportedSpan] {
        let traceID = Self.randomHex(16)
        let posted = try await curl(
            ["-H", "traceparent: 00-\(traceID)-\(Self.randomHex(8))-01", "\(sluice.baseURL)/open"], body: Data("{}".utf8))
        #expect(posted.status == 200)
        return try await Self.spans(of: traceID, receiver) { $0.count >= 2 }
    }

    @Test func spansGoOverOTLPgRPCWhenConfigured() async throws {
        let receiver = try await PeerProcess("otlp-receiver", ["python3", Self.receiverScript, "{PORT}", "{PORT2}"])
        let tracing = #"tracing: { otlp: { endpoint: "http://127.0.0.1:\#(receiver.port2)", protocol: grpc } }"#
        let sluice = try await SluiceProcess(
            config: Self.fileConfig.replacingOccurrences(of: "{TRACING}", with: tracing), environment: ["OTEL_BSP_SCHEDULE_DELAY": "100"])
        let spans = try await self.tracedRequest(sluice, receiver)
        #expect(spans.count == 2 && spans.allSatisfy { $0.via == "grpc" }, "\(spans.map { ($0.name, $0.via) })")
        #expect(spans.first { $0.kind == "SPAN_KIND_PRODUCER" }?.attributes["messaging.system"] as? String == "sluice_file")
        #expect(spans.first?.service == "sluice")
        #expect(try await sluice.terminate() == 0)
    }

    /// Without a tracing block, the standard variables alone turn tracing on and configure it.
    @Test func theStandardEnvironmentVariablesTurnTracingOn() async throws {
        let receiver = try await PeerProcess("otlp-receiver", ["python3", Self.receiverScript, "{PORT}"])
        let sluice = try await SluiceProcess(
            config: Self.fileConfig.replacingOccurrences(of: "{TRACING}", with: ""),
            environment: [
                "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_SERVICE_NAME": "edge-7", "OTEL_BSP_SCHEDULE_DELAY": "100",
            ])
        let spans = try await self.tracedRequest(sluice, receiver)
        #expect(spans.count == 2 && spans.allSatisfy { $0.via == "http" && $0.service == "edge-7" }, "\(spans.map { ($0.name, $0.service) })")
        #expect(try await sluice.terminate() == 0)
    }

    @Test func unsampledClientsAreNotExportedButStillCarried() async throws {
        let receiver = try await PeerProcess("otlp-receiver", ["python3", Self.receiverScript, "{PORT}"])
        let config = Self.config
            .replacingOccurrences(of: "{OTLP_PORT}", with: String(receiver.port))
            .replacingOccurrences(of: "{UPSTREAM_PORT}", with: String(try freePort()))
        let sluice = try await SluiceProcess(config: config, environment: ["OTEL_BSP_SCHEDULE_DELAY": "100"])
        let topic = uniqueTopic("unsampled")
        let traceID = Self.randomHex(16)
        let posted = try await curl(
            ["-H", "traceparent: 00-\(traceID)-\(Self.randomHex(8))-00", "\(sluice.baseURL)/v1/events/\(topic)"], body: Data("{}".utf8))
        #expect(posted.status == 200)
        let records = try await consume(topic, expecting: 1)
        let parent = records.first?.headers.first { $0.0 == "traceparent" }?.1 ?? ""
        #expect(parent.hasPrefix("00-\(traceID)-") && parent.hasSuffix("-00"), "the trace and its not-sampled flag go on: \(parent)")
        // A sampled request after it is exported; the unsampled one never is.
        let sampled = Self.randomHex(16)
        _ = try await curl(["-H", "traceparent: 00-\(sampled)-\(Self.randomHex(8))-01", "\(sluice.baseURL)/v1/events/\(topic)"], body: Data("{}".utf8))
        _ = try await Self.spans(of: sampled, receiver) { $0.count >= 2 }
        await #expect(try Self.spans(receiver).allSatisfy { $0.traceID != traceID })
        #expect(try await sluice.terminate() == 0)
    }
}
