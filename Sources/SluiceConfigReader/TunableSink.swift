/// A sink whose connector settings an operator may change while it runs (`PATCH /sinks/{name}`):
/// batching and concurrency knobs, applied without dropping or failing an event.
///
/// The gateway validates a change by reading the sink's entry again with the new values, with
/// the connector's own YAML reader — so a tuned value obeys exactly the rules of the
/// configuration file — and hands the sink the settings it read.
public protocol TunableSink: RunnableSink {
    /// The settings that may change, with their values now.
    var tunables: [SinkTunable] { get }
    /// Takes the tunable values of `settings` (read from the sink's entry with the operator's
    /// changes; its other values are the running ones). Events in flight settle as usual.
    func retune(to settings: any SinkSettings) async throws(SinkTuningError)
}

/// One setting of a running sink an operator may change.
public struct SinkTunable: Sendable, Equatable {
    /// Where it is under the sink kind's key (`["linger"]`, `["batch", "max_records"]`,
    /// `["properties", "linger.ms"]`).
    public var path: [String]
    /// The value now, written as in the configuration (`250ms`, `1MiB`, `500`).
    public var value: String
    /// What it does, and the values it takes.
    public var help: String

    public init(path: [String], value: String, help: String) {
        self.path = path
        self.value = value
        self.help = help
    }

    /// The name operators use: the path joined by dots (`batch.max_records`, `linger.ms`).
    public var name: String {
        self.path.first == "properties" ? self.path.dropFirst().joined(separator: ".") : self.path.joined(separator: ".")
    }
}

/// Why a sink could not take new settings (nothing changed then).
public struct SinkTuningError: Error, Sendable, CustomStringConvertible {
    public var field: String
    public var message: String

    public init(field: String, message: String) {
        self.field = field
        self.message = message
    }

    public var description: String { "\(self.field): \(self.message)" }
}
