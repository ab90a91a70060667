// libFuzzer target: Confluent REST Proxy produce bodies and paths (SluiceIngest's
// ConfluentREST.swift, v2, and ConfluentV3.swift: records, batches, the concatenated-JSON
// stream splitter, RFC 3339 timestamps), built with the JSON scanner by scripts/fuzz.sh.
// Input: byte 0 picks the v2 embedded format (even: json, odd: binary) and max_events (1...8),
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
    // v3: one record, a batch, and the stream split wherever the reads cut it.
    if case .success(let record) = ConfluentREST.decodeV3Record(body, maxEventBytes: maxEventBytes, now: 0) {
        precondition(record.event.size <= maxEventBytes, "a v3 record over max_event_bytes accepted")
        precondition(record.value == nil || record.event.value.readableBytes == record.value!.size, "a value's size misreported")
    }
    if let entries = try? ConfluentREST.decodeV3Batch(body, maxEntries: maxEvents, maxEventBytes: maxEventBytes, now: 0) {
        precondition(!entries.isEmpty && entries.count <= maxEvents && Set(entries.map(\.id)).count == entries.count, "a batch past its rules")
    }
    var whole: [ByteBuffer] = []
    var wholeSplitter = ConcatenatedJSONSplitter(maxValueBytes: 4096)
    let wholeOutcome = Result { () throws(ConcatenatedJSONSplitter.SplitError) in try wholeSplitter.feed(body, into: &whole) }
    var pieces: [ByteBuffer] = []
    var piecesSplitter = ConcatenatedJSONSplitter(maxValueBytes: 4096)
    let step = Int(data[1] & 15) + 1
    var offset = 0
    var piecesOutcome: Result<Void, ConcatenatedJSONSplitter.SplitError> = .success(())
    while offset < raw.count, case .success = piecesOutcome {
        let end = min(raw.count, offset + step)
        piecesOutcome = Result { () throws(ConcatenatedJSONSplitter.SplitError) in
            try piecesSplitter.feed(ByteBuffer(bytes: UnsafeRawBufferPointer(rebasing: raw[offset..<end])), into: &pieces)
        }
        offset = end
    }
    if case .success = wholeOutcome, case .success = piecesOutcome {
        precondition(whole == pieces, "the stream's records depend on where the reads cut it")
        for value in whole { precondition(value.getInteger(at: value.readerIndex, as: UInt8.self) == UInt8(ascii: "{"), "a record not an object") }
    }
    if let milliseconds = RFC3339.milliseconds(String(decoding: raw, as: UTF8.self)), (-62_135_596_800_000...253_402_300_799_999).contains(milliseconds) {
        precondition(RFC3339.milliseconds(RFC3339.string(milliseconds: milliseconds)) == milliseconds, "a timestamp does not round-trip")
    }
    return 0
}
