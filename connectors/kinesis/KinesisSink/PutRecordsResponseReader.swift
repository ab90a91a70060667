import Foundation
import NIOCore

/// Reads the `Records` of a PutRecords answer: an array of flat objects whose values are strings
/// (numbers, booleans and nulls are skipped). Foundation's JSONSerialization cost more than the
/// rest of the sink per record; this reads only what is needed and rejects malformed input.
enum PutRecordsResponseReader {
    static func records(_ body: ByteBuffer) -> [[String: String]]? {
        body.withUnsafeReadableBytes { bytes -> [[String: String]]? in
            var reader = Reader(bytes: bytes)
            return reader.document()
        }
    }

    struct Reader {
        let bytes: UnsafeRawBufferPointer
        var i = 0

        init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

        mutating func skipSpace() {
            while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
        }

        mutating func expect(_ byte: UInt8) -> Bool {
            skipSpace()
            guard i < bytes.count, bytes[i] == byte else { return false }
            i += 1
            return true
        }

        mutating func peek() -> UInt8? {
            skipSpace()
            return i < bytes.count ? bytes[i] : nil
        }

        /// The top-level object; nil if it has no `Records` array.
        mutating func document() -> [[String: String]]? {
            guard expect(UInt8(ascii: "{")) else { return nil }
            var records: [[String: String]]?
            if peek() == UInt8(ascii: "}") { return nil }
            repeat {
                guard let key = string(), expect(UInt8(ascii: ":")) else { return nil }
                if key == "Records" {
                    guard let list = recordList() else { return nil }
                    records = list
                } else {
                    guard skipValue(depth: 0) else { return nil }
                }
            } while expect(UInt8(ascii: ","))
            guard expect(UInt8(ascii: "}")) else { return nil }
            skipSpace()
            return i == bytes.count ? records : nil
        }

        mutating func recordList() -> [[String: String]]? {
            guard expect(UInt8(ascii: "[")) else { return nil }
            var list: [[String: String]] = []
            if peek() == UInt8(ascii: "]") {
                i += 1
                return list
            }
            repeat {
                guard expect(UInt8(ascii: "{")) else { return nil }
                var record: [String: String] = [:]
                if peek() != UInt8(ascii: "}") {
                    repeat {
                        guard let key = string(), expect(UInt8(ascii: ":")) else { return nil }
                        if peek() == UInt8(ascii: "\"") {
                            guard let value = string() else { return nil }
                            record[key] = value
                        } else {
                            guard skipValue(depth: 0) else { return nil }
                            // A name given twice takes its last value, as JSON parsers do.
                            record[key] = nil
                        }
                    } while expect(UInt8(ascii: ","))
                }
                guard expect(UInt8(ascii: "}")) else { return nil }
                list.append(record)
            } while expect(UInt8(ascii: ","))
            guard expect(UInt8(ascii: "]")) else { return nil }
            return list
        }

        /// A JSON string, unescaped.
        mutating func string() -> String? {
            guard expect(UInt8(ascii: "\"")) else { return nil }
            let start = i
            var plain = true
            while i < bytes.count, bytes[i] != UInt8(ascii: "\"") {
                guard bytes[i] >= 0x20 else { return nil }  // RFC 8259: control characters are escaped
                if bytes[i] == UInt8(ascii: "\\") {
                    plain = false
                    i += 1
                }
                i += 1
            }
            guard i < bytes.count else { return nil }
            let raw = UnsafeRawBufferPointer(rebasing: bytes[start..<i])
            i += 1
            if plain { return String(validating: raw, as: UTF8.self) }
            // Rare (error messages with quotes or non-ASCII): let Foundation unescape it.
            var quoted = [UInt8(ascii: "\"")]
            quoted.append(contentsOf: raw)
            quoted.append(UInt8(ascii: "\""))
            return (try? JSONSerialization.jsonObject(with: Data(quoted), options: [.fragmentsAllowed])) as? String
        }

        mutating func skipValue(depth: Int) -> Bool {
            guard depth < 32, let first = peek() else { return false }
            switch first {
            case UInt8(ascii: "\""):
                return string() != nil
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                let close = first == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
                i += 1
                if peek() == close {
                    i += 1
                    return true
                }
                repeat {
                    if first == UInt8(ascii: "{") {
                        guard string() != nil, expect(UInt8(ascii: ":")) else { return false }
                    }
                    guard skipValue(depth: depth + 1) else { return false }
                } while expect(UInt8(ascii: ","))
                return expect(close)
            case UInt8(ascii: "t"): return literal("true")
            case UInt8(ascii: "f"): return literal("false")
            case UInt8(ascii: "n"): return literal("null")
            default: return number()
            }
        }

        mutating func literal(_ word: StaticString) -> Bool {
            let count = word.utf8CodeUnitCount
            guard i + count <= bytes.count else { return false }
            for k in 0..<count where bytes[i + k] != word.utf8Start[k] { return false }
            i += count
            return true
        }

        /// A JSON number (RFC 8259: -?int frac? exp?).
        mutating func number() -> Bool {
            func digits() -> Int {
                let start = i
                while i < bytes.count, bytes[i] >= UInt8(ascii: "0"), bytes[i] <= UInt8(ascii: "9") { i += 1 }
                return i - start
            }
            if i < bytes.count, bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard i < bytes.count else { return false }
            if bytes[i] == UInt8(ascii: "0") {
                i += 1
            } else if digits() == 0 {
                return false
            }
            if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
                i += 1
                guard digits() > 0 else { return false }
            }
            if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
                i += 1
                if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
                guard digits() > 0 else { return false }
            }
            return true
        }
    }
}
