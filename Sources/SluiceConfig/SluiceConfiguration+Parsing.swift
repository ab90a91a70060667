import FileSink
import Foundation
import KafkaSink
import KinesisSink
import SluicePolicy
import ZerobusSink
import SluiceCore
import Yams

extension SluiceConfiguration {
    /// Reads and validates the configuration file at `path`.
    public static func load(
        path: String,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(ConfigValidationError) -> SluiceConfiguration {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigValidationError(errors: [ConfigError(path: "", message: "cannot read config file \(path)")])
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigValidationError(errors: [ConfigError(path: "", message: "\(path) is not UTF-8 text")])
        }
        return try self.parse(yaml: text, environment: environment)
    }

    /// Parses and validates a YAML configuration, reporting every error at once.
    public static func parse(
        yaml: String,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(ConfigValidationError) -> SluiceConfiguration {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            throw ConfigValidationError(errors: [ConfigError(path: "", message: "not valid YAML: \(error)")])
        }
        let reader = ConfigReader(environment: environment)
        let config = Self.read(root, reader)
        if let config, reader.errors.isEmpty {
            return config
        }
        if reader.errors.isEmpty {
            throw ConfigValidationError(errors: [ConfigError(path: "", message: "empty configuration")])
        }
        throw ConfigValidationError(errors: reader.errors)
    }

    static let topLevelKeys = ["listeners", "admin", "grpc", "policies", "upstreams", "sinks", "routes", "shutdown", "process"]

    private static func read(_ root: Node?, _ r: ConfigReader) -> SluiceConfiguration? {
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
        if let (node, path) = top["admin"], let fields = r.mapping(node, path, allowed: ["address"]) {
            if let address = r.required(fields["address"], in: path, key: "address", { r.address($0, $1) }) {
                admin = AdminConfig(address: address)
            }
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
            var directories: [String: Int] = [:]
            for (index, (node, path)) in items.enumerated() {
                let (name, sink) = readSink(node, path, r)
                guard let name else { continue }
                // A sink with errors still counts as declared, so routes naming it get no second error.
                declaredSinks.append(name)
                if !names.insert(name).inserted {
                    r.error(path + ".name", "duplicate sink name \"\(name)\"")
                }
                if let sink { sinks.append(sink) }
                if case .file(let file)? = sink?.kind {
                    let directory = URL(fileURLWithPath: file.directory).standardizedFileURL.path
                    if let other = directories[directory] {
                        r.error(path + ".file.directory", "\"\(file.directory)\" is already the directory of sinks[\(other)]; each file sink needs its own")
                    } else {
                        directories[directory] = index
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
            var destinations: [String: SinkDestinations] = [:]
            for sink in sinks { destinations[sink.name] = SinkDestinations(sink.kind) }
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
        // Events and bytes are counted by the HTTP handlers; a gRPC call would never be charged.
        for (index, route) in zip(routeIndices, routes) where route.match.grpc != nil {
            for (i, name) in route.policies.enumerated() {
                guard let policy = policies.first(where: { $0.name == name }), case .rateLimit(let limit) = policy.kind, limit.unit != .requests
                else { continue }
                r.error("routes[\(index)].policies[\(i)]", "\"\(name)\" counts \(limit.unit.rawValue): only for HTTP routes (gRPC routes count requests)")
            }
        }
        if grpc == nil, top["grpc"] == nil, let index = routes.firstIndex(where: { $0.match.grpc != nil }) {
            r.error("routes[\(routeIndices[index])].match.grpc_service", "a gRPC route needs a gRPC listener: add grpc: { address: host:port }")
        }

        return SluiceConfiguration(
            listeners: listeners, admin: admin, grpc: grpc, policies: policies, upstreams: upstreams, sinks: sinks, routes: routes,
            shutdown: shutdown, process: process)
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
            "max_concurrent_streams", "tls",
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

    private static func readSink(_ node: Node, _ path: String, _ r: ConfigReader) -> (name: String?, sink: SinkConfig?) {
        guard let fields = r.mapping(node, path, allowed: ["name", "max_in_flight_bytes", "max_in_flight_events", "kafka", "file", "kinesis", "zerobus"]) else {
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
        let kinds = ["kafka", "file", "kinesis", "zerobus"].filter { fields[$0] != nil }
        guard kinds.count == 1 else {
            r.error(path, kinds.isEmpty ? "a sink needs exactly one of: kafka, file, kinesis, zerobus" : "a sink has exactly one kind; found \(kinds.joined(separator: " and "))")
            return (name, nil)
        }
        let kind: SinkConfig.Kind?
        if let (n, p) = fields["kafka"] {
            kind = readKafka(n, p, r).map { .kafka($0) }
        } else if let (n, p) = fields["file"] {
            kind = readFile(n, p, r).map { .file($0) }
        } else if let (n, p) = fields["kinesis"] {
            kind = readKinesis(n, p, r).map { .kinesis($0) }
        } else if let (n, p) = fields["zerobus"] {
            kind = readZerobus(n, p, r).map { .zerobus($0) }
        } else {
            kind = nil
        }
        guard let name, let kind, limitsOK else { return (name, nil) }
        return (name, SinkConfig(name: name, kind: kind, maxInFlightBytes: maxBytes, maxInFlightEvents: maxEvents))
    }

    private static func readKafka(_ node: Node, _ path: String, _ r: ConfigReader) -> KafkaSinkConfig? {
        guard let fields = r.mapping(node, path, allowed: ["bootstrap_servers", "properties", "delivery_timeout"]) else { return nil }
        var ok = true
        let servers = r.required(fields["bootstrap_servers"], in: path, key: "bootstrap_servers") { r.stringList($0, $1) }
        if let servers, servers.isEmpty, case .sequence(let raw)? = fields["bootstrap_servers"]?.0, raw.isEmpty {
            r.error(path + ".bootstrap_servers", "at least one broker address is required")
            ok = false
        }
        var properties: [KafkaProperty] = []
        if let (n, p) = fields["properties"] {
            for entry in r.freeMapping(n, p) {
                guard let value = r.string(entry.value, entry.path) else {
                    ok = false
                    continue
                }
                if let key = KafkaSinkConfig.reservedProperties[entry.key] {
                    r.error(entry.path, "set this with \(path).\(key), not as a librdkafka property")
                    ok = false
                    continue
                }
                let property = KafkaProperty(entry.key, value)
                if let problem = KafkaSinkConfig.check(property) {
                    r.error(entry.path, "librdkafka rejects this property: \(problem)")
                    ok = false
                    continue
                }
                properties.append(property)
            }
        }
        var timeout = Duration.seconds(30)
        if let (n, p) = fields["delivery_timeout"] {
            if let value = r.duration(n, p, min: .milliseconds(1)) { timeout = value } else { ok = false }
        }
        // librdkafka refuses at start-up a linger as long as the delivery timeout; say so now.
        for property in properties where property.name == "linger.ms" || property.name == "queue.buffering.max.ms" {
            if let linger = Double(property.value), Duration.milliseconds(Int64(linger)) >= timeout {
                r.error("\(path).properties.\(property.name)", "must be shorter than \(path).delivery_timeout (\(DurationText.format(timeout)))")
                ok = false
            }
        }
        guard ok, let servers, !servers.isEmpty else { return nil }
        return KafkaSinkConfig(bootstrapServers: servers, properties: properties, deliveryTimeout: timeout)
    }

    private static func readKinesis(_ node: Node, _ path: String, _ r: ConfigReader) -> KinesisSinkConfig? {
        let allowed = [
            "region", "stream", "endpoint", "credentials", "partition_key", "max_batch_records", "max_batch_bytes", "linger",
            "max_concurrent_requests", "max_connections", "request_timeout", "delivery_timeout",
        ]
        guard let fields = r.mapping(node, path, allowed: allowed) else { return nil }
        var ok = true
        let region = r.required(fields["region"], in: path, key: "region") { r.nonEmptyString($0, $1) }
        if let region, !region.allSatisfy({ $0.isLowercase || $0.isNumber || $0 == "-" }) {
            r.error(path + ".region", "\"\(region)\" is not an AWS region name (like us-east-1)")
            ok = false
        }
        var config = KinesisSinkConfig(region: region ?? "")
        if let (n, p) = fields["stream"], let text = r.nonEmptyString(n, p) {
            switch ParameterTemplate.parse(text) {
            case .success(let template):
                if let fixed = template.fixedValue, let problem = KinesisSinkConfig.streamProblem(fixed) {
                    r.error(p, problem)
                    ok = false
                }
                config.stream = text
            case .failure(let error):
                r.error(p, error.message)
                ok = false
            }
        }
        if let (n, p) = fields["endpoint"], let text = r.nonEmptyString(n, p) {
            if let url = URL(string: text), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host?.isEmpty == false,
                url.query == nil, url.user == nil
            {
                config.endpoint = url
            } else {
                r.error(p, "expected an http:// or https:// URL without query or credentials, like https://kinesis.us-east-1.amazonaws.com")
                ok = false
            }
        }
        if let (n, p) = fields["credentials"] {
            if let credentials = readAWSCredentials(n, p, r) { config.credentials = credentials } else { ok = false }
        }
        if let (n, p) = fields["partition_key"], let text = r.nonEmptyString(n, p) {
            if text == "random" {
                config.partitionKey = .random
            } else {
                switch ParameterTemplate.parse(text) {
                case .success(let template) where template.fixedValue != nil:
                    if text.count > KinesisSinkConfig.maxPartitionKeyLength {
                        r.error(p, "a partition key has 1 to \(KinesisSinkConfig.maxPartitionKeyLength) characters")
                        ok = false
                    } else {
                        config.partitionKey = .fixed(text)
                    }
                case .success:
                    config.partitionKey = .template(text)
                case .failure(let error):
                    r.error(p, error.message)
                    ok = false
                }
            }
        }
        if let (n, p) = fields["max_batch_records"] {
            if let v = r.integer(n, p, range: 1...KinesisSinkConfig.maxRecordsPerCall) { config.maxBatchRecords = v } else { ok = false }
        }
        if let (n, p) = fields["max_batch_bytes"] {
            if let v = r.size(n, p, min: 1024) {
                if v > KinesisSinkConfig.maxBytesPerCall {
                    r.error(p, "PutRecords takes at most 5MiB per call")
                    ok = false
                } else {
                    config.maxBatchBytes = v
                }
            } else {
                ok = false
            }
        }
        if let (n, p) = fields["linger"] {
            if let v = r.duration(n, p), v <= .seconds(10) { config.linger = v } else {
                if r.duration(n, p) != nil { r.error(p, "at most 10s") }
                ok = false
            }
        }
        if let (n, p) = fields["max_concurrent_requests"] {
            if let v = r.integer(n, p, range: 1...256) { config.maxConcurrentRequests = v } else { ok = false }
        }
        if let (n, p) = fields["max_connections"] {
            if let v = r.integer(n, p, range: 1...1024) { config.maxConnections = v } else { ok = false }
        }
        if let (n, p) = fields["request_timeout"] {
            if let v = r.duration(n, p, min: .milliseconds(100)) { config.requestTimeout = v } else { ok = false }
        }
        if let (n, p) = fields["delivery_timeout"] {
            if let v = r.duration(n, p, min: .seconds(1)) { config.deliveryTimeout = v } else { ok = false }
        }
        guard ok, region != nil else { return nil }
        return config
    }

    private static func readZerobus(_ node: Node, _ path: String, _ r: ConfigReader) -> ZerobusSinkConfig? {
        let allowed = [
            "endpoint", "workspace_url", "workspace_id", "table", "record_type", "descriptor_set", "message", "client_id", "client_secret",
            "max_in_flight_records", "batch", "max_record_bytes", "ca_file", "open_timeout", "ack_timeout", "delivery_timeout",
        ]
        guard let fields = r.mapping(node, path, allowed: allowed) else { return nil }
        var ok = true
        func url(_ key: String, example: String) -> URL? {
            r.required(fields[key], in: path, key: key) { n, p in
                guard let text = r.nonEmptyString(n, p) else { return nil }
                guard let url = URL(string: text), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host?.isEmpty == false,
                    url.query == nil, url.user == nil
                else {
                    r.error(p, "expected an http:// or https:// URL without query or credentials, like \(example)")
                    return nil
                }
                return url
            }
        }
        let endpoint = url("endpoint", example: "https://1234567890123456.zerobus.us-west-2.cloud.databricks.com")
        let workspace = url("workspace_url", example: "https://dbc-a1b2c3d4-e5f6.cloud.databricks.com")
        if let endpoint, endpoint.path.count > 1 {
            r.error(path + ".endpoint", "a gRPC endpoint has no path: use scheme://host[:port]")
            ok = false
        }
        let clientID = r.required(fields["client_id"], in: path, key: "client_id") { r.nonEmptyString($0, $1) }
        var secret: SecretSource?
        if let (n, p) = fields["client_secret"] {
            secret = r.secretSource(n, p)
            if secret == nil { ok = false }
        } else {
            r.error(path + ".client_secret", "required: { env: VARIABLE } or { file: PATH }")
            ok = false
        }
        guard let endpoint, let workspace, let clientID, let secret else { return nil }
        var config = ZerobusSinkConfig(endpoint: endpoint, workspaceURL: workspace, clientID: clientID, clientSecret: secret)
        if let (n, p) = fields["workspace_id"], let text = r.nonEmptyString(n, p) { config.workspaceID = text }
        if let (n, p) = fields["table"], let text = r.nonEmptyString(n, p) {
            switch ParameterTemplate.parse(text) {
            case .success(let template):
                if let fixed = template.fixedValue, let problem = ZerobusSinkConfig.tableProblem(fixed) {
                    r.error(p, problem)
                    ok = false
                }
                config.table = text
            case .failure(let error):
                r.error(p, error.message)
                ok = false
            }
        }
        let recordType = fields["record_type"].flatMap { r.string($0.0, $0.1) } ?? "json"
        switch recordType {
        case "json":
            for key in ["descriptor_set", "message"] where fields[key] != nil {
                r.error(path + "." + key, "only for record_type: proto")
                ok = false
            }
        case "proto":
            let file = r.required(fields["descriptor_set"], in: path, key: "descriptor_set") { r.nonEmptyString($0, $1) }
            let message = r.required(fields["message"], in: path, key: "message") { r.nonEmptyString($0, $1) }
            if let file, let message {
                switch ZerobusSinkConfig.ProtoSchema.load(file: file, message: message) {
                case .success(let schema): config.recordType = .proto(schema)
                case .failure(let error):
                    r.error(path + ".descriptor_set", error.description)
                    ok = false
                }
            } else {
                ok = false
            }
        default:
            r.error(path + ".record_type", "expected json or proto, got \"\(recordType)\"")
            ok = false
        }
        if let (n, p) = fields["max_in_flight_records"] {
            if let v = r.integer(n, p, range: 1...1_000_000) { config.maxInFlightRecords = v } else { ok = false }
        }
        if let (n, p) = fields["batch"], let batch = r.mapping(n, p, allowed: ["max_records", "max_bytes"]) {
            if let (bn, bp) = batch["max_records"] {
                if let v = r.integer(bn, bp, range: 1...10_000) { config.maxBatchRecords = v } else { ok = false }
            }
            if let (bn, bp) = batch["max_bytes"] {
                if let v = r.size(bn, bp, min: 1024) { config.maxBatchBytes = v } else { ok = false }
            }
        } else if fields["batch"] != nil {
            ok = false
        }
        if let (n, p) = fields["max_record_bytes"] {
            if let v = r.size(n, p, min: 1) {
                if v > ZerobusSinkConfig.defaultMaxRecordBytes {
                    r.error(p, "a record travels in one gRPC message: at most \(ZerobusSinkConfig.defaultMaxRecordBytes) bytes")
                    ok = false
                } else {
                    config.maxRecordBytes = v
                }
            } else {
                ok = false
            }
        }
        if config.maxBatchBytes > ZerobusSinkConfig.defaultMaxRecordBytes {
            r.error(path + ".batch.max_bytes", "a batch is one gRPC message: at most \(ZerobusSinkConfig.defaultMaxRecordBytes) bytes")
            ok = false
        }
        if let (n, p) = fields["ca_file"] {
            if endpoint.scheme != "https" {
                r.error(p, "only for an https:// endpoint")
                ok = false
            } else if let file = r.readableFile(n, p) {
                config.caFile = file
            } else {
                ok = false
            }
        }
        if let (n, p) = fields["open_timeout"] {
            if let v = r.duration(n, p, min: .milliseconds(100)) { config.openTimeout = v } else { ok = false }
        }
        if let (n, p) = fields["ack_timeout"] {
            if let v = r.duration(n, p, min: .milliseconds(100)) { config.ackTimeout = v } else { ok = false }
        }
        if let (n, p) = fields["delivery_timeout"] {
            if let v = r.duration(n, p, min: .seconds(1)) { config.deliveryTimeout = v } else { ok = false }
        }
        return ok ? config : nil
    }

    /// `credentials:` of an AWS sink: static keys (secret from an environment variable or a
    /// file), a shared-credentials profile, or web identity. Secrets are never accepted inline.
    private static func readAWSCredentials(_ node: Node, _ path: String, _ r: ConfigReader) -> KinesisSinkConfig.CredentialsConfig? {
        let allowed = [
            "access_key_id", "access_key_id_env", "secret_access_key_env", "secret_access_key_file", "session_token_env",
            "session_token_file", "profile", "file", "web_identity", "secret_access_key", "session_token",
        ]
        guard let fields = r.mapping(node, path, allowed: allowed) else { return nil }
        var ok = true
        for inline in ["secret_access_key", "session_token"] where fields[inline] != nil {
            r.error(path + "." + inline, "secrets are not accepted inline: use \(inline)_env (an environment variable) or \(inline)_file")
            ok = false
        }
        func source(_ literal: String?, env: String, file: String) -> KinesisSinkConfig.SecretSource? {
            let options = [literal, env, file].compactMap { $0 }.filter { fields[$0] != nil }
            if options.count > 1 {
                r.error(path, "set only one of \(options.joined(separator: ", "))")
                ok = false
                return nil
            }
            if let literal, let (n, p) = fields[literal], let value = r.nonEmptyString(n, p) { return .literal(value) }
            if let (n, p) = fields[env], let value = r.nonEmptyString(n, p) { return .environment(value) }
            if let (n, p) = fields[file], let value = r.nonEmptyString(n, p) { return .file(value) }
            return nil
        }
        let staticKeys = ["access_key_id", "access_key_id_env", "secret_access_key_env", "secret_access_key_file", "session_token_env", "session_token_file"]
        let families = [
            staticKeys.contains { fields[$0] != nil } ? "static keys" : nil, fields["profile"] != nil ? "profile" : nil,
            fields["web_identity"] != nil ? "web_identity" : nil,
        ].compactMap { $0 }
        guard families.count <= 1 else {
            r.error(path, "choose one credentials source; found \(families.joined(separator: " and "))")
            return nil
        }
        if let (n, p) = fields["web_identity"] {
            guard let wi = r.mapping(n, p, allowed: ["role_arn", "token_file", "session_name"]) else { return nil }
            let role = r.required(wi["role_arn"], in: p, key: "role_arn") { r.nonEmptyString($0, $1) }
            let token = r.required(wi["token_file"], in: p, key: "token_file") { r.nonEmptyString($0, $1) }
            let session = wi["session_name"].flatMap { r.nonEmptyString($0.0, $0.1) }
            guard ok, let role, let token else { return nil }
            return .webIdentity(roleARN: role, tokenFile: token, sessionName: session)
        }
        if let (n, p) = fields["profile"] {
            let name = r.nonEmptyString(n, p)
            let file = fields["file"].flatMap { r.nonEmptyString($0.0, $0.1) }
            guard ok, let name else { return nil }
            return .profile(name: name, file: file)
        }
        if let (_, p) = fields["file"] {
            r.error(p, "file goes with profile")
            ok = false
        }
        let id = source("access_key_id", env: "access_key_id_env", file: "__none__")
        let secret = source(nil, env: "secret_access_key_env", file: "secret_access_key_file")
        let token = source(nil, env: "session_token_env", file: "session_token_file")
        if families.isEmpty {
            return ok ? .defaultChain : nil
        }
        if id == nil { r.error(path + ".access_key_id", "required with static keys (or access_key_id_env)"); ok = false }
        if secret == nil, fields["secret_access_key"] == nil {
            r.error(path + ".secret_access_key_env", "required with static keys (or secret_access_key_file)")
            ok = false
        }
        guard ok, let id, let secret else { return nil }
        return .static(accessKeyID: id, secretAccessKey: secret, sessionToken: token)
    }

    private static func readFile(_ node: Node, _ path: String, _ r: ConfigReader) -> FileSinkConfig? {
        guard let fields = r.mapping(node, path, allowed: ["directory", "segment_bytes", "fsync"]) else { return nil }
        guard let directory = r.required(fields["directory"], in: path, key: "directory", { r.nonEmptyString($0, $1) }) else { return nil }
        var config = FileSinkConfig(directory: directory)
        if let (n, p) = fields["segment_bytes"] {
            guard let value = r.size(n, p, min: 4096) else { return nil }
            config.segmentBytes = value
        }
        if let (n, p) = fields["fsync"], let text = r.string(n, p) {
            switch text {
            case "always": config.fsync = .always
            case "never": config.fsync = .never
            default:
                guard let interval = DurationText.parse(text), interval > .zero else {
                    r.error(p, "expected always, never, or an interval like 1s; got \"\(text)\"")
                    return nil
                }
                config.fsync = .interval(interval)
            }
        }
        return config
    }

    private static func readRoute(
        _ node: Node, _ path: String, sinkNames: [String], destinations: [String: SinkDestinations], policyNames: [String],
        upstreamNames: [String], _ r: ConfigReader
    ) -> RouteConfig? {
        guard let fields = r.mapping(node, path, allowed: ["name", "match", "policies", "ingest", "proxy"]) else { return nil }
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
        }
        if let (n, p) = fields["proxy"] {
            if match?.grpc != nil {
                r.error(p, "gRPC routes ingest; proxy routes match HTTP paths")
            } else {
                action = readProxy(n, p, match: match, upstreamNames: upstreamNames, r).map { .proxy($0) }
            }
        }
        guard let name, let match, let action, policiesOK else { return nil }
        return RouteConfig(name: name, match: match, policies: policies, action: action)
    }

    static let httpMethods: Set<String> = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

    private static func readMatch(_ node: Node, _ path: String, _ r: ConfigReader) -> RouteMatchConfig? {
        let allowed = ["path", "path_prefix", "methods", "host", "headers", "grpc_service", "grpc_method"]
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
        guard let pattern else { return nil }
        return RouteMatchConfig(path: pattern, methods: methods, host: host, headers: headers)
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
        _ node: Node, _ path: String, pathParameters: [String]?, sinkNames: [String], destinations: [String: SinkDestinations],
        _ r: ConfigReader
    ) -> IngestConfig? {
        let allowed = [
            "sink", "topic", "topics_allowed", "key", "ack", "headers_to_kafka", "max_body_bytes", "max_events",
            "max_event_bytes", "max_wait",
        ]
        guard let fields = r.mapping(node, path, allowed: allowed) else { return nil }
        var ok = true
        let sink = r.required(fields["sink"], in: path, key: "sink") { r.nonEmptyString($0, $1) }
        if let sink, !sinkNames.contains(sink) {
            r.error(path + ".sink", "unknown sink \"\(sink)\"" + ConfigReader.suggestion(for: sink, among: sinkNames).replacingOccurrences(of: "expected one of", with: "defined sinks are"))
            ok = false
        }
        // The destination rules of the sink's kind (Kafka topic, Kinesis stream); unknown when
        // the sink itself has errors, and then not checked.
        let destination = sink.flatMap { destinations[$0] }
        var topic: ParameterTemplate?
        var topicText: (text: String, path: String, origin: String)?
        if let (n, p) = fields["topic"] {
            if let text = r.nonEmptyString(n, p) { topicText = (text, p, "") }
        } else if let fallback = destination?.defaultTopic {
            topicText = (fallback, path + ".sink", "the stream of sink \"\(sink ?? "")\" (\(fallback)): ")
        } else if destination?.defaultTopic == nil, destination?.acceptsDefault == true {
            r.error(path + ".topic", "required: the sink sets no default (a Kinesis stream, a Zerobus table)")
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
                r.error(p, "sink \"\(sink ?? "")\" writes records without keys (Zerobus); remove key")
                ok = false
            }
        }
        var ack = AckMode.sink
        if let (n, p) = fields["ack"], let text = r.string(n, p) {
            if let mode = AckMode(rawValue: text) { ack = mode } else {
                r.error(p, "expected sink or accepted, got \"\(text)\"")
                ok = false
            }
        }
        var headersToKafka: [String] = []
        if let (n, p) = fields["headers_to_kafka"], let list = r.stringList(n, p) {
            headersToKafka = list
            if !list.isEmpty, let destination, !destination.carriesHeaders {
                r.error(p, "sink \"\(sink ?? "")\" writes records without headers (Kinesis, Zerobus); remove headers_to_kafka")
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
        guard ok, sink != nil, topic != nil else { return nil }
        return config
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
            guard let tokens = JSONPointer.parse(pointer) else {
                r.error(path, "invalid JSON pointer \"\(pointer)\": it must start with \"/\", like json:/user/id")
                return nil
            }
            return .jsonPointer(tokens)
        }
        r.error(path, "expected header:NAME, query:NAME or json:/pointer; got \"\(text)\"")
        return nil
    }
}

/// RFC 6901 JSON Pointer parsing.
public enum JSONPointer {
    /// `/a/b~1c` -> ["a", "b/c"]; nil if malformed.
    public static func parse(_ text: String) -> [String]? {
        guard text.hasPrefix("/") else { return nil }
        var tokens: [String] = []
        for raw in text.dropFirst().split(separator: "/", omittingEmptySubsequences: false) {
            var token = ""
            var iterator = raw.makeIterator()
            while let c = iterator.next() {
                if c == "~" {
                    switch iterator.next() {
                    case "0": token.append("~")
                    case "1": token.append("/")
                    default: return nil
                    }
                } else {
                    token.append(c)
                }
            }
            tokens.append(token)
        }
        return tokens
    }
}

/// What a sink's kind accepts as a route's destination (`topic`), and its default.
struct SinkDestinations {
    var problem: (String) -> String?
    /// The destination for routes that set no `topic` (a Kinesis sink's `stream`).
    var defaultTopic: String?
    /// Whether this kind can have a default at all.
    var acceptsDefault: Bool
    /// Whether its records carry headers (`headers_to_kafka`).
    var carriesHeaders: Bool
    /// Whether its records have keys (`key`).
    var carriesKeys: Bool
    /// A key template for events without one (a Kinesis sink's `partition_key` with parameters).
    var defaultKey: String?

    init(_ kind: SinkConfig.Kind) {
        switch kind {
        case .kafka, .file:
            self.carriesKeys = true
            self.problem = TopicName.problem
            self.defaultTopic = nil
            self.acceptsDefault = false
            self.carriesHeaders = true
            self.defaultKey = nil
        case .zerobus(let zerobus):
            self.problem = ZerobusSinkConfig.tableProblem
            self.defaultTopic = zerobus.table
            self.acceptsDefault = true
            self.carriesHeaders = false
            self.carriesKeys = false
            self.defaultKey = nil
        case .kinesis(let kinesis):
            self.carriesKeys = true
            self.problem = KinesisSinkConfig.streamProblem
            self.defaultTopic = kinesis.stream
            self.acceptsDefault = true
            self.carriesHeaders = false
            if case .template(let text) = kinesis.partitionKey { self.defaultKey = text } else { self.defaultKey = nil }
        }
    }
}
