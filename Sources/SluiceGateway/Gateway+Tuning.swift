import Foundation
import SluiceAdmin
import SluiceConfig
import SluiceConfigReader
import SluiceCore
import SluiceHTTP
import Yams

extension Gateway {
    /// The settings every sink has, changed on its in-flight budget rather than by its connector.
    static let budgetSettings: Set<String> = ["max_in_flight_bytes", "max_in_flight_events", "max_wait"]
    /// The longest `max_wait` an operator may set: past it a waiting client is better told 503.
    static let maxWaitLimit = Duration.seconds(300)

    public func sinkSettings(_ name: String) -> [SinkSetting]? {
        guard let built = self.state.withLockedValue({ $0.resources.sinks[name] }) else { return nil }
        let budget = built.sink.budget
        var settings = [
            SinkSetting(
                name: "max_in_flight_bytes", value: ByteSize.format(budget.maxBytes),
                help: "bytes handed to the sink whose fate is not yet known (at least 1KiB)"),
            SinkSetting(name: "max_in_flight_events", value: String(budget.maxEvents), help: "events in flight (1 to 10,000,000)"),
            SinkSetting(
                name: "max_wait", value: budget.maxWaitOverride.map { DurationText.format($0) } ?? "route",
                help: "how long a request waits for room before 503 (\"route\": each route's max_wait; at most 5m)"),
        ]
        if let tunable = built.sink as? any TunableSink {
            settings += tunable.tunables.map { SinkSetting(name: $0.name, value: $0.value, help: $0.help) }
        }
        return settings
    }

    public func sinkStats(_ name: String) -> SinkLiveStats.Snapshot? {
        self.state.withLockedValue { $0.resources.sinks[name]?.stats.snapshot }
    }

    public func tuneSink(_ name: String, changes: [(name: String, value: String)], by who: String) async -> TuningOutcome {
        await self.serial.acquire()
        defer { self.serial.release() }
        guard let built = self.state.withLockedValue({ $0.resources.sinks[name] }) else { return .unknownSink }
        guard !changes.isEmpty else { return .invalid(field: "", message: "no settings to change: send a JSON object of setting: value") }
        let tunable = built.sink as? any TunableSink
        let connectorSettings = tunable?.tunables ?? []
        guard let text = built.config.entry, var entry = try? Yams.compose(yaml: text) else {
            return .invalid(field: "", message: "this sink was not built from a configuration entry and cannot be retuned")
        }
        // The running values first (earlier changes included), then the operator's: the entry is
        // read again as a whole, by the same rules as the configuration file.
        let before = self.sinkSettings(name) ?? []
        for setting in connectorSettings { entry = Self.setting(entry, path: [built.config.kind] + setting.path, to: setting.value) }
        var maxWait: Duration??
        for change in changes {
            if change.name == "max_wait" {
                if change.value == "route" {
                    maxWait = .some(nil)
                } else if let wait = DurationText.parse(change.value), wait <= Self.maxWaitLimit {
                    maxWait = .some(wait)
                } else {
                    return .invalid(field: "max_wait", message: "expected a duration with a unit (250ms, 5s) of at most 5m, or \"route\"; got \"\(change.value)\"")
                }
            } else if Self.budgetSettings.contains(change.name) {
                entry = Self.setting(entry, path: [change.name], to: change.value)
            } else if let setting = connectorSettings.first(where: { $0.name == change.name }) {
                entry = Self.setting(entry, path: [built.config.kind] + setting.path, to: change.value)
            } else {
                let known = before.map(\.name).joined(separator: ", ")
                return .invalid(field: change.name, message: "not a setting of this sink that can change while it runs; these can: \(known)")
            }
        }
        let read: SinkConfig
        switch SluiceConfiguration.readSinkEntry(entry, sinkKinds: self.builder.sinkKinds, environment: self.builder.environment) {
        case .failure(let error):
            let first = error.errors.first
            return .invalid(field: Self.operatorName(first?.path ?? "", kind: built.config.kind), message: first?.message ?? "invalid value")
        case .success(let config):
            read = config
        }
        let connectorChanged = changes.contains { change in connectorSettings.contains { $0.name == change.name } }
        if connectorChanged, let tunable {
            do {
                try await tunable.retune(to: read.settings)
            } catch {
                return .invalid(field: error.field, message: error.message)
            }
        }
        let budget = built.sink.budget
        if read.maxInFlightBytes != budget.maxBytes || read.maxInFlightEvents != budget.maxEvents {
            budget.setLimits(maxBytes: read.maxInFlightBytes, maxEvents: read.maxInFlightEvents)
        }
        if let maxWait { budget.maxWaitOverride = maxWait }

        let after = self.sinkSettings(name) ?? []
        var applied: [(name: String, before: String, after: String)] = []
        let configured = Self.configuredValues(built.config, kind: built.config.kind, settings: connectorSettings)
        self.state.withLockedValue { state in
            for change in changes {
                let old = before.first { $0.name == change.name }?.value ?? ""
                let new = after.first { $0.name == change.name }?.value ?? change.value
                applied.append((change.name, old, new))
                let entryValue = configured[change.name] ?? ""
                if new == entryValue {
                    state.overrides[name]?[change.name] = nil
                } else {
                    state.overrides[name, default: [:]][change.name] = SinkOverride(value: new, configured: entryValue, by: who, at: Date())
                }
            }
        }
        for change in applied {
            self.logger.notice(
                "sink retuned", metadata: ["sink": "\(name)", "setting": "\(change.name)", "before": "\(change.before)", "after": "\(change.after)", "by": "\(who)"])
        }
        return .applied(applied)
    }

    /// Each setting's value as the configuration file has it.
    static func configuredValues(_ config: SinkConfig, kind: String, settings: [SinkTunable]) -> [String: String] {
        var values = [
            "max_in_flight_bytes": ByteSize.format(config.maxInFlightBytes), "max_in_flight_events": String(config.maxInFlightEvents),
            "max_wait": "route",
        ]
        if let text = config.entry, let entry = try? Yams.compose(yaml: text) {
            for setting in settings {
                values[setting.name] = Self.lookup(entry, path: [kind] + setting.path)?.string ?? "default"
            }
        }
        return values
    }

    /// A configuration path within a sink entry (`kinesis.linger`) as the setting's name (`linger`).
    static func operatorName(_ path: String, kind: String) -> String {
        var name = path
        if name.hasPrefix(kind + ".") { name.removeFirst(kind.count + 1) }
        if name.hasPrefix("properties.") { name.removeFirst("properties.".count) }
        return name
    }

    /// The node at `path` in `node`'s mappings.
    static func lookup(_ node: Node, path: [String]) -> Node? {
        guard let key = path.first else { return node }
        guard case .mapping(let mapping) = node, let child = mapping.first(where: { $0.key.string == key })?.value else { return nil }
        return Self.lookup(child, path: Array(path.dropFirst()))
    }

    /// `node` with the scalar at `path` set to `value` (mappings made where missing).
    static func setting(_ node: Node, path: [String], to value: String) -> Node {
        guard let key = path.first else { return Node(value) }
        var pairs: [(Node, Node)] = []
        var found = false
        if case .mapping(let mapping) = node {
            for (k, v) in mapping {
                if k.string == key {
                    pairs.append((k, Self.setting(v, path: Array(path.dropFirst()), to: value)))
                    found = true
                } else {
                    pairs.append((k, v))
                }
            }
        }
        if !found { pairs.append((Node(key), Self.setting(Node.mapping(Node.Mapping([])), path: Array(path.dropFirst()), to: value))) }
        return .mapping(Node.Mapping(pairs))
    }

    public func configurationJSON() -> JSONWriter {
        let (document, overrides, generation) = self.state.withLockedValue { ($0.document, $0.overrides, self.snapshot.load().generation) }
        var json = JSONWriter()
        json.object { json in
            if let path = document.path { json.field("path", path) } else { json.key("path"); json.null() }
            if let hash = document.hash { json.field("hash", hash) } else { json.key("hash"); json.null() }
            json.field("loaded_at", Self.timestamp(document.loadedAt))
            json.field("generation", generation)
            json.key("config")
            if let config = document.json { json.appendRaw(config) } else { json.null() }
            json.key("runtime_overrides")
            json.object { json in
                for (sink, settings) in overrides.sorted(by: { $0.key < $1.key }) where !settings.isEmpty {
                    json.key("sinks.\(sink)")
                    json.object { json in
                        for (name, override) in settings.sorted(by: { $0.key < $1.key }) {
                            json.key(name)
                            json.object {
                                $0.field("value", override.value)
                                $0.field("configured", override.configured)
                                $0.field("by", override.by)
                                $0.field("at", Self.timestamp(override.at))
                            }
                        }
                    }
                }
            }
        }
        return json
    }

    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }
}
