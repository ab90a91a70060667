// sluice-loadgen: drives Sluice's gRPC PublishStream for the benchmarks (127.0.0.1 only).
//
//   sluice-loadgen PORT TOPIC EVENTS EVENTS_PER_REQUEST STREAMS
//
// Sends EVENTS events of 200 bytes, EVENTS_PER_REQUEST per request, over STREAMS concurrent
// PublishStream calls on one HTTP/2 connection; waits for every ack; prints
// "events=N seconds=S events_per_second=R durable=true|false".
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import SluiceGRPC

let arguments = CommandLine.arguments
guard arguments.count == 6, let port = Int(arguments[1]), let events = Int(arguments[3]), let perRequest = Int(arguments[4]),
    let streams = Int(arguments[5]), events > 0, perRequest > 0, streams > 0
else {
    FileHandle.standardError.write(Data("usage: sluice-loadgen PORT TOPIC EVENTS EVENTS_PER_REQUEST STREAMS\n".utf8))
    exit(2)
}
let topic = arguments[2]
let requestsPerStream = events / perRequest / streams

@Sendable func payload(_ n: Int) -> Data {
    let head = #"{"id":\#(n),"kind":"bench","pad":""#
    return Data((head + String(repeating: "x", count: max(0, 200 - head.utf8.count - 2)) + #""}"#).utf8)
}

let start = ContinuousClock.now
let durable = try await withGRPCClient(
    transport: .http2NIOPosix(target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext)
) { client in
    let ingest = Sluice_V1_Ingest.Client(wrapping: client)
    return try await withThrowingTaskGroup(of: Int.self) { group in
        for stream in 0..<streams {
            group.addTask {
                try await ingest.publishStream { writer in
                    for r in 0..<requestsPerStream {
                        try await writer.write(.with {
                            $0.sequence = UInt64(r)
                            $0.topic = topic
                            $0.events = (0..<perRequest).map { i in .with { $0.value = payload((stream * requestsPerStream + r) * perRequest + i) } }
                        })
                    }
                } onResponse: { response in
                    var durable = 0
                    for try await ack in response.messages where ack.durable { durable += 1 }
                    return durable
                }
            }
        }
        var total = 0
        for try await durable in group { total += durable }
        return total
    }
}
let elapsed = ContinuousClock.now - start
let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
let sent = requestsPerStream * streams * perRequest
print("events=\(sent) seconds=\(String(format: "%.3f", seconds)) events_per_second=\(Int(Double(sent) / seconds)) durable=\(durable == requestsPerStream * streams)")
