import Foundation
import NIOCore
import SluiceCore
import SwiftProtobuf
import Testing

@testable import SluiceGRPC

/// `IngestWire` against SwiftProtobuf: the same bytes read the same, the same answers written
/// byte for byte. (The `grpc_publish_request` fuzz target compares reading on arbitrary input.)
@Suite struct IngestWireTests {
    /// What SwiftProtobuf reads, in the ingest path's terms (headers ordered by name, as the
    /// service ordered them when it read generated messages).
    static func expected(_ message: Sluice_V1_PublishRequest) -> (UInt64, String, [[String]]) {
        let events = message.events.map { event -> [String] in
            [
                String(decoding: event.value, as: UTF8.self),
                event.hasKey ? "key=" + String(decoding: event.key, as: UTF8.self) : "no key",
                event.hasTimestampMs ? "ts=\(event.timestampMs)" : "no ts",
            ] + event.headers.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value)" }
        }
        return (message.sequence, message.topic, events)
    }

    static func read(_ bytes: [UInt8]) throws -> (UInt64, String, [[String]]) {
        let request = try bytes.withUnsafeBytes { try IngestWire.publishRequest($0) }
        let events = request.events.map { event -> [String] in
            [
                String(buffer: event.value),
                event.key.map { "key=" + String(buffer: $0) } ?? "no key",
                event.timestampMilliseconds.map { "ts=\($0)" } ?? "no ts",
            ] + event.headers.map { "\($0.name):\($0.value)" }
        }
        return (request.sequence, request.topic, events)
    }

    @Test func readsWhatSwiftProtobufWritesAsSwiftProtobufReadsIt() throws {
        var generator = SystemRandomNumberGenerator()
        for round in 0..<300 {
            let message = Sluice_V1_PublishRequest.with {
                $0.sequence = round % 3 == 0 ? 0 : UInt64.random(in: 0...UInt64.max, using: &generator)
                $0.topic = ["", "orders", "tøpic-ü-😀", String(repeating: "t", count: 200)][round % 4]
                $0.events = (0..<Int.random(in: 0...20, using: &generator)).map { index in
                    .with { event in
                        event.value = Data(String(repeating: "v\(index)", count: Int.random(in: 0...100, using: &generator)).utf8)
                        if index % 3 != 0 { event.key = Data("k\(index)".utf8) }
                        if index % 4 == 1 { event.key = Data() }  // present but empty
                        if index % 2 == 0 { event.timestampMs = Int64.random(in: Int64.min...Int64.max, using: &generator) }
                        for header in 0..<(index % 5) { event.headers["h\(header)-\(index % 3)"] = "value \(header) é" }
                    }
                }
            }
            let bytes: [UInt8] = try message.serializedBytes()
            let read = try Self.read(bytes)
            let expected = Self.expected(try Sluice_V1_PublishRequest(serializedBytes: bytes))
            #expect(read.0 == expected.0)
            #expect(read.1 == expected.1)
            #expect(read.2 == expected.2)
        }
    }

    /// Hand-written messages SwiftProtobuf's writer never produces but must be read the same.
    static let oddMessages: [(String, [UInt8])] = [
        // Two entries named "a": the last wins; an entry without a value has "".
        ("repeated map names", [0x1a, 0x12, 0x0a, 0x01, 0x76, 0x1a, 0x06, 0x0a, 0x01, 0x61, 0x12, 0x01, 0x31, 0x1a, 0x05, 0x0a, 0x01, 0x61, 0x12, 0x00]),
        ("entry without value", [0x1a, 0x05, 0x1a, 0x03, 0x0a, 0x01, 0x7a]),
        // sequence written twice: the last wins; topic as a varint: skipped as unknown.
        ("repeated scalar, wrong wire type", [0x08, 0x01, 0x08, 0x02, 0x10, 0x05]),
        // An unknown group (field 9) holding a varint, a nested group and a fixed32.
        ("unknown group", [0x4b, 0x08, 0x01, 0x53, 0x54, 0x15, 0x01, 0x02, 0x03, 0x04, 0x4c, 0x08, 0x07]),
        // Unknown fixed64 and length-delimited fields inside an event.
        ("unknown fields in an event", [0x1a, 0x0f, 0x29, 1, 2, 3, 4, 5, 6, 7, 8, 0x32, 0x02, 0x00, 0x00, 0x0a, 0x00]),
        // A map key of the wrong wire type: SwiftProtobuf passes over the tag only.
        ("map key with wrong wire type", [0x1a, 0x06, 0x1a, 0x04, 0x08, 0x0a, 0x01, 0x61]),
        // A five-byte tag for field 3.
        ("long tag", [0x9a, 0x80, 0x80, 0x80, 0x00, 0x02, 0x0a, 0x00]),
        ("empty", []),
    ]

    static let malformedMessages: [(String, [UInt8])] = [
        ("truncated varint", [0x08, 0x80]),
        ("truncated length", [0x12, 0x05, 0x61]),
        ("invalid UTF-8 topic", [0x12, 0x02, 0xc3, 0x28]),
        ("invalid UTF-8 header", [0x1a, 0x06, 0x1a, 0x04, 0x0a, 0x02, 0xff, 0xfe]),
        ("field number 0", [0x00, 0x01]),
        ("wire type 7", [0x0f]),
        ("end group outside a group", [0x0c]),
        ("unterminated group", [0x4b, 0x08, 0x01]),
        ("end of another group", [0x4b, 0x54]),
        ("tag too long", [0x9a, 0x80, 0x80, 0x80, 0x10, 0x02]),
        ("eleven-byte varint", [0x08] + [UInt8](repeating: 0xff, count: 10) + [0x01]),
        ("groups nested too deep", [UInt8](repeating: 0x4b, count: 100) + [UInt8](repeating: 0x4c, count: 100)),
    ]

    @Test(arguments: oddMessages)
    func readsOddButValidMessagesAsSwiftProtobufDoes(_ name: String, _ bytes: [UInt8]) throws {
        let message = try Sluice_V1_PublishRequest(serializedBytes: bytes)
        let read = try Self.read(bytes)
        let expected = Self.expected(message)
        #expect(read.0 == expected.0, "\(name)")
        #expect(read.1 == expected.1, "\(name)")
        #expect(read.2 == expected.2, "\(name)")
    }

    @Test(arguments: malformedMessages)
    func refusesWhatSwiftProtobufRefuses(_ name: String, _ bytes: [UInt8]) {
        #expect(throws: (any Error).self, "SwiftProtobuf: \(name)") { try Sluice_V1_PublishRequest(serializedBytes: bytes) }
        #expect(throws: IngestWire.Malformed.self, "IngestWire: \(name)") { try Self.read(bytes) }
    }

    @Test func groupsJustWithinTheDepthLimitAreRead() throws {
        // 99 levels at the top (the message itself is the hundredth).
        let bytes = [UInt8](repeating: 0x4b, count: 99) + [UInt8](repeating: 0x4c, count: 99)
        _ = try Sluice_V1_PublishRequest(serializedBytes: bytes)
        _ = try Self.read(bytes)
    }

    @Test func theEventsSliceOneCopyOfTheRequest() throws {
        let message = Sluice_V1_PublishRequest.with {
            $0.events = (0..<3).map { index in .with { $0.value = Data("event-\(index)".utf8); $0.key = Data("k".utf8) } }
        }
        let bytes: [UInt8] = try message.serializedBytes()
        let request = try bytes.withUnsafeBytes { try IngestWire.publishRequest($0) }
        // A copy per event would be a buffer of the event's size; a slice shares the request's.
        for event in request.events {
            #expect(event.value.storageCapacity >= bytes.count)
            #expect(event.key!.storageCapacity >= bytes.count)
        }
    }

    static func generatedResult(_ result: DeliveryResult) -> Sluice_V1_EventResult {
        .with {
            switch result {
            case .delivered(let receipt):
                $0.delivered = .with { delivered in
                    delivered.partition = receipt.partition ?? 0
                    delivered.offset = receipt.offset ?? 0
                    delivered.shardID = receipt.shardID ?? ""
                    delivered.sequenceNumber = receipt.sequenceNumber ?? ""
                }
            case .failed(let failure):
                $0.failed = .with { failed in
                    failed.code = failure.code
                    failed.message = failure.message
                    failed.retryable = failure.isRetryable
                }
            }
        }
    }

    static let results: [DeliveryResult] = [
        .delivered(DeliveryReceipt(partition: 3, offset: 1 << 40)),
        .delivered(DeliveryReceipt(partition: 0, offset: 0)),
        .delivered(DeliveryReceipt(partition: -1, offset: -1)),
        .delivered(DeliveryReceipt(partition: Int32.max, offset: Int64.max)),
        .delivered(DeliveryReceipt(offset: 77)),
        .delivered(DeliveryReceipt()),
        .delivered(DeliveryReceipt(shardID: "shardId-000000000001", sequenceNumber: "49590338271490256608559692538361571095921575989136588898")),
        .failed(.queueFull(sink: "s")),
        .failed(.notAttempted),
        .failed(DeliveryFailure(code: "x_é", message: String(repeating: "long message ", count: 20), isRetryable: false)),
    ]

    @Test(arguments: [0, 1, 7, 300] as [UInt64], [true, false])
    func writesAcksAsSwiftProtobufDoes(_ sequence: UInt64, _ durable: Bool) throws {
        for count in [0, 1, Self.results.count] {
            let results = Array(Self.results.prefix(count))
            let ours = IngestWire.publishAck(OutgoingPublishAck(sequence: sequence, durable: durable, results: DeliveryResults(results)))
            let generated: [UInt8] = try Sluice_V1_PublishAck.with {
                $0.sequence = sequence
                $0.durable = durable
                $0.results = results.map(Self.generatedResult)
            }.serializedBytes()
            #expect(ours == generated)
        }
    }

    @Test(arguments: [0, 1, 1_000_000] as [UInt32])
    func writesResponsesAsSwiftProtobufDoes(_ accepted: UInt32) throws {
        let ours = IngestWire.publishResponse(OutgoingPublishResponse(accepted: accepted, results: DeliveryResults(Self.results)))
        let generated: [UInt8] = try Sluice_V1_PublishResponse.with {
            $0.accepted = accepted
            $0.results = Self.results.map(Self.generatedResult)
        }.serializedBytes()
        #expect(ours == generated)
    }
}
