import SluiceConfig
import SluiceCore

/// What the router needs to know about a request.
public struct RouteRequest: Sendable {
    public var method: String
    /// The path, without the query string, not percent-decoded.
    public var path: String
    /// The Host (HTTP/1.1) or :authority (HTTP/2), if any.
    public var host: String?
    /// Looks up a header value by lower-case name.
    public var header: @Sendable (String) -> String?
    /// The raw query string, without `?`.
    public var query: Substring?

    public init(method: String, path: String, host: String?, query: Substring? = nil, header: @escaping @Sendable (String) -> String?) {
        self.method = method
        self.path = path
        self.host = host
        self.query = query
        self.header = header
    }
}

/// Matches requests to routes, in configuration order: the first route whose path, host,
/// headers and query parameters match wins. A path that matches some route but not with this method is 405.
/// Immutable: a reload builds a new router and swaps it in.
public struct Router<Target: Sendable>: Sendable {
    public struct Entry: Sendable {
        public var name: String
        public var match: RouteMatchConfig
        public var target: Target
    }

    public enum Outcome {
        case matched(Target, parameters: [String: String])
        /// The path matched, the method did not; the methods that would have matched.
        case methodNotAllowed(allowed: [String])
        case notFound
    }

    private let entries: [Entry]

    public init(_ entries: [Entry]) {
        self.entries = entries
    }

    public func route(_ request: RouteRequest) -> Outcome {
        var allowed: [String] = []
        // By index, reading each entry's conditions in place: `for entry in` copied every entry
        // (its name, conditions and target) per request.
        for index in self.entries.indices {
            guard let parameters = Self.matchPath(self.entries[index].match.path, request.path) else { continue }
            let match = self.entries[index].match
            guard Self.matchHost(match.host, request.host) else { continue }
            guard match.headers.allSatisfy({ request.header($0.name) == $0.value }) else { continue }
            guard Self.matchQuery(match.query, request.query) else { continue }
            if match.methods.isEmpty || match.methods.contains(request.method) {
                return .matched(self.entries[index].target, parameters: parameters)
            }
            allowed.append(contentsOf: match.methods.filter { !allowed.contains($0) })
        }
        return allowed.isEmpty ? .notFound : .methodNotAllowed(allowed: allowed)
    }

    /// Every condition holds: the parameter is there (with exactly the value, when one is named).
    static func matchQuery(_ conditions: [(name: String, value: String?)], _ query: Substring?) -> Bool {
        conditions.allSatisfy { condition in
            guard let value = query.flatMap({ QueryString.firstValue(of: condition.name, in: $0) }) else { return false }
            return condition.value.map { $0 == value } ?? true
        }
    }

    /// The path parameters if `path` matches `pattern`, nil if not. Compares UTF-8 bytes through
    /// spans (bounds-checked, no allocation): splitting the path into an array of substrings and
    /// comparing them by String indices cost ~8,000 instructions per request on a template route.
    static func matchPath(_ pattern: PathPattern, _ path: String) -> [String: String]? {
        switch pattern {
        case .exact(let expected):
            return path == expected ? [:] : nil
        case .prefix(let prefix):
            let bytes = path.utf8.span
            let expected = prefix.utf8.span
            guard Self.starts(bytes, with: expected) else { return nil }
            // At a segment boundary, unless the prefix ends with one.
            if bytes.count == expected.count || (!expected.isEmpty && expected[expected.count - 1] == UInt8(ascii: "/")) {
                return [:]
            }
            return bytes[expected.count] == UInt8(ascii: "/") ? [:] : nil
        case .template(let segments):
            return Self.matchTemplate(segments, path.utf8.span)
        }
    }

    /// Each segment matches one part of the path between slashes, in order, and the path has no
    /// part left over: a literal equals its part, a parameter takes a non-empty part,
    /// percent-decoded.
    static func matchTemplate(_ segments: [PathPattern.Segment], _ path: Span<UInt8>) -> [String: String]? {
        guard !segments.isEmpty, !path.isEmpty, path[0] == UInt8(ascii: "/") else { return nil }
        var parameters: [String: String] = [:]
        var start = 1
        for (index, segment) in segments.enumerated() {
            var end = start
            while end < path.count, path[end] != UInt8(ascii: "/") { end += 1 }
            // Every part but the last ends at a slash; the last ends the path.
            guard (end == path.count) == (index == segments.count - 1) else { return nil }
            let part = path.extracting(start..<end)
            switch segment {
            case .literal(let literal):
                let expected = literal.utf8.span
                guard expected.count == part.count, Self.starts(part, with: expected) else { return nil }
            case .parameter(let name):
                guard !part.isEmpty, let value = part.withUnsafeBufferPointer({ PercentEncoding.decode($0) }) else { return nil }
                parameters[name] = value
            }
            start = end + 1
        }
        return parameters
    }

    /// Whether `bytes` begins with `prefix`.
    static func starts(_ bytes: Span<UInt8>, with prefix: Span<UInt8>) -> Bool {
        guard bytes.count >= prefix.count else { return false }
        for i in 0..<prefix.count where bytes[i] != prefix[i] { return false }
        return true
    }

    static func matchHost(_ pattern: String?, _ host: String?) -> Bool {
        guard let pattern else { return true }
        guard var host = host?.lowercased() else { return false }
        // Strip a port, but not from a bare IPv6 literal.
        if let colon = host.lastIndex(of: ":"), !host.hasSuffix("]"), host.firstIndex(of: ":") == colon || host.hasPrefix("[") {
            host = String(host[..<colon])
        }
        if pattern.hasPrefix("*.") {
            return host.hasSuffix(pattern.dropFirst(1)) && host.count > pattern.count - 1
        }
        return host == pattern
    }
}
