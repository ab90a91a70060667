// libFuzzer target: request bodies as events (SluiceIngest's BodyDecoding.swift: NDJSON streamed
// in reads of any size, JSON arrays and single values), built with the JSON scanner by scripts/fuzz.sh.
// Input: byte 0 picks max_event_bytes (1...64), byte 1 the size of each read (1...256); the
// rest is the body. Where the reads cut the body must never change the outcome. The body is also
// read as a Content-Type value (MediaType.essence, checked against its rule written with Strings).
import NIOCore
import SluiceCore

struct Outcome: Equatable {
    var events: [[UInt8]] = []
    var lines: [Int] = []
    var error: IngestError?
}

func decodeNDJSON(_ body: UnsafeRawBufferPointer, maxLineBytes: Int, readSize: Int) -> Outcome {
    var decoder = NDJSONDecoder(maxLineBytes: maxLineBytes)
    var outcome = Outcome()
    var events: [Event] = []
    do throws(IngestError) {
        var offset = 0
        while offset < body.count {
            let end = min(body.count, offset + readSize)
            try decoder.feed(ByteBuffer(bytes: UnsafeRawBufferPointer(rebasing: body[offset..<end])), into: &events)
            offset = end
        }
        try decoder.finish(into: &events)
    } catch {
        outcome.error = error
    }
    outcome.events = events.map { Array($0.value.readableBytesView) }
    outcome.lines = decoder.eventLines
    return outcome
}

/// `MediaType.essence` reads bytes; this is its rule in terms of the standard library (over
/// Unicode scalars: an HTTP delimiter is a byte, even before a combining mark).
func referenceEssence(_ value: String) -> String {
    var type = value.unicodeScalars.prefix { $0 != ";" }
    while let first = type.first, first == " " || first == "\t" { type.removeFirst() }
    while let last = type.last, last == " " || last == "\t" { type.removeLast() }
    return String(String.UnicodeScalarView(type)).lowercased()
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 2 else { return 0 }
    let maxEventBytes = Int(data[0] & 0x3F) + 1
    let readSize = Int(data[1]) + 1
    let body = UnsafeRawBufferPointer(start: data + 2, count: size - 2)
    // The body's bytes as a Content-Type header, too.
    let header = String(decoding: body, as: UTF8.self)
    precondition(MediaType.essence(of: header) == referenceEssence(header), "media type of \(header.debugDescription)")

    let whole = decodeNDJSON(body, maxLineBytes: maxEventBytes, readSize: max(1, body.count))
    let pieces = decodeNDJSON(body, maxLineBytes: maxEventBytes, readSize: readSize)
    precondition(whole == pieces, "NDJSON outcome depends on how the body was cut into reads")
    precondition(whole.events.count == whole.lines.count, "an event without its line number")
    for (event, line) in zip(whole.events, whole.lines) {
        precondition(event.count <= maxEventBytes, "an event over max_event_bytes was accepted")
        precondition(!event.contains(0x0A), "an event holds a newline")
        precondition(line >= 1, "line numbers start at 1")
        event.withUnsafeBytes { raw in
            do throws(JSONScanner.SyntaxError) { try JSONScanner.validate(raw) } catch {
                preconditionFailure("an NDJSON event is not valid JSON")
            }
        }
    }
    if let error = whole.error {
        precondition(error.code.httpStatus == 400 || error.code.httpStatus == 413, "unexpected status \(error.code.httpStatus)")
        precondition(error.line != nil, "an NDJSON error must name its line")
    }

    // application/json: one event per array element, or the whole value.
    do throws(IngestError) {
        let events = try JSONBodyDecoder.decode(ByteBuffer(bytes: body), maxEventBytes: maxEventBytes)
        for event in events {
            precondition(event.value.readableBytes <= maxEventBytes, "a JSON event over max_event_bytes was accepted")
            event.value.withUnsafeReadableBytes { raw in
                do throws(JSONScanner.SyntaxError) { try JSONScanner.validate(raw) } catch {
                    preconditionFailure("a JSON body event is not valid JSON")
                }
            }
        }
    } catch {
        precondition(error.code.httpStatus == 400 || error.code.httpStatus == 413, "unexpected status \(error.code.httpStatus)")
    }
    return 0
}
