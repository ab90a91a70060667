import SluiceCore

/// The request target (RFC 9112 3.2) in the one canonical form that routing, policies and the
/// upstream all see.
///
/// Sluice decides what a path means once, before routing, and forwards exactly that form, so a
/// rule that denies `/static/secret` cannot be walked around with a spelling the upstream reads
/// differently (Envoy's `normalize_path` + `merge_slashes`, with escaped slashes rejected):
///
/// - origin-form (`/a/b?q`), absolute-form (`http://host/a/b?q`, whose authority replaces the
///   Host header) and asterisk-form (`*`, OPTIONS only) are accepted; anything else is refused;
/// - percent-encoded unreserved characters (`%41`, `%2E`, `%7E`) are decoded, other escapes are
///   kept with upper-case hex, malformed escapes are refused;
/// - an encoded `/` or `\` (`%2F`, `%5C`) or NUL (`%00`) is refused: its meaning differs between
///   servers, and no route needs it;
/// - runs of `/` become one; `.` and `..` segments are removed (RFC 3986 5.2.4; `..` never climbs
///   above the root); a `.`/`..` segment with a `;` parameter (`..;/`) is refused;
/// - control characters, space, `\`, `#` and bytes outside ASCII are refused in the path; the
///   query keeps its bytes but may not hold control characters, space or `#`;
/// - bytes a target may not carry raw but clients send anyway (`"<>^`{|}`, and in the query `\`
///   and bytes outside ASCII) are percent-encoded, in the path and the query alike.
public struct RequestTarget: Sendable, Equatable {
    /// The canonical path: starts with `/` (or is `*`).
    public var path: String
    /// The query string without `?`, as sent but for the bytes a target may not carry raw
    /// (percent-encoded).
    public var query: String?
    /// The authority of an absolute-form target (`POST http://host:8080/x`), lower-cased scheme stripped.
    public var authority: String?

    public struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
        public var message: String
        public var description: String { self.message }
    }

    /// Parses and canonicalises `uri` as it came on the request line (or HTTP/2 `:path`).
    public static func parse(_ uri: String) -> Result<RequestTarget, Problem> {
        if let target = Self.alreadyCanonical(uri) { return .success(target) }
        var bytes = Array(uri.utf8)
        guard !bytes.isEmpty else { return .failure(Problem(message: "the request target is empty")) }
        if bytes == [UInt8(ascii: "*")] { return .success(RequestTarget(path: "*", query: nil, authority: nil)) }
        var authority: String?
        if bytes[0] != UInt8(ascii: "/") {
            // absolute-form: scheme "://" authority path-abempty [ "?" query ]
            guard let schemeEnd = Self.absoluteFormPathStart(bytes) else {
                return .failure(Problem(message: "the request target must be a path starting with \"/\" or an absolute http(s) URI"))
            }
            let authorityBytes = bytes[schemeEnd.authority..<schemeEnd.path]
            guard !authorityBytes.isEmpty, !authorityBytes.contains(UInt8(ascii: "@")),
                authorityBytes.allSatisfy({ Self.isAuthorityByte($0) })
            else {
                return .failure(Problem(message: "the request target's authority is not a valid host[:port]"))
            }
            authority = String(decoding: authorityBytes, as: UTF8.self)
            bytes = schemeEnd.path < bytes.count ? Array(bytes[schemeEnd.path...]) : []
            if bytes.first != UInt8(ascii: "/") { bytes.insert(UInt8(ascii: "/"), at: 0) }
        }
        var query: String?
        var pathEnd = bytes.count
        if let mark = bytes.firstIndex(of: UInt8(ascii: "?")) {
            let queryBytes = bytes[(mark + 1)...]
            if let bad = queryBytes.first(where: { $0 <= 0x20 || $0 == 0x7F || $0 == UInt8(ascii: "#") }) {
                return .failure(Problem(message: "the query holds a forbidden byte (\(Self.describe(bad)))"))
            }
            var sendable: [UInt8] = []
            sendable.reserveCapacity(queryBytes.count)
            for byte in queryBytes { Self.appendSendable(byte, to: &sendable) }
            query = String(decoding: sendable, as: UTF8.self)
            pathEnd = mark
        }
        switch Self.canonicalPath(bytes[0..<pathEnd]) {
        case .success(let path): return .success(RequestTarget(path: path, query: query, authority: authority))
        case .failure(let problem): return .failure(problem)
        }
    }

    /// The common case without a copy: an origin-form target whose path has no escape, no
    /// empty or dot segment and no forbidden byte, and whose query is clean.
    @inline(__always)
    static func alreadyCanonical(_ uri: String) -> RequestTarget? {
        uri.utf8.withContiguousStorageIfAvailable { Self.alreadyCanonical(uri, $0) } ?? nil
    }

    private static func alreadyCanonical(_ uri: String, _ bytes: UnsafeBufferPointer<UInt8>) -> RequestTarget? {
        guard bytes.first == UInt8(ascii: "/") else { return nil }
        var previous: UInt8 = 0
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "?") { break }
            // A byte no target may carry raw (control, space, backslash, `{`, non-ASCII ...), an
            // escape or a fragment: the full parse decides.
            if !RequestTargetBytes.contains(byte) || byte == UInt8(ascii: "%") || byte == UInt8(ascii: "#") { return nil }
            if previous == UInt8(ascii: "/"), byte == UInt8(ascii: "/") || byte == UInt8(ascii: ".") { return nil }
            previous = byte
            index += 1
        }
        if index == bytes.count { return RequestTarget(path: uri, query: nil, authority: nil) }
        for position in (index + 1)..<bytes.count {
            let byte = bytes[position]
            if !RequestTargetBytes.contains(byte) || byte == UInt8(ascii: "#") { return nil }
        }
        let path = String(decoding: UnsafeBufferPointer(rebasing: bytes[..<index]), as: UTF8.self)
        let query = String(decoding: UnsafeBufferPointer(rebasing: bytes[(index + 1)...]), as: UTF8.self)
        return RequestTarget(path: path, query: query, authority: nil)
    }

    /// The canonical form of a path that starts with `/`.
    static func canonicalPath(_ raw: ArraySlice<UInt8>) -> Result<String, Problem> {
        // First pass: validate bytes, decode unreserved escapes, upper-case the others.
        var decoded: [UInt8] = []
        decoded.reserveCapacity(raw.count)
        var i = raw.startIndex
        while i < raw.endIndex {
            let byte = raw[i]
            if byte == UInt8(ascii: "%") {
                guard i + 2 < raw.endIndex, let high = PercentEncoding.hexValue(raw[i + 1]), let low = PercentEncoding.hexValue(raw[i + 2]) else {
                    return .failure(Problem(message: "the path holds a malformed percent escape"))
                }
                let value = high << 4 | low
                if value == UInt8(ascii: "/") || value == UInt8(ascii: "\\") {
                    return .failure(Problem(message: "the path holds an encoded slash (%2F or %5C)"))
                }
                if value == 0 { return .failure(Problem(message: "the path holds an encoded NUL (%00)")) }
                if Self.isUnreserved(value) {
                    decoded.append(value)
                } else {
                    decoded.append(UInt8(ascii: "%"))
                    decoded.append(Self.upperHex[Int(high)])
                    decoded.append(Self.upperHex[Int(low)])
                }
                i += 3
                continue
            }
            if byte <= 0x20 || byte >= 0x7F || byte == UInt8(ascii: "\\") || byte == UInt8(ascii: "#") {
                return .failure(Problem(message: "the path holds a forbidden byte (\(Self.describe(byte)))"))
            }
            Self.appendSendable(byte, to: &decoded)
            i += 1
        }
        // Second pass: merge slashes and remove dot segments.
        var segments: [ArraySlice<UInt8>] = []
        let parts = decoded.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        // parts[0] is the empty string before the leading "/".
        var endsWithSlash = decoded.last == UInt8(ascii: "/")
        for (index, part) in parts.enumerated().dropFirst() {
            let isLast = index == parts.count - 1
            if part.isEmpty { continue }
            let beforeParameter = part.firstIndex(of: UInt8(ascii: ";")).map { part[part.startIndex..<$0] } ?? part
            let isDot = beforeParameter.elementsEqual([UInt8(ascii: ".")])
            let isDotDot = beforeParameter.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")])
            if (isDot || isDotDot), beforeParameter.count != part.count {
                return .failure(Problem(message: "the path holds a dot segment with a ';' parameter"))
            }
            if isDot {
                if isLast { endsWithSlash = true }
                continue
            }
            if isDotDot {
                if !segments.isEmpty { segments.removeLast() }
                if isLast { endsWithSlash = true }
                continue
            }
            segments.append(part)
        }
        var out: [UInt8] = []
        out.reserveCapacity(decoded.count)
        for segment in segments {
            out.append(UInt8(ascii: "/"))
            out.append(contentsOf: segment)
        }
        if out.isEmpty || endsWithSlash { out.append(UInt8(ascii: "/")) }
        return .success(String(decoding: out, as: UTF8.self))
    }

    /// Appends `byte`, percent-encoded if a request target may not carry it raw (`"`, `<`, `>`,
    /// `\`, `^`, `` ` ``, `{`, `|`, `}` and non-ASCII bytes; the callers have refused controls,
    /// space and `#`). Clients send these unencoded (`?q={"a":1}`, `/a|b`); forwarded raw they
    /// would be refused by the HTTP/1.1 encoder, failing the request upstream and counting
    /// against a healthy endpoint. Escaped, they mean the same (RFC 3986 2.1, 2.4).
    private static func appendSendable(_ byte: UInt8, to out: inout [UInt8]) {
        if RequestTargetBytes.contains(byte) {
            out.append(byte)
        } else {
            out.append(UInt8(ascii: "%"))
            out.append(Self.upperHex[Int(byte >> 4)])
            out.append(Self.upperHex[Int(byte & 0xF)])
        }
    }

    /// For `http://` or `https://` (any case): where the authority and the path start.
    private static func absoluteFormPathStart(_ bytes: [UInt8]) -> (authority: Int, path: Int)? {
        let lower = bytes.prefix(8).map { $0 | 0x20 }
        let http = Array("http://".utf8)
        let https = Array("https://".utf8)
        let start: Int
        if lower.starts(with: http) {
            start = http.count
        } else if lower.starts(with: https) {
            start = https.count
        } else {
            return nil
        }
        var end = start
        while end < bytes.count, bytes[end] != UInt8(ascii: "/"), bytes[end] != UInt8(ascii: "?") { end += 1 }
        return (start, end)
    }

    private static func isAuthorityByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: ":"), UInt8(ascii: "["),
            UInt8(ascii: "]"):
            return true
        default:
            return false
        }
    }

    static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    private static let upperHex = Array("0123456789ABCDEF".utf8)

    private static func describe(_ byte: UInt8) -> String {
        if (0x21...0x7E).contains(byte) { return "'\(Character(UnicodeScalar(byte)))'" }
        return "0x" + String(decoding: [Self.upperHex[Int(byte >> 4)], Self.upperHex[Int(byte & 0xF)]], as: UTF8.self)
    }
}
