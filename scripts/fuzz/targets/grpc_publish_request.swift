// libFuzzer target: the gRPC ingest path's PublishRequest reader (IngestWire.swift) against
// SwiftProtobuf reading the generated Sluice_V1_PublishRequest. Both must accept and refuse the
// same inputs, and read the same sequence, topic, events, keys, timestamps and headers (a
// header map's last entry of a name wins; the reader orders headers by name).
import Foundation
import NIOCore
import SluiceCore
import SwiftProtobuf

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let ours: IncomingPublishRequest?
    var problem = "fine"
    do {
        ours = try IngestWire.publishRequest(UnsafeRawBufferPointer(start: data, count: size))
    } catch {
        ours = nil
        problem = error.description
    }
    let theirs = try? Sluice_V1_PublishRequest(serializedBytes: Data(bytes: data, count: size))
    func disagree(_ what: String) -> Never {
        // -O drops precondition messages; say what disagreed before failing.
        FileHandle.standardError.write(Data("IngestWire and SwiftProtobuf disagree: \(what)\n".utf8))
        preconditionFailure("IngestWire and SwiftProtobuf disagree")
    }
    guard let ours, let theirs else {
        if (ours == nil) != (theirs == nil) {
            disagree("IngestWire says \(problem); SwiftProtobuf says \(theirs == nil ? "invalid" : "fine")")
        }
        return 0
    }
    guard ours.sequence == theirs.sequence, ours.topic == theirs.topic, ours.events.count == theirs.events.count else {
        disagree("sequence, topic or event count")
    }
    for (event, expected) in zip(ours.events, theirs.events) {
        guard Array(event.value.readableBytesView) == Array(expected.value) else { disagree("value") }
        guard event.key.map({ Array($0.readableBytesView) }) == (expected.hasKey ? Array(expected.key) : nil) else { disagree("key") }
        guard event.timestampMilliseconds == (expected.hasTimestampMs ? expected.timestampMs : nil) else { disagree("timestamp") }
        let headers = expected.headers.sorted { $0.key < $1.key }.map { EventHeader(name: $0.key, value: $0.value) }
        guard event.headers == headers else { disagree("headers") }
    }
    return 0
}
