// libFuzzer target: JSONScanner (NDJSON/JSON validation, array splitting, JSON-pointer keys).
// Built with Sources/SluiceIngest/JSONScanner.swift against the debug build (SluiceCore) by scripts/fuzz.sh.

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

/// `skipString` without its word-at-a-time skip: one `stepInString` per byte, as strings were
/// read before ordinary bytes were skipped by words. The two agree on every string, on where it
/// ends and on how it fails.
func referenceSkipString(_ b: UnsafeRawBufferPointer, _ start: Int) throws(JSONScanner.SyntaxError) -> Int {
    let scanner = JSONScanner(bytes: b)
    var i = start + 1
    while i < b.count {
        guard let next = try scanner.stepInString(at: i) else { return i + 1 }
        i = next
    }
    throw JSONScanner.SyntaxError(offset: start, message: "unterminated string")
}

func result(_ body: () throws(JSONScanner.SyntaxError) -> Int) -> Result<Int, JSONScanner.SyntaxError> {
    do throws(JSONScanner.SyntaxError) { return .success(try body()) } catch { return .failure(error) }
}
