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
        for entry in self.entries {
            guard let parameters = Self.matchPath(entry.match.path, request.path) else { continue }
            guard Self.matchHost(entry.match.host, request.host) else { continue }
            guard entry.match.headers.allSatisfy({ request.header($0.name) == $0.value }) else { continue }
            guard Self.matchQuery(entry.match.query, request.query) else { continue }
            if entry.match.methods.isEmpty || entry.match.methods.contains(request.method) {
                return .matched(entry.target, parameters: parameters)
            }
            allowed.append(contentsOf: entry.match.methods.filter { !allowed.contains($0) })
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

    static func matchPath(_ pattern: PathPattern, _ path: String) -> [String: String]? {
        switch pattern {
        case .exact(let expected):
            return path == expected ? [:] : nil
        case .prefix(let prefix):
            if prefix.hasSuffix("/") { return path.hasPrefix(prefix) ? [:] : nil }
            if path == prefix || path.hasPrefix(prefix + "/") { return [:] }
            return nil
        case .template(let segments):
            guard path.hasPrefix("/") else { return nil }
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
