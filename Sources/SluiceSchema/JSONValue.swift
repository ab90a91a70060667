import Foundation
import SluiceCore

/// A JSON document as JSON Schema sees it: numbers compare by value (1 == 1.0), objects keep
/// their members' order for messages but compare as sets, strings are measured in code points.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.number(let x), .number(let y)): return x == y
        // Code point by code point: JSON Schema does not normalise (Swift's == would).
        case (.string(let x), .string(let y)): return x.unicodeScalars.elementsEqual(y.unicodeScalars)
        case (.array(let x), .array(let y)): return x == y
        case (.object(let x), .object(let y)):
            guard x.count == y.count else { return false }
            for (key, value) in x.members {
                guard let other = y[key], other == value else { return false }
            }
            return true
        default: return false
        }
    }

    /// The JSON type name as the `type` keyword names it ("integer" is checked apart).
    var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .number: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }

    var objectValue: JSONObject? {
        if case .object(let object) = self { return object }
        return nil
    }

    var stringValue: String? {
        if case .string(let text) = self { return text }
        return nil
    }

    var arrayValue: [JSONValue]? {
        if case .array(let items) = self { return items }
        return nil
    }

    var doubleValue: Double? {
        if case .number(let value) = self { return value }
        return nil
    }

    var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    /// A non-negative integer (a count limit like `minLength`).
    var countValue: Int? {
        guard case .number(let value) = self, value >= 0, value == value.rounded(), value < 1e15 else { return nil }
        return Int(value)
    }
}

/// A JSON object: members in document order, looked up by name (the last of a repeated name wins).
public struct JSONObject: Sendable, Equatable {
    public private(set) var members: [(key: String, value: JSONValue)] = []
    private var index: [String: Int] = [:]

    public init() {}

    public init(_ pairs: [(String, JSONValue)]) {
        for (key, value) in pairs { self[key] = value }
    }

    public var count: Int { self.members.count }

    /// Objects up to this size are searched in order (cheaper than hashing every name).
    static let indexedFrom = 12

    private func position(of key: String) -> Int? {
        if self.members.count < Self.indexedFrom {
            return self.members.firstIndex { $0.key == key }
        }
        return self.index[key]
    }

    public subscript(key: String) -> JSONValue? {
        get { self.position(of: key).map { self.members[$0].value } }
        set {
            if let position = self.position(of: key) {
                if let newValue { self.members[position].value = newValue }
            } else if let newValue {
                self.members.append((key, newValue))
                if self.members.count == Self.indexedFrom {
                    for (position, member) in self.members.enumerated() { self.index[member.key] = position }
                } else if self.members.count > Self.indexedFrom {
                    self.index[key] = self.members.count - 1
                }
            }
        }
    }

    public static func == (a: JSONObject, b: JSONObject) -> Bool {
        JSONValue.object(a) == JSONValue.object(b)
    }
}

/// Why a text is not one JSON document.
public struct JSONParseError: Error, Sendable, CustomStringConvertible {
    public var offset: Int
    public var message: String
    public var description: String { "at byte \(self.offset): \(self.message)" }
}

/// A strict RFC 8259 parser into `JSONValue` (nesting bounded by `maxDepth`).
public struct JSONParser {
    private let bytes: UnsafeRawBufferPointer
    private var position = 0
    private let maxDepth: Int

    public static func parse(_ text: String, maxDepth: Int = 512) throws(JSONParseError) -> JSONValue {
        let bytes = Array(text.utf8)
        let result: Result<JSONValue, JSONParseError> = bytes.withUnsafeBytes { buffer in
            do throws(JSONParseError) {
                return .success(try Self.parse(buffer, maxDepth: maxDepth))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    public static func parse(_ bytes: UnsafeRawBufferPointer, maxDepth: Int = 512) throws(JSONParseError) -> JSONValue {
        var parser = JSONParser(bytes: bytes, maxDepth: maxDepth)
        parser.skipSpace()
        let value = try parser.value(depth: 0)
        parser.skipSpace()
        guard parser.position == bytes.count else { throw parser.fail("unexpected text after the document") }
        return value
    }

    private init(bytes: UnsafeRawBufferPointer, maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    private func fail(_ message: String) -> JSONParseError {
        JSONParseError(offset: self.position, message: message)
    }

    private mutating func skipSpace() {
        while self.position < self.bytes.count {
            switch self.bytes[self.position] {
            case 0x20, 0x09, 0x0A, 0x0D: self.position += 1
            default: return
            }
        }
    }

    private mutating func value(depth: Int) throws(JSONParseError) -> JSONValue {
        guard depth <= self.maxDepth else { throw self.fail("nested deeper than \(self.maxDepth)") }
        guard self.position < self.bytes.count else { throw self.fail("unexpected end") }
        switch self.bytes[self.position] {
        case UInt8(ascii: "{"):
            self.position += 1
            var object = JSONObject()
            self.skipSpace()
            if self.peek(UInt8(ascii: "}")) { return .object(object) }
            while true {
                self.skipSpace()
                guard self.peek(UInt8(ascii: "\""), consume: false) else { throw self.fail("expected a string key") }
                let key = try self.string()
                self.skipSpace()
                guard self.peek(UInt8(ascii: ":")) else { throw self.fail("expected ':'") }
                self.skipSpace()
                object[key] = try self.value(depth: depth + 1)
                self.skipSpace()
                if self.peek(UInt8(ascii: ",")) { continue }
                if self.peek(UInt8(ascii: "}")) { return .object(object) }
                throw self.fail("expected ',' or '}'")
            }
        case UInt8(ascii: "["):
            self.position += 1
            var items: [JSONValue] = []
            self.skipSpace()
            if self.peek(UInt8(ascii: "]")) { return .array(items) }
            while true {
                self.skipSpace()
                items.append(try self.value(depth: depth + 1))
                self.skipSpace()
                if self.peek(UInt8(ascii: ",")) { continue }
                if self.peek(UInt8(ascii: "]")) { return .array(items) }
                throw self.fail("expected ',' or ']'")
            }
        case UInt8(ascii: "\""):
            return .string(try self.string())
        case UInt8(ascii: "t"):
            try self.literal("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try self.literal("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try self.literal("null")
            return .null
        default:
            return try self.number()
        }
    }

    private mutating func peek(_ byte: UInt8, consume: Bool = true) -> Bool {
        guard self.position < self.bytes.count, self.bytes[self.position] == byte else { return false }
        if consume { self.position += 1 }
        return true
    }

    private mutating func literal(_ word: String) throws(JSONParseError) {
        for byte in word.utf8 {
            guard self.position < self.bytes.count, self.bytes[self.position] == byte else { throw self.fail("expected \(word)") }
            self.position += 1
        }
    }

    private mutating func number() throws(JSONParseError) -> JSONValue {
        let start = self.position
        func digits(_ parser: inout JSONParser) -> Int {
            var count = 0
            while parser.position < parser.bytes.count, (0x30...0x39).contains(parser.bytes[parser.position]) {
                parser.position += 1
                count += 1
            }
            return count
        }
        _ = self.peek(UInt8(ascii: "-"))
        let intStart = self.position
        let intDigits = digits(&self)
        guard intDigits > 0 else { throw self.fail("expected a value") }
        if intDigits > 1, self.bytes[intStart] == UInt8(ascii: "0") { throw self.fail("a number may not start with 0") }
        if self.peek(UInt8(ascii: ".")) {
            guard digits(&self) > 0 else { throw self.fail("expected digits after '.'") }
        }
        if self.peek(UInt8(ascii: "e")) || self.peek(UInt8(ascii: "E")) {
            if !self.peek(UInt8(ascii: "+")) { _ = self.peek(UInt8(ascii: "-")) }
            guard digits(&self) > 0 else { throw self.fail("expected exponent digits") }
        }
        // Integers of up to 15 digits exactly, without text; anything else through strtod.
        if self.position - start <= 16, !self.bytes[start..<self.position].contains(where: { $0 == UInt8(ascii: ".") || $0 | 0x20 == UInt8(ascii: "e") }) {
            var value: Int64 = 0
            for byte in self.bytes[intStart..<self.position] { value = value * 10 + Int64(byte - 0x30) }
            return .number(Double(self.bytes[start] == UInt8(ascii: "-") ? -value : value))
        }
        let length = self.position - start
        let value = withUnsafeTemporaryAllocation(of: CChar.self, capacity: length + 1) { text -> Double in
            for k in 0..<length { text[k] = CChar(bitPattern: self.bytes[start + k]) }
            text[length] = 0
            return strtod(text.baseAddress!, nil)
        }
        return .number(value)
    }

    private mutating func string() throws(JSONParseError) -> String {
        self.position += 1  // the opening quote
        // Most strings have no escapes: made straight from the bytes.
        var end = self.position
        while end < self.bytes.count, self.bytes[end] != UInt8(ascii: "\""), self.bytes[end] != UInt8(ascii: "\\"), self.bytes[end] >= 0x20 {
            end += 1
        }
        if end < self.bytes.count, self.bytes[end] == UInt8(ascii: "\"") {
            guard let text = String(validating: UnsafeRawBufferPointer(rebasing: self.bytes[self.position..<end]), as: UTF8.self) else {
                throw self.fail("a string that is not UTF-8")
            }
            self.position = end + 1
            return text
        }
        var out: [UInt8] = Array(UnsafeRawBufferPointer(rebasing: self.bytes[self.position..<end]))
        self.position = end
        while self.position < self.bytes.count {
            let byte = self.bytes[self.position]
            switch byte {
            case UInt8(ascii: "\""):
                self.position += 1
                guard let text = String(validating: out, as: UTF8.self) else { throw self.fail("a string that is not UTF-8") }
                return text
            case UInt8(ascii: "\\"):
                self.position += 1
                guard self.position < self.bytes.count else { throw self.fail("unexpected end in an escape") }
                let escape = self.bytes[self.position]
                self.position += 1
                if let byte = JSONString.unescaped(escape) {
                    out.append(byte)
                    continue
                }
                switch escape {
                case UInt8(ascii: "u"):
                    var scalar = try self.hex4()
                    // A lone surrogate is valid JSON but no character: it reads as U+FFFD, as
                    // Sluice's other JSON readers take it.
                    if (0xD800..<0xDC00).contains(scalar), self.position + 6 <= self.bytes.count, self.bytes[self.position] == UInt8(ascii: "\\"),
                        self.bytes[self.position + 1] == UInt8(ascii: "u")
                    {
                        let mark = self.position
                        self.position += 2
                        let low = try self.hex4()
                        if (0xDC00..<0xE000).contains(low) {
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        } else {
                            self.position = mark
                        }
                    }
                    let unicode = Unicode.Scalar(scalar) ?? "\u{FFFD}"
                    out.append(contentsOf: Array(String(Character(unicode)).utf8))
                default:
                    throw self.fail("unknown escape")
                }
            case 0..<0x20:
                throw self.fail("a control character in a string")
            default:
                out.append(byte)
                self.position += 1
            }
        }
        throw self.fail("unterminated string")
    }

    private mutating func hex4() throws(JSONParseError) -> UInt32 {
        guard self.position + 4 <= self.bytes.count else { throw self.fail("short \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let c = self.bytes[self.position]
            let digit: UInt32
            switch c {
            case 0x30...0x39: digit = UInt32(c - 0x30)
            case 0x41...0x46: digit = UInt32(c - 0x41 + 10)
            case 0x61...0x66: digit = UInt32(c - 0x61 + 10)
            default: throw self.fail("bad hex digit in \\u escape")
            }
            value = value << 4 | digit
            self.position += 1
        }
        return value
    }
}
