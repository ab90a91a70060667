/// One problem in a configuration, at an exact path such as `routes[1].ingest.sink`.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String {
        self.path.isEmpty ? self.message : "\(self.path): \(self.message)"
    }
}

/// Every problem found in a configuration; a configuration is rejected as a whole.
public struct ConfigValidationError: Error, Sendable, CustomStringConvertible {
    public var errors: [ConfigError]

    public init(errors: [ConfigError]) {
        self.errors = errors
    }

    public var description: String {
        self.errors.map(\.description).joined(separator: "\n")
    }
}
