// libFuzzer target: the RESP2 reader of the global rate limit's Redis client (RESP.swift).
// Replies parsed from one buffer must parse the same when the buffer arrives cut in two, and
// the reader never holds more than its bounds allow.
import NIOCore

enum Parsed: Equatable {
    case values([RESPValue])
    case refused
}

/// Parses replies until the buffer runs out or is refused; `incomplete` tells whether a reply
/// was still waiting for more bytes at the end.
func parseAll(_ buffer: inout ByteBuffer) -> (Parsed, incomplete: Bool) {
    var values: [RESPValue] = []
    while buffer.readableBytes > 0 {
        var attempt = buffer
        do {
            guard let value = try RESPDecoder.parse(&attempt, depth: 0) else { return (.values(values), true) }
            precondition(attempt.readerIndex > buffer.readerIndex, "a reply consumed nothing")
            buffer = attempt
            values.append(value)
        } catch {
            return (.refused, false)
        }
    }
    return (.values(values), false)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let bytes = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    var whole = ByteBuffer(bytes: bytes)
    let (wholeResult, wholeIncomplete) = parseAll(&whole)

    // The same bytes in two reads, as a ByteToMessageDecoder would see them: same replies, same
    // refusal, same reply left waiting.
    let cut = bytes.isEmpty ? 0 : Int(data[0]) % (bytes.count + 1)
    var buffer = ByteBuffer(bytes: UnsafeRawBufferPointer(rebasing: bytes[..<cut]))
    var (split, splitIncomplete) = parseAll(&buffer)
    if case .values(let firstValues) = split {
        buffer.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[cut...]))
        let (second, secondIncomplete) = parseAll(&buffer)
        if case .values(let secondValues) = second {
            split = .values(firstValues + secondValues)
            splitIncomplete = secondIncomplete
        } else {
            split = .refused
            splitIncomplete = false
        }
    }
    precondition(split == wholeResult, "RESP replies differ when the input is cut in two")
    precondition(splitIncomplete == wholeIncomplete, "a reply waits for more in one reading and not the other")
    if case .values(let values) = wholeResult {
        for value in values { check(value, depth: 0) }
    }
    return 0
}

func check(_ value: RESPValue, depth: Int) {
    precondition(depth < 8, "nested deeper than the reader allows")
    switch value {
    case .bulk(let bytes?): precondition(bytes.count <= RESPDecoder.maxLength, "bulk string over the bound")
    case .simple(let text), .error(let text): precondition(text.utf8.count <= RESPDecoder.maxLineBytes, "line over the bound")
    case .array(let elements?):
        precondition(elements.count <= 1024, "array over the bound")
        for element in elements { check(element, depth: depth + 1) }
    default: break
    }
}
