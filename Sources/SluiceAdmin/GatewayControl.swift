import SluiceCore
import SluiceHTTP

/// What the admin listener reads from and does to the running gateway. The gateway implements
/// it; the admin API never holds a sink, upstream or listener longer than one request, so a
/// reload's new ones are what it shows next.
public protocol GatewayControl: Sendable {
    /// The data-plane listeners running now (HTTP and gRPC).
    var listeners: [any Listening] { get }
    /// The sinks running now, in configuration order.
    var sinks: [any Sink] { get }
    /// The upstreams running now, in configuration order.
    var upstreams: [Upstream] { get }
    /// Reads the configuration source again and applies it (`POST /reload`, SIGHUP, `--watch`).
    /// `trigger` says what asked (logged).
    func reload(trigger: String) async -> ReloadOutcome
    /// `GET /config`: the running configuration (secrets redacted), its hash, when it was loaded,
    /// and the operators' runtime overrides.
    func configurationJSON() -> JSONWriter
    /// `GET /sinks/{name}`'s settings part: each setting an operator may change, with its value
    /// now; nil when no sink has that name.
    func sinkSettings(_ name: String) -> [SinkSetting]?
    /// A sink's running totals (delivered, failed by code, batches, ack latencies); nil when no
    /// sink has that name.
    func sinkStats(_ name: String) -> SinkLiveStats.Snapshot?
    /// `GET /stats?since=N`: the samples (one a second, the last minutes) after sequence `N`.
    func statsJSON(after sequence: Int) -> JSONWriter
    /// The running snapshot's generation (1 at start, one more per reload).
    var generation: Int { get }
    /// `PATCH /sinks/{name}`: validates every change first, then applies them all.
    func tuneSink(_ name: String, changes: [(name: String, value: String)], by who: String) async -> TuningOutcome
}

/// A setting of a running sink an operator may change (`PATCH /sinks/{name}`).
public struct SinkSetting: Sendable {
    public var name: String
    /// The value now, written as in the configuration (`250ms`, `1MiB`, `500`).
    public var value: String
    /// What it does and what values it takes.
    public var help: String

    public init(name: String, value: String, help: String) {
        self.name = name
        self.value = value
        self.help = help
    }
}

/// What a reload did.
public enum ReloadOutcome: Sendable {
    /// The new configuration serves now.
    case applied(ReloadSummary)
    /// The configuration is invalid (`path: message` each, as `sluice validate` prints them) or
    /// asks for a change only a restart can make; the running one serves on untouched.
    case refused([String])
    /// The configuration is valid but could not be put to work (a sink that cannot start, an
    /// address already in use); the running one serves on untouched.
    case failed(String)
}

/// What a reload changed, by kind: `sinks`, `upstreams`, `listeners`, `routes`, `policies`.
public struct ReloadSummary: Sendable {
    public struct Changes: Sendable {
        public var kind: String
        public var added: [String] = []
        /// Replaced by a new one built from the changed entry (sinks, upstreams, listeners,
        /// routes), or rebuilt (policies other than kept rate limits).
        public var changed: [String] = []
        public var removed: [String] = []
        /// Kept running as they are (with connections, batches, buckets).
        public var kept: [String] = []

        public init(kind: String) {
            self.kind = kind
        }
    }

    public var generation: Int
    public var changes: [Changes]

    public init(generation: Int, changes: [Changes]) {
        self.generation = generation
        self.changes = changes
    }

    /// One line for the log: `sinks: +a ~b -c =d; routes: …`.
    public var description: String {
        self.changes.map { changes in
            let parts = [("+", changes.added), ("~", changes.changed), ("-", changes.removed), ("=", changes.kept)]
                .filter { !$0.1.isEmpty }
                .map { sign, names in names.map { sign + $0 }.joined(separator: " ") }
            return "\(changes.kind): \(parts.isEmpty ? "none" : parts.joined(separator: " "))"
        }.joined(separator: "; ")
    }

    func write(to json: inout JSONWriter) {
        json.object { json in
            json.field("result", "applied")
            json.field("generation", self.generation)
            json.key("changes")
            json.object { json in
                for changes in self.changes {
                    json.key(changes.kind)
                    json.object { json in
                        for (key, names) in [("added", changes.added), ("changed", changes.changed), ("removed", changes.removed), ("kept", changes.kept)] {
                            json.key(key)
                            json.array { json in
                                for name in names { json.value(name) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What a `PATCH /sinks/{name}` did.
public enum TuningOutcome: Sendable {
    /// Every change is in effect: each setting's value before and after.
    case applied([(name: String, before: String, after: String)])
    /// No sink has that name.
    case unknownSink
    /// A change was refused (nothing was applied): the field and why.
    case invalid(field: String, message: String)
}
