/// Header field rules (RFC 9110 5.1, 5.5): a name is a token, a value holds no control character
/// but HTAB. One home for every place that reads or writes fields: the listener refuses a
/// request that breaks them before routing (passed on, it would make the upstream call fail and
/// count against a healthy endpoint); every HTTP/1.1 message Sluice writes is held to them
/// (`HTTP1MessageEncoding` refuses a head or trailers that break them: no response splitting or
/// request smuggling through a rewritten field); and the configuration refuses header names and
/// values it would set that break them.
public enum HeaderFieldCheck {
    /// Why the header `name: value` may not be passed on, or nil.
    public static func problem(name: String, value: String) -> String? {
        // Over the contiguous UTF-8 of each (native strings, as NIO's parser makes them): a
        // byte loop through String.UTF8View cost ~900 instructions for an ordinary header.
        var name = name
        var value = value
        let nameProblem: String? = name.withUTF8 { bytes in
            if bytes.isEmpty { return "a header name is empty" }
            return Self.isSendableName(bytes) ? nil : "a header name holds a character that is not allowed"
        }
        if let nameProblem { return nameProblem }
        if !value.withUTF8(Self.isSendableValue) {
            return "the value of header \"\(Self.printableName(name))\" holds a control character"
        }
        return nil
    }

    /// The name is `Host`, in any case.
    public static func isHost(_ name: String) -> Bool {
        var name = name
        return name.withUTF8 { bytes in
            bytes.count == 4 && bytes[0] | 0x20 == UInt8(ascii: "h") && bytes[1] | 0x20 == UInt8(ascii: "o")
                && bytes[2] | 0x20 == UInt8(ascii: "s") && bytes[3] | 0x20 == UInt8(ascii: "t")
        }
    }

    /// A field name that may be sent: one or more token bytes.
    @inlinable
    public static func isSendableName(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        !bytes.isEmpty && bytes.allSatisfy(Self.isTokenByte)
    }

    /// A field value (or a reason phrase) that may be sent: no control byte but HTAB. Eight
    /// bytes a step: a word with no byte below 0x20 and none equal to 0x7F is sendable as a
    /// whole (the byte loop decides only the words that hold one, such as an HTAB's).
    @inlinable
    public static func isSendableValue(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let base = bytes.baseAddress else { return true }
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highBits: UInt64 = 0x8080_8080_8080_8080
        var at = 0
        while at + 8 <= bytes.count {
            let word = UnsafeRawPointer(base + at).loadUnaligned(as: UInt64.self)
            // "Has a byte below n" (n <= 128) is exact as a yes/no: a borrow starts only at such
            // a byte. A byte equal to 0x7F is a zero byte of word ^ 0x7F7F...
            let below0x20 = (word &- ones &* 0x20) & ~word & highBits
            let del = word ^ (ones &* 0x7F)
            let has0x7F = (del &- ones) & ~del & highBits
            if below0x20 | has0x7F != 0 {
                for index in at..<(at + 8) where !Self.isSendableValueByte(base[index]) { return false }
            }
            at += 8
        }
        while at < bytes.count {
            if !Self.isSendableValueByte(base[at]) { return false }
            at += 1
        }
        return true
    }

    @inlinable
    public static func isSendableValueByte(_ byte: UInt8) -> Bool {
        (byte >= 0x20 || byte == 0x09) && byte != 0x7F
    }

    /// RFC 9110 5.6.2 tchar (ALPHA, DIGIT and !#$%&'*+-.^_`|~) as a bit per byte below 128,
    /// bytes 0-63 and 64-127; `isTokenByteSlow` is the definition (a test checks they agree).
    @inlinable static var tokenBytesLow: UInt64 { 0x03FF_6CFA_0000_0000 }
    @inlinable static var tokenBytesHigh: UInt64 { 0x57FF_FFFF_C7FF_FFFE }

    @inlinable
    public static func isTokenByte(_ byte: UInt8) -> Bool {
        ASCIIByteMask.contains(byte, low: Self.tokenBytesLow, high: Self.tokenBytesHigh)
    }

    /// The definition the masks are built from.
    public static func isTokenByteSlow(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"),
            UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
            UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    private static func printableName(_ name: String) -> String {
        String(name.prefix(64))
    }
}
