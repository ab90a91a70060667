import NIOHTTP1

/// Header field names compared as HTTP compares them (ASCII, any case), over their contiguous
/// UTF-8 and without a lowercased copy.
enum FieldName {
    /// `name` equals `lowercase` (ASCII, already lowercase) ignoring ASCII case.
    static func equals(_ name: String, _ lowercase: StaticString) -> Bool {
        guard name.utf8.count == lowercase.utf8CodeUnitCount else { return false }
        var name = name
        return name.withUTF8 { Self.equals($0, lowercase) }
    }

    @inline(__always)
    static func equals(_ name: UnsafeBufferPointer<UInt8>, _ lowercase: StaticString) -> Bool {
        guard name.count == lowercase.utf8CodeUnitCount else { return false }
        let expected = lowercase.utf8Start
        for index in 0..<name.count {
            let byte = name[index]
            let folded = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
            if folded != expected[index] { return false }
        }
        return true
    }

    /// `a` equals `b` ignoring ASCII case.
    static func equals(_ a: String, _ b: String) -> Bool {
        guard a.utf8.count == b.utf8.count else { return false }
        var a = a
        var b = b
        return a.withUTF8 { a in
            b.withUTF8 { b in
                for index in 0..<a.count where a[index] != b[index] {
                    if a[index] | 0x20 != b[index] | 0x20 || !(UInt8(ascii: "a")...UInt8(ascii: "z")).contains(a[index] | 0x20) { return false }
                }
                return true
            }
        }
    }

    /// Whether `headers` hold exactly one `name` field, whose value is `value`.
    static func holdOnly(_ name: StaticString, _ value: String, in headers: HTTPHeaders) -> Bool {
        var found = false
        for (field, fieldValue) in headers where Self.equals(field, name) {
            if found || fieldValue != value { return false }
            found = true
        }
        return found
    }
}
