/// Percent-encoding (RFC 3986 2.1) as every part of Sluice reads it: request targets, path
/// parameters, query strings.
public enum PercentEncoding {
    /// The value of one hexadecimal digit, or nil.
    @inlinable
    public static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// Decodes %XX escapes; nil for a malformed escape or invalid UTF-8. Inlinable: the router
    /// calls it for every path parameter, and unspecialized it would go through witness tables.
    @inlinable
    public static func decode<C: Collection>(_ bytes: C) -> String? where C.Element == UInt8 {
        guard bytes.contains(UInt8(ascii: "%")) else { return String(validating: bytes, as: UTF8.self) }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var iterator = bytes.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                out.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(Self.hexValue), let low = iterator.next().flatMap(Self.hexValue) else {
                return nil
            }
            out.append(high << 4 | low)
        }
        return String(validating: out, as: UTF8.self)
    }

    /// Encodes every byte but the unreserved ones (and `/` with `keepSlash`), as SigV4 and
    /// form bodies want it.
    public static func encode(_ text: String, keepSlash: Bool = false) -> String {
        let hexDigits = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.append(byte)
            case UInt8(ascii: "/") where keepSlash:
                out.append(byte)
            default:
                out.append(UInt8(ascii: "%"))
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 0x0F)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `name=value&...`, each side encoded.
    public static func form(_ fields: [(String, String)]) -> String {
        fields.map { "\(encode($0.0))=\(encode($0.1))" }.joined(separator: "&")
    }
}

/// A query string (`a=1&b=x+y`) read one way everywhere — ingest keys and policies alike — so a
/// parameter cannot mean one thing to a rate limit and another to the route.
public enum QueryString {
    /// The first value of parameter `name`: names and values percent-decoded, `+` read as a
    /// space (form encoding, as clients send it); "" for a name without `=`; nil when absent or
    /// when the value's escapes are malformed.
    public static func firstValue(of name: String, in query: some StringProtocol) -> String? {
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = PercentEncoding.decode(parts[0].utf8.map { $0 == UInt8(ascii: "+") ? UInt8(ascii: " ") : $0 })
            guard key == name else { continue }
            guard parts.count == 2 else { return "" }
            return PercentEncoding.decode(parts[1].utf8.map { $0 == UInt8(ascii: "+") ? UInt8(ascii: " ") : $0 })
        }
        return nil
    }
}
