import Logging

/// What the gateway gives every sink it builds: its name, its in-flight budget, how long it may
/// take to flush at shutdown, where it logs, and the process environment (for secrets named by
/// `{ env: VARIABLE }`). One value per sink, built by the executable; connectors never read the
/// process-wide state these stand for.
public struct SinkContext: Sendable {
    /// The sink's name in the configuration.
    public var name: String
    /// Bytes and events handed to the sink whose fate is not yet known; the one way a sink takes
    /// and gives back budget.
    public var budget: InFlightBudget
    /// How long the sink may take at shutdown to settle what it holds (`shutdown.flush_timeout`).
    public var flushTimeout: Duration
    public var logger: Logger
    public var environment: [String: String]

    public init(name: String, budget: InFlightBudget, flushTimeout: Duration, logger: Logger, environment: [String: String]) {
        self.name = name
        self.budget = budget
        self.flushTimeout = flushTimeout
        self.logger = logger
        self.environment = environment
    }
}
