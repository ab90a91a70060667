import Foundation
import SluiceCore

/// A `format`: checked only when the route asks (`format_assertion: true`); both drafts make
/// formats annotations by default. Unknown formats accept everything, as the drafts say.
struct SchemaFormat: Sendable {
    let name: String

    init(_ name: String) {
        self.name = name
    }

    func accepts(_ value: JSONValue) -> Bool {
        guard case .string(let text) = value else { return true }
        switch self.name {
        case "date-time": return Self.dateTime(text)
        case "date": return Self.date(Substring(text))
        case "time": return Self.time(Substring(text))
        case "duration": return Self.duration(text)
        case "email", "idn-email": return Self.email(text, international: self.name == "idn-email")
        case "hostname": return Self.hostname(text)
        case "idn-hostname": return Self.hostname(text, international: true)
        case "ipv4": return Self.ipv4(Substring(text))
        case "ipv6": return Self.ipv6(text)
        case "uuid": return Self.uuid(text)
        case "uri": return Self.uri(text, absolute: true, international: false)
        case "uri-reference": return Self.uri(text, absolute: false, international: false)
        case "iri": return Self.uri(text, absolute: true, international: true)
        case "iri-reference": return Self.uri(text, absolute: false, international: true)
        case "uri-template": return Self.uriTemplate(text)
        case "json-pointer": return JSONPointer.tokens(text) != nil
        case "relative-json-pointer": return Self.relativePointer(text)
        case "regex": return (try? Regex(text)) != nil
        default: return true
        }
    }

    private static func digits(_ text: Substring, _ count: Int) -> Int? {
        guard text.count == count, text.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(text)
    }

    static func date(_ text: Substring) -> Bool {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, let year = digits(parts[0], 4), let month = digits(parts[1], 2), let day = digits(parts[2], 2) else { return false }
        guard (1...12).contains(month), day >= 1 else { return false }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
        return day <= days
    }

    static func time(_ text: Substring) -> Bool {
        var rest = text
        guard rest.count >= 9 else { return false }
        let hms = rest.prefix(8)
        rest = rest.dropFirst(8)
        let parts = hms.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, let hour = digits(parts[0], 2), let minute = digits(parts[1], 2), let second = digits(parts[2], 2),
            hour <= 23, minute <= 59, second <= 60
        else { return false }
        if rest.first == "." {
            rest = rest.dropFirst()
            let fraction = rest.prefix { $0.isASCII && $0.isNumber }
            guard !fraction.isEmpty else { return false }
            rest = rest.dropFirst(fraction.count)
        }
        var offsetMinutes = 0
        if rest == "Z" || rest == "z" {
        } else if let sign = rest.first, sign == "+" || sign == "-", rest.count == 6 {
            let offset = rest.dropFirst().split(separator: ":", omittingEmptySubsequences: false)
            guard offset.count == 2, let oh = digits(offset[0], 2), let om = digits(offset[1], 2), oh <= 23, om <= 59 else { return false }
            offsetMinutes = (oh * 60 + om) * (sign == "+" ? 1 : -1)
        } else {
            return false
        }
        if second == 60 {
            // A leap second is 23:59:60 in UTC.
            let utc = ((hour * 60 + minute - offsetMinutes) % 1440 + 1440) % 1440
            return utc == 23 * 60 + 59
        }
        return true
    }

    static func dateTime(_ text: String) -> Bool {
        guard let separator = text.firstIndex(where: { $0 == "T" || $0 == "t" }) else { return false }
        return Self.date(text[..<separator]) && Self.time(text[text.index(after: separator)...])
    }

    static func duration(_ text: String) -> Bool {
        var rest = Substring(text)
        guard rest.first == "P" else { return false }
        rest = rest.dropFirst()
        guard !rest.isEmpty else { return false }
        if rest.hasSuffix("W") {
            let number = rest.dropLast()
            return !number.isEmpty && number.allSatisfy { $0.isASCII && $0.isNumber }
        }
        // RFC 3339 appendix A: units in order, each one next to the one before (P1Y2D lacks M).
        var inTime = false
        var units: [Character] = ["Y", "M", "D"]
        var last = -1
        var seen = false
        while !rest.isEmpty {
            if rest.first == "T" {
                guard !inTime else { return false }
                inTime = true
                units = ["H", "M", "S"]
                last = -1
                rest = rest.dropFirst()
                guard !rest.isEmpty else { return false }
                continue
            }
            let number = rest.prefix { $0.isASCII && $0.isNumber }
            guard !number.isEmpty else { return false }
            rest = rest.dropFirst(number.count)
            guard let unit = rest.first, let position = units.firstIndex(of: unit), last == -1 || position == last + 1 else { return false }
            last = position
            rest = rest.dropFirst()
            seen = true
        }
        return seen
    }

    static func email(_ text: String, international: Bool) -> Bool {
        guard let at = text.lastIndex(of: "@") else { return false }
        let local = text[..<at]
        let domain = text[text.index(after: at)...]
        guard !local.isEmpty, !domain.isEmpty, !local.hasPrefix("."), !local.hasSuffix("."), !local.contains("..") else { return false }
        if !international, !text.allSatisfy(\.isASCII) { return false }
        let allowed = Set("!#$%&'*+-/=?^_`{|}~.")
        guard local.allSatisfy({ $0.isLetter || $0.isNumber || allowed.contains($0) || (international && !$0.isASCII) }) else { return false }
        if domain.hasPrefix("["), domain.hasSuffix("]") {
            let inner = domain.dropFirst().dropLast()
            if inner.hasPrefix("IPv6:") { return Self.ipv6(String(inner.dropFirst(5))) }
            return Self.ipv4(inner)
        }
        return Self.hostname(String(domain), international: international)
    }

    static func hostname(_ text: String, international: Bool = false) -> Bool {
        var text = text
        if international {
            // Ideographic and fullwidth full stops separate labels too.
            text = text.replacingOccurrences(of: "\u{3002}", with: ".").replacingOccurrences(of: "\u{FF0E}", with: ".").replacingOccurrences(of: "\u{FF61}", with: ".")
        }
        guard !text.isEmpty, text.utf8.count <= 253 || international else { return false }
        for label in text.split(separator: ".", omittingEmptySubsequences: false) {
            guard !label.isEmpty, label.count <= 63, !label.hasPrefix("-"), !label.hasSuffix("-") else { return false }
            if label.count >= 4, label.dropFirst(2).hasPrefix("--"), !label.lowercased().hasPrefix("xn--") { return false }
            for character in label {
                if character.isASCII {
                    guard character.isLetter || character.isNumber || character == "-" else { return false }
                } else if !international {
                    return false
                }
            }
        }
        return true
    }

    static func ipv4(_ text: Substring) -> Bool {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return false }
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(part), value <= 255 else { return false }
            if part.count > 1, part.first == "0" { return false }
        }
        return true
    }

    static func ipv6(_ text: String) -> Bool {
        guard !text.isEmpty, !text.contains("%"), !text.contains(":::") else { return false }
        if text.hasPrefix(":"), !text.hasPrefix("::") { return false }
        if text.hasSuffix(":"), !text.hasSuffix("::") { return false }
        var groups = text.components(separatedBy: ":")
        var tailIPv4 = false
        if let last = groups.last, last.contains(".") {
            guard Self.ipv4(Substring(last)) else { return false }
            groups.removeLast()
            groups.append("0")
            groups.append("0")
            tailIPv4 = true
        }
        _ = tailIPv4
        let doubleColons = text.components(separatedBy: "::").count - 1
        guard doubleColons <= 1 else { return false }
        if doubleColons == 0 {
            guard groups.count == 8 else { return false }
        } else {
            guard groups.count <= 9 else { return false }
            // "::" makes empty groups at its place only (and at the ends when it is there).
            if text.hasPrefix(":"), !text.hasPrefix("::") { return false }
            if text.hasSuffix(":"), !text.hasSuffix("::") { return false }
        }
        let nonEmpty = groups.filter { !$0.isEmpty }
        if doubleColons == 1, nonEmpty.count > 7 { return false }
        return nonEmpty.allSatisfy { $0.count <= 4 && $0.allSatisfy(\.isHexDigit) }
    }

    static func uuid(_ text: String) -> Bool {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.map(\.count) == [8, 4, 4, 4, 12] else { return false }
        return parts.allSatisfy { $0.allSatisfy(\.isHexDigit) }
    }

    static func uri(_ text: String, absolute: Bool, international: Bool) -> Bool {
        guard !text.isEmpty || !absolute else { return false }
        let allowed = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#[]@!$&'()*+,;=%")
        var scalars = Array(text.unicodeScalars)
        var i = 0
        while i < scalars.count {
            let scalar = scalars[i]
            if scalar == "%" {
                guard Self.isPercentEscape(scalars, at: i) else { return false }
                i += 3
                continue
            }
            if !scalar.isASCII {
                guard international else { return false }
            } else if !allowed.contains(Character(scalar)) {
                return false
            }
            i += 1
        }
        scalars = []
        let reference = URIReference(text)
        if absolute {
            guard let scheme = reference.scheme, !scheme.isEmpty, scheme.first!.isLetter else { return false }
        } else if reference.scheme == nil, let colon = text.firstIndex(of: ":"),
            !text[..<colon].contains("/"), !text[..<colon].contains("?"), !text[..<colon].contains("#")
        {
            return false  // a first segment with ":" reads as a scheme
        }
        if let authority = reference.authority {
            var host = Substring(authority)
            if let at = host.lastIndex(of: "@") { host = host[host.index(after: at)...] }
            if host.hasPrefix("[") {
                guard let close = host.firstIndex(of: "]") else { return false }
                let port = host[host.index(after: close)...]
                if !port.isEmpty { guard port.first == ":", port.dropFirst().allSatisfy(\.isNumber) else { return false } }
            } else if let colon = host.lastIndex(of: ":") {
                guard host[host.index(after: colon)...].allSatisfy(\.isNumber) else { return false }
                host = host[..<colon]
            }
            if host.contains("[") || host.contains("]") { return false }
        }
        if reference.fragment?.contains("#") == true { return false }
        return !reference.path.contains("[") && !reference.path.contains("]")
    }

    /// RFC 6570: literals, and expressions of an optional operator and varspecs.
    static func uriTemplate(_ text: String) -> Bool {
        let scalars = Array(text.unicodeScalars)
        var i = 0
        while i < scalars.count {
            let scalar = scalars[i]
            if scalar == "{" {
                guard let close = scalars[i...].firstIndex(of: "}") else { return false }
                var body = Array(scalars[(i + 1)..<close])
                if let first = body.first, "+#./;?&=,!@|".unicodeScalars.contains(first) { body.removeFirst() }
                guard !body.isEmpty else { return false }
                for varspec in body.split(separator: ",", omittingEmptySubsequences: false) {
                    var name = Array(varspec)
                    if name.last == "*" {
                        name.removeLast()
                    } else if let colon = name.firstIndex(of: ":") {
                        let length = name[(colon + 1)...]
                        guard (1...4).contains(length.count), length.allSatisfy({ $0.properties.numericType != nil && $0.isASCII }),
                            length.first != "0"
                        else { return false }
                        name = Array(name[..<colon])
                    }
                    guard !name.isEmpty, name.first != ".", name.last != "." else { return false }
                    var j = 0
                    while j < name.count {
                        let c = name[j]
                        if c == "%" {
                            guard Self.isPercentEscape(name, at: j) else { return false }
                            j += 3
                            continue
                        }
                        if c == "." {
                            guard j + 1 < name.count, name[j + 1] != "." else { return false }
                        } else if !(c.isASCII && (Character(c).isLetter || Character(c).isNumber || c == "_")) {
                            return false
                        }
                        j += 1
                    }
                }
                i = close + 1
                continue
            }
            if scalar == "%" {
                guard Self.isPercentEscape(scalars, at: i) else { return false }
                i += 3
                continue
            }
            if scalar.value <= 0x20 || scalar.value == 0x7F || "\"'<>\\^`{|}".unicodeScalars.contains(scalar) { return false }
            i += 1
        }
        return true
    }

    /// Whether `scalars[position]` starts a `%XX` escape (two hex digits follow the `%`).
    private static func isPercentEscape(_ scalars: [Unicode.Scalar], at position: Int) -> Bool {
        position + 2 < scalars.count && scalars[position] == "%" && Character(scalars[position + 1]).isHexDigit
            && Character(scalars[position + 2]).isHexDigit
    }

    static func relativePointer(_ text: String) -> Bool {
        let number = text.prefix { $0.isASCII && $0.isNumber }
        guard !number.isEmpty else { return false }
        if number.count > 1, number.first == "0" { return false }
        let rest = text.dropFirst(number.count)
        if rest == "#" { return true }
        if rest.isEmpty { return true }
        if rest.first == "+" || rest.first == "-" {
            let offset = rest.dropFirst().prefix { $0.isASCII && $0.isNumber }
            guard !offset.isEmpty, !(offset.count > 1 && offset.first == "0"), !(rest.first == "-" && offset == "0") else { return false }
            let after = rest.dropFirst(1 + offset.count)
            return after.isEmpty || after == "#" || JSONPointer.tokens(after) != nil
        }
        return JSONPointer.tokens(rest) != nil
    }
}
