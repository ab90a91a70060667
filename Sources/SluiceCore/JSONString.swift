/// Writes JSON string literals. Shared by every place Sluice emits JSON (responses, file sink lines).
public enum JSONString {
    /// Appends `bytes` (UTF-8) as a quoted JSON string: quotes, backslashes and control
    /// characters are escaped, everything else is copied as is.
    @inlinable
    public static func append<C: Collection>(_ bytes: C, to out: inout [UInt8]) where C.Element == UInt8 {
        // Contiguous bytes (a native String's UTF-8, an array): scanned and copied through a
        // pointer. Through the collection's own indices a String cost ~13 instructions a byte.
        let plain = bytes.withContiguousStorageIfAvailable { buffer -> Bool in
            guard !Self.needsEscaping(buffer) else { return false }
            out.append(UInt8(ascii: "\""))
            out.append(contentsOf: buffer)
            out.append(UInt8(ascii: "\""))
            return true
        }
        if plain == true { return }
        out.append(UInt8(ascii: "\""))
        if !bytes.contains(where: { $0 < 0x20 || $0 == 0x22 || $0 == 0x5C }) {
            out.append(contentsOf: bytes)
        } else {
            for byte in bytes {
                switch byte {
                case UInt8(ascii: "\""): out.append(contentsOf: [0x5C, 0x22])
                case UInt8(ascii: "\\"): out.append(contentsOf: [0x5C, 0x5C])
                case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
                case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
                case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
                case 0..<0x20:
                    out.append(contentsOf: [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0xF)]])
                default: out.append(byte)
                }
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// The high bit of each of the 8 bytes in `word` (first byte lowest) that a JSON string must
    /// escape: `"`, `\` or below 0x20. A marked byte above the lowest one may be a false alarm
    /// (a borrow from the byte below), the lowest one never is.
    @inlinable @inline(__always)
    public static func escapedBytes(in word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        func zeroBytes(_ v: UInt64) -> UInt64 { (v &- ones) & ~v & highs }
        let quote = zeroBytes(word ^ (ones &* 0x22))
        let backslash = zeroBytes(word ^ (ones &* 0x5C))
        let control = (word &- ones &* 0x20) & ~word & highs
        return quote | backslash | control
    }

    /// As `escapedBytes(in:)`, and bytes at or above 0x80 too (UTF-8 a reader must look at).
    @inlinable @inline(__always)
    public static func escapedOrNonASCIIBytes(in word: UInt64) -> UInt64 {
        Self.escapedBytes(in: word) | (word & 0x8080_8080_8080_8080)
    }

    /// Whether any byte is a quote, a backslash or a control character: eight bytes at a time.
    @inlinable
    static func needsEscaping(_ buffer: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let base = buffer.baseAddress else { return false }
        var i = 0
        while i + 8 <= buffer.count {
            if Self.escapedBytes(in: Self.word(base, at: i)) != 0 { return true }
            i += 8
        }
        while i < buffer.count {
            let byte = base[i]
            if byte < 0x20 || byte == 0x22 || byte == 0x5C { return true }
            i += 1
        }
        return false
    }

    /// How many bytes from `start`, in whole 8-byte words, are plain ASCII inside a JSON string
    /// (no quote, backslash, control character or byte above 0x7F): a reader skips them at once
    /// and looks at the rest byte by byte.
    @inlinable
    public static func plainASCIIWords(_ base: UnsafePointer<UInt8>, from start: Int, to end: Int) -> Int {
        var i = start
        while i + 8 <= end, Self.escapedOrNonASCIIBytes(in: Self.word(base, at: i)) == 0 { i += 8 }
        return i - start
    }

    @inlinable @inline(__always)
    static func word(_ base: UnsafePointer<UInt8>, at offset: Int) -> UInt64 {
        UInt64(littleEndian: UnsafeRawPointer(base + offset).loadUnaligned(as: UInt64.self))
    }

    @usableFromInline static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// The byte a one-character escape stands for (`\n` -> 0x0A; `\"`, `\\`, `\/` themselves);
    /// nil for `u` (four hex digits follow) and for anything that is not an escape (RFC 8259 7).
    @inlinable
    public static func unescaped(_ escape: UInt8) -> UInt8? {
        switch escape {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): return escape
        case UInt8(ascii: "b"): return 0x08
        case UInt8(ascii: "f"): return 0x0C
        case UInt8(ascii: "n"): return 0x0A
        case UInt8(ascii: "r"): return 0x0D
        case UInt8(ascii: "t"): return 0x09
        default: return nil
        }
    }
}
