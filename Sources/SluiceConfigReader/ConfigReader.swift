import Foundation
import SluiceCore
import Yams

/// Walks a YAML document, collecting every problem with its path instead of stopping at the first.
public final class ConfigReader {
    public private(set) var errors: [ConfigError] = []
    public let environment: [String: String]

    public init(environment: [String: String]) {
        self.environment = environment
    }

    public func error(_ path: String, _ message: String) {
        self.errors.append(ConfigError(path: path, message: message))
    }

    public static func join(_ path: String, _ key: String) -> String {
        path.isEmpty ? key : "\(path).\(key)"
    }

    /// Reads a mapping; reports non-mappings, duplicate keys and keys outside `allowed`.
    public func mapping(_ node: Node?, _ path: String, allowed: [String]) -> [String: (Node, String)]? {
        guard let node else { return nil }
        guard case .mapping(let mapping) = node else {
            self.error(path, "expected a mapping with keys \(allowed.joined(separator: ", "))")
            return nil
        }
        var result: [String: (Node, String)] = [:]
        for (keyNode, value) in mapping {
            guard let key = keyNode.scalar?.string else {
                self.error(path, "keys must be plain strings")
                continue
            }
            let childPath = Self.join(path, key)
            guard allowed.contains(key) else {
                self.error(childPath, "unknown key \"\(key)\"" + Self.suggestion(for: key, among: allowed))
                continue
            }
            guard result[key] == nil else {
                self.error(childPath, "duplicate key \"\(key)\"")
                continue
            }
            result[key] = (value, childPath)
        }
        return result
    }

    /// Reads a mapping whose keys are free-form (e.g. librdkafka properties), in document order.
    public func freeMapping(_ node: Node?, _ path: String) -> [(key: String, value: Node, path: String)] {
        guard let node else { return [] }
        guard case .mapping(let mapping) = node else {
            self.error(path, "expected a mapping")
            return []
        }
        var seen: Set<String> = []
        var result: [(key: String, value: Node, path: String)] = []
        for (keyNode, value) in mapping {
            guard let key = keyNode.scalar?.string else {
                self.error(path, "keys must be plain strings")
                continue
            }
            let childPath = Self.join(path, key)
            guard seen.insert(key).inserted else {
                self.error(childPath, "duplicate key \"\(key)\"")
                continue
            }
            result.append((key, value, childPath))
        }
        return result
    }

    public func sequence(_ node: Node?, _ path: String) -> [(Node, String)]? {
        guard let node else { return nil }
        guard case .sequence(let sequence) = node else {
            self.error(path, "expected a list")
            return nil
        }
        return sequence.enumerated().map { ($1, "\(path)[\($0)]") }
    }

    /// Reads a scalar as a string, with `${NAME}` replaced from the environment.
    public func string(_ node: Node?, _ path: String) -> String? {
        guard let node else { return nil }
        guard case .scalar(let scalar) = node else {
            self.error(path, "expected a string")
            return nil
        }
        if scalar.style == .plain, ["null", "~", "Null", "NULL", ""].contains(scalar.string) {
            self.error(path, "expected a string, got null")
            return nil
        }
        return self.substitute(scalar.string, path)
    }

    public func nonEmptyString(_ node: Node?, _ path: String) -> String? {
        guard let value = self.string(node, path) else { return nil }
        if value.isEmpty {
            self.error(path, "must not be empty")
            return nil
        }
        return value
    }

    public func stringList(_ node: Node?, _ path: String) -> [String]? {
        guard let items = self.sequence(node, path) else { return nil }
        return items.compactMap { self.nonEmptyString($0.0, $0.1) }
    }

    /// An http:// or https:// URL with a host and without query or credentials (a service
    /// endpoint); `example` shows a good one in the error.
    public func httpURL(_ node: Node?, _ path: String, example: String) -> URL? {
        guard let text = self.nonEmptyString(node, path) else { return nil }
        guard let url = URL(string: text), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host?.isEmpty == false,
            url.query == nil, url.user == nil
        else {
            self.error(path, "expected an http:// or https:// URL without query or credentials, like \(example)")
            return nil
        }
        return url
    }

    /// A sink's default destination (a Kinesis stream, a Zerobus table): a template whose
    /// `{param}`s routes fill in; a fixed one must already pass the kind's `problem` check.
    public func destinationTemplate(_ node: Node?, _ path: String, problem: (String) -> String?) -> String? {
        guard let text = self.nonEmptyString(node, path) else { return nil }
        switch ParameterTemplate.parse(text) {
        case .success(let template):
            if let fixed = template.fixedValue, let message = problem(fixed) {
                self.error(path, message)
                return nil
            }
            return text
        case .failure(let error):
            self.error(path, error.message)
            return nil
        }
    }

    /// A path to a file that can be read now (reported otherwise).
    public func readableFile(_ node: Node?, _ path: String) -> String? {
        guard let file = self.nonEmptyString(node, path) else { return nil }
        guard FileManager.default.isReadableFile(atPath: file) else {
            self.error(path, "cannot read \(file)")
            return nil
        }
        return file
    }

    /// A secret, read now from where `secretSource` says; reported (by where it comes from, never
    /// what it is) when it cannot be read.
    public func secret(_ node: Node, _ path: String, what: String) -> String? {
        guard let source = self.secretSource(node, path) else { return nil }
        do {
            return try source.read(what: what, environment: self.environment)
        } catch {
            self.error(path, "\(error)")
            return nil
        }
    }

    /// Where a secret comes from: `{ env: VARIABLE }` or `{ file: PATH }`, never the secret itself.
    public func secretSource(_ node: Node, _ path: String) -> SecretSource? {
        if case .scalar = node {
            let key = path.split(separator: ".").last.map(String.init) ?? "secret"
            self.error(path, "secrets are not accepted inline: use \(key): { env: VARIABLE } or { file: PATH }")
            return nil
        }
        guard let source = self.mapping(node, path, allowed: ["env", "file"]) else { return nil }
        guard source.count == 1 else {
            self.error(path, "set exactly one of env, file")
            return nil
        }
        if let (n, p) = source["env"] { return self.nonEmptyString(n, p).map { .environment($0) } }
        if let (n, p) = source["file"] { return self.nonEmptyString(n, p).map { .file($0) } }
        return nil
    }

    public func integer(_ node: Node?, _ path: String, range: ClosedRange<Int>) -> Int? {
        guard let text = self.string(node, path) else { return nil }
        guard let value = Int(text), range.contains(value) else {
            self.error(path, "expected a whole number in \(range.lowerBound)...\(range.upperBound), got \"\(text)\"")
            return nil
        }
        return value
    }

    public func bool(_ node: Node?, _ path: String) -> Bool? {
        guard let text = self.string(node, path) else { return nil }
        switch text {
        case "true": return true
        case "false": return false
        default:
            self.error(path, "expected true or false, got \"\(text)\"")
            return nil
        }
    }

    public func size(_ node: Node?, _ path: String, min: Int = 1) -> Int? {
        guard let text = self.string(node, path) else { return nil }
        guard let value = ByteSize.parse(text) else {
            self.error(path, "invalid size \"\(text)\": use a number with a unit, like 512KiB, 1MiB, 10MB")
            return nil
        }
        guard value >= min else {
            self.error(path, "must be at least \(ByteSize.format(min))")
            return nil
        }
        return value
    }

    public func duration(_ node: Node?, _ path: String, min: Duration = .zero) -> Duration? {
        guard let text = self.string(node, path) else { return nil }
        guard let value = DurationText.parse(text) else {
            self.error(path, "invalid duration \"\(text)\": use a number with a unit, like 250ms, 5s, 2m")
            return nil
        }
        guard value >= min else {
            self.error(path, "must be at least \(DurationText.format(min))")
            return nil
        }
        return value
    }

    public func address(_ node: Node?, _ path: String) -> SocketAddressConfig? {
        guard let text = self.nonEmptyString(node, path) else { return nil }
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[close...].hasPrefix("]:") else {
                self.error(path, "invalid address \"\(text)\": expected [ipv6]:port")
                return nil
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else {
                self.error(path, "invalid address \"\(text)\": expected host:port, like 127.0.0.1:8080")
                return nil
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, let port = Int(portText), (0...65535).contains(port) else {
            self.error(path, "invalid address \"\(text)\": expected host:port with a port in 0...65535")
            return nil
        }
        return SocketAddressConfig(host: String(host), port: port)
    }

    public func required<T>(_ value: (Node, String)?, in path: String, key: String, _ read: (Node, String) -> T?) -> T? {
        guard let (node, childPath) = value else {
            self.error(Self.join(path, key), "required")
            return nil
        }
        return read(node, childPath)
    }

    /// Replaces `${NAME}` with the environment variable NAME (`${NAME:-default}` when unset or
    /// empty); `$${` is a literal `${`.
    private func substitute(_ text: String, _ path: String) -> String? {
        guard text.contains("${") else { return text }
        var out = ""
        var rest = Substring(text)
        var ok = true
        while let dollar = rest.range(of: "${") {
            let before = rest[rest.startIndex..<dollar.lowerBound]
            if before.hasSuffix("$") {
                out += before.dropLast() + "${"
                rest = rest[dollar.upperBound...]
                continue
            }
            out += before
            guard let close = rest[dollar.upperBound...].firstIndex(of: "}") else {
                self.error(path, "unclosed \"${\"")
                return nil
            }
            var name = String(rest[dollar.upperBound..<close])
            var fallback: String?
            if let separator = name.range(of: ":-") {
                fallback = String(name[separator.upperBound...])
                name = String(name[..<separator.lowerBound])
            }
            if let value = self.environment[name], !(value.isEmpty && fallback != nil) {
                out += value
            } else if let fallback {
                out += fallback
            } else {
                self.error(path, "environment variable \(name) is not set")
                ok = false
            }
            rest = rest[rest.index(after: close)...]
        }
        out += rest
        return ok ? out : nil
    }

    public static func suggestion(for key: String, among allowed: [String]) -> String {
        let best = allowed.min { editDistance($0, key) < editDistance($1, key) }
        if let best, editDistance(best, key) <= 2 { return "; did you mean \"\(best)\"?" }
        return "; expected one of: \(allowed.joined(separator: ", "))"
    }

    public static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a)
        let b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...b.count {
                current[j] = Swift.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}
