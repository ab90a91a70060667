import Foundation

/// Checks an event is a well-formed Zerobus record before it is sent.
enum ZerobusRecordCheck {
    /// Whether `text` is one JSON object. `known`: already checked to be one JSON value. A text
    /// led by a byte order mark is not (RFC 8259 forbids sending one; Foundation would skip it).
    static func isJSONObject(_ text: String, known: Bool) -> Bool {
        let trimmed = text.utf8.drop { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }
        guard trimmed.first == UInt8(ascii: "{") else { return false }
        if known { return true }
        return (try? JSONSerialization.jsonObject(with: Data(text.utf8))) is [String: Any]
    }

    /// The bytes as a string if they are valid UTF-8. `String(validating:as:)` ran the standard
    /// library's generic validation unspecialized (~1,300 instructions for a 200-byte event under
    /// callgrind); a string built from the bytes (validated, and repaired where invalid, by the
    /// standard library's own fast path) that still holds exactly those bytes was valid.
    static func validUTF8(_ raw: UnsafeRawBufferPointer) -> String? {
        guard let source = raw.baseAddress, !raw.isEmpty else { return "" }
        let text = String(unsafeUninitializedCapacity: raw.count) { out in
            UnsafeMutableRawBufferPointer(out).copyMemory(from: raw)
            return raw.count
        }
        guard
            let unchanged = text.utf8.withContiguousStorageIfAvailable({ utf8 in
                utf8.count == raw.count && memcmp(utf8.baseAddress!, source, raw.count) == 0
            })
        else { return String(validating: raw, as: UTF8.self) }
        return unchanged ? text : nil
    }

    /// Open groups a record may hold inside one another.
    static let maxGroupDepth = 99

    /// Why `data` is not well-formed protobuf wire format, or nil. Checks tags, varints and
    /// lengths (not the schema: the service does that).
    static func protoWireProblem(_ data: Data) -> String? {
        if data.isEmpty { return nil }  // all fields default
        return data.withUnsafeBytes { raw -> String? in
            let bytes = raw.bindMemory(to: UInt8.self)
            var i = 0
            func varint() -> UInt64? {
                var value: UInt64 = 0
                var shift: UInt64 = 0
                while i < bytes.count, shift < 64 {
                    let byte = bytes[i]
                    i += 1
                    value |= UInt64(byte & 0x7F) << shift
                    if byte & 0x80 == 0 { return value }
                    shift += 7
                }
                return nil
            }
            var groups: [UInt64] = []  // field numbers of the open groups, innermost last
            while i < bytes.count {
                // A tag is a varint32 of at most five bytes (protobuf parsers refuse longer ones).
                let tagStart = i
                guard let tag = varint(), i - tagStart <= 5, tag <= UInt64(UInt32.max) else {
                    return i >= bytes.count && i - tagStart <= 5 ? "truncated field tag at byte \(tagStart)" : "malformed field tag at byte \(tagStart)"
                }
                let field = tag >> 3
                guard field >= 1, field <= 536_870_911 else { return "field number \(field) is out of range" }
                switch tag & 7 {
                case 0:
                    guard varint() != nil else { return "truncated varint in field \(field)" }
                case 1:
                    guard i + 8 <= bytes.count else { return "truncated 64-bit value in field \(field)" }
                    i += 8
                case 2:
                    guard let length = varint(), length <= UInt64(bytes.count - i) else { return "length of field \(field) runs past the end" }
                    i += Int(length)
                case 3:
                    // Protobuf parsers stop at a nesting depth of 100, the record itself being one
                    // (the C++ and Java default, SwiftProtobuf's `messageDepthLimit`).
                    guard groups.count < maxGroupDepth else { return "groups nested deeper than \(maxGroupDepth) at byte \(tagStart)" }
                    groups.append(field)
                case 4:
                    guard let open = groups.popLast() else { return "group end without start in field \(field)" }
                    guard open == field else { return "group \(open) ended by field \(field)" }
                case 5:
                    guard i + 4 <= bytes.count else { return "truncated 32-bit value in field \(field)" }
                    i += 4
                default:
                    return "invalid wire type \(tag & 7) in field \(field)"
                }
            }
            return groups.isEmpty ? nil : "unterminated group"
        }
    }
}
