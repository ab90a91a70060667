import SluiceConfig
import SluiceCore

/// The rule the router's path matching keeps (`Router.matchPath` reads bytes through spans),
/// written with the standard library's collections. One copy for RouterTests and the
/// request_target fuzz target, which compiles this file (scripts/fuzz.sh).
enum PathMatchReference {
    static func match(_ pattern: PathPattern, _ path: String) -> [String: String]? {
        switch pattern {
        case .exact(let expected):
            return path == expected ? [:] : nil
        case .prefix(let prefix):
            // By bytes, as every HTTP router reads a path: `hasPrefix` would compare characters
            // ("/" followed by a combining mark is not "/").
            let bytes = Array(path.utf8)
            let expected = Array(prefix.utf8)
            guard bytes.starts(with: expected) else { return nil }
            return bytes.count == expected.count || expected.last == UInt8(ascii: "/") || bytes[expected.count] == UInt8(ascii: "/") ? [:] : nil
        case .template(let segments):
            guard path.utf8.first == UInt8(ascii: "/") else { return nil }  // a byte: "/" may precede a combining mark
            let parts = path.utf8.dropFirst().split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
            guard parts.count == segments.count else { return nil }
            var parameters: [String: String] = [:]
            for (segment, part) in zip(segments, parts) {
                switch segment {
                case .literal(let literal):
                    guard literal.utf8.elementsEqual(part) else { return nil }
                case .parameter(let name):
                    guard !part.isEmpty, let value = PercentEncoding.decode(part) else { return nil }
                    parameters[name] = value
                }
            }
            return parameters
        }
    }
}
