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
    // Pointer lookups on valid documents never trap; pointers come from the input's first line.
    if valid {
        for pointer in [["a"], ["0"], ["a", "b"], ["", "x"], ["k"], ["0", "0", "0"]] {
            _ = JSONScanner.scalar(at: pointer, in: bytes)
        }
    }
    return 0
}
