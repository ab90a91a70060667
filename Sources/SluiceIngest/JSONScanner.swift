import CSluiceScan
import SluiceCore

/// A validating JSON scanner that works on raw bytes without building a document:
/// it finds where values start and end, so events keep the producer's exact bytes.
public struct JSONScanner {
    struct SyntaxError: Error, Equatable {
        /// Byte offset of the problem within the scanned text.
        var offset: Int
        var message: String
    }

    static let maxDepth = 128

    let bytes: UnsafeRawBufferPointer

    /// Validates that `bytes` holds exactly one JSON value (surrounding whitespace allowed).
    static func validate(_ bytes: UnsafeRawBufferPointer) throws(SyntaxError) {
        let scanner = JSONScanner(bytes: bytes)
        var i = scanner.skipSpace(0)
        i = try scanner.skipValue(i, depth: 0)
        i = scanner.skipSpace(i)
        if i != bytes.count { throw SyntaxError(offset: i, message: "unexpected data after the JSON value") }
    }

    /// If the document is an array, the byte ranges of its elements; if it is any other value, nil.
    static func topLevelArrayElements(_ bytes: UnsafeRawBufferPointer) throws(SyntaxError) -> [Range<Int>]? {
        let scanner = JSONScanner(bytes: bytes)
        var i = scanner.skipSpace(0)
        guard i < bytes.count else { throw SyntaxError(offset: i, message: "empty JSON document") }
        guard bytes[i] == UInt8(ascii: "[") else {
            i = try scanner.skipValue(i, depth: 0)
            i = scanner.skipSpace(i)
            if i != bytes.count { throw SyntaxError(offset: i, message: "unexpected data after the JSON value") }
            return nil
        }
        var ranges: [Range<Int>] = []
        i = scanner.skipSpace(i + 1)
        if i < bytes.count, bytes[i] == UInt8(ascii: "]") {
            i = scanner.skipSpace(i + 1)
            if i != bytes.count { throw SyntaxError(offset: i, message: "unexpected data after the JSON value") }
            return []
        }
        while true {
            let start = i
            i = try scanner.skipValue(i, depth: 1)
            ranges.append(start..<i)
            i = scanner.skipSpace(i)
            guard i < bytes.count else { throw SyntaxError(offset: i, message: "unterminated array") }
            if bytes[i] == UInt8(ascii: ",") {
                i = scanner.skipSpace(i + 1)
                continue
            }
            guard bytes[i] == UInt8(ascii: "]") else { throw SyntaxError(offset: i, message: "expected ',' or ']' in array") }
            i = scanner.skipSpace(i + 1)
            if i != bytes.count { throw SyntaxError(offset: i, message: "unexpected data after the JSON value") }
            return ranges
        }
    }

    /// The scalar at `pointer` inside a valid JSON value, as bytes: a string's decoded
    /// contents, or a number's or boolean's text. nil when absent; throws for a non-scalar.
    static func scalar(at pointer: [String], in bytes: UnsafeRawBufferPointer) -> PointerResult {
        let scanner = JSONScanner(bytes: bytes)
        var i = scanner.skipSpace(0)
        for token in pointer {
            guard i < bytes.count else { return .missing }
            if bytes[i] == UInt8(ascii: "{") {
                guard let found = scanner.findMember(token, objectStart: i) else { return .missing }
                i = found
            } else if bytes[i] == UInt8(ascii: "[") {
                guard let index = Int(token), index >= 0, let found = scanner.findElement(index, arrayStart: i) else { return .missing }
                i = found
            } else {
                return .missing
            }
        }
        guard i < bytes.count else { return .missing }
        switch bytes[i] {
        case UInt8(ascii: "\""):
            guard let (decoded, _) = scanner.decodeString(i) else { return .missing }
            return .value(decoded)
        case UInt8(ascii: "{"), UInt8(ascii: "["), UInt8(ascii: "n"):
            return .notScalar
        default:
            guard let end = try? scanner.skipValue(i, depth: 0) else { return .missing }
            return .value(Array(bytes[i..<end]))
        }
    }

    enum PointerResult: Equatable {
        case value([UInt8])
        case missing
        case notScalar
    }

    // MARK: - scanning

    func skipSpace(_ start: Int) -> Int {
        var i = start
        while i < self.bytes.count {
            switch self.bytes[i] {
            case 0x20, 0x09, 0x0A, 0x0D: i += 1
            default: return i
            }
        }
        return i
    }

    func skipValue(_ start: Int, depth: Int) throws(SyntaxError) -> Int {
        guard start < self.bytes.count else { throw SyntaxError(offset: start, message: "expected a JSON value, found end of input") }
        switch self.bytes[start] {
        case UInt8(ascii: "{"): return try self.skipObject(start, depth: depth + 1)
        case UInt8(ascii: "["): return try self.skipArray(start, depth: depth + 1)
        case UInt8(ascii: "\""): return try self.skipString(start)
        case UInt8(ascii: "t"): return try self.skipLiteral(start, "true")
        case UInt8(ascii: "f"): return try self.skipLiteral(start, "false")
        case UInt8(ascii: "n"): return try self.skipLiteral(start, "null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try self.skipNumber(start)
        default:
            throw SyntaxError(offset: start, message: "unexpected character '\(Self.printable(self.bytes[start]))'")
        }
    }

    private static func printable(_ byte: UInt8) -> String {
        if (0x21...0x7E).contains(byte) { return Swift.String(Character(UnicodeScalar(byte))) }
        let hex = Array("0123456789abcdef")
        return "\\x" + Swift.String(hex[Int(byte >> 4)]) + Swift.String(hex[Int(byte & 0xF)])
    }

    private func skipLiteral(_ start: Int, _ literal: StaticString) throws(SyntaxError) -> Int {
        let count = literal.utf8CodeUnitCount
        guard start + count <= self.bytes.count else { throw SyntaxError(offset: start, message: "invalid literal") }
        let matches = literal.withUTF8Buffer { expected in
            (0..<count).allSatisfy { self.bytes[start + $0] == expected[$0] }
        }
        guard matches else { throw SyntaxError(offset: start, message: "invalid literal") }
        return start + count
    }

    private func skipNumber(_ start: Int) throws(SyntaxError) -> Int {
        var i = start
        let b = self.bytes
        func digit(_ i: Int) -> Bool { i < b.count && b[i] >= 0x30 && b[i] <= 0x39 }
        if b[i] == UInt8(ascii: "-") { i += 1 }
        guard digit(i) else { throw SyntaxError(offset: i, message: "invalid number") }
        if b[i] == UInt8(ascii: "0") {
            i += 1
        } else {
            while digit(i) { i += 1 }
        }
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            guard digit(i) else { throw SyntaxError(offset: i, message: "invalid number: expected digits after '.'") }
            while digit(i) { i += 1 }
        }
        if i < b.count, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
            i += 1
            if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") { i += 1 }
            guard digit(i) else { throw SyntaxError(offset: i, message: "invalid number: expected exponent digits") }
            while digit(i) { i += 1 }
        }
        return i
    }

    func skipString(_ start: Int) throws(SyntaxError) -> Int {
        var i = start + 1
        let b = self.bytes
        let base = b.baseAddress!
        while i < b.count {
            // Past the plain bytes to the next one to look at: the first 8 here (most keys and
            // many values end in them), the rest 16 or 32 at a time (CSluiceScan).
            if i &+ 8 <= b.count {
                // (The lowest marked byte is never a false alarm: see JSONString.escapedBytes(in:).)
                let special = JSONString.escapedOrNonASCIIBytes(
                    in: UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt64.self)))
                i = special != 0
                    ? i &+ (special.trailingZeroBitCount &>> 3)
                    : sluice_json_string_plain_end(base.assumingMemoryBound(to: UInt8.self), i &+ 8, b.count)
            } else {
                i = sluice_json_string_plain_end(base.assumingMemoryBound(to: UInt8.self), i, b.count)
            }
            guard i < b.count else { break }
            guard let next = try self.stepInString(at: i) else { return i + 1 }
            i = next
        }
        throw SyntaxError(offset: start, message: "unterminated string")
    }

    /// One step through a string at byte `i` (inside it, after its opening quote): nil at the
    /// closing quote, else where the next character starts, past an escape or a whole UTF-8
    /// sequence; throws at a byte a JSON string may not hold there.
    @inline(__always)
    func stepInString(at i: Int) throws(SyntaxError) -> Int? {
        let b = self.bytes
        let c = b[i]
        if c == UInt8(ascii: "\"") { return nil }
        if c == UInt8(ascii: "\\") {
            guard i + 1 < b.count else { return i + 1 }  // the string is unterminated
            switch b[i + 1] {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                return i + 2
            case UInt8(ascii: "u"):
                guard i + 5 < b.count, (2...5).allSatisfy({ PercentEncoding.hexValue(b[i + $0]) != nil }) else {
                    throw SyntaxError(offset: i, message: "invalid \\u escape in string")
                }
                return i + 6
            default:
                throw SyntaxError(offset: i, message: "invalid escape in string")
            }
        }
        if c < 0x20 { throw SyntaxError(offset: i, message: "control character in string") }
        if c >= 0x80 {
            // RFC 8259 8.1: JSON text is UTF-8; a consumer downstream must be able to decode it.
            guard let length = Self.utf8SequenceLength(b, at: i) else {
                throw SyntaxError(offset: i, message: "invalid UTF-8 in string")
            }
            return i + length
        }
        return i + 1
    }

    /// The length of the well-formed UTF-8 sequence that starts at `i` with a byte >= 0x80
    /// (Unicode 15, table 3-7: no overlong forms, no surrogates, nothing above U+10FFFF), or nil.
    @inline(__always)
    static func utf8SequenceLength(_ b: UnsafeRawBufferPointer, at i: Int) -> Int? {
        let lead = b[i]
        func continuation(_ k: Int, _ range: ClosedRange<UInt8> = 0x80...0xBF) -> Bool {
            i + k < b.count && range.contains(b[i + k])
        }
        switch lead {
        case 0xC2...0xDF:
            return continuation(1) ? 2 : nil
        case 0xE0:
            return continuation(1, 0xA0...0xBF) && continuation(2) ? 3 : nil
        case 0xE1...0xEC, 0xEE...0xEF:
            return continuation(1) && continuation(2) ? 3 : nil
        case 0xED:
            return continuation(1, 0x80...0x9F) && continuation(2) ? 3 : nil
        case 0xF0:
            return continuation(1, 0x90...0xBF) && continuation(2) && continuation(3) ? 4 : nil
        case 0xF1...0xF3:
            return continuation(1) && continuation(2) && continuation(3) ? 4 : nil
        case 0xF4:
            return continuation(1, 0x80...0x8F) && continuation(2) && continuation(3) ? 4 : nil
        default:
            return nil
        }
    }

    private func skipArray(_ start: Int, depth: Int) throws(SyntaxError) -> Int {
        guard depth <= Self.maxDepth else { throw SyntaxError(offset: start, message: "nested deeper than \(Self.maxDepth) levels") }
        var i = self.skipSpace(start + 1)
        if i < self.bytes.count, self.bytes[i] == UInt8(ascii: "]") { return i + 1 }
        while true {
            i = try self.skipValue(i, depth: depth)
            i = self.skipSpace(i)
            guard i < self.bytes.count else { throw SyntaxError(offset: i, message: "unterminated array") }
            if self.bytes[i] == UInt8(ascii: "]") { return i + 1 }
            guard self.bytes[i] == UInt8(ascii: ",") else { throw SyntaxError(offset: i, message: "expected ',' or ']' in array") }
            i = self.skipSpace(i + 1)
        }
    }

    private func skipObject(_ start: Int, depth: Int) throws(SyntaxError) -> Int {
        guard depth <= Self.maxDepth else { throw SyntaxError(offset: start, message: "nested deeper than \(Self.maxDepth) levels") }
        var i = self.skipSpace(start + 1)
        if i < self.bytes.count, self.bytes[i] == UInt8(ascii: "}") { return i + 1 }
        while true {
            guard i < self.bytes.count, self.bytes[i] == UInt8(ascii: "\"") else {
                throw SyntaxError(offset: i, message: "expected a string key in object")
            }
            i = self.skipSpace(try self.skipString(i))
            guard i < self.bytes.count, self.bytes[i] == UInt8(ascii: ":") else {
                throw SyntaxError(offset: i, message: "expected ':' after object key")
            }
            i = try self.skipValue(self.skipSpace(i + 1), depth: depth)
            i = self.skipSpace(i)
            guard i < self.bytes.count else { throw SyntaxError(offset: i, message: "unterminated object") }
            if self.bytes[i] == UInt8(ascii: "}") { return i + 1 }
            guard self.bytes[i] == UInt8(ascii: ",") else { throw SyntaxError(offset: i, message: "expected ',' or '}' in object") }
            i = self.skipSpace(i + 1)
        }
    }

    // MARK: - members and elements (on already validated input)

    /// The members of the object starting at `start`: each name decoded, each value's range.
    func members(ofObjectAt start: Int) -> [(name: [UInt8], value: Range<Int>)] {
        var members: [(name: [UInt8], value: Range<Int>)] = []
        var i = self.skipSpace(start + 1)
        guard i < self.bytes.count, self.bytes[i] != UInt8(ascii: "}") else { return [] }
        while i < self.bytes.count {
            guard let (name, afterName) = self.decodeString(i) else { break }
            i = self.skipSpace(self.skipSpace(afterName) + 1)  // past ':'
            guard let end = try? self.skipValue(i, depth: 0) else { break }
            members.append((name, i..<end))
            i = self.skipSpace(end)
            guard i < self.bytes.count, self.bytes[i] == UInt8(ascii: ",") else { break }
            i = self.skipSpace(i + 1)
        }
        return members
    }

    /// The element ranges of the array starting at `start`.
    func elements(ofArrayAt start: Int) -> [Range<Int>] {
        var elements: [Range<Int>] = []
        var i = self.skipSpace(start + 1)
        guard i < self.bytes.count, self.bytes[i] != UInt8(ascii: "]") else { return [] }
        while i < self.bytes.count {
            guard let end = try? self.skipValue(i, depth: 0) else { break }
            elements.append(i..<end)
            i = self.skipSpace(end)
            guard i < self.bytes.count, self.bytes[i] == UInt8(ascii: ",") else { break }
            i = self.skipSpace(i + 1)
        }
        return elements
    }

    // MARK: - pointer lookup (on already validated input)

    private func findMember(_ name: String, objectStart: Int) -> Int? {
        let wanted = Array(name.utf8)
        var i = self.skipSpace(objectStart + 1)
        guard i < self.bytes.count, self.bytes[i] != UInt8(ascii: "}") else { return nil }
        while i < self.bytes.count {
            guard let (key, afterKey) = self.decodeString(i) else { return nil }
            i = self.skipSpace(afterKey) + 1  // past ':'
            i = self.skipSpace(i)
            if key == wanted { return i }
            guard let end = try? self.skipValue(i, depth: 0) else { return nil }
            i = self.skipSpace(end)
            guard i < self.bytes.count, self.bytes[i] == UInt8(ascii: ",") else { return nil }
            i = self.skipSpace(i + 1)
        }
        return nil
    }

    private func findElement(_ index: Int, arrayStart: Int) -> Int? {
        var i = self.skipSpace(arrayStart + 1)
        guard i < self.bytes.count, self.bytes[i] != UInt8(ascii: "]") else { return nil }
        var current = 0
        while i < self.bytes.count {
            if current == index { return i }
            guard let end = try? self.skipValue(i, depth: 0) else { return nil }
            i = self.skipSpace(end)
            guard i < self.bytes.count, self.bytes[i] == UInt8(ascii: ",") else { return nil }
            i = self.skipSpace(i + 1)
            current += 1
        }
        return nil
    }

    /// Decodes the string starting at `start` (a quote) into UTF-8 bytes; returns the end index too.
    func decodeString(_ start: Int) -> ([UInt8], Int)? {
        guard start < self.bytes.count, self.bytes[start] == UInt8(ascii: "\"") else { return nil }
        var out: [UInt8] = []
        var i = start + 1
        let b = self.bytes
        while i < b.count {
            let c = b[i]
            if c == UInt8(ascii: "\"") { return (out, i + 1) }
            guard c == UInt8(ascii: "\\") else {
                out.append(c)
                i += 1
                continue
            }
            guard i + 1 < b.count else { return nil }
            switch b[i + 1] {
            case UInt8(ascii: "u"):
                guard var scalar = self.hex4(i + 2) else { return nil }
                i += 6
                if (0xD800..<0xDC00).contains(scalar), i + 1 < b.count, b[i] == UInt8(ascii: "\\"), b[i + 1] == UInt8(ascii: "u"),
                    let low = self.hex4(i + 2), (0xDC00..<0xE000).contains(low)
                {
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    i += 6
                }
                let character = UnicodeScalar(scalar).map(Character.init) ?? "\u{FFFD}"
                out.append(contentsOf: Array(Swift.String(character).utf8))
                continue
            default: out.append(JSONString.unescaped(b[i + 1]) ?? b[i + 1])
            }
            i += 2
        }
        return nil
    }

    private func hex4(_ at: Int) -> UInt32? {
        guard at + 4 <= self.bytes.count else { return nil }
        var value: UInt32 = 0
        for k in 0..<4 {
            guard let digit = PercentEncoding.hexValue(self.bytes[at + k]) else { return nil }
            value = value << 4 | UInt32(digit)
        }
        return value
    }
}
