import SluiceConfig
import SluiceConfigReader
import SluiceCore
import SluicePolicy
import SluiceSchema

/// The OpenAPI 3.1 document of a configuration's HTTP routes (`sluice catalog --format openapi`):
/// each ingest route's path and methods, the bodies its API takes (with the route's event schema
/// when it declares one, and its limits as constraints), every status it can answer with the
/// JSON shape of that answer and the error codes behind it, and the auth its policies ask for.
/// Proxy routes are documented as pass-through. gRPC routes are not HTTP paths; the AsyncAPI and
/// Backstage outputs name them.
public enum OpenAPIDocument {
    public static func make(_ config: SluiceConfiguration) -> JSONValue {
        var builder = Builder(config: config)
        for route in config.routes where route.match.grpc == nil {
            builder.add(route)
        }
        return builder.document()
    }

    /// OpenAPI's name for a status code's meaning (the `description` fallback).
    static let reasons: [Int: String] = [
        200: "OK", 202: "Accepted", 207: "Multi-Status", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
        404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable", 409: "Conflict", 413: "Content Too Large",
        415: "Unsupported Media Type", 422: "Unprocessable Content", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
        500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
    ]
}

/// A refusal a route can answer with: its status and why (a catalogue code, or a backend's).
struct Refusal {
    var status: Int
    var reason: String

    init(_ code: ErrorCode) {
        self.status = code.httpStatus
        self.reason = code.code
    }

    init(status: Int, reason: String) {
        self.status = status
        self.reason = reason
    }
}

/// The refusals every configuration shares and those each route's settings add: one home for
/// "which codes can this route answer with", used by the OpenAPI and AsyncAPI outputs.
enum RouteRefusals {
    /// What any HTTP request may be refused with before a route handles it.
    static let listener: [ErrorCode] = [.malformedRequest, .headersTooLarge, .invalidHeader, .bodyReadFailed]

    /// The refusals of a route's policies (authentication, authorization, CORS, rate limits).
    static func policies(_ route: RouteConfig, _ config: SluiceConfiguration) -> [ErrorCode] {
        var codes: [ErrorCode] = []
        for policy in route.policies.compactMap({ name in config.policies.first { $0.name == name } }) {
            switch policy.kind {
            case .apiKey, .jwt, .basicAuth: codes.append(.unauthenticated)
            case .authz: codes.append(.forbidden)
            case .cors: codes.append(.corsRefused)
            case .rateLimit(let limit):
                codes.append(.rateLimited)
                if limit.global?.failOpen == false { codes.append(.rateLimitUnavailable) }
            }
        }
        return codes
    }

    /// What an ingest route of Sluice's own API or CloudEvents may refuse a request or an event with.
    static func ingest(_ route: RouteConfig, _ ingest: IngestConfig, _ config: SluiceConfiguration) -> [Refusal] {
        var codes: [ErrorCode] = Self.listener + Self.policies(route, config)
        codes += [.bodyTooLarge, .tooManyEvents, .eventTooLarge, .noEvents, .invalidTopic, .unknownTopic, .invalidJSON]
        if case .jsonPointer? = ingest.key { codes += [.invalidKey, .jsonRequired] }
        if ingest.api == .cloudevents { codes += [.invalidCloudEvent, .unsupportedMediaType] }
        if ingest.schema != nil { codes.append(.schemaViolation) }
        if ingest.schema?.registry != nil { codes += [.schemaRegistryUnavailable, .schemaNotRegistered] }
        if let idempotency = route.idempotency {
            codes += [.invalidIdempotencyKey, .idempotencyKeyInUse, .idempotencyKeyReused, .idempotencyUnavailable]
            if idempotency.required { codes.append(.idempotencyKeyMissing) }
        }
        codes += [.sinkSaturated, .sinkShuttingDown, .shuttingDown]
        var refusals = codes.map(Refusal.init)
        switch ingest.ack {
        case .sink:
            refusals += [Refusal(.deliveryUnconfirmed), Refusal(.notAttempted)]
            // What a backend can refuse events with (the sink's own codes, e.g. kafka_…).
            refusals += [
                Refusal(status: 403, reason: "the backend refused authorization"),
                Refusal(status: 404, reason: "the backend has no such destination"),
                Refusal(status: 413, reason: "the backend refused the event's size"),
                Refusal(status: 500, reason: "the sink failed to write"),
                Refusal(status: 502, reason: "the backend refused the events"),
                Refusal(status: 503, reason: "the backend is unreachable or timed out (retryable)"),
            ]
        case .spooled:
            refusals += [Refusal(.spoolFull), Refusal(.spoolWriteFailed)]
        case .accepted:
            break
        }
        return refusals
    }
}

extension OpenAPIDocument {
    struct Builder {
        let config: SluiceConfiguration
        var paths = JSONObject()
        var schemas = JSONObject()
        var securitySchemes = JSONObject()

        init(config: SluiceConfiguration) {
            self.config = config
            self.schemas["Error"] = Self.errorSchema
            self.schemas["EventError"] = Self.eventErrorSchema
        }

        func document() -> JSONValue {
            var servers = self.config.catalog.servers.map { object([("url", string($0))]) }
            if servers.isEmpty {
                servers = self.config.listeners.map { listener in
                    let scheme = listener.tls == nil ? "http" : "https"
                    return object([("url", string("\(scheme)://\(listener.address)")), ("description", string("listener \(listener.name)"))])
                }
            }
            var components: [(String, JSONValue?)] = [("schemas", .object(self.schemas))]
            if self.securitySchemes.count > 0 { components.append(("securitySchemes", .object(self.securitySchemes))) }
            let description =
                self.config.catalog.description
                ?? "The HTTP routes of a Sluice gateway, generated by `sluice catalog` from its configuration."
            return object([
                ("openapi", string("3.1.0")),
                ("info", object([("title", string(self.config.catalog.title)), ("version", string(self.config.catalog.version)), ("description", string(description))])),
                ("servers", .array(servers)),
                ("paths", .object(self.paths)),
                ("components", object(components)),
            ])
        }

        mutating func add(_ route: RouteConfig) {
            switch route.action {
            case .ingest(let ingest):
                switch ingest.api {
                case .sluice, .cloudevents: self.addIngest(route, ingest)
                case .confluentV2: self.addConfluentV2(route, ingest)
                case .confluentV3: self.addConfluentV3(route, ingest)
                }
            case .proxy(let proxy): self.addProxy(route, proxy)
            }
        }

        /// Adds `operation` under `path` for each method, unless an earlier route already has
        /// that path and method (the router picks the first route that matches).
        mutating func put(_ path: String, methods: [String], operation: (String) -> JSONValue, parameters: [JSONValue]) {
            var item = self.paths[path]?.objectValueForCatalog ?? JSONObject()
            for method in methods {
                let key = method.lowercased()
                guard item[key] == nil else { continue }
                item[key] = operation(key)
            }
            if item["parameters"] == nil, !parameters.isEmpty { item["parameters"] = .array(parameters) }
            self.paths[path] = .object(item)
        }

        // MARK: Sluice's own API and CloudEvents

        mutating func addIngest(_ route: RouteConfig, _ ingest: IngestConfig) {
            guard let (path, pathParameters) = self.openAPIPath(route.match.path, topic: ingest) else { return }
            let methods = route.match.methods.isEmpty ? ["POST"] : route.match.methods
            var parameters = self.matchParameters(route)
            switch ingest.key {
            case .header(let name)?:
                parameters.append(Self.parameter(name, in: "header", description: "The key of every event of the request.", schema: object([("type", string("string"))])))
            case .query(let name)?:
                parameters.append(Self.parameter(name, in: "query", description: "The key of every event of the request.", schema: object([("type", string("string"))])))
            case .jsonPointer?, nil: break
            }
            for name in ingest.headersToKafka where !parameters.contains(where: { Self.names($0, name) }) {
                parameters.append(Self.parameter(name, in: "header", description: "Copied into each event's record headers.", schema: object([("type", string("string"))])))
            }
            if let idempotency = route.idempotency {
                parameters.append(
                    Self.parameter(
                        "Idempotency-Key", in: "header", required: idempotency.required,
                        description: "A retry with the same key and body is answered with the first answer, nothing sent again.",
                        schema: object([("type", string("string")), ("minLength", integer(1)), ("maxLength", integer(255))])))
            }
            if ingest.ack == .sink {
                parameters.append(
                    Self.parameter(
                        "Prefer", in: "header", description: "`return=minimal`: counts and the failed events only.",
                        schema: object([("type", string("string")), ("examples", strings(["return=minimal"]))])))
            }

            let eventSchema = self.eventSchema(route, ingest)
            let body = self.ingestBody(ingest, event: eventSchema)
            let success = ingest.ack == .sink ? 200 : 202
            self.schemas["IngestAnswer"] = Self.ingestAnswerSchema
            self.schemas["EventResult"] = Self.eventResultSchema
            let answer = reference("#/components/schemas/IngestAnswer")
            let refusals = RouteRefusals.ingest(route, ingest, self.config)
            var responses = JSONObject()
            let successDescription =
                ingest.ack == .sink
                ? "Every event settled by the sink: `accepted` and one result per event, in request order."
                : ingest.ack == .spooled ? "Every event fsynced to the route's spool." : "Every event in the sink's queue."
            responses["\(success)"] = Self.response(
                successDescription,
                schema: object([("allOf", .array([answer, object([("required", strings(["accepted"]))])]))]))
            for (status, reasons) in Self.grouped(refusals) {
                responses["\(status)"] = Self.response(
                    Self.refusalDescription(status, reasons),
                    schema: object([("anyOf", .array([reference("#/components/schemas/Error"), answer]))]),
                    retryAfter: status == 503 || status == 429)
            }
            let security = self.security(route)
            let summary = ingest.api == .cloudevents ? "Send CloudEvents" : "Send events"
            let description = self.ingestDescription(ingest)
            self.put(
                path, methods: methods,
                operation: { method in
                    object([
                        ("operationId", string(Self.operationID(route.name, method, methods.count))),
                        ("summary", string(summary)),
                        ("description", string(description)),
                        ("tags", strings([route.name])),
                        ("requestBody", body),
                        ("responses", .object(responses)),
                        ("security", security),
                    ])
                }, parameters: pathParameters + parameters)
        }

        func ingestDescription(_ ingest: IngestConfig) -> String {
            var lines: [String] = []
            let destination = ingest.topic.fixedValue.map { "topic `\($0)`" } ?? "topic `\(ingest.topic)` (from the request)"
            lines.append("Writes each event to \(destination) of sink `\(ingest.sinkNames.joined(separator: "`, `"))`.")
            switch ingest.ack {
            case .sink: lines.append("Answered once the sink has settled every event (durable, or failed with a reason).")
            case .accepted: lines.append("Answered once every event is in the sink's bounded queue; delivered afterwards.")
            case .spooled: lines.append("Answered once every event is fsynced to the route's write-ahead spool; forwarded afterwards.")
            }
            lines.append(
                "Limits: \(ingest.maxBodyBytes) bytes per body, \(ingest.maxEvents) events per request, \(ingest.maxEventBytes) bytes per event.")
            if let allowed = ingest.topicsAllowed { lines.append("Topics: \(allowed.sorted().joined(separator: ", ")).") }
            return lines.joined(separator: " ")
        }

        /// The schema of one event: the route's JSON Schema (or Avro's JSON shape), else any JSON value.
        mutating func eventSchema(_ route: RouteConfig, _ ingest: IngestConfig) -> JSONValue? {
            guard let schema = ingest.schema else { return nil }
            let name = Self.componentName(route.name) + "Event"
            let pointer = "#/components/schemas/\(name)"
            if schema.schema != nil, let document = schema.document {
                self.schemas[name] = embedded(document, at: pointer)
                return reference(pointer)
            }
            // Avro and Protobuf routes take JSON events and transcode them: documented as JSON
            // objects, the schema file named.
            self.schemas[name] = object([
                ("type", string("object")),
                ("description", string("A JSON event transcoded with the route's schema (\(schema.file)).")),
            ])
            return reference(pointer)
        }

        func ingestBody(_ ingest: IngestConfig, event: JSONValue?) -> JSONValue {
            var content = JSONObject()
            if ingest.api == .cloudevents {
                let cloudEvent = object([
                    ("type", string("object")),
                    ("required", strings(["specversion", "id", "source", "type"])),
                    (
                        "properties",
                        object([
                            ("specversion", object([("const", string("1.0"))])), ("id", object([("type", string("string")), ("minLength", integer(1))])),
                            ("source", object([("type", string("string")), ("minLength", integer(1))])),
                            ("type", object([("type", string("string")), ("minLength", integer(1))])),
                            ("data", event ?? object([])),
                        ])
                    ),
                ])
                content["application/cloudevents+json"] = object([("schema", cloudEvent)])
                content["application/cloudevents-batch+json"] = object([
                    ("schema", object([("type", string("array")), ("items", cloudEvent), ("minItems", integer(1)), ("maxItems", integer(ingest.maxEvents))]))
                ])
                content["application/json"] = object([("schema", event ?? object([]))])
                return object([
                    ("description", string("Structured or batched mode; or binary mode: the data as the body, with the ce-specversion, ce-id, ce-source and ce-type headers.")),
                    ("required", .bool(true)), ("content", .object(content)),
                ])
            }
            let one = event ?? object([])
            content["application/x-ndjson"] = object([("schema", object([("type", string("string"))]))])
            var many: [(String, JSONValue?)] = [("type", string("array")), ("minItems", integer(1)), ("maxItems", integer(ingest.maxEvents))]
            if event != nil { many.append(("items", one)) }
            content["application/json"] = object([("schema", event == nil ? object([]) : object([("anyOf", .array([one, object(many)]))]))])
            var takesRaw = event == nil
            if case .jsonPointer? = ingest.key { takesRaw = false }
            if takesRaw {
                content["application/octet-stream"] = object([("schema", object([("type", string("string")), ("format", string("binary"))]))])
            }
            var description = "NDJSON (`application/x-ndjson`): one JSON event per line, blank lines skipped. JSON: an array is one event per element, any other value one event."
            if takesRaw { description += " Any other content type: the whole body is one event." }
            return object([("description", string(description)), ("required", .bool(true)), ("content", .object(content))])
        }

        // MARK: Confluent REST Proxy

        mutating func addConfluentV2(_ route: RouteConfig, _ ingest: IngestConfig) {
            let prefix = Self.prefix(route.match.path)
            let topic = self.topicParameter(ingest, name: "topic")
            let records = object([
                ("type", string("object")),
                ("required", strings(["records"])),
                (
                    "properties",
                    object([
                        (
                            "records",
                            object([
                                ("type", string("array")), ("maxItems", integer(ingest.maxEvents)),
                                (
                                    "items",
                                    object([
                                        ("type", string("object")),
                                        ("properties", object([("key", object([])), ("value", object([])), ("partition", object([("type", string("integer")), ("minimum", integer(0))]))])),
                                    ])
                                ),
                            ])
                        )
                    ])
                ),
            ])
            let body = object([
                ("required", .bool(true)),
                (
                    "content",
                    object([
                        ("application/vnd.kafka.json.v2+json", object([("schema", records)])),
                        ("application/vnd.kafka.binary.v2+json", object([("schema", records)])),
                    ])
                ),
            ])
            self.schemas["ConfluentError"] = Self.confluentErrorSchema
            let produced = object([
                ("type", string("object")),
                ("required", strings(["offsets"])),
                ("properties", object([("offsets", object([("type", string("array")), ("items", object([("type", string("object"))]))]))])),
            ])
            let media = ConfluentMedia.v2
            var responses = JSONObject()
            responses["200"] = Self.response("One offset (or error) per record, in request order.", schema: produced, media: media)
            var statuses: [(Int, String)] = [
                (400, "not JSON"), (404, "a topic the route does not serve, or another path"), (406, "an Accept without application/vnd.kafka.v2+json"),
                (413, "over max_body_bytes or max_events"), (415, "an embedded format that needs Schema Registry, or another content type"),
                (422, "no records, a bad partition or bad base64"),
            ]
            statuses += self.policyStatuses(route)
            for (status, reason) in Self.mergedStatuses(statuses) {
                let shape = status == 403 ? object([("anyOf", .array([reference("#/components/schemas/ConfluentError"), produced]))]) : reference("#/components/schemas/ConfluentError")
                responses["\(status)"] = Self.response(reason, schema: shape, media: media)
            }
            let security = self.security(route)
            for (suffix, extra) in [("", [JSONValue]()), ("/partitions/{partition}", [Self.parameter("partition", in: "path", required: true, description: "The partition every record goes to.", schema: object([("type", string("integer")), ("minimum", integer(0))]))])] {
                self.put(
                    prefix + "/topics/{topic}" + suffix, methods: ["POST"],
                    operation: { _ in
                        object([
                            ("operationId", string("\(route.name)_produce\(suffix.isEmpty ? "" : "_partition")")),
                            ("summary", string("Produce records (Confluent REST Proxy v2)")),
                            ("tags", strings([route.name])),
                            ("requestBody", body),
                            ("responses", .object(responses)),
                            ("security", security),
                        ])
                    }, parameters: [topic] + extra)
            }
        }

        mutating func addConfluentV3(_ route: RouteConfig, _ ingest: IngestConfig) {
            let prefix = Self.prefix(route.match.path)
            let parameters = [
                Self.parameter("cluster_id", in: "path", required: true, description: "The route's cluster id.", schema: object([("type", string("string")), ("enum", strings([ingest.clusterID]))])),
                self.topicParameter(ingest, name: "topic"),
            ]
            let data = object([
                ("type", string("object")),
                ("properties", object([("type", object([("type", string("string"))])), ("data", object([]))])),
            ])
            let record = object([
                ("type", string("object")),
                (
                    "properties",
                    object([
                        ("partition_id", object([("type", string("integer")), ("minimum", integer(0))])),
                        ("headers", object([("type", string("array")), ("items", object([("type", string("object"))]))])),
                        ("key", data), ("value", data), ("timestamp", object([("type", string("string"))])),
                    ])
                ),
            ])
            self.schemas["ConfluentError"] = Self.confluentErrorSchema
            let report = object([("type", string("object")), ("required", strings(["error_code"]))])
            let media = "application/json"
            var common: [(Int, String)] = [(400, "not JSON, or a bad record"), (404, "another cluster, a topic the route does not serve"), (413, "over max_body_bytes or max_events"), (415, "not application/json")]
            common += self.policyStatuses(route)
            let security = self.security(route)
            func responses(success: Int, _ description: String) -> JSONValue {
                var result = JSONObject()
                result["\(success)"] = Self.response(description, schema: report, media: media)
                for (status, reason) in Self.mergedStatuses(common) {
                    result["\(status)"] = Self.response(reason, schema: object([("anyOf", .array([reference("#/components/schemas/ConfluentError"), report]))]), media: media)
                }
                return .object(result)
            }
            let base = prefix + "/v3/clusters/{cluster_id}/topics/{topic}/records"
            self.put(
                base, methods: ["POST"],
                operation: { _ in
                    object([
                        ("operationId", string("\(route.name)_produce_record")),
                        ("summary", string("Produce a record, or a stream of them (Confluent REST Proxy v3)")),
                        ("tags", strings([route.name])),
                        ("requestBody", object([("required", .bool(true)), ("content", object([("application/json", object([("schema", record)]))]))])),
                        ("responses", responses(success: 200, "The record's delivery report (one per record, concatenated, in streaming mode).")),
                        ("security", security),
                    ])
                }, parameters: parameters)
            let batch = object([
                ("type", string("object")),
                ("required", strings(["entries"])),
                ("properties", object([("entries", object([("type", string("array")), ("maxItems", integer(10)), ("items", record)]))])),
            ])
            self.put(
                base + ":batch", methods: ["POST"],
                operation: { _ in
                    object([
                        ("operationId", string("\(route.name)_produce_batch")),
                        ("summary", string("Produce up to 10 records (Confluent REST Proxy v3)")),
                        ("tags", strings([route.name])),
                        ("requestBody", object([("required", .bool(true)), ("content", object([("application/json", object([("schema", batch)]))]))])),
                        ("responses", responses(success: 207, "Successes and failures by entry id.")),
                        ("security", security),
                    ])
                }, parameters: parameters)
        }

        // MARK: Proxy routes

        mutating func addProxy(_ route: RouteConfig, _ proxy: ProxyConfig) {
            let isPrefix: Bool
            if case .prefix = route.match.path { isPrefix = true } else { isPrefix = false }
            guard let (path, pathParameters) = self.openAPIPath(route.match.path, topic: nil) else { return }
            let methods = route.match.methods.isEmpty ? ["GET", "POST", "PUT", "PATCH", "DELETE"] : route.match.methods
            var responses = JSONObject()
            responses["default"] = object([("description", string("The upstream's answer, passed through."))])
            var refusals = (RouteRefusals.listener + RouteRefusals.policies(route, self.config)).map(Refusal.init)
            refusals += [.bodyTooLarge, .invalidRequest, .noUpstream, .upstreamOverloaded, .noHealthyUpstream, .upstreamTimeout, .upstreamUnavailable].map(Refusal.init)
            for (status, reasons) in Self.grouped(refusals) {
                responses["\(status)"] = Self.response(
                    Self.refusalDescription(status, reasons) + " (or the upstream's own answer with this status)",
                    schema: nil, retryAfter: status == 429 || status == 503)
            }
            let upstreams = proxy.splits.map(\.upstream).joined(separator: ", ")
            let security = self.security(route)
            let parameters = self.matchParameters(route)
            self.put(
                path, methods: methods,
                operation: { method in
                    object([
                        ("operationId", string(Self.operationID(route.name, method, methods.count))),
                        ("summary", string("Proxied to \(upstreams)")),
                        (
                            "description",
                            string(
                                "Passed through to upstream \(upstreams)\(isPrefix ? ", with every path under this one" : ""); "
                                    + "bodies up to \(proxy.maxBodyBytes) bytes. Gateway refusals are JSON (`Error`).")
                        ),
                        ("tags", strings([route.name])),
                        ("requestBody", ["GET", "HEAD", "DELETE"].contains(method.uppercased()) ? nil : object([("content", object([("*/*", object([]))]))])),
                        ("responses", .object(responses)),
                        ("security", security),
                    ])
                }, parameters: pathParameters + parameters)
        }

        // MARK: Parts

        /// The OpenAPI path of a route's path pattern and its path parameters; a prefix is its
        /// own path (the operation's description says it covers what is under it).
        func openAPIPath(_ pattern: PathPattern, topic: IngestConfig?) -> (String, [JSONValue])? {
            switch pattern {
            case .exact(let path): return (path, [])
            case .prefix:
                let prefix = Self.prefix(pattern)
                return (prefix.isEmpty ? "/" : prefix, [])
            case .template(let segments):
                var path = ""
                var parameters: [JSONValue] = []
                for segment in segments {
                    switch segment {
                    case .literal(let text): path += "/" + text
                    case .parameter(let name):
                        path += "/{\(name)}"
                        if let topic, topic.topic.parameters.contains(name) {
                            parameters.append(self.topicParameter(topic, name: name))
                        } else {
                            parameters.append(Self.parameter(name, in: "path", required: true, description: nil, schema: object([("type", string("string")), ("minLength", integer(1))])))
                        }
                    }
                }
                return (path, parameters)
            }
        }

        /// A path parameter that names (part of) the topic: the allowed topics when the route
        /// lists them, else a Kafka topic name's characters.
        func topicParameter(_ ingest: IngestConfig, name: String) -> JSONValue {
            let whole = ingest.api.topicFromPath || ingest.topic.description == "{\(name)}"
            if whole, let allowed = ingest.topicsAllowed {
                return Self.parameter(name, in: "path", required: true, description: "The topic.", schema: object([("type", string("string")), ("enum", strings(allowed.sorted()))]))
            }
            return Self.parameter(
                name, in: "path", required: true, description: whole ? "The topic (not \".\" or \"..\")." : "Part of the topic `\(ingest.topic)`.",
                schema: object([("type", string("string")), ("pattern", string("^[A-Za-z0-9._-]+$")), ("minLength", integer(1)), ("maxLength", integer(249))]))
        }

        /// The headers and query parameters a route's match requires.
        func matchParameters(_ route: RouteConfig) -> [JSONValue] {
            var parameters: [JSONValue] = []
            for (name, value) in route.match.headers where !["content-type", "accept", "authorization"].contains(name.lowercased()) {
                parameters.append(Self.parameter(name, in: "header", required: true, description: "The route matches only this value.", schema: object([("type", string("string")), ("enum", strings([value]))])))
            }
            for (name, value) in route.match.query {
                parameters.append(
                    Self.parameter(
                        name, in: "query", required: true, description: "The route matches only with this parameter.",
                        schema: value.map { object([("type", string("string")), ("enum", strings([$0]))]) } ?? object([("type", string("string"))])))
            }
            return parameters
        }

        /// The route's authentication policies, all of which a request must pass.
        mutating func security(_ route: RouteConfig) -> JSONValue? {
            var requirement = JSONObject()
            for policy in route.policies.compactMap({ name in self.config.policies.first { $0.name == name } }) {
                let scheme: JSONValue
                switch policy.kind {
                case .apiKey(let key):
                    switch key.source {
                    case .header(let name): scheme = object([("type", string("apiKey")), ("in", string("header")), ("name", string(name))])
                    case .query(let name): scheme = object([("type", string("apiKey")), ("in", string("query")), ("name", string(name))])
                    }
                case .jwt: scheme = object([("type", string("http")), ("scheme", string("bearer")), ("bearerFormat", string("JWT"))])
                case .basicAuth: scheme = object([("type", string("http")), ("scheme", string("basic"))])
                case .cors, .authz, .rateLimit: continue
                }
                self.securitySchemes[policy.name] = scheme
                requirement[policy.name] = .array([])
            }
            if self.config.listeners.allSatisfy({ $0.tls?.clientCertificates == .required }) {
                self.securitySchemes["client_certificate"] = object([("type", string("mutualTLS"))])
                requirement["client_certificate"] = .array([])
            }
            return requirement.count == 0 ? nil : .array([.object(requirement)])
        }

        func policyStatuses(_ route: RouteConfig) -> [(Int, String)] {
            RouteRefusals.policies(route, self.config).map { ($0.httpStatus, $0.code) }
        }

        static func mergedStatuses(_ statuses: [(Int, String)]) -> [(Int, String)] {
            var order: [Int] = []
            var reasons: [Int: [String]] = [:]
            for (status, reason) in statuses {
                if reasons[status] == nil { order.append(status) }
                if reasons[status]?.contains(reason) != true { reasons[status, default: []].append(reason) }
            }
            return order.sorted().map { ($0, reasons[$0]!.joined(separator: "; ")) }
        }

        static func grouped(_ refusals: [Refusal]) -> [(Int, [String])] {
            var reasons: [Int: [String]] = [:]
            for refusal in refusals where reasons[refusal.status]?.contains(refusal.reason) != true {
                reasons[refusal.status, default: []].append(refusal.reason)
            }
            return reasons.keys.sorted().map { ($0, reasons[$0]!) }
        }

        static func refusalDescription(_ status: Int, _ reasons: [String]) -> String {
            let codes = reasons.filter { !$0.contains(" ") }
            let others = reasons.filter { $0.contains(" ") }
            var text = OpenAPIDocument.reasons[status] ?? "Status \(status)"
            if !codes.isEmpty { text += ": " + codes.map { "`\($0)`" }.joined(separator: ", ") }
            if !others.isEmpty { text += (codes.isEmpty ? ": " : "; ") + others.joined(separator: "; ") }
            return text
        }

        static func response(_ description: String, schema: JSONValue?, media: String = "application/json", retryAfter: Bool = false) -> JSONValue {
            var headers: JSONValue?
            if retryAfter {
                headers = object([
                    ("Retry-After", object([("description", string("Seconds to wait before sending again.")), ("schema", object([("type", string("integer")), ("minimum", integer(0))]))]))
                ])
            }
            let content = object([(media, object([("schema", schema ?? reference("#/components/schemas/Error"))]))])
            return object([("description", string(description)), ("headers", headers), ("content", content)])
        }

        static func parameter(_ name: String, in location: String, required: Bool = false, description: String?, schema: JSONValue) -> JSONValue {
            object([
                ("name", string(name)), ("in", string(location)), ("required", required || location == "path" ? .bool(true) : nil),
                ("description", description.map(string)), ("schema", schema),
            ])
        }

        static func names(_ parameter: JSONValue, _ name: String) -> Bool {
            guard case .object(let members) = parameter, case .string(let existing)? = members["name"], case .string("header")? = members["in"] else { return false }
            return existing.lowercased() == name.lowercased()
        }

        static func prefix(_ pattern: PathPattern) -> String {
            switch pattern {
            case .prefix(let prefix), .exact(let prefix): return prefix.hasSuffix("/") ? String(prefix.dropLast()) : prefix
            case .template(let segments):
                return segments.map {
                    switch $0 {
                    case .literal(let text): "/" + text
                    case .parameter(let name): "/{\(name)}"
                    }
                }.joined()
            }
        }

        static func operationID(_ route: String, _ method: String, _ methods: Int) -> String {
            methods == 1 ? route : "\(route)_\(method)"
        }

        /// A component name from a route name (OpenAPI allows letters, digits, `.`, `-`, `_`).
        static func componentName(_ name: String) -> String {
            String(name.unicodeScalars.map { scalar in
                scalar.properties.isAlphabetic && scalar.isASCII || ("0"..."9").contains(scalar) || "._-".unicodeScalars.contains(scalar)
                    ? Character(scalar) : "_"
            })
        }

        // MARK: Shapes of answers

        static let errorBody = object([
            ("type", string("object")),
            ("required", strings(["code", "message"])),
            (
                "properties",
                object([
                    ("code", object([("type", string("string")), ("description", string("A stable snake_case code (Sluice's catalogue, or a backend's own, e.g. kafka_…).")), ])),
                    ("message", object([("type", string("string"))])),
                    ("sink", object([("type", string("string"))])),
                ])
            ),
        ])

        static let errorSchema = object([
            ("type", string("object")),
            ("required", strings(["error"])),
            ("properties", object([("error", errorBody)])),
        ])

        static let eventErrorSchema = object([
            ("type", string("object")),
            ("required", strings(["code", "message", "retryable"])),
            ("properties", object([("code", object([("type", string("string"))])), ("message", object([("type", string("string"))])), ("retryable", object([("type", string("boolean"))]))])),
        ])

        static let eventResultSchema = object([
            ("type", string("object")),
            ("description", string("One event's fate: where it was written, or why not.")),
            (
                "properties",
                object([
                    ("partition", object([("type", string("integer"))])),
                    ("offset", object([("type", string("integer"))])),
                    ("shard_id", object([("type", string("string"))])),
                    ("sequence_number", object([("type", string("string"))])),
                    ("error", reference("#/components/schemas/EventError")),
                    ("dead_letter", object([("type", string("object"))])),
                    ("sinks", object([("type", string("array")), ("items", object([("type", string("object"))]))])),
                ])
            ),
        ])

        static let ingestAnswerSchema = object([
            ("type", string("object")),
            (
                "properties",
                object([
                    ("error", errorBody),
                    ("accepted", object([("type", string("integer")), ("minimum", integer(0)), ("description", string("Events delivered (ack: sink) or taken (ack: accepted/spooled)."))])),
                    ("failed", object([("type", string("integer")), ("minimum", integer(1))])),
                    ("not_accepted", object([("type", string("integer")), ("minimum", integer(0))])),
                    ("results", object([("type", string("array")), ("items", reference("#/components/schemas/EventResult"))])),
                    (
                        "errors",
                        object([
                            ("type", string("array")),
                            ("description", string("With Prefer: return=minimal, the failed events by their index in the request.")),
                            (
                                "items",
                                object([
                                    ("type", string("object")),
                                    ("required", strings(["index", "error"])),
                                    ("properties", object([("index", object([("type", string("integer")), ("minimum", integer(0))])), ("error", reference("#/components/schemas/EventError"))])),
                                ])
                            ),
                        ])
                    ),
                ])
            ),
        ])

        static let confluentErrorSchema = object([
            ("type", string("object")),
            ("required", strings(["error_code", "message"])),
            ("properties", object([("error_code", object([("type", string("integer"))])), ("message", object([("type", string("string"))]))])),
        ])
    }
}

enum ConfluentMedia {
    static let v2 = "application/vnd.kafka.v2+json"
}

extension JSONValue {
    var objectValueForCatalog: JSONObject? {
        if case .object(let members) = self { return members }
        return nil
    }
}
