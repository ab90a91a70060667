// libFuzzer target: JSONScanner (NDJSON/JSON validation, array splitting, JSON-pointer keys).
// Built with Sources/SluiceIngest/JSONScanner.swift against the debug build (SluiceCore) by scripts/fuzz.sh.

import SluiceCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    var valid = false
    do throws(JSONScanner.SyntaxError) {
        try JSONScanner.validate(bytes)
        valid = true
    } catch {
        precondition(error.offset >= 0 && error.offset <= size, "error offset out of range")
    }
    // The array splitter agrees with the validator, and its ranges are in bounds and ordered.
    do throws(JSONScanner.SyntaxError) {
        let ranges = try JSONScanner.topLevelArrayElements(bytes)
        precondition(valid, "topLevelArrayElements accepted what validate refused")
        var last = 0
        for range in ranges ?? [] {
            precondition(range.lowerBound >= last && range.upperBound <= size, "element range out of order or bounds")
            last = range.upperBound
            let element = UnsafeRawBufferPointer(rebasing: bytes[range])
            do throws(JSONScanner.SyntaxError) { try JSONScanner.validate(element) } catch {
                preconditionFailure("an array element is not valid JSON on its own")
            }
        }
    } catch {
        precondition(!valid, "topLevelArrayElements refused what validate accepted")
    }
    // The word-at-a-time string reader agrees with the byte-by-byte rule from every quote (at
    // most 64 of them, so that an input of quotes stays linear).
    var quotes = 0
    for start in 0..<size where bytes[start] == UInt8(ascii: "\"") && quotes < 64 {
        quotes += 1
        let scanner = JSONScanner(bytes: bytes)
        precondition(
            result { () throws(JSONScanner.SyntaxError) in try scanner.skipString(start) }
                == result { () throws(JSONScanner.SyntaxError) in try referenceSkipString(bytes, start) },
            "skipString disagrees with the byte-by-byte rule")
    }
    // Pointer lookups on valid documents never trap; pointers come from the input's first line.
    if valid {
        for pointer in [["a"], ["0"], ["a", "b"], ["", "x"], ["k"], ["0", "0", "0"]] {
            _ = JSONScanner.scalar(at: pointer, in: bytes)
        }
    }
    return 0
}

/// The string rule byte by byte, as `skipString` read strings before it skipped whole words:
/// the two agree on every string, what they return and how they fail.
func referenceSkipString(_ b: UnsafeRawBufferPointer, _ start: Int) throws(JSONScanner.SyntaxError) -> Int {
    var i = start + 1
    while i < b.count {
        let c = b[i]
        if c == UInt8(ascii: "\"") { return i + 1 }
        if c == UInt8(ascii: "\\") {
            guard i + 1 < b.count else { break }
            switch b[i + 1] {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                i += 2
            case UInt8(ascii: "u"):
                guard i + 5 < b.count, (2...5).allSatisfy({ PercentEncoding.hexValue(b[i + $0]) != nil }) else {
                    throw JSONScanner.SyntaxError(offset: i, message: "invalid \\u escape in string")
                }
                i += 6
            default:
                throw JSONScanner.SyntaxError(offset: i, message: "invalid escape in string")
            }
            continue
        }
        if c < 0x20 { throw JSONScanner.SyntaxError(offset: i, message: "control character in string") }
        if c >= 0x80 {
            guard let length = JSONScanner.utf8SequenceLength(b, at: i) else {
                throw JSONScanner.SyntaxError(offset: i, message: "invalid UTF-8 in string")
            }
            i += length
            continue
        }
        i += 1
    }
    throw JSONScanner.SyntaxError(offset: start, message: "unterminated string")
}

func result(_ body: () throws(JSONScanner.SyntaxError) -> Int) -> Result<Int, JSONScanner.SyntaxError> {
    do throws(JSONScanner.SyntaxError) { return .success(try body()) } catch { return .failure(error) }
}
