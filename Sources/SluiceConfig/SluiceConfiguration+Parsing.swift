import Foundation
import SluiceConfigReader
import SluiceCore
import SluicePolicy
import SluiceSchema
import Yams

extension SluiceConfiguration {
    /// Reads and validates the configuration file at `path`.
    /// `sinkKinds`: the kinds of sink the connectors bring (the executable's list).
    public static func load(
        path: String,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        sinkKinds: [SinkKind]
    ) throws(ConfigValidationError) -> SluiceConfiguration {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigValidationError(errors: [ConfigError(path: "", message: "cannot read config file \(path)")])
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigValidationError(errors: [ConfigError(path: "", message: "\(path) is not UTF-8 text")])
        }
        return try self.parse(yaml: text, environment: environment, sinkKinds: sinkKinds)
    }

    /// Parses and validates a YAML configuration, reporting every error at once.
    public static func parse(
        yaml: String,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        sinkKinds: [SinkKind]
    ) throws(ConfigValidationError) -> SluiceConfiguration {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            throw ConfigValidationError(errors: [ConfigError(path: "", message: "not valid YAML: \(error)")])
        }
        let reader = ConfigReader(environment: environment)
        let config = Self.read(root, reader, sinkKinds: sinkKinds)
        if let config, reader.errors.isEmpty {
            return config
        }
        if reader.errors.isEmpty {
            throw ConfigValidationError(errors: [ConfigError(path: "", message: "empty configuration")])
        }
        throw ConfigValidationError(errors: reader.errors)
    }

    static let topLevelKeys = ["listeners", "admin", "grpc", "policies", "upstreams", "sinks", "routes", "shutdown", "process", "access_log", "tracing", "catalog"]

    private static func read(_ root: Node?, _ r: ConfigReader, sinkKinds: [SinkKind]) -> SluiceConfiguration? {
        guard let root else {
            r.error("", "empty configuration: expected listeners, sinks and routes")
            return nil
        }
        guard let top = r.mapping(root, "", allowed: Self.topLevelKeys) else { return nil }

        var listeners: [ListenerConfig] = []
        var listenerIndices: [Int] = []
        if let items = r.required(top["listeners"], in: "", key: "listeners", { r.sequence($0, $1) }) {
            if items.isEmpty { r.error("listeners", "at least one listener is required") }
            var names: Set<String> = []
            for (index, (node, path)) in items.enumerated() {
                guard let listener = readListener(node, path, r) else { continue }
                if !names.insert(listener.name).inserted {
                    r.error(path + ".name", "duplicate listener name \"\(listener.name)\"")
                }
                listeners.append(listener)
                listenerIndices.append(index)
            }
        }

        var admin: AdminConfig?
        if let (node, path) = top["admin"], let fields = r.mapping(node, path, allowed: ["address", "metrics", "auth", "tls"]) {
            let metrics = fields["metrics"].flatMap { r.bool($0.0, $0.1) } ?? true
            var address: SocketAddressConfig? = AdminConfig.defaultAddress
            if let (n, p) = fields["address"] { address = r.address(n, p) }
            var config = address.map { AdminConfig(address: $0, metrics: metrics) }
            if let (n, p) = fields["auth"], let auth = r.mapping(n, p, allowed: ["bearer_token"]) {
                if let (tn, tp) = auth["bearer_token"], let source = r.secretSource(tn, tp) {
                    do {
                        let token = try source.read(what: "admin bearer token", environment: r.environment)
                        if token.utf8.count < 16 { r.error(tp, "the admin bearer token has \(token.utf8.count) bytes; use at least 16 (e.g. openssl rand -hex 32)") }
                        config?.bearerToken = source
                    } catch {
                        r.error(tp, "\(error)")
                    }
                } else if auth["bearer_token"] == nil {
                    r.error(p, "set bearer_token: { env: VARIABLE } or { file: PATH }")
                }
            }
            if let (n, p) = fields["tls"] { config?.tls = readListenerTLS(n, p, r) }
            admin = config
        }

        var grpc: GRPCListenerConfig?
        let grpcKeys = [
            "address", "tls", "idle_timeout", "max_connections", "max_concurrent_streams", "max_message_bytes",
            "keepalive",
        ]
        if let (node, path) = top["grpc"], let fields = r.mapping(node, path, allowed: grpcKeys) {
            var listener: GRPCListenerConfig?
            if let address = r.required(fields["address"], in: path, key: "address", { r.address($0, $1) }) {
                listener = GRPCListenerConfig(address: address)
            }
            var limits = ListenerLimits()
            var keepalive = GRPCKeepalive()
            var maxMessageBytes = GRPCListenerConfig.defaultMaxMessageBytes
            var limitsOK = readConnectionLimits(fields, into: &limits, r)
            if let (n, p) = fields["max_message_bytes"] {
                if let value = r.size(n, p, min: 1024), value <= 64 * 1024 * 1024 {
                    maxMessageBytes = value
                } else {
                    if r.size(n, p, min: 1024) != nil { r.error(p, "at most 64MiB") }
                    limitsOK = false
                }
            }
            if let (n, p) = fields["keepalive"], let k = r.mapping(n, p, allowed: ["interval", "timeout", "min_client_interval", "permit_without_calls"]) {
                if let (n, p) = k["interval"] {
                    if let value = r.duration(n, p, min: .seconds(1)) { keepalive.interval = value } else { limitsOK = false }
                }
                if let (n, p) = k["timeout"] {
                    if let value = r.duration(n, p, min: .milliseconds(100)) { keepalive.timeout = value } else { limitsOK = false }
                }
                if let (n, p) = k["min_client_interval"] {
                    if let value = r.duration(n, p, min: .seconds(1)) { keepalive.minClientInterval = value } else { limitsOK = false }
                }
                if let (n, p) = k["permit_without_calls"] {
                    if let value = r.bool(n, p) { keepalive.permitWithoutCalls = value } else { limitsOK = false }
                }
            } else if fields["keepalive"] != nil {
                limitsOK = false
            }
            if limitsOK {
                listener?.limits = limits
                listener?.keepalive = keepalive
                listener?.maxMessageBytes = maxMessageBytes
            }
            grpc = listener
            if let (n, p) = fields["tls"], let tls = readListenerTLS(n, p, r) {
                // The gRPC transport takes one certificate and verifies client certificates or not at all.
                if tls.certificates.count > 1 { r.error(p + ".certificates", "the gRPC listener serves one certificate (no SNI choice)") }
                if tls.clientCertificates == .optional {
                    r.error(p + ".client_certificates", "the gRPC listener takes none or required (optional is for HTTP listeners)")
                }
                grpc?.tls = tls
            }
        }

        var sinks: [SinkConfig] = []
        var declaredSinks: [String] = []
        // Optional: a gateway that only proxies has no sinks.
        if let (node, path) = top["sinks"], let items = r.sequence(node, path) {
            if items.isEmpty { r.error("sinks", "at least one sink is required when sinks: is present") }
            var names: Set<String> = []
            // Resources no two sinks may share (a file sink's directory), by kind, field and identity.
            var exclusiveResources: [String: Int] = [:]
            for (index, (node, path)) in items.enumerated() {
                let (name, sink) = readSink(node, path, r, kinds: sinkKinds)
                guard let name else { continue }
                // A sink with errors still counts as declared, so routes naming it get no second error.
                declaredSinks.append(name)
                if !names.insert(name).inserted {
                    r.error(path + ".name", "duplicate sink name \"\(name)\"")
                }
                if let sink { sinks.append(sink) }
                if let sink, let resource = sink.settings.exclusiveResource {
                    let claim = "\(sink.kind)/\(resource.field)/\(resource.identity)"
                    if let other = exclusiveResources[claim] {
                        r.error(
                            "\(path).\(sink.kind).\(resource.field)",
                            "\"\(resource.shown)\" is already the \(resource.field) of sinks[\(other)]; each \(sink.kind) sink needs its own")
                    } else {
                        exclusiveResources[claim] = index
                    }
                }
            }
        }

        let (policies, declaredPolicies) = Self.readNamedList(top["policies"], kind: "policy", r) { readPolicy($0, $1, r) }
        let (upstreams, declaredUpstreams) = Self.readNamedList(top["upstreams"], kind: "upstream", r) { readUpstream($0, $1, r) }

        var routes: [RouteConfig] = []
        var routeIndices: [Int] = []
        if let items = r.required(top["routes"], in: "", key: "routes", { r.sequence($0, $1) }) {
            if items.isEmpty { r.error("routes", "at least one route is required") }
            var names: Set<String> = []
            let sinkNames = declaredSinks
            var destinations: [String: (kind: String, rules: SinkDestinations)] = [:]
            for sink in sinks { destinations[sink.name] = (sink.kind, sink.settings.destinations) }
            for (index, (node, path)) in items.enumerated() {
                guard let route = readRoute(
                    node, path, sinkNames: sinkNames, destinations: destinations, policyNames: declaredPolicies,
                    upstreamNames: declaredUpstreams, r)
                else { continue }
                if !names.insert(route.name).inserted {
                    r.error(path + ".name", "duplicate route name \"\(route.name)\"")
                }
                routes.append(route)
                routeIndices.append(index)
            }
        }

        var shutdown = ShutdownConfig(drainTimeout: .seconds(10), flushTimeout: .seconds(10))
        if let (node, path) = top["shutdown"],
            let fields = r.mapping(node, path, allowed: ["drain_timeout", "flush_timeout"])
        {
            if let (n, p) = fields["drain_timeout"], let value = r.duration(n, p) { shutdown.drainTimeout = value }
            if let (n, p) = fields["flush_timeout"], let value = r.duration(n, p) { shutdown.flushTimeout = value }
        }

        var process = ProcessConfig()
        if let (node, path) = top["process"], let fields = r.mapping(node, path, allowed: ["descriptor_reserve"]) {
            if let (n, p) = fields["descriptor_reserve"], let value = r.integer(n, p, range: 16...65_536) { process.descriptorReserve = value }
        }

        var accessLog: AccessLogConfig?
        if let (node, path) = top["access_log"], let fields = r.mapping(node, path, allowed: ["path", "format", "max_queued_lines"]) {
            if let (n, p) = fields["format"], let format = r.string(n, p), format != "json" {
                r.error(p, "the access log's format is json (the only one), got \"\(format)\"")
            }
            var maxQueued = 10_000
            if let (n, p) = fields["max_queued_lines"], let value = r.integer(n, p, range: 1...1_000_000) { maxQueued = value }
            if let target = r.required(fields["path"], in: path, key: "path", { r.string($0, $1) }) {
                if target.isEmpty {
                    r.error(path + ".path", "give a file path, or stdout")
                } else {
                    accessLog = AccessLogConfig(path: target == "stdout" ? nil : target, maxQueuedLines: maxQueued)
                }
            }
        }

        var tracing: TracingConfig?
        if let (node, path) = top["tracing"], let fields = r.mapping(node, path, allowed: ["otlp", "sample_ratio", "service_name"]) {
            var config = TracingConfig()
            if let (n, p) = fields["otlp"], let otlp = r.mapping(n, p, allowed: ["endpoint", "protocol"]) {
                if let (n, p) = otlp["endpoint"], let url = r.httpURL(n, p, example: "http://127.0.0.1:4318") { config.endpoint = url.absoluteString }
                if let (n, p) = otlp["protocol"], let text = r.string(n, p) {
                    if let value = TracingConfig.OTLPProtocol(rawValue: text) {
                        config.otlpProtocol = value
                    } else {
                        r.error(p, "expected http/protobuf or grpc, got \"\(text)\"")
                    }
                }
            }
            if let (n, p) = fields["sample_ratio"], let text = r.string(n, p) {
                if let ratio = Double(text), ratio >= 0, ratio <= 1 {
                    config.sampleRatio = ratio
                } else {
                    r.error(p, "expected a number from 0 to 1, got \"\(text)\"")
                }
            }
            if let (n, p) = fields["service_name"], let name = r.nonEmptyString(n, p) { config.serviceName = name }
            tracing = config
        }

        var catalog = CatalogConfig()
        if let (node, path) = top["catalog"],
            let fields = r.mapping(node, path, allowed: ["name", "title", "version", "description", "owner", "system", "lifecycle", "servers"])
        {
            // Backstage's rule for metadata.name (and for the references it takes as owner/system).
            func entityName(_ n: Node, _ p: String, maxLength: Int = 63) -> String? {
                guard let text = r.nonEmptyString(n, p) else { return nil }
                let allowed = text.utf8.allSatisfy { b in
                    (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2E || b == 0x5F || b == 0x2D
                }
                guard allowed, text.utf8.count <= maxLength, text.first!.isLetter || text.first!.isNumber, text.last!.isLetter || text.last!.isNumber else {
                    r.error(p, "expected 1-\(maxLength) ASCII letters, digits, '-', '_' or '.', starting and ending with a letter or digit, got \"\(text)\"")
                    return nil
                }
                return text
            }
            // The APIs are named <name>-http and <name>-events: 63 characters at most.
            if let (n, p) = fields["name"], let value = entityName(n, p, maxLength: 56) { catalog.name = value }
            if let (n, p) = fields["title"], let value = r.nonEmptyString(n, p) { catalog.title = value }
            if let (n, p) = fields["version"], let value = r.nonEmptyString(n, p) { catalog.version = value }
            if let (n, p) = fields["description"], let value = r.nonEmptyString(n, p) { catalog.description = value }
            if let (n, p) = fields["owner"], let value = r.nonEmptyString(n, p) { catalog.owner = value }
            if let (n, p) = fields["system"], let value = r.nonEmptyString(n, p) { catalog.system = value }
            if let (n, p) = fields["lifecycle"], let value = entityName(n, p) { catalog.lifecycle = value }
            if let (n, p) = fields["servers"], let items = r.sequence(n, p) {
                for (n, p) in items {
                    if let url = r.httpURL(n, p, example: "https://events.example.com") { catalog.servers.append(url.absoluteString) }
                }
            }
        }

        if let admin {
            for (index, listener) in zip(listenerIndices, listeners) where listener.address == admin.address && admin.address.port != 0 {
                r.error("admin.address", "\(admin.address) is already used by listeners[\(index)]")
            }
        }

        if let grpc {
            for (index, listener) in zip(listenerIndices, listeners) where listener.address == grpc.address && grpc.address.port != 0 {
                r.error("grpc.address", "\(grpc.address) is already used by listeners[\(index)]")
            }
            if let admin, admin.address == grpc.address, grpc.address.port != 0 {
                r.error("grpc.address", "\(grpc.address) is already used by admin.address")
            }
        }
        var spoolDirectories: [String: String] = [:]
        for (index, route) in zip(routeIndices, routes) {
            // (A gRPC route is refused anything but ack: sink where its ack is read.)
            guard case .ingest(let ingest) = route.action, let spool = ingest.spool else { continue }
            let directory = URL(fileURLWithPath: spool.directory).standardizedFileURL.path
            if let other = spoolDirectories[directory] {
                r.error("routes[\(index)].ingest.spool.directory", "\(spool.directory) is route \(other)'s spool; each spooled route has a directory of its own")
            }
            spoolDirectories[directory] = route.name
        }
        if grpc == nil, top["grpc"] == nil, let index = routes.firstIndex(where: { $0.match.grpc != nil }) {
            r.error("routes[\(routeIndices[index])].match.grpc_service", "a gRPC route needs a gRPC listener: add grpc: { address: host:port }")
        }

        return SluiceConfiguration(
            listeners: listeners, admin: admin, grpc: grpc, policies: policies, upstreams: upstreams, sinks: sinks, routes: routes,
            shutdown: shutdown, process: process, accessLog: accessLog, tracing: tracing, catalog: catalog)
    }

    /// A list of named entries (`policies:`, `upstreams:`): the valid ones, and every name
    /// declared (an entry with errors still counts, so references to it get no second error).
    static func readNamedList<T>(
        _ list: (Node, String)?, kind: String, _ r: ConfigReader, _ read: (Node, String) -> (String?, T?)
    ) -> (values: [T], names: [String]) {
        var values: [T] = []
        var names: [String] = []
        guard let (node, path) = list, let items = r.sequence(node, path) else { return ([], []) }
        for (node, path) in items {
            let (name, value) = read(node, path)
            guard let name else { continue }
            if names.contains(name) { r.error(path + ".name", "duplicate \(kind) name \"\(name)\"") }
            names.append(name)
            if let value { values.append(value) }
        }
        return (values, names)
    }

    static func readName(_ fields: [String: (Node, String)], _ path: String, _ r: ConfigReader) -> String? {
        guard let name = r.required(fields["name"], in: path, key: "name", { r.nonEmptyString($0, $1) }) else { return nil }
        guard name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }) else {
            r.error(path + ".name", "\"\(name)\" may contain only letters, digits, '-', '_' and '.'")
            return nil
        }
        return name
    }

    private static func readListener(_ node: Node, _ path: String, _ r: ConfigReader) -> ListenerConfig? {
        let allowed = [
            "name", "address", "idle_timeout", "body_read_timeout", "min_body_rate", "max_header_bytes", "max_connections",
            "max_concurrent_streams", "tls", "h2c_upgrade",
        ]
        guard let fields = r.mapping(node, path, allowed: allowed) else { return nil }
        let name = readName(fields, path, r)
        let address = r.required(fields["address"], in: path, key: "address") { r.address($0, $1) }
        var listener = ListenerConfig(name: name ?? "", address: address ?? SocketAddressConfig(host: "", port: 0), limits: ListenerLimits())
        var ok = true
        if let (n, p) = fields["min_body_rate"] {
            // A size per second: "1KiB" means 1 KiB/s; "0" turns the check off.
            let text = r.string(n, p).map { $0.hasSuffix("/s") ? String($0.dropLast(2)) : $0 }
            if let text, let value = ByteSize.parse(text) {
                listener.limits.minBodyRate = value
            } else {
                if text != nil { r.error(p, "invalid rate \"\(text!)\": use a size per second, like 1KiB/s, or 0 to turn it off") }
                ok = false
            }
        }
        if !readConnectionLimits(fields, into: &listener.limits, r) { ok = false }
        if let (n, p) = fields["body_read_timeout"] {
            if let value = r.duration(n, p, min: .milliseconds(1)) { listener.limits.bodyReadTimeout = value } else { ok = false }
        }
        if let (n, p) = fields["tls"] {
            if let tls = readListenerTLS(n, p, r) { listener.tls = tls } else { ok = false }
        }
        if let (n, p) = fields["h2c_upgrade"] {
            if let value = r.bool(n, p) {
                if value, fields["tls"] != nil {
                    r.error(p, "h2c_upgrade is for cleartext listeners: over TLS, HTTP/2 is negotiated by ALPN")
                    ok = false
                }
                listener.h2cUpgrade = value
            } else {
                ok = false
            }
        }
        guard name != nil, address != nil, ok else { return nil }
        return listener
    }

    /// The connection limits HTTP and gRPC listeners share: idle_timeout, max_header_bytes,
    /// max_connections, max_concurrent_streams.
    static func readConnectionLimits(_ fields: [String: (Node, String)], into limits: inout ListenerLimits, _ r: ConfigReader) -> Bool {
        var ok = true
        if let (n, p) = fields["idle_timeout"] {
            if let value = r.duration(n, p, min: .milliseconds(1)) { limits.idleTimeout = value } else { ok = false }
        }
        if let (n, p) = fields["max_header_bytes"] {
            if let value = r.size(n, p, min: 1024) { limits.maxHeaderBytes = value } else { ok = false }
        }
        if let (n, p) = fields["max_connections"] {
            if let value = r.integer(n, p, range: 1...1_000_000) { limits.maxConnections = value } else { ok = false }
        }
        if let (n, p) = fields["max_concurrent_streams"] {
            if let value = r.integer(n, p, range: 1...10_000) { limits.maxConcurrentStreams = value } else { ok = false }
        }
        return ok
    }

    /// Reads one `sinks[]` entry on its own (an operator's retuning of a running sink is checked
    /// this way): errors have paths relative to the entry (`kinesis.linger`).
    public static func readSinkEntry(
        _ node: Node, sinkKinds: [SinkKind], environment: [String: String]
    ) -> Result<SinkConfig, ConfigValidationError> {
        let reader = ConfigReader(environment: environment)
        let (_, sink) = self.readSink(node, "", reader, kinds: sinkKinds)
        guard let sink, reader.errors.isEmpty else {
            return .failure(ConfigValidationError(errors: reader.errors.isEmpty ? [ConfigError(path: "", message: "invalid sink entry")] : reader.errors))
        }
        return .success(sink)
    }

    private static func readSink(_ node: Node, _ path: String, _ r: ConfigReader, kinds: [SinkKind]) -> (name: String?, sink: SinkConfig?) {
        let kindKeys = kinds.map(\.key)
        guard let fields = r.mapping(node, path, allowed: ["name", "max_in_flight_bytes", "max_in_flight_events"] + kindKeys) else {
            return (nil, nil)
        }
        let name = readName(fields, path, r)
        var maxBytes = SinkConfig.defaultMaxInFlightBytes
        var maxEvents = SinkConfig.defaultMaxInFlightEvents
        var limitsOK = true
        if let (n, p) = fields["max_in_flight_bytes"] {
            if let value = r.size(n, p, min: 1024) { maxBytes = value } else { limitsOK = false }
        }
        if let (n, p) = fields["max_in_flight_events"] {
            if let value = r.integer(n, p, range: 1...10_000_000) { maxEvents = value } else { limitsOK = false }
        }
        let present = kinds.filter { fields[$0.key] != nil }
        guard present.count == 1, let kind = present.first, let (n, p) = fields[kind.key] else {
            r.error(
                path,
                present.isEmpty
                    ? "a sink needs exactly one of: \(kindKeys.joined(separator: ", "))"
                    : "a sink has exactly one kind; found \(present.map(\.key).joined(separator: " and "))")
            return (name, nil)
        }
        let settings = kind.read(n, p, r)
        guard let name, let settings, limitsOK else { return (name, nil) }
        return (
            name,
            SinkConfig(
                name: name, kind: kind.key, settings: settings, maxInFlightBytes: maxBytes, maxInFlightEvents: maxEvents,
                source: canonicalYAML(node), entry: try? Yams.serialize(node: node)
            )
        )
    }

    private static func readRoute(
        _ node: Node, _ path: String, sinkNames: [String], destinations: [String: (kind: String, rules: SinkDestinations)], policyNames: [String],
        upstreamNames: [String], _ r: ConfigReader
    ) -> RouteConfig? {
        guard let fields = r.mapping(node, path, allowed: ["name", "match", "policies", "ingest", "proxy", "idempotency"]) else { return nil }
        let name = readName(fields, path, r)
        var policies: [String] = []
        var policiesOK = true
        if let (n, p) = fields["policies"], let list = r.stringList(n, p) {
            for (i, policy) in list.enumerated() {
                if !policyNames.contains(policy) {
                    var known: [String] = []
                    for name in policyNames where !known.contains(name) { known.append(name) }
                    r.error("\(p)[\(i)]", "unknown policy \"\(policy)\"" + ConfigReader.suggestion(for: policy, among: known))
                    policiesOK = false
                } else if policies.contains(policy) {
                    r.error("\(p)[\(i)]", "\"\(policy)\" is listed twice")
                    policiesOK = false
                }
                policies.append(policy)
            }
        }
        let match = r.required(fields["match"], in: path, key: "match") { readMatch($0, $1, r) }
        let actions = ["ingest", "proxy"].filter { fields[$0] != nil }
        guard actions.count == 1 else {
            r.error(path, actions.isEmpty ? "a route needs exactly one action: ingest or proxy" : "a route has exactly one action; found ingest and proxy")
            return nil
        }
        var action: RouteConfig.Action?
        if let (n, p) = fields["ingest"] {
            // A gRPC route's topic may use {topic}: the PublishRequest's topic field.
            let parameters = match?.grpc != nil ? ["topic"] : match?.path.parameters
            action = readIngest(n, p, pathParameters: parameters, sinkNames: sinkNames, destinations: destinations, r).map { .ingest($0) }
            if match?.grpc != nil, case .ingest(let ingest)? = action, ingest.ack != .sink {
                r.error(p + ".ack", "gRPC routes acknowledge durable events only (ack: sink)")
                action = nil
            }
            if let match, case .ingest(let ingest)? = action, ingest.api.topicFromPath {
                // The API's own paths (/topics/{topic}) follow the route's prefix.
                if match.grpc != nil {
                    r.error(p + ".api", "api \(ingest.api.rawValue) is an HTTP API; a gRPC route speaks sluice.v1.Ingest")
                    action = nil
                } else if case .prefix = match.path {
                } else {
                    r.error(path + ".match", "api \(ingest.api.rawValue) needs a path_prefix (its paths, like /topics/{topic}, follow it)")
                    action = nil
                }
            }
        }
        if let (n, p) = fields["proxy"] {
            if match?.grpc != nil {
                r.error(p, "gRPC routes ingest; proxy routes match HTTP paths")
            } else {
                action = readProxy(n, p, match: match, upstreamNames: upstreamNames, r).map { .proxy($0) }
            }
        }
        var idempotency: IdempotencyConfig?
        var idempotencyOK = true
        if let (n, p) = fields["idempotency"] {
            if fields["ingest"] == nil || match?.grpc != nil {
                r.error(p, "idempotency applies to HTTP ingest routes (a retry is answered once, without producing again)")
                idempotencyOK = false
            } else {
                idempotency = readIdempotency(n, p, r)
                idempotencyOK = idempotency != nil
            }
        }
        guard let name, let match, let action, policiesOK, idempotencyOK else { return nil }
        return RouteConfig(name: name, match: match, policies: policies, action: action, idempotency: idempotency, source: canonicalYAML(node))
    }

    /// `idempotency: { window, store: memory | redis, redis: {…}, max_keys, max_bytes,
    /// max_response_bytes, in_flight_timeout, required }`.
    private static func readIdempotency(_ node: Node, _ path: String, _ r: ConfigReader) -> IdempotencyConfig? {
        let allowed = ["window", "store", "redis", "max_keys", "max_bytes", "max_response_bytes", "in_flight_timeout", "required"]
        guard let fields = r.mapping(node, path, allowed: allowed) else { return nil }
        var config = IdempotencyConfig()
        var ok = true
        if let (n, p) = fields["window"] {
            if let value = r.duration(n, p, min: .seconds(1)) { config.window = value } else { ok = false }
        }
        var storeName = "memory"
        if let (n, p) = fields["store"], let text = r.string(n, p) {
            guard text == "memory" || text == "redis" else {
                r.error(p, "expected memory (this process; lost on restart) or redis (shared by every instance), got \"\(text)\"")
                return nil
            }
            storeName = text
        }
        if storeName == "redis" {
            guard let redis = r.required(fields["redis"], in: path, key: "redis", { SluiceConfiguration.readRedis($0, $1, r) }) else { return nil }
            config.store = .redis(redis)
        } else if let (_, p) = fields["redis"] {
            r.error(p, "redis is for store: redis")
            ok = false
        }
        if let (n, p) = fields["max_keys"] {
            if let value = r.integer(n, p, range: 1...100_000_000) { config.maxKeys = value } else { ok = false }
        }
        if let (n, p) = fields["max_bytes"] {
            if let value = r.size(n, p, min: 1024) { config.maxBytes = value } else { ok = false }
        }
        if let (n, p) = fields["max_response_bytes"] {
            if let value = r.size(n, p, min: 0) {
                config.maxResponseBytes = value
                if case .redis = config.store, value > IdempotencyConfig.maxRedisResponseBytes {
                    r.error(p, "at most \(IdempotencyConfig.maxRedisResponseBytes / 1024)KiB with store: redis (a kept answer is one Redis value)")
                    ok = false
                }
            } else {
                ok = false
            }
        }
        if let (n, p) = fields["in_flight_timeout"] {
            if let value = r.duration(n, p, min: .seconds(1)) { config.inFlightTimeout = value } else { ok = false }
        }
        if let (n, p) = fields["required"] {
            if let value = r.bool(n, p) { config.required = value } else { ok = false }
        }
        if config.store == .memory, config.maxResponseBytes > config.maxBytes {
            r.error(path + ".max_response_bytes", "larger than max_bytes (\(config.maxBytes)): no answer of that size could be kept")
            ok = false
        }
        return ok ? config : nil
    }

    static let httpMethods: Set<String> = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

    private static func readMatch(_ node: Node, _ path: String, _ r: ConfigReader) -> RouteMatchConfig? {
        let allowed = ["path", "path_prefix", "methods", "host", "headers", "query", "grpc_service", "grpc_method"]
        guard let fields = r.mapping(node, path, allowed: allowed) else { return nil }
        if let (serviceNode, servicePath) = fields["grpc_service"] {
            return readGRPCMatch(fields, serviceNode, servicePath, path, r)
        }
        if let (_, methodPath) = fields["grpc_method"] {
            r.error(methodPath, "grpc_method needs grpc_service")
            return nil
        }
        var pattern: PathPattern?
        switch (fields["path"], fields["path_prefix"]) {
        case (let exact?, nil):
            if let text = r.nonEmptyString(exact.0, exact.1) {
                switch PathPattern.parseTemplate(text) {
                case .success(let value): pattern = value
                case .failure(let error): r.error(exact.1, error.message)
                }
            }
        case (nil, let prefix?):
            if let text = r.nonEmptyString(prefix.0, prefix.1) {
                if !text.hasPrefix("/") {
                    r.error(prefix.1, "must start with \"/\"")
                } else if text.contains("{") {
                    r.error(prefix.1, "a prefix cannot hold parameters; use path with {name} segments")
                } else {
                    pattern = .prefix(text)
                }
            }
        case (_?, _?):
            r.error(path, "use either path or path_prefix, not both")
        case (nil, nil):
            r.error(path, "one of path or path_prefix is required")
        }
        var methods: [String] = []
        if let (n, p) = fields["methods"], let items = r.sequence(n, p) {
            for (item, itemPath) in items {
                guard let method = r.nonEmptyString(item, itemPath) else { continue }
                let upper = method.uppercased()
                if !httpMethods.contains(upper) {
                    r.error(itemPath, "unknown method \"\(method)\"; expected one of \(httpMethods.sorted().joined(separator: ", "))")
                } else if !methods.contains(upper) {
                    methods.append(upper)
                }
            }
        }
        var host: String?
        if let (n, p) = fields["host"], let text = r.nonEmptyString(n, p) {
            host = text.lowercased()
        }
        var headers: [(name: String, value: String)] = []
        if let (n, p) = fields["headers"] {
            for entry in r.freeMapping(n, p) {
                if let value = r.string(entry.value, entry.path) {
                    headers.append((entry.key.lowercased(), value))
                }
            }
        }
        // query: { name: value } (exactly that value) or { name: { present: true } } (any value).
        var query: [(name: String, value: String?)] = []
        if let (n, p) = fields["query"] {
            for entry in r.freeMapping(n, p) {
                if case .scalar = entry.value {
                    if let value = r.string(entry.value, entry.path) { query.append((entry.key, value)) }
                } else if let condition = r.mapping(entry.value, entry.path, allowed: ["present"]) {
                    guard let (pn, pp) = condition["present"], let present = r.bool(pn, pp) else {
                        r.error(entry.path, "expected a value, or { present: true }")
                        continue
                    }
                    if present { query.append((entry.key, nil)) } else { r.error(pp, "only present: true is supported (the parameter must be there)") }
                }
            }
        }
        guard let pattern else { return nil }
        return RouteMatchConfig(path: pattern, methods: methods, host: host, headers: headers, query: query)
    }

    /// A gRPC route: `grpc_service` (fully qualified), optional `grpc_method`, optional metadata
    /// `headers`; HTTP-only keys are errors.
    private static func readGRPCMatch(
        _ fields: [String: (Node, String)], _ serviceNode: Node, _ servicePath: String, _ path: String, _ r: ConfigReader
    ) -> RouteMatchConfig? {
        for key in ["path", "path_prefix", "methods", "host"] where fields[key] != nil {
            r.error("\(path).\(key)", "a gRPC route matches on grpc_service, grpc_method and headers, not \(key)")
        }
        guard let service = r.nonEmptyString(serviceNode, servicePath) else { return nil }
        guard service.contains("."), !service.hasPrefix("/"), !service.contains("/") else {
            r.error(servicePath, "expected a fully qualified service name like sluice.v1.Ingest, got \"\(service)\"")
            return nil
        }
        var method: String?
        if let (n, p) = fields["grpc_method"] {
            method = r.nonEmptyString(n, p)
            if method == nil { return nil }
        }
        var headers: [(name: String, value: String)] = []
        if let (n, p) = fields["headers"] {
            for entry in r.freeMapping(n, p) {
                if let value = r.string(entry.value, entry.path) { headers.append((entry.key.lowercased(), value)) }
            }
        }
        let grpcPath: PathPattern = method.map { .exact("/\(service)/\($0)") } ?? .prefix("/\(service)/")
        return RouteMatchConfig(path: grpcPath, methods: ["POST"], host: nil, headers: headers, grpc: GRPCMatch(service: service, method: method))
    }

    private static func readIngest(
        _ node: Node, _ path: String, pathParameters: [String]?, sinkNames: [String], destinations: [String: (kind: String, rules: SinkDestinations)],
        _ r: ConfigReader
    ) -> IngestConfig? {
        let allowed = [
            "sink", "topic", "topics_allowed", "key", "ack", "headers_to_kafka", "max_body_bytes", "max_events",
            "max_event_bytes", "max_wait", "api", "cluster_id", "schema", "dead_letter", "spool", "mirror", "sinks", "mode", "split",
        ]
        guard let fields = r.mapping(node, path, allowed: allowed) else { return nil }
        var ok = true
        // One sink, or several (`sinks`, `split`): then the first target's kind rules the topic.
        var targets: IngestTargets?
        let sink: String?
        if fields["sinks"] != nil || fields["split"] != nil {
            targets = readTargets(fields, path, r, sinkNames: sinkNames, destinations: destinations)
            sink = targets?.targets.first?.sink
            if targets == nil { ok = false }
        } else {
            if let (_, p) = fields["mode"] {
                r.error(p, "mode says how a route's sinks: [...] settle an event; this route has one sink")
                ok = false
            }
            sink = r.required(fields["sink"], in: path, key: "sink") { r.nonEmptyString($0, $1) }
            if let sink, !sinkNames.contains(sink) {
                r.error(path + ".sink", Self.unknownSink(sink, among: sinkNames))
                ok = false
            }
        }
        // The destination rules of the sink's kind (Kafka topic, Kinesis stream); unknown when
        // the sink itself has errors, and then not checked.
        let kind = sink.flatMap { destinations[$0]?.kind } ?? ""
        let destination = sink.flatMap { destinations[$0]?.rules }
        var api = IngestAPI.sluice
        if let (n, p) = fields["api"], let text = r.string(n, p) {
            if let value = IngestAPI(rawValue: text) {
                api = value
            } else {
                r.error(p, "expected one of \(IngestAPI.allCases.map(\.rawValue).joined(separator: ", ")); got \"\(text)\"")
                ok = false
            }
        }
        var topic: ParameterTemplate?
        var topicText: (text: String, path: String, origin: String)?
        if api.topicFromPath {
            // The API names the topic in its own path; the route's rules still apply to it.
            if fields["topic"] != nil {
                r.error(path + ".topic", "api \(api.rawValue) takes the topic from the request path (/topics/{topic}); remove topic")
                ok = false
            }
            if let (_, p) = fields["key"] {
                r.error(p, "api \(api.rawValue) takes each record's key from its request body; remove key")
                ok = false
            }
            if let destination, !destination.carriesPartitions {
                r.error(path + ".api", "api \(api.rawValue) writes Kafka records (keys, partitions); sink \"\(sink ?? "")\" is \(kind)")
                ok = false
            }
            topic = ParameterTemplate(parts: [])
        } else if let (n, p) = fields["topic"] {
            if let text = r.nonEmptyString(n, p) { topicText = (text, p, "") }
        } else if let fallback = destination?.defaultTopic {
            topicText = (fallback, path + ".sink", "the stream of sink \"\(sink ?? "")\" (\(fallback)): ")
        } else if destination?.defaultTopic == nil, let key = destination?.defaultTopicKey {
            r.error(path + ".topic", "required: sink \"\(sink ?? "")\" (\(kind)) sets no default \(key)")
        } else {
            r.error(path + ".topic", "required")
        }
        if let (text, topicPath, origin) = topicText {
            switch ParameterTemplate.parse(text) {
            case .success(let template):
                let known = pathParameters ?? []
                for parameter in template.parameters where pathParameters != nil && !known.contains(parameter) {
                    r.error(topicPath, origin + "\"{\(parameter)}\" is not a parameter of the route's match.path" + (known.isEmpty ? "" : " (parameters: \(known.joined(separator: ", ")))"))
                    ok = false
                }
                if let fixed = template.fixedValue, let problem = destination?.problem(fixed) {
                    r.error(topicPath, origin + problem)
                    ok = false
                }
                topic = template
            case .failure(let error):
                r.error(topicPath, origin + error.message)
            }
        }
        var topicsAllowed: Set<String>?
        if let (n, p) = fields["topics_allowed"], let list = r.stringList(n, p) {
            for (index, name) in list.enumerated() {
                if let problem = (destination?.problem ?? TopicName.problem)(name) { r.error("\(p)[\(index)]", problem); ok = false }
            }
            topicsAllowed = Set(list)
        }
        var key: KeySource?
        if let (n, p) = fields["key"], let text = r.nonEmptyString(n, p) {
            key = parseKeySource(text, p, r)
            if key == nil { ok = false }
            if let destination, !destination.carriesKeys {
                r.error(p, "sink \"\(sink ?? "")\" (\(kind)) writes records without keys; remove key")
                ok = false
            }
        }
        var ack = AckMode.sink
        if let (n, p) = fields["ack"], let text = r.string(n, p) {
            if let mode = AckMode(rawValue: text) { ack = mode } else {
                r.error(p, "expected sink, accepted or spooled, got \"\(text)\"")
                ok = false
            }
            if ack.answersBeforeTheSink, api.topicFromPath {
                r.error(p, "api \(api.rawValue) answers each record's partition and offset; it needs ack: sink")
                ok = false
            }
        }
        var headersToKafka: [String] = []
        if let (n, p) = fields["headers_to_kafka"], let list = r.stringList(n, p) {
            headersToKafka = list
            if !list.isEmpty, let destination, !destination.carriesHeaders {
                r.error(p, "sink \"\(sink ?? "")\" (\(kind)) writes records without headers; remove headers_to_kafka")
                ok = false
            }
        }
        // A sink's partition key template with route parameters becomes this route's default key.
        var defaultKey: ParameterTemplate?
        if let text = destination?.defaultKey, case .success(let template) = ParameterTemplate.parse(text) {
            let known = pathParameters ?? []
            for parameter in template.parameters where pathParameters != nil && !known.contains(parameter) {
                r.error(path + ".sink", "the partition_key of sink \"\(sink ?? "")\" (\(text)): \"{\(parameter)}\" is not a parameter of the route's match.path")
                ok = false
            }
            defaultKey = template
        }
        var config = IngestConfig(
            sink: sink ?? "", topic: topic ?? ParameterTemplate(parts: []), topicsAllowed: topicsAllowed, key: key, ack: ack,
            headersToKafka: headersToKafka, maxBodyBytes: IngestConfig.defaultMaxBodyBytes,
            maxEvents: IngestConfig.defaultMaxEvents, maxEventBytes: IngestConfig.defaultMaxEventBytes,
            maxWait: IngestConfig.defaultMaxWait
        )
        config.defaultKey = defaultKey
        config.api = api
        config.targets = targets
        if targets != nil, api != .sluice {
            r.error(path + ".api", "api \(api.rawValue) answers in its own shape, with one sink's receipt; sinks and split are for api sluice")
            ok = false
        }
        if let destination, !destination.carriesHeaders { config.cloudEventsEncoding = .structuredJSON }
        if let (n, p) = fields["cluster_id"] {
            if api != .confluentV3 {
                r.error(p, "cluster_id names the cluster of api confluent_v3 paths; remove it")
                ok = false
            } else if let id = r.nonEmptyString(n, p) {
                if id.contains("/") { r.error(p, "a cluster id is one path segment; no \"/\"") ; ok = false } else { config.clusterID = id }
            }
        }
        if api == .cloudevents, case .jsonPointer? = key {
            r.error(path + ".key", "api cloudevents keys events by their partitionkey, or else header:NAME or query:NAME; a JSON pointer does not apply")
            ok = false
        }
        if let (n, p) = fields["max_body_bytes"] {
            if let v = r.size(n, p) { config.maxBodyBytes = v } else { ok = false }
        }
        if let (n, p) = fields["max_events"] {
            if let v = r.integer(n, p, range: 1...100_000_000) { config.maxEvents = v } else { ok = false }
        }
        if let (n, p) = fields["max_event_bytes"] {
            if let v = r.size(n, p) { config.maxEventBytes = v } else { ok = false }
        }
        if let (n, p) = fields["max_wait"] {
            if let v = r.duration(n, p) { config.maxWait = v } else { ok = false }
        }
        if let (n, p) = fields["schema"] {
            if let schema = readEventSchema(n, p, r) { config.schema = schema } else { ok = false }
        }
        if let (n, p) = fields["dead_letter"] {
            if let fields = r.mapping(n, p, allowed: ["sink", "topic"]),
                let letterSink = r.required(fields["sink"], in: p, key: "sink", { r.nonEmptyString($0, $1) }),
                let letterTopic = r.required(fields["topic"], in: p, key: "topic", { r.nonEmptyString($0, $1) })
            {
                if !sinkNames.contains(letterSink) {
                    r.error(p + ".sink", "unknown sink \"\(letterSink)\"" + ConfigReader.suggestion(for: letterSink, among: sinkNames).replacingOccurrences(of: "expected one of", with: "defined sinks are"))
                    ok = false
                } else if let problem = destinations[letterSink].flatMap({ $0.rules.problem(letterTopic) }) {
                    r.error(p + ".topic", problem)
                    ok = false
                } else {
                    let carriesHeaders = destinations[letterSink]?.rules.carriesHeaders ?? true
                    config.deadLetter = DeadLetterConfig(sink: letterSink, topic: letterTopic, envelope: !carriesHeaders)
                }
            } else {
                ok = false
            }
        }
        if let (n, p) = fields["mirror"] {
            if let mirror = readMirror(n, p, r, sinkNames: sinkNames, destinations: destinations) { config.mirror = mirror } else { ok = false }
        }
        if let (n, p) = fields["spool"] {
            if config.ack != .spooled {
                r.error(p, "a spool is for ack: spooled")
                ok = false
            } else if let spool = readSpool(n, p, r, maxBodyBytes: config.maxBodyBytes) {
                config.spool = spool
            } else {
                ok = false
            }
        } else if config.ack == .spooled {
            r.error(path + ".spool", "required with ack: spooled: { directory: PATH } (max_bytes and segment_bytes optional)")
            ok = false
        }
        guard ok, sink != nil, topic != nil else { return nil }
        return config
    }

    static func unknownSink(_ sink: String, among sinkNames: [String]) -> String {
        "unknown sink \"\(sink)\"" + ConfigReader.suggestion(for: sink, among: sinkNames).replacingOccurrences(of: "expected one of", with: "defined sinks are")
    }

    /// `sinks: [{ sink, topic }]` with `mode: all | any`, or `split: { by: random | key, targets:
    /// [{ sink, topic, fraction }] }` — instead of `sink`. Fractions add up to 1.
    private static func readTargets(
        _ fields: [String: (Node, String)], _ path: String, _ r: ConfigReader, sinkNames: [String],
        destinations: [String: (kind: String, rules: SinkDestinations)]
    ) -> IngestTargets? {
        let given = ["sink", "sinks", "split"].filter { fields[$0] != nil }
        guard given.count == 1 else {
            r.error(path, "give one of sink, sinks (every event to each) and split (each event to one); got \(given.joined(separator: " and "))")
            return nil
        }
        let mode: IngestTargets.Mode
        let list: (Node, String)
        if let sinks = fields["sinks"] {
            list = sinks
            var fanOut = IngestTargets.Mode.all
            if let (n, p) = fields["mode"], let text = r.string(n, p) {
                switch text {
                case "all": fanOut = .all
                case "any": fanOut = .any
                default:
                    r.error(p, "expected all (every sink must settle an event) or any (one must), got \"\(text)\"")
                    return nil
                }
            }
            mode = fanOut
        } else {
            let (n, p) = fields["split"]!
            if let (_, modePath) = fields["mode"] {
                r.error(modePath, "mode is for sinks: [...]; a split sends each event to one target")
                return nil
            }
            guard let split = r.mapping(n, p, allowed: ["by", "targets"]),
                let targetList = r.required(split["targets"], in: p, key: "targets", { ($0, $1) })
            else { return nil }
            var by = IngestTargets.SplitBy.random
            if let (byNode, byPath) = split["by"], let text = r.string(byNode, byPath) {
                guard let value = IngestTargets.SplitBy(rawValue: text) else {
                    r.error(byPath, "expected random or key (a hash of the event's key), got \"\(text)\"")
                    return nil
                }
                by = value
            }
            mode = .split(by)
            list = targetList
        }
        let isSplit = fields["split"] != nil
        guard let items = r.sequence(list.0, list.1) else { return nil }
        guard items.count >= 2 else {
            r.error(list.1, "expected two targets or more; a route with one sink says sink: NAME")
            return nil
        }
        var targets: [IngestTarget] = []
        var ok = true
        for (item, itemPath) in items {
            guard let entry = r.mapping(item, itemPath, allowed: isSplit ? ["sink", "topic", "fraction"] : ["sink", "topic"]),
                let sink = r.required(entry["sink"], in: itemPath, key: "sink", { r.nonEmptyString($0, $1) })
            else {
                ok = false
                continue
            }
            guard sinkNames.contains(sink) else {
                r.error(itemPath + ".sink", Self.unknownSink(sink, among: sinkNames))
                ok = false
                continue
            }
            var target = IngestTarget(sink: sink)
            if let (n, p) = entry["topic"] {
                guard let text = r.nonEmptyString(n, p) else {
                    ok = false
                    continue
                }
                switch ParameterTemplate.parse(text) {
                case .success(let template):
                    if let unknown = template.parameters.first(where: { $0 != "topic" }) {
                        r.error(p, "unknown parameter {\(unknown)}: a target's topic may use {topic}, the route's topic")
                        ok = false
                        continue
                    } else if let fixed = template.fixedValue, let problem = destinations[sink]?.rules.problem(fixed) {
                        r.error(p, problem)
                        ok = false
                        continue
                    }
                    target.topic = template
                case .failure(let error):
                    r.error(p, error.message)
                    ok = false
                    continue
                }
            }
            if isSplit {
                guard let fraction = r.required(entry["fraction"], in: itemPath, key: "fraction", { n, p -> Double? in
                    guard let text = r.string(n, p) else { return nil }
                    guard let value = Double(text), value > 0, value <= 1 else {
                        r.error(p, "expected a share of the events above 0 and at most 1 (0.1 sends one in ten here), got \"\(text)\"")
                        return nil
                    }
                    return value
                }) else {
                    ok = false
                    continue
                }
                target.fraction = fraction
            }
            if targets.contains(where: { $0.sink == target.sink && $0.topic == target.topic }) {
                r.error(itemPath, "sink \"\(sink)\" with topic \(target.topic) is already a target")
                ok = false
            }
            targets.append(target)
        }
        guard ok else { return nil }
        if isSplit {
            let sum = targets.reduce(0) { $0 + $1.fraction }
            guard abs(sum - 1) < 1e-9 else {
                r.error(list.1, "the targets' fractions add up to \(sum); they must add up to 1")
                return nil
            }
        }
        return IngestTargets(mode: mode, targets: targets)
    }

    /// `mirror: { sink, topic, fraction }`: the topic a template of `{topic}` (the event's),
    /// checked against the mirror sink's destination rules when it is fixed.
    private static func readMirror(
        _ node: Node, _ path: String, _ r: ConfigReader, sinkNames: [String], destinations: [String: (kind: String, rules: SinkDestinations)]
    ) -> IngestMirrorConfig? {
        guard let fields = r.mapping(node, path, allowed: ["sink", "topic", "fraction"]),
            let sink = r.required(fields["sink"], in: path, key: "sink", { r.nonEmptyString($0, $1) })
        else { return nil }
        guard sinkNames.contains(sink) else {
            r.error(path + ".sink", "unknown sink \"\(sink)\"" + ConfigReader.suggestion(for: sink, among: sinkNames).replacingOccurrences(of: "expected one of", with: "defined sinks are"))
            return nil
        }
        var config = IngestMirrorConfig(sink: sink)
        if let (n, p) = fields["topic"] {
            guard let text = r.nonEmptyString(n, p) else { return nil }
            switch ParameterTemplate.parse(text) {
            case .success(let template):
                if let unknown = template.parameters.first(where: { $0 != "topic" }) {
                    r.error(p, "unknown parameter {\(unknown)}: a mirror's topic may use {topic}, the event's topic")
                    return nil
                }
                if let fixed = template.fixedValue, let problem = destinations[sink]?.rules.problem(fixed) {
                    r.error(p, problem)
                    return nil
                }
                config.topic = template
            case .failure(let error):
                r.error(p, error.message)
                return nil
            }
        }
        if let (n, p) = fields["fraction"], let text = r.string(n, p) {
            guard let fraction = Double(text), fraction > 0, fraction <= 1 else {
                r.error(p, "expected a share of the events above 0 and at most 1 (0.1 mirrors one in ten), got \"\(text)\"")
                return nil
            }
            config.fraction = fraction
        }
        return config
    }

    /// `spool: { directory, max_bytes, segment_bytes }`. max_bytes must leave room for two
    /// segments and a whole request beside them, or a request could wait for room forever.
    private static func readSpool(_ node: Node, _ path: String, _ r: ConfigReader, maxBodyBytes: Int) -> SpoolConfig? {
        guard let fields = r.mapping(node, path, allowed: ["directory", "max_bytes", "segment_bytes"]),
            let directory = r.required(fields["directory"], in: path, key: "directory", { r.nonEmptyString($0, $1) })
        else { return nil }
        var config = SpoolConfig(directory: directory)
        var ok = true
        if let (n, p) = fields["max_bytes"] {
            if let value = r.size(n, p, min: 1 << 20) { config.maxBytes = value } else { ok = false }
        }
        if let (n, p) = fields["segment_bytes"] {
            if let value = r.size(n, p, min: 64 << 10) { config.segmentBytes = value } else { ok = false }
        }
        guard ok else { return nil }
        let needed = 2 * config.segmentBytes + 2 * maxBodyBytes
        if config.maxBytes < needed {
            r.error(
                path + ".max_bytes",
                "must be at least two segments and two bodies (2 x segment_bytes + 2 x max_body_bytes = \(ByteSize.format(needed))), so a request always fits once what is forwarded is released")
            return nil
        }
        return config
    }

    /// `schema: { avro_file | protobuf: { descriptor_set, message }, schema_id }`: compiled now.
    private static func readTranscodingSchema(_ fields: [String: (Node, String)], _ path: String, _ r: ConfigReader) -> EventSchema? {
        let kind = fields["avro_file"] != nil ? "avro_file" : "protobuf"
        for key in ["draft", "format_assertion", "max_violations"] where fields[key] != nil {
            r.error("\(path).\(key)", "\(key) is for json_schema_file; this schema is \(kind)")
            return nil
        }
        var schemaID: UInt32?
        if let (n, p) = fields["schema_id"] {
            guard let value = r.integer(n, p, range: 0...Int(Int32.max)) else { return nil }
            schemaID = UInt32(value)
        }
        if schemaID != nil, let (_, p) = fields["registry"] {
            r.error(p, "set schema_id (a fixed id) or registry (the id looked up per subject), not both")
            return nil
        }
        if let (n, p) = fields["protobuf"] {
            guard let proto = r.mapping(n, p, allowed: ["descriptor_set", "message"]),
                let file = r.required(proto["descriptor_set"], in: p, key: "descriptor_set", { r.readableFile($0, $1) }),
                let message = r.required(proto["message"], in: p, key: "message", { r.nonEmptyString($0, $1) })
            else { return nil }
            guard let bytes = FileManager.default.contents(atPath: file) else {
                r.error(p + ".descriptor_set", "cannot read \(file)")
                return nil
            }
            var schema: EventSchema
            do {
                schema = EventSchema(file: file, protobuf: try ProtobufSchema.compile(descriptorSet: Array(bytes), message: message), schemaID: schemaID)
            } catch {
                r.error(p, "\(file): \(error)")
                return nil
            }
            if let (n, p) = fields["registry"] {
                guard let registry = readSchemaRegistry(n, p, r, schemaType: "PROTOBUF", schema: nil) else { return nil }
                schema.registry = registry
            }
            return schema
        }
        guard let file = r.required(fields["avro_file"], in: path, key: "avro_file", { r.readableFile($0, $1) }) else { return nil }
        let filePath = path + ".avro_file"
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            r.error(filePath, "\(file) is not UTF-8 text")
            return nil
        }
        do {
            let document = try JSONParser.parse(text)
            var schema = EventSchema(file: file, avro: try AvroSchema.compile(document), schemaID: schemaID, document: document)
            if let (n, p) = fields["registry"] {
                guard let registry = readSchemaRegistry(n, p, r, schemaType: "AVRO", schema: text) else { return nil }
                schema.registry = registry
            }
            return schema
        } catch let error as JSONParseError {
            r.error(filePath, "\(file) is not JSON: \(error)")
        } catch {
            r.error(filePath, "\(file): \(error)")
        }
        return nil
    }

    /// `registry: { url, subject, auto_register, timeout, retry_after, max_subjects, ca_file,
    /// username, password, schema_file }`. `schema`: the text the registry holds (the Avro
    /// file); a Protobuf route names its `.proto` source in `schema_file` (the registry keeps
    /// Protobuf schemas as source text, not as the descriptor set Sluice encodes with).
    private static func readSchemaRegistry(_ node: Node, _ path: String, _ r: ConfigReader, schemaType: String, schema: String?) -> SchemaRegistryConfig? {
        let allowed = [
            "url", "subject", "auto_register", "timeout", "retry_after", "max_subjects", "ca_file", "username", "password", "schema_file",
        ]
        guard let fields = r.mapping(node, path, allowed: allowed) else { return nil }
        guard let url = r.required(fields["url"], in: path, key: "url", { r.httpURL($0, $1, example: "http://127.0.0.1:8081") }) else { return nil }
        var ok = true
        var text = schema
        if let (n, p) = fields["schema_file"] {
            if schema != nil {
                r.error(p, "schema_file is for Protobuf (its .proto source); an Avro route's registry is sent the avro_file")
                return nil
            }
            guard let file = r.readableFile(n, p) else { return nil }
            guard let source = try? String(contentsOfFile: file, encoding: .utf8) else {
                r.error(p, "\(file) is not UTF-8 text")
                return nil
            }
            text = source
        }
        guard let text else {
            r.error(path + ".schema_file", "required: the .proto source of the message, as the registry holds it")
            return nil
        }
        let base = url.absoluteString.hasSuffix("/") ? String(url.absoluteString.dropLast()) : url.absoluteString
        var config = SchemaRegistryConfig(url: base, schemaType: schemaType, schema: text)
        if let (n, p) = fields["subject"], let subject = r.nonEmptyString(n, p) {
            switch ParameterTemplate.parse(subject) {
            case .success(let template):
                if let unknown = template.parameters.first(where: { $0 != "topic" }) {
                    r.error(p, "unknown parameter {\(unknown)}: a subject may use {topic}, the record's topic")
                    ok = false
                } else {
                    config.subject = template
                }
            case .failure(let error):
                r.error(p, error.message)
                ok = false
            }
        }
        if let (n, p) = fields["auto_register"] {
            if let value = r.bool(n, p) { config.autoRegister = value } else { ok = false }
        }
        if let (n, p) = fields["timeout"] {
            if let value = r.duration(n, p, min: .milliseconds(10)) { config.timeout = value } else { ok = false }
        }
        if let (n, p) = fields["retry_after"] {
            if let value = r.duration(n, p, min: .milliseconds(100)) { config.retryAfter = value } else { ok = false }
        }
        if let (n, p) = fields["max_subjects"] {
            if let value = r.integer(n, p, range: 1...1_000_000) { config.maxSubjects = value } else { ok = false }
        }
        if let (n, p) = fields["ca_file"] {
            if let file = r.readableFile(n, p) { config.caFile = file } else { ok = false }
        }
        if let (n, p) = fields["username"] {
            if let value = r.nonEmptyString(n, p) { config.username = value } else { ok = false }
        }
        if let (n, p) = fields["password"] {
            if let password = r.secret(n, p, what: "schema registry password") { config.password = password } else { ok = false }
        }
        if (config.username == nil) != (config.password == nil) {
            r.error(path, "set username and password together")
            ok = false
        }
        let host = url.host ?? ""
        if config.password != nil, url.scheme != "https", !["127.0.0.1", "localhost", "::1", "[::1]"].contains(host) {
            r.error(path + ".url", "a password is sent over https:// only (http:// only to a loopback address)")
            ok = false
        }
        return ok ? config : nil
    }

    /// `schema: { json_schema_file, draft: 2020-12 | draft-07, format_assertion, max_violations }`:
    /// the file is read and compiled now; `$ref`s to other files resolve next to it.
    private static func readEventSchema(_ node: Node, _ path: String, _ r: ConfigReader) -> EventSchema? {
        let allowed = ["json_schema_file", "avro_file", "protobuf", "schema_id", "registry", "draft", "format_assertion", "max_violations"]
        guard let fields = r.mapping(node, path, allowed: allowed) else { return nil }
        let kinds = ["json_schema_file", "avro_file", "protobuf"].filter { fields[$0] != nil }
        guard kinds.count == 1 else {
            r.error(path, kinds.isEmpty ? "one of json_schema_file, avro_file or protobuf is required" : "one schema per route; found \(kinds.joined(separator: " and "))")
            return nil
        }
        if fields["avro_file"] != nil || fields["protobuf"] != nil {
            return readTranscodingSchema(fields, path, r)
        }
        for key in ["schema_id", "registry"] {
            if let (_, p) = fields[key] {
                r.error(p, "\(key) frames Avro or Protobuf values (avro_file, protobuf) in Confluent's wire format")
                return nil
            }
        }
        var ok = true
        var draft = JSONSchemaDraft.draft2020_12
        if let (n, p) = fields["draft"], let text = r.string(n, p) {
            if let value = JSONSchemaDraft(rawValue: text) { draft = value } else {
                r.error(p, "expected 2020-12 or draft-07 (the dialect of a schema without $schema), got \"\(text)\"")
                ok = false
            }
        }
        var formatAssertion = false
        if let (n, p) = fields["format_assertion"] {
            if let value = r.bool(n, p) { formatAssertion = value } else { ok = false }
        }
        var maxViolations = 4
        if let (n, p) = fields["max_violations"] {
            if let value = r.integer(n, p, range: 1...100) { maxViolations = value } else { ok = false }
        }
        guard let file = r.required(fields["json_schema_file"], in: path, key: "json_schema_file", { r.readableFile($0, $1) }) else { return nil }
        let filePath = path + ".json_schema_file"
        guard ok else { return nil }
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            r.error(filePath, "\(file) is not UTF-8 text")
            return nil
        }
        let document: JSONValue
        do {
            document = try JSONParser.parse(text)
        } catch {
            r.error(filePath, "\(file) is not JSON: \(error)")
            return nil
        }
        let base = URL(fileURLWithPath: file).standardizedFileURL
        do {
            let schema = try JSONSchema.compile(document, draft: draft, baseURI: base.absoluteString, formatAssertion: formatAssertion) { uri in
                // Other files a $ref names by a file URI (relative references resolve against this file's).
                guard uri.hasPrefix("file://"), let url = URL(string: uri), let text = try? String(contentsOf: url, encoding: .utf8) else { return nil }
                return try? JSONParser.parse(text)
            }
            var event = EventSchema(file: file, schema: schema, maxViolations: maxViolations, document: document)
            event.draft = draft
            return event
        } catch {
            r.error(filePath, "\(file): \(error)")
            return nil
        }
    }

    private static func parseKeySource(_ text: String, _ path: String, _ r: ConfigReader) -> KeySource? {
        if text.hasPrefix("header:"), text.count > 7 {
            return .header(String(text.dropFirst(7)).lowercased())
        }
        if text.hasPrefix("query:"), text.count > 6 {
            return .query(String(text.dropFirst(6)))
        }
        if text.hasPrefix("json:") {
            let pointer = String(text.dropFirst(5))
            guard pointer.unicodeScalars.first == "/", let tokens = JSONPointer.tokens(pointer) else {
                r.error(path, "invalid JSON pointer \"\(pointer)\": it must start with \"/\", like json:/user/id, and write ~ as ~0 and / within a key as ~1")
                return nil
            }
            return .jsonPointer(tokens)
        }
        r.error(path, "expected header:NAME, query:NAME or json:/pointer; got \"\(text)\"")
        return nil
    }
}

/// `node`'s content as one line of flow YAML — the same for the same content however it was
/// spelled (flow or block style, comments), different for any other content (a plain scalar and a
/// quoted one differ: `1` is a number, `"1"` text). Keys keep their order.
func canonicalYAML(_ node: Node) -> String? {
    switch node {
    case .scalar(let scalar):
        var quoted: [UInt8] = []
        JSONString.append(scalar.string.utf8, to: &quoted)
        // An explicit tag, and whether the scalar was plain: what the readers act on.
        let tag = node.tag.description.isEmpty ? "" : "\(node.tag.description) "
        return "\(tag)\(scalar.style == .plain ? "plain" : "quoted") \(String(decoding: quoted, as: UTF8.self))"
    case .mapping(let mapping):
        var parts: [String] = []
        for (key, value) in mapping {
            guard let key = canonicalYAML(key), let value = canonicalYAML(value) else { return nil }
            parts.append("\(key): \(value)")
        }
        return "{" + parts.joined(separator: ", ") + "}"
    case .sequence(let sequence):
        var parts: [String] = []
        for item in sequence {
            guard let item = canonicalYAML(item) else { return nil }
            parts.append(item)
        }
        return "[" + parts.joined(separator: ", ") + "]"
    case .alias:
        return nil  // resolved by the parser before it gets here; never kept if not
    }
}
