// sluice-loadgen: drives Sluice's gRPC ingest for the benchmarks (127.0.0.1 only).
//
//   sluice-loadgen [--unary] PORT TOPIC EVENTS EVENTS_PER_REQUEST STREAMS [CONNECTIONS]
//
// Sends EVENTS events of 200 bytes, EVENTS_PER_REQUEST per request, over STREAMS concurrent
// PublishStream calls spread over CONNECTIONS (1) HTTP/2 connections; waits for every ack;
// prints "events=N seconds=S events_per_second=R durable=true|false". With --unary, each of the
// STREAMS is a sequence of unary Publish calls instead (one in flight at a time), and a request
// counts as durable when its PublishResponse accepted every event.
//
// Like h2load for the HTTP scenarios, it sends one prepared body again and again (only the
// request's sequence number changes) and reads no more of each ack than its `durable` flag,
// so the client's share of the two cores stays small. The bytes are those SwiftProtobuf writes
// for the same message.
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import SluiceGRPC

let unary = CommandLine.arguments.dropFirst().first == "--unary"
let arguments = unary ? [CommandLine.arguments[0]] + CommandLine.arguments.dropFirst(2) : CommandLine.arguments
guard (6...7).contains(arguments.count), let port = Int(arguments[1]), let events = Int(arguments[3]), let perRequest = Int(arguments[4]),
    let streams = Int(arguments[5]), events > 0, perRequest > 0, streams > 0
else {
    FileHandle.standardError.write(Data("usage: sluice-loadgen [--unary] PORT TOPIC EVENTS EVENTS_PER_REQUEST STREAMS [CONNECTIONS]\n".utf8))
    exit(2)
}
let connections = arguments.count == 7 ? max(1, Int(arguments[6]) ?? 1) : 1
let topic = arguments[2]
let requestsPerStream = events / perRequest / streams

func payload(_ n: Int) -> Data {
    let head = #"{"id":\#(n),"kind":"bench","pad":""#
    return Data((head + String(repeating: "x", count: max(0, 200 - head.utf8.count - 2)) + #""}"#).utf8)
}

/// The request's fields after `sequence` (field 1), as SwiftProtobuf writes them.
let body: [UInt8] = try Sluice_V1_PublishRequest.with {
    $0.topic = topic
    $0.events = (0..<perRequest).map { i in .with { $0.value = payload(i) } }
}.serializedBytes()

/// A prepared request: `sequence` written in front of the prepared fields.
struct PreparedRequest: MessageSerializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ sequence: UInt64) throws -> Bytes {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(body.count + 11)
        if sequence != 0 {
            bytes.append(0x08)
            var value = sequence
            while value >= 0x80 {
                bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
                value >>= 7
            }
            bytes.append(UInt8(value))
        }
        bytes.append(contentsOf: body)
        return Bytes(bytes)
    }
}

/// One varint field of a message (a `PublishAck`'s `durable`, field 2, or a `PublishResponse`'s
/// `accepted`, field 1; 0 when absent); every other field is passed over.
struct VarintField: MessageDeserializer {
    let number: UInt64

    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> UInt64 {
        try serializedMessageBytes.withUnsafeBytes { raw in
            var position = 0
            func varint() throws -> UInt64 {
                var value: UInt64 = 0
                var shift: UInt64 = 0
                while position < raw.count, shift < 64 {
                    let byte = raw[position]
                    position += 1
                    value |= UInt64(byte & 0x7f) << shift
                    if byte & 0x80 == 0 { return value }
                    shift += 7
                }
                throw RPCError(code: .internalError, message: "malformed response message")
            }
            var field: UInt64 = 0
            while position < raw.count {
                let tag = try varint()
                switch (tag >> 3, tag & 7) {
                case (number, 0): field = try varint()
                case (_, 0): _ = try varint()
                case (_, 2): position += Int(try varint())
                default: throw RPCError(code: .internalError, message: "unexpected wire type in response message")
                }
            }
            return field
        }
    }
}

/// STREAMS call slots on one client: PublishStream calls, or sequences of unary Publish calls.
/// Returns how many requests were settled durably.
func publish(on client: GRPCClient<HTTP2ClientTransport.Posix>, slots: Int) async throws -> Int {
    try await withThrowingTaskGroup(of: Int.self) { calls in
        for _ in 0..<slots {
            calls.addTask {
                if unary {
                    var durable = 0
                    for r in 0..<requestsPerStream {
                        let accepted = try await client.unary(
                            request: ClientRequest(message: UInt64(r)), descriptor: Sluice_V1_Ingest.Method.Publish.descriptor,
                            serializer: PreparedRequest(), deserializer: VarintField(number: 1), options: .defaults
                        ) { response in try response.message }
                        if accepted == UInt64(perRequest) { durable += 1 }
                    }
                    return durable
                }
                let request = StreamingClientRequest(of: UInt64.self) { writer in
                    for r in 0..<requestsPerStream { try await writer.write(UInt64(r)) }
                }
                return try await client.bidirectionalStreaming(
                    request: request, descriptor: Sluice_V1_Ingest.Method.PublishStream.descriptor,
                    serializer: PreparedRequest(), deserializer: VarintField(number: 2), options: .defaults
                ) { response in
                    var durable = 0
                    for try await flag in response.messages where flag != 0 { durable += 1 }
                    return durable
                }
            }
        }
        var total = 0
        for try await durable in calls { total += durable }
        return total
    }
}

let start = ContinuousClock.now
let durable = try await withThrowingTaskGroup(of: Int.self) { group in
    for connection in 0..<connections {
        let mine = (0..<streams).filter { $0 % connections == connection }.count
        group.addTask {
            try await withGRPCClient(
                transport: .http2NIOPosix(target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext)
            ) { client in
                try await publish(on: client, slots: mine)
            }
        }
    }
    var total = 0
    for try await durable in group { total += durable }
    return total
}
let elapsed = ContinuousClock.now - start
let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
let sent = requestsPerStream * streams * perRequest
print("events=\(sent) seconds=\(String(format: "%.3f", seconds)) events_per_second=\(Int(Double(sent) / seconds)) durable=\(durable == requestsPerStream * streams)")
