/// Standard base64 (RFC 4648, with padding), appended to a byte array. Shared by the file sink
/// (`value_base64`) and the Kinesis sink (PutRecords `Data`).
public enum Base64 {
    @usableFromInline static let alphabet: StaticString = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    /// Appends `bytes` as standard base64 with padding. The output is sized once and written
    /// through a pointer: appending byte by byte to the array (a capacity and uniqueness check
    /// per character) cost 22 instructions per input byte, a Kinesis sink's largest share.
    @inlinable
    public static func append(_ bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        let n = bytes.count
        guard n > 0 else { return }
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: (n + 2) / 3 * 4))
        out.withUnsafeMutableBufferPointer { buffer in
            let table = Self.alphabet.utf8Start
            let input = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
            var o = buffer.baseAddress! + start
            var i = 0
            while i + 3 <= n {
                let v = UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8 | UInt32(input[i + 2])
                o[0] = table[Int(v >> 18 & 63)]
                o[1] = table[Int(v >> 12 & 63)]
                o[2] = table[Int(v >> 6 & 63)]
                o[3] = table[Int(v & 63)]
                o += 4
                i += 3
            }
            if n - i == 1 {
                let v = UInt32(input[i]) << 16
                o[0] = table[Int(v >> 18 & 63)]
                o[1] = table[Int(v >> 12 & 63)]
                o[2] = UInt8(ascii: "=")
                o[3] = UInt8(ascii: "=")
            } else if n - i == 2 {
                let v = UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8
                o[0] = table[Int(v >> 18 & 63)]
                o[1] = table[Int(v >> 12 & 63)]
                o[2] = table[Int(v >> 6 & 63)]
                o[3] = UInt8(ascii: "=")
            }
        }
    }

    /// Decodes standard base64 with padding (what Java's `Base64.getDecoder()` takes, as
    /// Confluent REST Proxy decodes binary keys and values); nil for anything else.
    public static func decode(_ text: UnsafeRawBufferPointer) -> [UInt8]? {
        guard text.count % 4 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(text.count / 4 * 3)
        var i = 0
        while i < text.count {
            var v: UInt32 = 0
            var padding = 0
            for k in 0..<4 {
                let c = text[i + k]
                let digit: UInt8
                switch c {
                case UInt8(ascii: "A")...UInt8(ascii: "Z"): digit = c - UInt8(ascii: "A")
                case UInt8(ascii: "a")...UInt8(ascii: "z"): digit = c - UInt8(ascii: "a") + 26
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = c - UInt8(ascii: "0") + 52
                case UInt8(ascii: "+"): digit = 62
                case UInt8(ascii: "/"): digit = 63
                case UInt8(ascii: "=") where i + 4 == text.count && k >= 2:
                    padding += 1
                    digit = 0
                default: return nil
                }
                // Nothing but padding after the first `=`.
                if padding > 0, c != UInt8(ascii: "=") { return nil }
                v = v << 6 | UInt32(digit)
            }
            out.append(UInt8(v >> 16 & 0xFF))
            if padding < 2 { out.append(UInt8(v >> 8 & 0xFF)) }
            if padding < 1 { out.append(UInt8(v & 0xFF)) }
            i += 4
        }
        return out
    }
}

/// RFC 3986 percent-encoding with only the unreserved characters (`A-Z a-z 0-9 - _ . ~`) left
/// bare, and `/` too when asked: what SigV4 canonical requests and
/// `application/x-www-form-urlencoded` bodies (STS, OAuth token requests) need.
/// Lower-case hex, as SigV4 signatures and stored key hashes are written.
public enum Hex {
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
