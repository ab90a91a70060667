// libFuzzer target: CloudEvents over HTTP (SluiceIngest's CloudEvents.swift): structured and
// batched JSON bodies, and binary-mode header values, built with the JSON scanner by scripts/fuzz.sh.
// Input: byte 0 picks the output (even: Kafka binary mode, odd: structured JSON) and max_events
// (1...8); the rest is the body, and also a ce-subject header value.
import NIOCore
import SluiceConfig
import SluiceCore

func checkEvent(_ event: Event, _ encoding: CloudEventsEncoding) {
    switch encoding {
    case .kafkaBinary:
        for name in ["ce_id", "ce_source", "ce_specversion", "ce_type"] {
            precondition(event.headers.contains { $0.name == name && !$0.value.isEmpty }, "a written event without \(name)")
        }
        precondition(event.headers.first { $0.name == "ce_specversion" }?.value == "1.0", "a specversion other than 1.0 accepted")
    case .structuredJSON:
        precondition(event.headers.isEmpty, "headers for a sink without them")
        event.value.withUnsafeReadableBytes { bytes in
            do throws(JSONScanner.SyntaxError) { try JSONScanner.validate(bytes) } catch {
                preconditionFailure("a structured event that is not JSON")
            }
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let encoding: CloudEventsEncoding = data[0] & 1 == 0 ? .kafkaBinary : .structuredJSON
    let maxEvents = Int(data[0] >> 1 & 7) + 1
    let raw = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    let body = ByteBuffer(bytes: raw)

    if let event = try? CloudEvents.structured(body, encoding: encoding) { checkEvent(event, encoding) }
    do throws(IngestError) {
        let results = try CloudEvents.batch(body, encoding: encoding, maxEvents: maxEvents)
        precondition(results.count <= maxEvents, "a batch past max_events")
        for case .success(let event) in results { checkEvent(event, encoding) }
        for case .failure(let error) in results { precondition(error.code == .invalidCloudEvent, "a per-event failure \(error.code)") }
    } catch {
        precondition([400, 413].contains(error.code.httpStatus), "unexpected status \(error.code.httpStatus)")
    }
    let headers: [(name: String, value: String)] = [
        ("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-source", "/s"), ("ce-type", "t"), ("ce-subject", String(decoding: raw, as: UTF8.self)),
    ]
    if let event = try? CloudEvents.binary(headers: headers, contentType: "application/json", body: body, encoding: encoding) {
        checkEvent(event, encoding)
    }
    return 0
}
