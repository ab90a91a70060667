import FileSink
import Foundation
import KafkaSink
import KinesisSink
import SluiceCatalog
import SluiceConfig
import SluiceConfigReader
import SluiceSchema
import Testing
import ZerobusSink

let allSinkKinds: [SinkKind] = [KafkaSink.kind, FileSink.kind, KinesisSink.kind, ZerobusSink.kind]

/// What the catalog says of a configuration: each test reads one fact of the generated document
/// that a wrong generator would get wrong. (The documents are checked against the formats' own
/// validators, and against a live gateway with schemathesis, in EndToEndTests/CatalogTests.)
@Suite struct CatalogDocumentTests {
    static func config(_ yaml: String) throws -> SluiceConfiguration {
        try SluiceConfiguration.parse(yaml: yaml, environment: [:], sinkKinds: allSinkKinds)
    }

    /// `value` at the JSON Pointer-like `path` ("/paths/~1v1~1orders/post"), or nil.
    static func at(_ value: JSONValue, _ path: String) -> JSONValue? {
        var current: JSONValue? = value
        for raw in path.split(separator: "/", omittingEmptySubsequences: true) {
            let token = raw.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            switch current {
            case .object(let members)?: current = members[token]
            case .array(let items)?: current = Int(token).flatMap { $0 < items.count ? items[$0] : nil }
            default: return nil
            }
        }
        return current
    }

    static func text(_ value: JSONValue?) -> String? {
        if case .string(let text)? = value { return text }
        return nil
    }

    static func keys(_ value: JSONValue?) -> [String] {
        if case .object(let members)? = value { return members.members.map(\.key) }
        return []
    }

    static let schemaFile: String = {
        let url = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("catalog-order-\(UUID().uuidString).json")
        try! Data(
            ##"{"type":"object","required":["id"],"properties":{"id":{"type":"integer"},"amount":{"$ref":"#/$defs/money"}},"$defs":{"money":{"type":"number","minimum":0}}}"##
                .utf8
        ).write(to: url)
        return url.path
    }()

    static var yaml: String {
        """
        listeners: [{ name: main, address: "127.0.0.1:8080" }]
        catalog: { name: orders-gw, title: Orders, owner: group:default/team-orders, system: commerce, servers: ["https://events.example.com"] }
        policies:
          - name: keys
            api_key: { header: X-Api-Key, keys: [{ client: a, sha256: 54f5b7561efd505fed72ac3d37ee123f0a7b27891bb579101b00ebc5b4f955c6 }] }
          - name: limit
            rate_limit: { key: client, rate: 10/s }
        sinks:
          - name: events
            kafka: { bootstrap_servers: ["k1:9092", "k2:9092"], properties: { security.protocol: SASL_SSL } }
          - name: archive
            file: { directory: /var/lib/sluice/archive }
        routes:
          - name: orders
            match: { path: "/v1/orders/{topic}", methods: [POST] }
            policies: [keys, limit]
            idempotency: { window: 1h, required: true }
            ingest:
              sink: events
              topic: "{topic}"
              topics_allowed: [orders, refunds]
              schema: { json_schema_file: \(Self.schemaFile) }
              dead_letter: { sink: archive, topic: orders.dlq }
              mirror: { sink: archive, topic: "copy.{topic}", fraction: 0.5 }
          - name: fast
            match: { path: /v1/fast, methods: [POST] }
            ingest: { sink: archive, topic: fast, ack: accepted, max_events: 7 }
          - name: both
            match: { path: /v1/both, methods: [POST] }
            ingest: { topic: both, sinks: [{ sink: events }, { sink: archive, topic: both.copy }] }
          - name: web
            match: { path_prefix: /web }
            proxy: { upstream: site }
        upstreams:
          - name: site
            endpoints: ["127.0.0.1:9000"]
        """
    }

    @Test func anIngestRouteSaysItsStatusesAuthAndLimits() throws {
        let document = OpenAPIDocument.make(try Self.config(Self.yaml))
        let operation = try #require(Self.at(document, "/paths/~1v1~1orders~1{topic}/post"))
        let statuses = Self.keys(Self.at(operation, "/responses"))
        // 200 (ack: sink), 401 (api key), 409/422 (idempotency, schema), 429 (rate limit), 503 (sink).
        for status in ["200", "400", "401", "409", "413", "422", "429", "503"] {
            #expect(statuses.contains(status), "\(status) missing from \(statuses)")
        }
        #expect(!statuses.contains("202"))
        #expect(Self.text(Self.at(operation, "/responses/422/description"))?.contains("`schema_violation`") == true)
        #expect(Self.text(Self.at(operation, "/responses/429/description"))?.contains("`rate_limited`") == true)
        #expect(Self.at(operation, "/responses/503/headers/Retry-After") != nil)
        #expect(Self.keys(Self.at(operation, "/security/0")) == ["keys"])
        #expect(Self.text(Self.at(document, "/components/securitySchemes/keys/name")) == "X-Api-Key")
        let parameters = Self.at(document, "/paths/~1v1~1orders~1{topic}/parameters")
        let topic = try #require(Self.find(parameters, name: "topic"))
        #expect(Self.at(topic, "/schema/enum") == .array([.string("orders"), .string("refunds")]))
        let key = try #require(Self.find(parameters, name: "Idempotency-Key"))
        #expect(Self.at(key, "/required") == .bool(true))
        #expect(Self.text(Self.at(document, "/servers/0/url")) == "https://events.example.com")
    }

    @Test func theRoutesSchemaIsTheBodysSchemaWithItsReferencesMoved() throws {
        let document = OpenAPIDocument.make(try Self.config(Self.yaml))
        let schema = try #require(Self.at(document, "/components/schemas/ordersEvent"))
        #expect(Self.text(Self.at(schema, "/properties/amount/$ref")) == "#/components/schemas/ordersEvent/$defs/money")
        let json = Self.at(document, "/paths/~1v1~1orders~1{topic}/post/requestBody/content/application~1json/schema/anyOf/0/$ref")
        #expect(Self.text(json) == "#/components/schemas/ordersEvent")
        // A schema route takes JSON only: no raw bodies.
        #expect(!Self.keys(Self.at(document, "/paths/~1v1~1orders~1{topic}/post/requestBody/content")).contains("application/octet-stream"))
    }

    @Test func anAcceptedRouteAnswers202AndAProxyRoutePassesThrough() throws {
        let document = OpenAPIDocument.make(try Self.config(Self.yaml))
        let fast = Self.keys(Self.at(document, "/paths/~1v1~1fast/post/responses"))
        #expect(fast.contains("202") && !fast.contains("200"))
        #expect(Self.at(document, "/paths/~1v1~1fast/post/requestBody/content/application~1json/schema") == .object(JSONObject()))
        let web = try #require(Self.at(document, "/paths/~1web"))
        #expect(Set(Self.keys(web)).isSuperset(of: ["get", "post", "put", "patch", "delete"]))
        #expect(Self.at(web, "/get/responses/default") != nil && Self.at(web, "/get/responses/504") != nil)
        #expect(Self.at(web, "/get/requestBody") == nil && Self.at(web, "/post/requestBody") != nil)
    }

    @Test func everyDestinationIsAChannelOnItsSinksServer() throws {
        let document = AsyncAPIDocument.make(try Self.config(Self.yaml))
        #expect(Self.text(Self.at(document, "/servers/events/host")) == "k1:9092,k2:9092")
        #expect(Self.text(Self.at(document, "/servers/events/protocol")) == "kafka-secure")
        #expect(Self.text(Self.at(document, "/servers/archive/protocol")) == "file")
        let channels = Self.keys(Self.at(document, "/channels"))
        #expect(channels == ["orders", "orders.dead_letter", "orders.mirror", "fast", "both.events", "both.archive"], "\(channels)")
        #expect(Self.text(Self.at(document, "/channels/orders/address")) == "{topic}")
        #expect(Self.at(document, "/channels/orders/parameters/topic/enum") == .array([.string("orders"), .string("refunds")]))
        #expect(Self.text(Self.at(document, "/channels/orders.mirror/address")) == "copy.{topic}")
        #expect(Self.text(Self.at(document, "/channels/orders.dead_letter/servers/0/$ref")) == "#/servers/archive")
        #expect(Self.text(Self.at(document, "/channels/both.archive/address")) == "both.copy")
        #expect(Self.text(Self.at(document, "/operations/orders.send/action")) == "send")
        let payload = try #require(Self.at(document, "/components/schemas/orders.event"))
        #expect(Self.text(Self.at(payload, "/schemaFormat")) == "application/schema+json;version=2020-12")
        #expect(Self.text(Self.at(payload, "/schema/properties/amount/$ref")) == "#/components/schemas/orders.event/schema/$defs/money")
    }

    @Test func backstageGetsAComponentAndAnAPIPerGroupWithTheirDefinitions() throws {
        let config = try Self.config(Self.yaml)
        let entities = BackstageEntities.make(config)
        #expect(entities.map { Self.text(Self.at($0, "/kind")) } == ["Component", "API", "API"])
        #expect(Self.at(entities[0], "/spec/providesApis") == .array([.string("orders-gw-http"), .string("orders-gw-events")]))
        for entity in entities {
            #expect(Self.text(Self.at(entity, "/spec/owner")) == "group:default/team-orders")
            #expect(Self.text(Self.at(entity, "/spec/system")) == "commerce")
        }
        // The definition is the document itself, as JSON text.
        let definition = try #require(Self.text(Self.at(entities[1], "/spec/definition")))
        #expect(try JSONParser.parse(definition) == OpenAPIDocument.make(config))
        // The YAML stream reads back as the same entities (strings stay strings, order kept).
        let yaml = try BackstageEntities.yaml(config)
        #expect(yaml.hasPrefix("---\napiVersion: backstage.io/v1alpha1\nkind: Component\n"))
        #expect(yaml.contains("  definition: |\n    {\n      \"openapi\": \"3.1.0\","))
    }

    @Test func catalogSettingsAreCheckedWithTheirPaths() {
        let yaml = """
            listeners: [{ name: main, address: "127.0.0.1:8080" }]
            catalog: { name: "-gw", lifecycle: "in production", servers: ["ftp://x"], colour: blue }
            sinks: [{ name: archive, file: { directory: /tmp/x } }]
            routes: [{ name: r, match: { path: /r }, ingest: { sink: archive, topic: t } }]
            """
        do {
            _ = try SluiceConfiguration.parse(yaml: yaml, environment: [:], sinkKinds: allSinkKinds)
            Issue.record("expected errors")
        } catch {
            let messages = error.errors.map(\.description)
            #expect(messages.contains { $0.hasPrefix("catalog.colour: unknown key") }, "\(messages)")
            #expect(messages.contains { $0.hasPrefix("catalog.name: expected 1-56 ASCII letters") }, "\(messages)")
            #expect(messages.contains { $0.hasPrefix("catalog.lifecycle: expected 1-63 ASCII letters") }, "\(messages)")
            #expect(messages.contains { $0.hasPrefix("catalog.servers[0]: expected an http:// or https:// URL") }, "\(messages)")
        }
    }

    static func find(_ parameters: JSONValue?, name: String) -> JSONValue? {
        guard case .array(let items)? = parameters else { return nil }
        return items.first { Self.text(Self.at($0, "/name")) == name }
    }
}
