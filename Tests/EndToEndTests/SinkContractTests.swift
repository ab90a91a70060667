import FileSink
import Foundation
import KafkaSink
import KinesisSink
import SinkContractTesting
import Testing
import ZerobusSink

/// Every connector keeps the same sink contract (Tests/SinkContract), each against the real
/// backend CI runs: the Kafka-protocol broker, moto checking SigV4, the Zerobus test server, a
/// directory. A new connector adds one test here.
///
/// The sinks run inside the test runner, on its two threads, beside every other suite: their
/// delivery timeouts are long (2 minutes) so a busy runner slows them without failing events.
@Suite(.timeLimit(.minutes(6))) struct SinkContractTests {
    static let patient = Duration.seconds(120)

    @Test func kafkaKeepsTheSinkContract() async throws {
        try await requireBroker()
        let contract = SinkContract(destination: uniqueTopic("contract")) { context in
            try KafkaSink(config: KafkaSinkConfig(bootstrapServers: [kafkaBootstrap], deliveryTimeout: Self.patient), context: context)
        } makeUnreachable: { context in
            try KafkaSink(config: KafkaSinkConfig(bootstrapServers: ["127.0.0.1:9"], deliveryTimeout: .seconds(2)), context: context)
        }
        let violations = try await contract.check()
        #expect(violations.isEmpty, "\(violations)")
    }

    @Test func fileKeepsTheSinkContract() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-contract-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        // A directory per sink built: a directory has one writer at a time.
        let contract = SinkContract(
            destination: "events",
            make: { context in
                try FileSink(config: FileSinkConfig(directory: root.appendingPathComponent(context.name).path), context: context)
            },
            makeUnreachable: nil)
        let violations = try await contract.check()
        #expect(violations.isEmpty, "\(violations)")
    }

    @Test func kinesisKeepsTheSinkContract() async throws {
        let moto = try await KinesisIngestTests.moto()
        defer { moto.stop() }
        let stream = "contract-\(UUID().uuidString.prefix(8).lowercased())"
        let key = try await KinesisIngestTests.setUp(moto, stream: stream, shards: 1)
        let endpoint = URL(string: moto.endpoint)!
        let contract = SinkContract(destination: stream) { context in
            try KinesisSink(
                config: KinesisSinkConfig(
                    region: "us-east-1", endpoint: endpoint,
                    credentials: .static(accessKeyID: .literal(key.id), secretAccessKey: .literal(key.secret), sessionToken: nil),
                    deliveryTimeout: Self.patient),
                context: context)
        } makeUnreachable: { context in
            try KinesisSink(
                config: KinesisSinkConfig(
                    region: "us-east-1", endpoint: URL(string: "http://127.0.0.1:9")!,
                    credentials: .static(accessKeyID: .literal("AKID"), secretAccessKey: .literal("secret"), sessionToken: nil),
                    requestTimeout: .seconds(1), deliveryTimeout: .seconds(2)),
                context: context)
        }
        let violations = try await contract.check()
        #expect(violations.isEmpty, "\(violations)")
        // What the contract delivered is in the stream: 30 events, then 30 flushed at shutdown.
        await #expect(try KinesisIngestTests.read(moto, stream: stream, key: key).count == 2 * contract.eventCount)
    }

    @Test func zerobusKeepsTheSinkContract() async throws {
        let server = try await ZerobusIngestTests.server()
        defer { server.stop() }
        let secret = ZerobusIngestTests.secret
        let contract = SinkContract(destination: "main.events.clicks") { context in
            try ZerobusSink(
                config: ZerobusSinkConfig(
                    endpoint: URL(string: "http://127.0.0.1:\(server.port)")!, workspaceURL: URL(string: "http://127.0.0.1:\(server.port2)")!,
                    clientID: "sluice", clientSecret: .literal(secret), openTimeout: .seconds(60), deliveryTimeout: Self.patient),
                context: context)
        } makeUnreachable: { context in
            try ZerobusSink(
                config: ZerobusSinkConfig(
                    endpoint: URL(string: "http://127.0.0.1:9")!, workspaceURL: URL(string: "http://127.0.0.1:9")!,
                    clientID: "sluice", clientSecret: .literal(secret), openTimeout: .seconds(1), deliveryTimeout: .seconds(2)),
                context: context)
        }
        let violations = try await contract.check()
        #expect(violations.isEmpty, "\(violations)")
        await #expect(try ZerobusIngestTests.stats(server).committed.count == 2 * contract.eventCount)
    }
}
