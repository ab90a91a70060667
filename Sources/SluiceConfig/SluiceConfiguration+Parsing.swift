import FileSink
import Foundation
import KafkaSink
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

    static let topLevelKeys = ["listeners", "admin", "grpc", "sinks", "routes", "shutdown"]

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
        if let (node, path) = top["grpc"], let fields = r.mapping(node, path, allowed: ["address"]) {
            if let address = r.required(fields["address"], in: path, key: "address", { r.address($0, $1) }) {
                grpc = GRPCListenerConfig(address: address)
            }
        }

        var sinks: [SinkConfig] = []
        var declaredSinks: [String] = []
        if let items = r.required(top["sinks"], in: "", key: "sinks", { r.sequence($0, $1) }) {
            if items.isEmpty { r.error("sinks", "at least one sink is required") }
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

        var routes: [RouteConfig] = []
        var routeIndices: [Int] = []
        if let items = r.required(top["routes"], in: "", key: "routes", { r.sequence($0, $1) }) {
            if items.isEmpty { r.error("routes", "at least one route is required") }
            var names: Set<String> = []
            let sinkNames = declaredSinks
            for (index, (node, path)) in items.enumerated() {
                guard let route = readRoute(node, path, sinkNames: sinkNames, r) else { continue }
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
        if grpc == nil, top["grpc"] == nil, let index = routes.firstIndex(where: { $0.match.grpc != nil }) {
            r.error("routes[\(routeIndices[index])].match.grpc_service", "a gRPC route needs a gRPC listener: add grpc: { address: host:port }")
        }

        return SluiceConfiguration(listeners: listeners, admin: admin, grpc: grpc, sinks: sinks, routes: routes, shutdown: shutdown)
    }

    private static func readName(_ fields: [String: (Node, String)], _ path: String, _ r: ConfigReader) -> String? {
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
            "max_concurrent_streams",
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
        if let (n, p) = fields["idle_timeout"] {
            if let value = r.duration(n, p, min: .milliseconds(1)) { listener.limits.idleTimeout = value } else { ok = false }
        }
        if let (n, p) = fields["body_read_timeout"] {
            if let value = r.duration(n, p, min: .milliseconds(1)) { listener.limits.bodyReadTimeout = value } else { ok = false }
        }
        if let (n, p) = fields["max_header_bytes"] {
            if let value = r.size(n, p, min: 1024) { listener.limits.maxHeaderBytes = value } else { ok = false }
        }
        if let (n, p) = fields["max_connections"] {
            if let value = r.integer(n, p, range: 1...1_000_000) { listener.limits.maxConnections = value } else { ok = false }
        }
        if let (n, p) = fields["max_concurrent_streams"] {
            if let value = r.integer(n, p, range: 1...10_000) { listener.limits.maxConcurrentStreams = value } else { ok = false }
        }
        guard name != nil, address != nil, ok else { return nil }
        return listener
    }

    private static func readSink(_ node: Node, _ path: String, _ r: ConfigReader) -> (name: String?, sink: SinkConfig?) {
        guard let fields = r.mapping(node, path, allowed: ["name", "max_in_flight_bytes", "max_in_flight_events", "kafka", "file"]) else {
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
        let kinds = ["kafka", "file"].filter { fields[$0] != nil }
        guard kinds.count == 1 else {
            r.error(path, kinds.isEmpty ? "a sink needs exactly one of: kafka, file" : "a sink has exactly one kind; found \(kinds.joined(separator: " and "))")
            return (name, nil)
        }
        let kind: SinkConfig.Kind?
        if let (n, p) = fields["kafka"] {
            kind = readKafka(n, p, r).map { .kafka($0) }
        } else if let (n, p) = fields["file"] {
            kind = readFile(n, p, r).map { .file($0) }
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

    private static func readRoute(_ node: Node, _ path: String, sinkNames: [String], _ r: ConfigReader) -> RouteConfig? {
        guard let fields = r.mapping(node, path, allowed: ["name", "match", "ingest"]) else { return nil }
        let name = readName(fields, path, r)
        let match = r.required(fields["match"], in: path, key: "match") { readMatch($0, $1, r) }
        let actions = ["ingest"].filter { fields[$0] != nil }
        guard actions.count == 1 else {
            r.error(path, "a route needs exactly one action: ingest")
            return nil
        }
        var action: RouteConfig.Action?
        if let (n, p) = fields["ingest"] {
            // A gRPC route's topic may use {topic}: the PublishRequest's topic field.
            let parameters = match?.grpc != nil ? ["topic"] : match?.path.parameters
            action = readIngest(n, p, pathParameters: parameters, sinkNames: sinkNames, r).map { .ingest($0) }
            if match?.grpc != nil, case .ingest(let ingest)? = action, ingest.ack != .sink {
                r.error(p + ".ack", "gRPC routes acknowledge durable events only (ack: sink)")
                action = nil
            }
        }
        guard let name, let match, let action else { return nil }
        return RouteConfig(name: name, match: match, action: action)
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
        _ node: Node, _ path: String, pathParameters: [String]?, sinkNames: [String], _ r: ConfigReader
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
        var topic: ParameterTemplate?
        if let text = r.required(fields["topic"], in: path, key: "topic", { r.nonEmptyString($0, $1) }) {
            switch ParameterTemplate.parse(text) {
            case .success(let template):
                let known = pathParameters ?? []
                for parameter in template.parameters where pathParameters != nil && !known.contains(parameter) {
                    r.error(path + ".topic", "\"{\(parameter)}\" is not a parameter of the route's match.path" + (known.isEmpty ? "" : " (parameters: \(known.joined(separator: ", ")))"))
                    ok = false
                }
                if let fixed = template.fixedValue, let problem = TopicName.problem(fixed) {
                    r.error(path + ".topic", problem)
                    ok = false
                }
                topic = template
            case .failure(let error):
                r.error(path + ".topic", error.message)
            }
        }
        var topicsAllowed: Set<String>?
        if let (n, p) = fields["topics_allowed"], let list = r.stringList(n, p) {
            for (index, name) in list.enumerated() {
                if let problem = TopicName.problem(name) { r.error("\(p)[\(index)]", problem); ok = false }
            }
            topicsAllowed = Set(list)
        }
        var key: KeySource?
        if let (n, p) = fields["key"], let text = r.nonEmptyString(n, p) {
            key = parseKeySource(text, p, r)
            if key == nil { ok = false }
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
        }
        var config = IngestConfig(
            sink: sink ?? "", topic: topic ?? ParameterTemplate(parts: []), topicsAllowed: topicsAllowed, key: key, ack: ack,
            headersToKafka: headersToKafka, maxBodyBytes: IngestConfig.defaultMaxBodyBytes,
            maxEvents: IngestConfig.defaultMaxEvents, maxEventBytes: IngestConfig.defaultMaxEventBytes,
            maxWait: IngestConfig.defaultMaxWait
        )
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

/// Kafka topic name rules.
public enum TopicName {
    /// Why `name` is not a valid Kafka topic name, or nil.
    public static func problem(_ name: String) -> String? {
        if name.isEmpty { return "topic name must not be empty" }
        if name.utf8.count > 249 { return "topic name is longer than 249 characters" }
        if name == "." || name == ".." { return "topic name cannot be \".\" or \"..\"" }
        let valid = name.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2E || b == 0x5F || b == 0x2D
        }
        return valid ? nil : "topic name \"\(name)\" may contain only ASCII letters, digits, '.', '_' and '-'"
    }
}
