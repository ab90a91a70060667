import Foundation
import FileSink
import KafkaSink
import SluiceConfig
import SluiceConfigReader
import SluiceCore
import SluicePolicy
import SluiceSchema
import Testing

/// Every error parsing `yaml` reports, as the operator reads them (none if it parses).
func configErrors(_ yaml: String) -> [String] {
    do {
        _ = try SluiceConfiguration.parse(yaml: yaml, environment: [:], sinkKinds: allSinkKinds)
        return []
    } catch {
        return error.errors.map(\.description)
    }
}

/// The errors of a config with one proxy route (`routes[0]`, matched by `path_prefix: /api/`)
/// whose `proxy:` holds `field` beside its upstream.
func proxyRouteErrors(_ field: String) -> [String] {
    configErrors("""
        listeners: [{ name: main, address: "127.0.0.1:8080" }]
        upstreams: [{ name: app, endpoints: ["127.0.0.1:9000"] }]
        routes:
          - name: api
            match: { path_prefix: /api/ }
            proxy: { upstream: app, \(field) }
        """)
}

@Suite struct ConfigParsingTests {
    static let base = """
        listeners: [{ name: main, address: "127.0.0.1:8080" }]
        sinks:
          - name: events
            kafka:
              bootstrap_servers: ["${BROKER}"]
              properties: { sasl.password: "${PASSWORD}", linger.ms: 7 }
        routes:
          - name: ingest
            match: { path: "/v1/events/{topic}", methods: [post] }
            ingest:
              sink: events
              topic: "raw.{topic}"
              key: "json:/user/a~1b"
              headers: []
        """

    @Test func reportsEveryErrorAtOnceWithItsPath() {
        #expect(throws: ConfigValidationError.self) {
            try SluiceConfiguration.parse(yaml: Self.base, environment: [:], sinkKinds: allSinkKinds)
        }
        do {
            _ = try SluiceConfiguration.parse(yaml: Self.base, environment: [:], sinkKinds: allSinkKinds)
        } catch {
            let messages = error.errors.map(\.description)
            #expect(messages.contains("sinks[0].kafka.bootstrap_servers[0]: environment variable BROKER is not set"))
            #expect(messages.contains("sinks[0].kafka.properties.sasl.password: environment variable PASSWORD is not set"))
            #expect(messages.contains { $0.hasPrefix("routes[0].ingest.headers: unknown key \"headers\"") })
            #expect(messages.count == 3)
        }
    }

    @Test func substitutesEnvironmentVariablesAndKeepsPropertyOrder() throws {
        let yaml = Self.base.replacingOccurrences(of: "      headers: []", with: "")
        let config = try SluiceConfiguration.parse(yaml: yaml, environment: ["BROKER": "10.1.2.3:9092", "PASSWORD": "pw"], sinkKinds: allSinkKinds)
        guard let kafka = config.sinks[0].settings as? KafkaSinkConfig else {
            Issue.record("expected a kafka sink")
            return
        }
        #expect(kafka.bootstrapServers == ["10.1.2.3:9092"])
        #expect(kafka.properties.map(\.name) == ["sasl.password", "linger.ms"])
        #expect(kafka.properties[0].value == "pw")
        #expect(kafka.properties[0].isSecret)
        #expect(!kafka.properties[1].isSecret)
        guard case .ingest(let ingest) = config.routes[0].action else { return }
        #expect(ingest.key == .jsonPointer(["user", "a/b"]))
        #expect(ingest.topic.render(["topic": "orders"]) == "raw.orders")
        #expect(config.routes[0].match.methods == ["POST"])
        #expect(ingest.ack == .sink)
        #expect(ingest.maxBodyBytes == IngestConfig.defaultMaxBodyBytes)
    }

    @Test func defaultValueSyntaxAndLiteralDollar() throws {
        let yaml = """
            listeners: [{ name: main, address: "${HOST:-127.0.0.1}:${PORT:-8080}" }]
            sinks: [{ name: f, file: { directory: "$${NOT_EXPANDED}/x" } }]
            routes: [{ name: r, match: { path: /x }, ingest: { sink: f, topic: x } }]
            """
        let config = try SluiceConfiguration.parse(yaml: yaml, environment: ["PORT": "9000"], sinkKinds: allSinkKinds)
        #expect(config.listeners[0].address == SocketAddressConfig(host: "127.0.0.1", port: 9000))
        #expect(config.sinks[0].kind == "file")
        guard let file = config.sinks[0].settings as? FileSinkConfig else {
            Issue.record("expected a file sink")
            return
        }
        #expect(file.directory == "${NOT_EXPANDED}/x")
    }

    @Test func h2cUpgradeIsOnForCleartextListenersUnlessTurnedOff() throws {
        let yaml = """
            listeners:
              - { name: a, address: "127.0.0.1:8080" }
              - { name: b, address: "127.0.0.1:8081", h2c_upgrade: false }
            sinks: [{ name: f, file: { directory: ./x } }]
            routes: [{ name: r, match: { path: /x }, ingest: { sink: f, topic: x } }]
            """
        let config = try SluiceConfiguration.parse(yaml: yaml, environment: [:], sinkKinds: allSinkKinds)
        #expect(config.listeners.map(\.h2cUpgrade) == [true, false])
    }

    @Test(arguments: [
        ("512", 512), ("64KiB", 65536), ("1MiB", 1_048_576), ("10MB", 10_000_000), ("2GiB", 2_147_483_648), ("1 KiB", 1024),
    ])
    func parsesSizes(text: String, bytes: Int) {
        #expect(ByteSize.parse(text) == bytes)
    }

    @Test(arguments: ["10 MiBs", "-1", "1.5MiB", "MiB", "lots", "99999999999999999999GiB"])
    func rejectsBadSizes(text: String) {
        #expect(ByteSize.parse(text) == nil)
    }

    @Test func parsesDurations() {
        #expect(DurationText.parse("250ms") == .milliseconds(250))
        #expect(DurationText.parse("5s") == .seconds(5))
        #expect(DurationText.parse("2m") == .seconds(120))
        #expect(DurationText.parse("1h") == .seconds(3600))
        #expect(DurationText.parse("100us") == .microseconds(100))
        #expect(DurationText.parse("5") == nil)
        #expect(DurationText.parse("5 sec") == nil)
        #expect(DurationText.parse("s") == nil)
    }

    @Test func pathTemplatesAndPrefixes() throws {
        #expect(try PathPattern.parseTemplate("/v1/events").get() == .exact("/v1/events"))
        #expect(try PathPattern.parseTemplate("/v1/{topic}/x").get() == .template([.literal("v1"), .parameter("topic"), .literal("x")]))
        #expect(throws: ConfigError.self) { try PathPattern.parseTemplate("/v1/{a}/{a}").get() }
        #expect(throws: ConfigError.self) { try PathPattern.parseTemplate("v1").get() }
    }

    @Test func topicNames() {
        #expect(TopicName.problem("orders.v1_x-y") == nil)
        #expect(TopicName.problem("") != nil)
        #expect(TopicName.problem("..") != nil)
        #expect(TopicName.problem("a b") != nil)
        #expect(TopicName.problem(String(repeating: "a", count: 250)) != nil)
    }
}

@Suite struct RateLimitParsingTests {
    static func errors(rate: String) -> [String] {
        let yaml = """
            listeners: [{ name: main, address: "127.0.0.1:8080" }]
            policies:
              - name: per-ip
                rate_limit: { key: source_ip, rate: "\(rate)" }
            sinks:
              - name: archive
                file: { directory: ./data }
            routes:
              - name: ingest
                match: { path: "/v1/events/{topic}", methods: [POST] }
                policies: [per-ip]
                ingest: { sink: archive, topic: "{topic}" }
            """
        return configErrors(yaml)
    }

    /// Found by the config fuzz target: a rate past Int's range crashed the reader while it
    /// derived the default burst.
    @Test func aRateTooLargeForItsBurstIsAnErrorNotACrash() {
        #expect(Self.errors(rate: "606666666666666666666600/min") == ["policies[0].rate_limit.rate: at most 100000000/s, got \"606666666666666666666600/min\""])
        #expect(Self.errors(rate: "1e300/s").count == 1)
        #expect(Self.errors(rate: "100000000/s") == [])
        #expect(Self.errors(rate: "6000/min") == [])
    }
}

@Suite struct IngestAPIParsingTests {
    static func parse(route: String, sink: String = "kafka: { bootstrap_servers: [\"127.0.0.1:9092\"] }") -> Result<SluiceConfiguration, ConfigValidationError> {
        let yaml = """
            listeners: [{ name: main, address: "127.0.0.1:8080" }]
            sinks:
              - name: events
                \(sink)
            routes:
              - name: rest
                \(route)
            """
        do {
            return .success(try SluiceConfiguration.parse(yaml: yaml, environment: [:], sinkKinds: allSinkKinds))
        } catch {
            return .failure(error)
        }
    }

    static func errors(route: String, sink: String = "kafka: { bootstrap_servers: [\"127.0.0.1:9092\"] }") -> [String] {
        guard case .failure(let error) = Self.parse(route: route, sink: sink) else { return [] }
        return error.errors.map(\.description)
    }

    @Test func aConfluentRouteTakesItsTopicFromThePathUnderAPrefix() throws {
        let config = try Self.parse(route: "match: { path_prefix: /kafka }\n    ingest: { api: confluent_v2, sink: events, topics_allowed: [orders] }").get()
        guard case .ingest(let ingest) = config.routes[0].action else {
            Issue.record("expected an ingest route")
            return
        }
        #expect(ingest.api == .confluentV2)
        #expect(ingest.topicsAllowed == ["orders"])
    }

    @Test func cloudEventsGoOutAsKafkaBinaryModeOrStructuredJSON() throws {
        let route = "match: { path: /ce }\n    ingest: { api: cloudevents, sink: events, topic: clicks }"
        let kafka = try Self.parse(route: route).get()
        guard case .ingest(let toKafka) = kafka.routes[0].action else { return }
        #expect(toKafka.api == .cloudevents && toKafka.cloudEventsEncoding == .kafkaBinary)
        let kinesis = try Self.parse(route: route, sink: "kinesis: { stream: clicks, region: us-east-1 }").get()
        guard case .ingest(let toKinesis) = kinesis.routes[0].action else { return }
        #expect(toKinesis.cloudEventsEncoding == .structuredJSON, "no headers in a Kinesis record")
        #expect(Self.errors(route: "match: { path: /ce }\n    ingest: { api: cloudevents, sink: events, topic: clicks, key: \"json:/id\" }")
            == ["routes[0].ingest.key: api cloudevents keys events by their partitionkey, or else header:NAME or query:NAME; a JSON pointer does not apply"])
    }

    @Test func aConfluentV3RouteNamesItsCluster() throws {
        let config = try Self.parse(route: "match: { path_prefix: /kafka }\n    ingest: { api: confluent_v3, sink: events, cluster_id: lkc-7 }").get()
        guard case .ingest(let ingest) = config.routes[0].action else { return }
        #expect(ingest.api == .confluentV3 && ingest.clusterID == "lkc-7")
        let defaulted = try Self.parse(route: "match: { path_prefix: /kafka }\n    ingest: { api: confluent_v3, sink: events }").get()
        guard case .ingest(let plain) = defaulted.routes[0].action else { return }
        #expect(plain.clusterID == "sluice")
        #expect(Self.errors(route: "match: { path_prefix: /kafka }\n    ingest: { api: confluent_v2, sink: events, cluster_id: c }")
            == ["routes[0].ingest.cluster_id: cluster_id names the cluster of api confluent_v3 paths; remove it"])
    }

    @Test func aConfluentRouteSaysWhatDoesNotFit() {
        #expect(Self.errors(route: "match: { path_prefix: /kafka }\n    ingest: { api: confluent_v2, sink: events, topic: orders }")
            == ["routes[0].ingest.topic: api confluent_v2 takes the topic from the request path (/topics/{topic}); remove topic"])
        #expect(Self.errors(route: "match: { path_prefix: /kafka }\n    ingest: { api: confluent_v2, sink: events, key: \"header:k\" }")
            == ["routes[0].ingest.key: api confluent_v2 takes each record's key from its request body; remove key"])
        #expect(Self.errors(route: "match: { path_prefix: /kafka }\n    ingest: { api: confluent_v2, sink: events, ack: accepted }")
            == ["routes[0].ingest.ack: api confluent_v2 answers each record's partition and offset; it needs ack: sink"])
        #expect(Self.errors(route: "match: { path: /kafka }\n    ingest: { api: confluent_v2, sink: events }")
            == ["routes[0].match: api confluent_v2 needs a path_prefix (its paths, like /topics/{topic}, follow it)"])
        #expect(Self.errors(route: "match: { path_prefix: /kafka }\n    ingest: { api: confluent_v2, sink: events }", sink: "file: { directory: ./data }")
            == ["routes[0].ingest.api: api confluent_v2 writes Kafka records (keys, partitions); sink \"events\" is file"])
        #expect(Self.errors(route: "match: { path_prefix: /kafka }\n    ingest: { api: rest_proxy, sink: events, topic: t }")
            == ["routes[0].ingest.api: expected one of sluice, confluent_v2, cloudevents, confluent_v3; got \"rest_proxy\""])
    }
}

@Suite struct IdempotencyParsingTests {
    static let ingest = "match: { path: /events }\n    ingest: { sink: events, topic: orders }"

    @Test func aRouteRemembersKeysInMemoryByDefaultOrInRedis() throws {
        let plain = try IngestAPIParsingTests.parse(route: Self.ingest + "\n    idempotency: {}").get()
        #expect(plain.routes[0].idempotency == IdempotencyConfig())
        #expect(plain.routes[0].idempotency?.window == .seconds(86_400))
        let tuned = try IngestAPIParsingTests.parse(
            route: Self.ingest + """

                    idempotency:
                      window: 10m
                      store: redis
                      redis: { address: "127.0.0.1:6379", failure_mode: closed, key_prefix: fleet }
                      max_response_bytes: 256KiB
                      in_flight_timeout: 30s
                      required: true
                """
        ).get()
        let config = try #require(tuned.routes[0].idempotency)
        #expect(config.window == .seconds(600))
        #expect(config.store == .redis(RedisConfig(host: "127.0.0.1", port: 6379, failOpen: false, keyPrefix: "fleet")))
        #expect(config.maxResponseBytes == 256 * 1024)
        #expect(config.inFlightTimeout == .seconds(30))
        #expect(config.required)
    }

    @Test func whatDoesNotFitIsNamed() {
        #expect(IngestAPIParsingTests.errors(route: Self.ingest + "\n    idempotency: { store: disk }")
            == ["routes[0].idempotency.store: expected memory (this process; lost on restart) or redis (shared by every instance), got \"disk\""])
        #expect(IngestAPIParsingTests.errors(route: Self.ingest + "\n    idempotency: { store: redis }")
            == ["routes[0].idempotency.redis: required"])
        #expect(IngestAPIParsingTests.errors(route: Self.ingest + "\n    idempotency: { redis: { address: \"127.0.0.1:6379\" } }")
            == ["routes[0].idempotency.redis: redis is for store: redis"])
        #expect(IngestAPIParsingTests.errors(
            route: Self.ingest + "\n    idempotency: { store: redis, redis: { address: \"127.0.0.1:6379\" }, max_response_bytes: 1MiB }")
            == ["routes[0].idempotency.max_response_bytes: at most 512KiB with store: redis (a kept answer is one Redis value)"])
        #expect(IngestAPIParsingTests.errors(route: Self.ingest + "\n    idempotency: { max_bytes: 1MiB, max_response_bytes: 2MiB }")
            == ["routes[0].idempotency.max_response_bytes: larger than max_bytes (1048576): no answer of that size could be kept"])
        #expect(IngestAPIParsingTests.errors(route: "match: { path: /app }\n    proxy: { upstream: app }\n    idempotency: {}").contains(
            "routes[0].idempotency: idempotency applies to HTTP ingest routes (a retry is answered once, without producing again)"))
        #expect(IngestAPIParsingTests.errors(route: Self.ingest + "\n    idempotency: { window: 0s }").count == 1)
    }
}

/// A directory of files a test writes, removed with the value (at the end of the test).
final class ScratchDirectory {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-test-\(UUID().uuidString)")

    init() throws {
        try FileManager.default.createDirectory(at: self.url, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(at: self.url)
    }

    /// Writes `text` to the file `name` in it; its path.
    func write(_ name: String, _ text: String) throws -> String {
        let file = self.url.appendingPathComponent(name)
        try text.write(to: file, atomically: true, encoding: .utf8)
        return file.path
    }
}

@Suite struct EventSchemaParsingTests {
    static func route(_ schema: String) -> String {
        "match: { path: /events }\n    ingest: { sink: events, topic: orders, schema: \(schema) }"
    }

    @Test func aSchemaFileIsCompiledWithTheFilesItRefersTo() throws {
        let scratch = try ScratchDirectory()
        defer { withExtendedLifetime(scratch) {} }  // removed once the test is done with its files
        _ = try scratch.write("money.json", #"{"type": "number", "minimum": 0}"#)
        let order = try scratch.write(
            "order.json", #"{"$schema": "http://json-schema.org/draft-07/schema#", "properties": {"amount": {"$ref": "money.json"}}}"#)
        let config = try IngestAPIParsingTests.parse(route: Self.route("{ json_schema_file: \"\(order)\", max_violations: 2 }")).get()
        guard case .ingest(let ingest) = config.routes[0].action, let schema = ingest.schema else {
            Issue.record("a schema")
            return
        }
        #expect(schema.maxViolations == 2)
        #expect(schema.schema?.isValid(try JSONParser.parse(#"{"amount": 3}"#)) == true)
        #expect(schema.schema?.isValid(try JSONParser.parse(#"{"amount": -3}"#)) == false, "the $ref'd file applies")
    }

    @Test func anAvroSchemaIsCompiledAndFramedOnlyWhenAsked() throws {
        let scratch = try ScratchDirectory()
        defer { withExtendedLifetime(scratch) {} }  // removed once the test is done with its files
        let avsc = try scratch.write("order.avsc", #"{"type": "record", "name": "Order", "fields": [{"name": "id", "type": "long"}]}"#)
        let config = try IngestAPIParsingTests.parse(route: Self.route("{ avro_file: \"\(avsc)\", schema_id: 42 }")).get()
        guard case .ingest(let ingest) = config.routes[0].action, let schema = ingest.schema else {
            Issue.record("a schema")
            return
        }
        #expect(schema.avro != nil && schema.schema == nil && schema.schemaID == 42)
        let notAvro = try scratch.write("bad.avsc", #"{"type": "record", "fields": []}"#)
        #expect(IngestAPIParsingTests.errors(route: Self.route("{ avro_file: \"\(notAvro)\" }"))
            == ["routes[0].ingest.schema.avro_file: \(notAvro): avro: a record needs a name"])
        #expect(IngestAPIParsingTests.errors(route: Self.route("{ json_schema_file: \"\(avsc)\", schema_id: 1 }"))
            == ["routes[0].ingest.schema.schema_id: schema_id frames Avro or Protobuf values (avro_file, protobuf) in Confluent's wire format"])
        #expect(IngestAPIParsingTests.errors(route: Self.route("{ avro_file: \"\(avsc)\", draft: 2020-12 }"))
            == ["routes[0].ingest.schema.draft: draft is for json_schema_file; this schema is avro_file"])
    }

    @Test func aRegistryGivesTheIdInsteadOfAFixedOne() throws {
        let scratch = try ScratchDirectory()
        defer { withExtendedLifetime(scratch) {} }  // removed once the test is done with its files
        let avsc = try scratch.write("registered.avsc", #"{"type": "record", "name": "Order", "fields": [{"name": "id", "type": "long"}]}"#)
        let secret = try scratch.write("registry-password", "s3cret\n")
        let config = try IngestAPIParsingTests.parse(
            route: Self.route(
                "{ avro_file: \"\(avsc)\", registry: { url: \"http://127.0.0.1:8081/\", subject: \"shop.{topic}\", auto_register: true, timeout: 2s, retry_after: 1s, max_subjects: 10, username: sluice, password: { file: \"\(secret)\" } } }"
            )
        ).get()
        guard case .ingest(let ingest) = config.routes[0].action, let registry = ingest.schema?.registry else {
            Issue.record("a registry")
            return
        }
        #expect(registry.url == "http://127.0.0.1:8081")
        #expect(registry.subject.render(["topic": "orders"]) == "shop.orders")
        #expect(registry.schemaType == "AVRO" && registry.schema.contains(#""name": "Order""#))
        #expect(registry.autoRegister && registry.timeout == .seconds(2) && registry.retryAfter == .seconds(1) && registry.maxSubjects == 10)
        #expect(registry.username == "sluice" && registry.password == "s3cret")
        let defaults = try IngestAPIParsingTests.parse(route: Self.route("{ avro_file: \"\(avsc)\", registry: { url: \"https://registry.example\" } }")).get()
        if case .ingest(let ingest) = defaults.routes[0].action, let registry = ingest.schema?.registry {
            #expect(registry.subject.render(["topic": "orders"]) == "orders-value" && !registry.autoRegister && registry.retryAfter == .seconds(5))
        } else {
            Issue.record("a registry with defaults")
        }

        #expect(IngestAPIParsingTests.errors(route: Self.route("{ avro_file: \"\(avsc)\", schema_id: 3, registry: { url: \"http://127.0.0.1:1\" } }"))
            == ["routes[0].ingest.schema.registry: set schema_id (a fixed id) or registry (the id looked up per subject), not both"])
        #expect(IngestAPIParsingTests.errors(route: Self.route("{ json_schema_file: \"\(avsc)\", registry: { url: \"http://127.0.0.1:1\" } }"))
            == ["routes[0].ingest.schema.registry: registry frames Avro or Protobuf values (avro_file, protobuf) in Confluent's wire format"])
        #expect(IngestAPIParsingTests.errors(route: Self.route("{ avro_file: \"\(avsc)\", registry: { url: \"http://127.0.0.1:1\", subject: \"{route}-value\" } }"))
            == ["routes[0].ingest.schema.registry.subject: unknown parameter {route}: a subject may use {topic}, the record's topic"])
        #expect(IngestAPIParsingTests.errors(route: Self.route("{ avro_file: \"\(avsc)\", registry: { url: \"http://127.0.0.1:1\", schema_file: \"\(avsc)\" } }"))
            == ["routes[0].ingest.schema.registry.schema_file: schema_file is for Protobuf (its .proto source); an Avro route's registry is sent the avro_file"])
        #expect(IngestAPIParsingTests.errors(route: Self.route("{ avro_file: \"\(avsc)\", registry: { url: \"http://registry.example\", username: u, password: { file: \"\(secret)\" } } }"))
            == ["routes[0].ingest.schema.registry.url: a password is sent over https:// only (http:// only to a loopback address)"])
        #expect(IngestAPIParsingTests.errors(route: Self.route("{ avro_file: \"\(avsc)\", registry: { url: \"http://127.0.0.1:1\", password: { file: \"\(secret)\" } } }"))
            == ["routes[0].ingest.schema.registry: set username and password together"])
    }

    @Test func aSchemaThatCannotBeUsedIsAConfigError() throws {
        let scratch = try ScratchDirectory()
        defer { withExtendedLifetime(scratch) {} }  // removed once the test is done with its files
        let broken = try scratch.write("broken.json", #"{"type": "number""#)
        #expect(IngestAPIParsingTests.errors(route: Self.route("{ json_schema_file: \"\(broken)\" }")).first?.hasPrefix(
            "routes[0].ingest.schema.json_schema_file: \(broken) is not JSON: at byte") == true)
        let dangling = try scratch.write("dangling.json", #"{"$ref": "nowhere.json"}"#)
        #expect(IngestAPIParsingTests.errors(route: Self.route("{ json_schema_file: \"\(dangling)\" }")).first?.contains(
            "cannot resolve $ref \"nowhere.json\"") == true)
        let badPattern = try scratch.write("pattern.json", #"{"pattern": "(unclosed"}"#)
        #expect(IngestAPIParsingTests.errors(route: Self.route("{ json_schema_file: \"\(badPattern)\" }")).first?.contains("invalid pattern") == true)
        #expect(IngestAPIParsingTests.errors(route: Self.route("{ json_schema_file: /no/such/file.json }"))
            == ["routes[0].ingest.schema.json_schema_file: cannot read /no/such/file.json"])
        #expect(IngestAPIParsingTests.errors(route: Self.route("{ json_schema_file: \"\(broken)\", draft: 4 }"))
            == ["routes[0].ingest.schema.draft: expected 2020-12 or draft-07 (the dialect of a schema without $schema), got \"4\""])
    }
}

@Suite struct DeadLetterParsingTests {
    @Test func aDeadLetterDestinationIsCheckedLikeAnyOther() throws {
        let scratch = try ScratchDirectory()
        defer { withExtendedLifetime(scratch) {} }  // removed once the test is done with its files
        let schema = try scratch.write("dl.json", #"{"type": "object"}"#)
        func route(_ deadLetter: String) -> String {
            "match: { path: /events }\n    ingest: { sink: events, topic: orders, schema: { json_schema_file: \"\(schema)\" }, dead_letter: \(deadLetter) }"
        }
        let config = try IngestAPIParsingTests.parse(route: route("{ sink: events, topic: orders.dlq }")).get()
        guard case .ingest(let ingest) = config.routes[0].action else { return }
        #expect(ingest.deadLetter == DeadLetterConfig(sink: "events", topic: "orders.dlq", envelope: false))
        let toKinesis = try IngestAPIParsingTests.parse(route: route("{ sink: events, topic: orders-dlq }"), sink: "kinesis: { stream: clicks, region: us-east-1 }").get()
        guard case .ingest(let streamed) = toKinesis.routes[0].action else { return }
        #expect(streamed.deadLetter?.envelope == true, "Kinesis records carry no headers: an envelope")
        #expect(IngestAPIParsingTests.errors(route: route("{ sink: nowhere, topic: t }")).first?.hasPrefix("routes[0].ingest.dead_letter.sink: unknown sink \"nowhere\"") == true)
        #expect(IngestAPIParsingTests.errors(route: route("{ sink: events, topic: \"bad topic\" }")).first?.hasPrefix("routes[0].ingest.dead_letter.topic:") == true)
        let plain = try IngestAPIParsingTests.parse(route: "match: { path: /events }\n    ingest: { sink: events, topic: orders, dead_letter: { sink: events, topic: d } }").get()
        guard case .ingest(let withoutSchema) = plain.routes[0].action else { return }
        #expect(withoutSchema.deadLetter?.topic == "d", "without a schema, for events the sink refuses for good")
    }
}

/// `ack: spooled` and its `spool`: required together, sized so a request always fits, one
/// directory per route, HTTP routes only.
@Suite struct SpoolParsingTests {
    static func route(_ ingest: String) -> String {
        "match: { path: /events }\n    ingest: { sink: events, topic: orders, \(ingest) }"
    }

    @Test func aSpooledRouteHasItsSpoolWithSafeDefaults() throws {
        let config = try IngestAPIParsingTests.parse(route: Self.route("ack: spooled, spool: { directory: /var/lib/sluice/orders }")).get()
        guard case .ingest(let ingest) = config.routes[0].action else {
            Issue.record("an ingest route")
            return
        }
        #expect(ingest.ack == .spooled && ingest.ack.answersBeforeTheSink)
        #expect(ingest.spool == SpoolConfig(directory: "/var/lib/sluice/orders", maxBytes: 1 << 30, segmentBytes: 64 << 20))
        let sized = try IngestAPIParsingTests.parse(
            route: Self.route("ack: spooled, max_body_bytes: 1MiB, spool: { directory: /s, max_bytes: 8MiB, segment_bytes: 2MiB }")).get()
        if case .ingest(let ingest) = sized.routes[0].action { #expect(ingest.spool?.maxBytes == 8 << 20 && ingest.spool?.segmentBytes == 2 << 20) }
    }

    @Test func whatDoesNotFitIsAConfigError() {
        #expect(IngestAPIParsingTests.errors(route: Self.route("ack: spooled"))
            == ["routes[0].ingest.spool: required with ack: spooled: { directory: PATH } (max_bytes and segment_bytes optional)"])
        #expect(IngestAPIParsingTests.errors(route: Self.route("spool: { directory: /s }")) == ["routes[0].ingest.spool: a spool is for ack: spooled"])
        #expect(IngestAPIParsingTests.errors(route: Self.route("ack: spooled, spool: { directory: /s, max_bytes: 4MiB, segment_bytes: 2MiB }"))
            == ["routes[0].ingest.spool.max_bytes: must be at least two segments and two bodies (2 x segment_bytes + 2 x max_body_bytes = 36MiB), so a request always fits once what is forwarded is released"])
        #expect(IngestAPIParsingTests.errors(route: "match: { path_prefix: /kafka }\n    ingest: { api: confluent_v2, sink: events, ack: spooled, spool: { directory: /s } }")
            .contains("routes[0].ingest.ack: api confluent_v2 answers each record's partition and offset; it needs ack: sink"))
        #expect(IngestAPIParsingTests.errors(route: Self.route("ack: later")) == ["routes[0].ingest.ack: expected sink, accepted or spooled, got \"later\""])
    }

    @Test func eachSpooledRouteHasADirectoryOfItsOwnAndIsAnHTTPRoute() throws {
        let yaml = """
            listeners: [{ name: main, address: "127.0.0.1:8080" }]
            grpc: { address: "127.0.0.1:8081" }
            sinks:
              - name: events
                kafka: { bootstrap_servers: ["127.0.0.1:9092"] }
            routes:
              - name: a
                match: { path: /a }
                ingest: { sink: events, topic: a, ack: spooled, spool: { directory: /spool/a } }
              - name: b
                match: { path: /b }
                ingest: { sink: events, topic: b, ack: spooled, spool: { directory: /spool/./a } }
              - name: g
                match: { grpc_service: sluice.v1.Ingest }
                ingest: { sink: events, topic: "{topic}", ack: spooled, spool: { directory: /spool/g } }
            """
        do {
            _ = try SluiceConfiguration.parse(yaml: yaml, environment: [:], sinkKinds: allSinkKinds)
            Issue.record("two routes on one spool, and a spooled gRPC route, are refused")
        } catch {
            #expect(error.errors.map(\.description) == [
                "routes[2].ingest.ack: gRPC routes acknowledge durable events only (ack: sink)",
                "routes[1].ingest.spool.directory: /spool/./a is route a's spool; each spooled route has a directory of its own",
            ])
        }
    }
}

/// `match.query`: a value, or `{ present: true }`.
@Suite struct QueryMatchParsingTests {
    @Test func queryConditionsAreReadAndCheckedWhenWritten() throws {
        let config = try IngestAPIParsingTests.parse(
            route: "match: { path: /events, query: { version: \"2\", debug: { present: true } } }\n    ingest: { sink: events, topic: orders }").get()
        let query = config.routes[0].match.query
        #expect(query.count == 2 && query[0].name == "version" && query[0].value == "2" && query[1].name == "debug" && query[1].value == nil)
        #expect(IngestAPIParsingTests.errors(route: "match: { path: /events, query: { debug: { present: false } } }\n    ingest: { sink: events, topic: orders }")
            == ["routes[0].match.query.debug.present: only present: true is supported (the parameter must be there)"])
        #expect(IngestAPIParsingTests.errors(route: "match: { path: /events, query: { debug: { equals: 1 } } }\n    ingest: { sink: events, topic: orders }").first?
            .contains("routes[0].match.query.debug") == true)
    }
}

/// `mirror: { sink, topic, fraction }`.
@Suite struct MirrorParsingTests {
    static func route(_ mirror: String) -> String {
        "match: { path: /events }\n    ingest: { sink: events, topic: orders, mirror: \(mirror) }"
    }

    @Test func aMirrorNamesASinkATopicTemplateAndAShare() throws {
        let config = try IngestAPIParsingTests.parse(route: Self.route("{ sink: events, topic: \"copy.{topic}\", fraction: 0.1 }")).get()
        guard case .ingest(let ingest) = config.routes[0].action, let mirror = ingest.mirror else {
            Issue.record("a mirror")
            return
        }
        #expect(mirror.sink == "events" && mirror.topic.render(["topic": "orders"]) == "copy.orders" && mirror.fraction == 0.1)
        let plain = try IngestAPIParsingTests.parse(route: Self.route("{ sink: events }")).get()
        if case .ingest(let ingest) = plain.routes[0].action {
            #expect(ingest.mirror?.topic.render(["topic": "orders"]) == "orders" && ingest.mirror?.fraction == 1)
        }
    }

    @Test func whatCannotBeMirroredToIsAConfigError() {
        #expect(IngestAPIParsingTests.errors(route: Self.route("{ sink: nowhere }")).first?.hasPrefix("routes[0].ingest.mirror.sink: unknown sink \"nowhere\"") == true)
        #expect(IngestAPIParsingTests.errors(route: Self.route("{ sink: events, fraction: 0 }"))
            == ["routes[0].ingest.mirror.fraction: expected a share of the events above 0 and at most 1 (0.1 mirrors one in ten), got \"0\""])
        #expect(IngestAPIParsingTests.errors(route: Self.route("{ sink: events, topic: \"{tenant}.x\" }"))
            == ["routes[0].ingest.mirror.topic: unknown parameter {tenant}: a mirror's topic may use {topic}, the event's topic"])
        #expect(IngestAPIParsingTests.errors(route: Self.route("{ sink: events, topic: \"bad topic\" }")).first?.hasPrefix("routes[0].ingest.mirror.topic:") == true)
    }
}

/// `sinks: [...]` with `mode`, and `split`.
@Suite struct RouteTargetsParsingTests {
    static func route(_ targets: String, extra: String = "") -> String {
        "match: { path: /events }\n    ingest: { topic: orders, \(targets)\(extra) }"
    }

    static func targets(_ route: String) throws -> IngestTargets? {
        let config = try IngestAPIParsingTests.parse(route: route).get()
        guard case .ingest(let ingest) = config.routes[0].action else { return nil }
        return ingest.targets
    }

    @Test func aFanOutNamesItsSinksTheirTopicsAndAMode() throws {
        let fanOut = try Self.targets(Self.route(#"sinks: [{ sink: events }, { sink: events, topic: "archive.{topic}" }], mode: any"#))
        #expect(fanOut?.mode == .any)
        #expect(fanOut?.targets.map { $0.topic.render(["topic": "orders"]) } == ["orders", "archive.orders"])
        #expect(try Self.targets(Self.route(#"sinks: [{ sink: events }, { sink: events, topic: copy }]"#))?.mode == .all)
        let config = try IngestAPIParsingTests.parse(route: Self.route(#"sinks: [{ sink: events }, { sink: events, topic: copy }]"#)).get()
        if case .ingest(let ingest) = config.routes[0].action { #expect(ingest.sink == "events" && ingest.sinkNames == ["events", "events"]) }
    }

    @Test func aSplitNamesFractionsThatAddUpToOne() throws {
        let split = try Self.targets(Self.route(#"split: { by: key, targets: [{ sink: events, fraction: 0.9 }, { sink: events, topic: next, fraction: 0.1 }] }"#))
        #expect(split?.mode == .split(.key) && split?.targets.map(\.fraction) == [0.9, 0.1])
        #expect(try Self.targets(Self.route(#"split: { targets: [{ sink: events, fraction: 0.5 }, { sink: events, topic: b, fraction: 0.5 }] }"#))?.mode == .split(.random))
    }

    @Test func whatCannotBeATargetIsAConfigError() {
        let errors = { IngestAPIParsingTests.errors(route: $0) }
        #expect(errors("match: { path: /events }\n    ingest: { sink: events, topic: orders, sinks: [{ sink: events }, { sink: events, topic: b }] }")
            == ["routes[0].ingest: give one of sink, sinks (every event to each) and split (each event to one); got sink and sinks"])
        #expect(errors("match: { path: /events }\n    ingest: { sink: events, topic: orders, mode: any }")
            == ["routes[0].ingest.mode: mode says how a route's sinks: [...] settle an event; this route has one sink"])
        #expect(errors(Self.route("sinks: [{ sink: events }]")) == ["routes[0].ingest.sinks: expected two targets or more; a route with one sink says sink: NAME"])
        #expect(errors(Self.route("sinks: [{ sink: events }, { sink: events }]"))
            == ["routes[0].ingest.sinks[1]: sink \"events\" with topic {topic} is already a target"])
        #expect(errors(Self.route("sinks: [{ sink: events }, { sink: evnts }]")).first?.hasPrefix("routes[0].ingest.sinks[1].sink: unknown sink \"evnts\"") == true)
        #expect(errors(Self.route("sinks: [{ sink: events }, { sink: events, topic: b }], mode: most"))
            == ["routes[0].ingest.mode: expected all (every sink must settle an event) or any (one must), got \"most\""])
        #expect(errors(Self.route(#"sinks: [{ sink: events }, { sink: events, topic: "{tenant}" }]"#))
            == ["routes[0].ingest.sinks[1].topic: unknown parameter {tenant}: a target's topic may use {topic}, the route's topic"])
        #expect(errors(Self.route("split: { targets: [{ sink: events, fraction: 0.5 }, { sink: events, topic: b, fraction: 0.4 }] }"))
            == ["routes[0].ingest.split.targets: the targets' fractions add up to 0.9; they must add up to 1"])
        #expect(errors(Self.route("split: { targets: [{ sink: events }, { sink: events, topic: b, fraction: 1 }] }"))
            == ["routes[0].ingest.split.targets[0].fraction: required"])
        #expect(errors(Self.route("split: { by: user, targets: [{ sink: events, fraction: 0.5 }, { sink: events, topic: b, fraction: 0.5 }] }"))
            == ["routes[0].ingest.split.by: expected random or key (a hash of the event's key), got \"user\""])
        #expect(errors("match: { path_prefix: /kafka }\n    ingest: { api: confluent_v2, sinks: [{ sink: events }, { sink: events, topic: b }] }")
            .contains("routes[0].ingest.api: api confluent_v2 answers in its own shape, with one sink's receipt; sinks and split are for api sluice"))
    }
}

/// A proxy route's header rewrites are held to the rules the HTTP/1.1 encoder applies to every
/// field it sends (HeaderFieldCheck): what it would refuse on each request is a config error.
@Suite struct HeaderRewriteParsingTests {
    static func errors(_ rewrite: String) -> [String] {
        proxyRouteErrors("request_headers: \(rewrite)")
    }

    @Test func valuesAndNamesFollowTheFieldRules() {
        #expect(Self.errors(#"{ set: { x-a: "b\tc d" }, remove: [x-b] }"#) == [])
        let control = "a header value cannot contain a control character (HTAB is allowed)"
        #expect(Self.errors(#"{ set: { x-a: "b\x01c" } }"#) == ["routes[0].proxy.request_headers.set.x-a: \(control)"])
        #expect(Self.errors(#"{ set: { x-a: "b\x7F" } }"#) == ["routes[0].proxy.request_headers.set.x-a: \(control)"])
        #expect(Self.errors(#"{ set: { x-a: "b\r\nx-c: d" } }"#) == ["routes[0].proxy.request_headers.set.x-a: \(control)"])
        #expect(Self.errors(#"{ set: { "x a": "b" } }"#).first?.hasSuffix("\"x a\" is not a valid header name") == true)
        #expect(Self.errors(#"{ remove: ["x{a}"] }"#).first?.hasSuffix("\"x{a}\" is not a valid header name") == true)
    }
}

/// A route's `path_rewrite` and an upstream's health-check path are held to what a target may
/// carry: one the HTTP/1.1 encoder would refuse is a config error, not a route whose every
/// request fails or an upstream whose every check fails.
@Suite struct PathRewriteParsingTests {
    static func errors(_ rewrite: String) -> [String] {
        proxyRouteErrors("path_rewrite: \(rewrite)")
    }

    @Test func aRewriteIsAPathThatMayBeSent() {
        #expect(Self.errors(#""/v2/""#) == [])
        #expect(Self.errors(#""/caf%C3%A9/""#) == [])
        #expect(Self.errors(#""v2/""#) == ["routes[0].proxy.path_rewrite: must start with /"])
        #expect(Self.errors(#""/v 2/""#) == ["routes[0].proxy.path_rewrite: holds a character a path may not carry raw at offset 2 (percent-encode it)"])
        #expect(Self.errors(#""/{v}/""#).count == 1)
        #expect(Self.errors(#""/v2?x=1""#).count == 1, "a query")
        #expect(Self.errors(#""/100%/""#) == ["routes[0].proxy.path_rewrite: holds a % at offset 4 that does not begin an escape of two hex digits"])
    }

    @Test func aHealthCheckTargetMayBeSent() {
        func errors(_ target: String) -> [String] {
            configErrors("""
                listeners: [{ name: main, address: "127.0.0.1:8080" }]
                upstreams: [{ name: app, endpoints: ["127.0.0.1:9000"], health_check: { path: \(target) } }]
                routes: [{ name: api, match: { path_prefix: / }, proxy: { upstream: app } }]
                """)
        }
        #expect(errors(#""/healthz?full=1""#) == [])
        #expect(errors(#""/health check""#) == ["upstreams[0].health_check.path: holds a character a path may not carry raw at offset 7 (percent-encode it)"])
        #expect(errors(#""/healthz?q={}""#) == ["upstreams[0].health_check.path: holds a character a query may not carry raw at offset 11 (percent-encode it)"])
    }
}
