import Foundation

/// Where a secret comes from: never the config file itself (except for identifiers that are
/// not secret, like an access key id), but an environment variable or a file.
public enum SecretSource: Sendable, Equatable {
    case literal(String)
    case environment(String)
    case file(String)

    /// The secret's value. The error names the variable or file, never the value.
    /// - Parameter what: how to call the secret in the error ("client secret").
    public func read(what: String, environment: [String: String]) throws -> String {
        switch self {
        case .literal(let value):
            return value
        case .environment(let name):
            guard let value = environment[name], !value.isEmpty else {
                throw SecretError(description: "the \(what) environment variable \(name) is not set")
            }
            return value
        case .file(let path):
            guard let value = try? String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), !value.isEmpty
            else {
                throw SecretError(description: "cannot read the \(what) from \(path)")
            }
            return value
        }
    }
}

/// A secret could not be read. Names where it was looked for, never a value.
public struct SecretError: Error, CustomStringConvertible, Sendable {
    public var description: String
}
