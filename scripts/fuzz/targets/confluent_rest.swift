// libFuzzer target: Confluent REST Proxy v2 produce bodies and paths (SluiceIngest's
// ConfluentREST.swift), built with the JSON scanner and body decoding by scripts/fuzz.sh.
// Input: byte 0 picks the embedded format (even: json, odd: binary) and max_events (1...8),
// byte 1 max_event_bytes (1...256); the rest is the body, and also tried as a request path.
import NIOCore
import SluiceCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 2 else { return 0 }
    let format: ConfluentREST.V2Format = data[0] & 1 == 0 ? .json : .binary
    let maxEvents = Int(data[0] >> 1 & 7) + 1
    let maxEventBytes = Int(data[1]) + 1
    let raw = UnsafeRawBufferPointer(start: data + 2, count: size - 2)
    let body = ByteBuffer(bytes: raw)

    if let target = ConfluentREST.v2Target(Substring(decoding: raw, as: UTF8.self)) {
        precondition(!target.topic.isEmpty && !target.topic.contains("/"), "a topic must be one non-empty segment")
        precondition((target.partition ?? 0) >= 0, "a negative partition")
    }
    do throws(ConfluentREST.RequestError) {
        let records = try ConfluentREST.decodeV2(body, format: format, partition: nil, maxEvents: maxEvents, maxEventBytes: maxEventBytes)
        precondition(!records.isEmpty && records.count <= maxEvents, "\(records.count) records past max_events \(maxEvents)")
        for record in records {
            switch record {
            case .tooLarge(let bytes):
                precondition(bytes > maxEventBytes, "a record within max_event_bytes refused as too large")
            case .event(let event):
                precondition(event.size <= maxEventBytes, "a record over max_event_bytes accepted")
                precondition(!event.valueIsNull || event.value.readableBytes == 0, "a null value with bytes")
                precondition((event.partition ?? 0) >= 0, "a negative partition")
                guard format == .json else { continue }
                // JSON embedded format: keys and values are JSON text.
                for part in [event.key, event.valueIsNull ? nil : event.value].compactMap({ $0 }) {
                    part.withUnsafeReadableBytes { bytes in
                        do throws(JSONScanner.SyntaxError) { try JSONScanner.validate(bytes) } catch {
                            preconditionFailure("a JSON record's key or value is not valid JSON")
                        }
                    }
                }
            }
        }
    } catch {
        precondition([400, 413, 422].contains(error.status), "unexpected status \(error.status)")
        precondition(error.errorCode == error.status || error.errorCode / 100 == error.status, "error_code \(error.errorCode) for status \(error.status)")
    }
    return 0
}
