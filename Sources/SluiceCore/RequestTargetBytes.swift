/// The bytes a request target may carry raw (RFC 9112 3.2 with RFC 3986's grammar): those of
/// unreserved, gen-delims, sub-delims and `%` (no space, control, non-ASCII, or any of
/// `"<>\^`{|}`). One home for every place that makes or checks a target: the canonical form
/// holds only these (`RequestTarget` percent-encodes the rest), the HTTP/1.1 encoder refuses a
/// target with any other, and the configuration refuses a path rewrite or a health check's
/// target that would hold one.
public enum RequestTargetBytes {
    /// A target that may be sent: one or more target bytes.
    @inlinable
    public static func isSendable(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        !bytes.isEmpty && bytes.allSatisfy(Self.contains)
    }

    /// The target bytes as a bit per byte below 128, bytes 0-63 and 64-127; `containsSlow` is
    /// the definition (a test checks they agree).
    @inlinable static var low: UInt64 { 0xAFFF_FFFA_0000_0000 }
    @inlinable static var high: UInt64 { 0x47FF_FFFE_AFFF_FFFF }

    @inlinable
    public static func contains(_ byte: UInt8) -> Bool {
        ASCIIByteMask.contains(byte, low: Self.low, high: Self.high)
    }

    static func containsSlow(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"),
            UInt8(ascii: ":"), UInt8(ascii: "/"), UInt8(ascii: "?"), UInt8(ascii: "#"), UInt8(ascii: "["), UInt8(ascii: "]"),
            UInt8(ascii: "@"), UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("),
            UInt8(ascii: ")"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "="),
            UInt8(ascii: "%"):
            return true
        default:
            return false
        }
    }

    /// Why `path` may not be sent as (the start of) a target's path, or nil: a path rewrite
    /// from the configuration. It starts with `/`, holds only the bytes of RFC 3986's path
    /// (target bytes but `?`, `#`, `[` and `]`), and each `%` begins an escape of two hex digits.
    public static func pathProblem(_ path: String) -> String? {
        Self.problem(Array(path.utf8), query: false)
    }

    /// Why `target` may not be sent as an origin-form request target (a path, then perhaps `?`
    /// and a query), or nil: a health check's target from the configuration. As `pathProblem`
    /// for the path; the query holds target bytes but `#`, with well-formed escapes.
    public static func originFormProblem(_ target: String) -> String? {
        Self.problem(Array(target.utf8), query: true)
    }

    private static func problem(_ bytes: [UInt8], query allowed: Bool) -> String? {
        guard bytes.first == UInt8(ascii: "/") else { return "must start with /" }
        var inQuery = false
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "?"), allowed, !inQuery {
                inQuery = true
                index += 1
                continue
            }
            let pathOnly = byte == UInt8(ascii: "?") || byte == UInt8(ascii: "[") || byte == UInt8(ascii: "]")
            guard Self.contains(byte), byte != UInt8(ascii: "#"), inQuery || !pathOnly else {
                return "holds a character a \(inQuery ? "query" : "path") may not carry raw at offset \(index) (percent-encode it)"
            }
            if byte == UInt8(ascii: "%") {
                guard index + 2 < bytes.count, bytes[index + 1].isHexDigit, bytes[index + 2].isHexDigit else {
                    return "holds a % at offset \(index) that does not begin an escape of two hex digits"
                }
                index += 2
            }
            index += 1
        }
        return nil
    }
}

extension UInt8 {
    fileprivate var isHexDigit: Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(self | 0x20)
    }
}
