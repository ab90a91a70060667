/// How a route matches the request path.
public enum PathPattern: Sendable, Equatable {
    /// The path equals this string.
    case exact(String)
    /// The path starts with this prefix, at a segment boundary (`/api` matches `/api` and
    /// `/api/x`, not `/apix`); a prefix ending in `/` matches anything under it.
    case prefix(String)
    /// Segments, each a literal or a `{name}` parameter that matches one non-empty segment.
    case template([Segment])

    public enum Segment: Sendable, Equatable {
        case literal(String)
        case parameter(String)
    }

    /// Parses `path` (may contain `{name}` segments); returns a message on error.
    public static func parseTemplate(_ path: String) -> Result<PathPattern, ConfigError> {
        guard path.hasPrefix("/") else {
            return .failure(ConfigError(path: "", message: "must start with \"/\""))
        }
        guard path.contains("{") || path.contains("}") else { return .success(.exact(path)) }
        var segments: [Segment] = []
        var seen: Set<String> = []
        for raw in path.dropFirst().split(separator: "/", omittingEmptySubsequences: false) {
            let part = String(raw)
            if part.hasPrefix("{"), part.hasSuffix("}"), part.count > 2 {
                let name = String(part.dropFirst().dropLast())
                guard name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                    return .failure(ConfigError(path: "", message: "parameter \"\(name)\" may contain only letters, digits and _"))
                }
                guard seen.insert(name).inserted else {
                    return .failure(ConfigError(path: "", message: "parameter \"\(name)\" appears twice"))
                }
                segments.append(.parameter(name))
            } else if part.contains("{") || part.contains("}") {
                return .failure(ConfigError(path: "", message: "a parameter must be a whole segment, like /v1/{topic}; got \"\(part)\""))
            } else {
                segments.append(.literal(part))
            }
        }
        return .success(.template(segments))
    }

    /// The pattern as written in a route, for traces (`http.route`): `/v1/events/{topic}`; a
    /// prefix ends in `*`.
    public var template: String {
        switch self {
        case .exact(let path): return path
        case .prefix(let prefix): return prefix.hasSuffix("/") ? prefix + "*" : prefix + "/*"
        case .template(let segments):
            return "/" + segments.map {
                switch $0 {
                case .literal(let text): text
                case .parameter(let name): "{\(name)}"
                }
            }.joined(separator: "/")
        }
    }

    /// Names of the template's parameters.
    public var parameters: [String] {
        guard case .template(let segments) = self else { return [] }
        return segments.compactMap {
            if case .parameter(let name) = $0 { return name }
            return nil
        }
    }
}
