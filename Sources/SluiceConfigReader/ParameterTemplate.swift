/// A string with `{param}` placeholders filled from the route's path parameters, such as a topic.
public struct ParameterTemplate: Sendable, Equatable, CustomStringConvertible {
    public enum Part: Sendable, Equatable {
        case literal(String)
        case parameter(String)
    }

    public var parts: [Part]

    public init(parts: [Part]) {
        self.parts = parts
    }

    public static func parse(_ text: String) -> Result<ParameterTemplate, ConfigError> {
        var parts: [Part] = []
        var literal = ""
        var rest = Substring(text)
        while let open = rest.firstIndex(of: "{") {
            literal += rest[rest.startIndex..<open]
            guard let close = rest[open...].firstIndex(of: "}") else {
                return .failure(ConfigError(path: "", message: "unclosed \"{\" in \"\(text)\""))
            }
            let name = String(rest[rest.index(after: open)..<close])
            guard !name.isEmpty else {
                return .failure(ConfigError(path: "", message: "empty parameter \"{}\" in \"\(text)\""))
            }
            if !literal.isEmpty { parts.append(.literal(literal)) }
            literal = ""
            parts.append(.parameter(name))
            rest = rest[rest.index(after: close)...]
        }
        literal += rest
        if literal.contains("}") {
            return .failure(ConfigError(path: "", message: "unmatched \"}\" in \"\(text)\""))
        }
        if !literal.isEmpty { parts.append(.literal(literal)) }
        return .success(ParameterTemplate(parts: parts))
    }

    public var parameters: [String] {
        self.parts.compactMap {
            if case .parameter(let name) = $0 { return name }
            return nil
        }
    }

    /// The fixed value when the template has no parameters.
    public var fixedValue: String? {
        self.parameters.isEmpty ? self.description : nil
    }

    public func render(_ values: [String: String]) -> String {
        var out = ""
        for part in self.parts {
            switch part {
            case .literal(let text): out += text
            case .parameter(let name): out += values[name] ?? ""
            }
        }
        return out
    }

    public var description: String {
        self.parts.map {
            switch $0 {
            case .literal(let text): text
            case .parameter(let name): "{\(name)}"
            }
        }.joined()
    }
}
