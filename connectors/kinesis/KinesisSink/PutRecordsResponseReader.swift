import Foundation
import NIOCore
import SluiceCore

/// Reads the `Records` of a PutRecords answer: an array of flat objects whose values are strings
/// (numbers, booleans and nulls are skipped). Foundation's JSONSerialization cost more than the
/// rest of the sink per record; this reads only what is needed and rejects malformed input.
/// A record's four names are told by their bytes and kept in a struct: a dictionary per record
/// (and a String per name) cost ~10% of Sluice's CPU per Kinesis event.
enum PutRecordsResponseReader {
    /// One record's result: its shard and sequence number, or its error.
    struct RecordResult: Equatable {
        var shardID: String?
        var sequenceNumber: String?
        var errorCode: String?
        var errorMessage: String?

        init(shardID: String? = nil, sequenceNumber: String? = nil, errorCode: String? = nil, errorMessage: String? = nil) {
            self.shardID = shardID
            self.sequenceNumber = sequenceNumber
            self.errorCode = errorCode
            self.errorMessage = errorMessage
        }

        subscript(field: Field) -> String? {
            get {
                switch field {
                case .shardID: self.shardID
                case .sequenceNumber: self.sequenceNumber
                case .errorCode: self.errorCode
                case .errorMessage: self.errorMessage
                case .other: nil
                }
            }
            set {
                switch field {
                case .shardID: self.shardID = newValue
                case .sequenceNumber: self.sequenceNumber = newValue
                case .errorCode: self.errorCode = newValue
                case .errorMessage: self.errorMessage = newValue
                case .other: break
                }
            }
        }
    }

    enum Field {
        case shardID, sequenceNumber, errorCode, errorMessage, other

        init(_ name: UnsafeRawBufferPointer) {
            func named(_ known: StaticString) -> Bool {
                name.count == known.utf8CodeUnitCount && memcmp(name.baseAddress!, known.utf8Start, name.count) == 0
            }
            if name.isEmpty {
                self = .other
            } else if named("ShardId") {
                self = .shardID
            } else if named("SequenceNumber") {
                self = .sequenceNumber
            } else if named("ErrorCode") {
                self = .errorCode
            } else if named("ErrorMessage") {
                self = .errorMessage
            } else {
                self = .other
            }
        }

        init(_ name: String) {
            var name = name
            self = name.withUTF8 { Field(UnsafeRawBufferPointer($0)) }
        }
    }

    static func records(_ body: ByteBuffer) -> [RecordResult]? {
        body.withUnsafeReadableBytes { bytes -> [RecordResult]? in
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
        mutating func document() -> [RecordResult]? {
            guard expect(UInt8(ascii: "{")) else { return nil }
            var records: [RecordResult]?
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

        mutating func recordList() -> [RecordResult]? {
            guard expect(UInt8(ascii: "[")) else { return nil }
            var list: [RecordResult] = []
            if peek() == UInt8(ascii: "]") {
                i += 1
                return list
            }
            repeat {
                guard expect(UInt8(ascii: "{")) else { return nil }
                var record = RecordResult()
                if peek() != UInt8(ascii: "}") {
                    repeat {
                        guard let field = field(), expect(UInt8(ascii: ":")) else { return nil }
                        if peek() == UInt8(ascii: "\""), field != .other {
                            guard let value = string() else { return nil }
                            record[field] = value
                        } else {
                            guard skipValue(depth: 0) else { return nil }
                            // A name given twice takes its last value, as JSON parsers do.
                            record[field] = nil
                        }
                    } while expect(UInt8(ascii: ","))
                }
                guard expect(UInt8(ascii: "}")) else { return nil }
                list.append(record)
            } while expect(UInt8(ascii: ","))
            guard expect(UInt8(ascii: "]")) else { return nil }
            return list
        }

        /// A record's name: told by its bytes when they are plain ASCII (always, from Kinesis).
        mutating func field() -> Field? {
            guard let (raw, plain, ascii) = rawString() else { return nil }
            if ascii { return Field(raw) }
            return (plain ? String(validating: raw, as: UTF8.self) : Self.unescaped(raw)).map { Field($0) }
        }

        /// A JSON string, unescaped.
        mutating func string() -> String? {
            guard let (raw, plain, ascii) = rawString() else { return nil }
            // ASCII needs no validation (shard ids and sequence numbers always are).
            if ascii { return String(decoding: raw, as: UTF8.self) }
            if plain { return String(validating: raw, as: UTF8.self) }
            return Self.unescaped(raw)
        }

        /// The bytes between a string's quotes; `plain` if it has no escape, `ascii` if it has
        /// neither an escape nor a byte above 0x7F.
        mutating func rawString() -> (raw: UnsafeRawBufferPointer, plain: Bool, ascii: Bool)? {
            guard expect(UInt8(ascii: "\"")) else { return nil }
            // Whole words of plain ASCII at once, then a local index and the buffer's own
            // pointer: stepping `self.i` through the struct byte by byte cost ~20 instructions
            // a byte (56-digit sequence numbers, one per record).
            let start = i
            let count = bytes.count
            guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return nil }
            var j = start + JSONString.plainASCIIWords(base, from: start, to: count)
            var plain = true
            var high: UInt8 = 0
            while j < count {
                let byte = base[j]
                if byte == UInt8(ascii: "\"") { break }
                guard byte >= 0x20 else { return nil }  // RFC 8259: control characters are escaped
                high |= byte
                if byte == UInt8(ascii: "\\") {
                    plain = false
                    j += 1
                }
                j += 1
            }
            i = j
            guard i < count else { return nil }
            let raw = UnsafeRawBufferPointer(rebasing: bytes[start..<i])
            i += 1
            return (raw, plain, plain && high < 0x80)
        }

        /// Rare (error messages with quotes or non-ASCII): Foundation unescapes it.
        static func unescaped(_ raw: UnsafeRawBufferPointer) -> String? {
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
