import SluiceConfigReader
import SluiceCore
import SluicePolicy
import SluiceSchema

/// A validated Sluice configuration. Built only by `SluiceConfiguration.parse`, so every
/// reference in it resolves and every value is in range.
public struct SluiceConfiguration: Sendable {
    public var listeners: [ListenerConfig]
    public var admin: AdminConfig?
    /// The gRPC listener (Ingest service), if any.
    public var grpc: GRPCListenerConfig?
    /// Named policies; routes attach them by name.
    public var policies: [PolicyConfig]
    /// Named upstreams; proxy routes send to them by name.
    public var upstreams: [UpstreamConfig]
    public var sinks: [SinkConfig]
    public var routes: [RouteConfig]
    public var shutdown: ShutdownConfig
    public var process = ProcessConfig()
    /// The JSON access log; nil (the default): none.
    public var accessLog: AccessLogConfig? = nil
    /// OpenTelemetry traces; nil (the default): none, unless `OTEL_TRACES_EXPORTER` asks.
    public var tracing: TracingConfig? = nil
    /// What `sluice catalog` says of this gateway's APIs besides what the routes say.
    public var catalog = CatalogConfig()

    public func sink(named name: String) -> SinkConfig? {
        self.sinks.first { $0.name == name }
    }

    public func upstream(named name: String) -> UpstreamConfig? {
        self.upstreams.first { $0.name == name }
    }
}

public struct ListenerConfig: Sendable, Equatable {
    public var name: String
    public var address: SocketAddressConfig
    public var limits: ListenerLimits
    /// HTTPS on this listener when set.
    public var tls: ListenerTLSConfig? = nil
    /// Whether cleartext HTTP/1.1 connections may switch to HTTP/2 by `Upgrade: h2c`
    /// (`h2c_upgrade`; HTTP/2 with prior knowledge is always served).
    public var h2cUpgrade: Bool = true
}

/// TLS on a listener: certificates (the first is the default; others by SNI), ALPN h2 and
/// http/1.1, TLS 1.2+, optional or required client certificates.
public struct ListenerTLSConfig: Sendable, Equatable {
    public struct Certificate: Sendable, Equatable {
        public var certificateFile: String
        public var keyFile: String
        /// SNI names (exact or `*.suffix`) this certificate answers; empty for the default.
        public var serverNames: [String]
    }

    public enum ClientCertificates: String, Sendable {
        case none, optional, required
    }

    public var certificates: [Certificate]
    public var minimumVersion: MinimumVersion = .tls12
    public var clientCertificates: ClientCertificates = .none
    public var clientCAFile: String?
    /// How often the certificate files are checked for changes (reloaded without a restart).
    public var reloadInterval: Duration = .seconds(10)

    public enum MinimumVersion: String, Sendable {
        case tls12 = "1.2"
        case tls13 = "1.3"
    }
}

/// A listener's connection-level limits.
public struct ListenerLimits: Sendable, Equatable {
    /// How long a connection may go without a complete request head (idle keep-alive, or a
    /// head arriving too slowly) before it is closed.
    public var idleTimeout: Duration
    /// How long a request may send no body bytes while Sluice waits for them.
    public var bodyReadTimeout: Duration
    /// Bytes per second a body must average while Sluice waits for it, judged once it has
    /// waited `bodyReadTimeout` in all; 0 turns the check off.
    public var minBodyRate: Int
    /// Request head size limit: 431 over HTTP/1.1; SETTINGS_MAX_HEADER_LIST_SIZE over HTTP/2.
    public var maxHeaderBytes: Int
    /// Open connections; further ones are closed at once.
    public var maxConnections: Int
    /// HTTP/2 streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS).
    public var maxConcurrentStreams: Int

    /// The defaults: the safe choice for a listener facing the internet.
    public init(
        idleTimeout: Duration = .seconds(60),
        bodyReadTimeout: Duration = .seconds(30),
        minBodyRate: Int = 1024,
        maxHeaderBytes: Int = 32 * 1024,
        maxConnections: Int = 4096,
        maxConcurrentStreams: Int = 100
    ) {
        self.idleTimeout = idleTimeout
        self.bodyReadTimeout = bodyReadTimeout
        self.minBodyRate = minBodyRate
        self.maxHeaderBytes = maxHeaderBytes
        self.maxConnections = maxConnections
        self.maxConcurrentStreams = maxConcurrentStreams
    }
}

/// `tracing: { otlp: { endpoint, protocol }, sample_ratio, service_name }`. The standard
/// `OTEL_*` environment variables override these (the OpenTelemetry SDK's rule).
public struct TracingConfig: Sendable, Equatable {
    public enum OTLPProtocol: String, Sendable {
        case httpProtobuf = "http/protobuf"
        case grpc
    }

    /// The OTLP receiver; nil: the SDK's default (`http://localhost:4318`, or `:4317` for gRPC).
    public var endpoint: String?
    public var otlpProtocol: OTLPProtocol = .httpProtobuf
    /// The share of new traces sampled; a request that carries a sampled (or unsampled)
    /// `traceparent` keeps its client's decision (parent-based sampling).
    public var sampleRatio: Double = 1.0
    public var serviceName: String = "sluice"

    public init(endpoint: String? = nil, otlpProtocol: OTLPProtocol = .httpProtobuf, sampleRatio: Double = 1.0, serviceName: String = "sluice") {
        self.endpoint = endpoint
        self.otlpProtocol = otlpProtocol
        self.sampleRatio = sampleRatio
        self.serviceName = serviceName
    }
}

/// `access_log: { path: FILE | stdout, format: json, max_queued_lines: N }`.
public struct AccessLogConfig: Sendable, Equatable {
    /// A file (created, appended to) or nil for standard output.
    public var path: String?
    /// Lines waiting for the writer; past it lines are dropped and counted, never waited for.
    public var maxQueuedLines: Int = 10_000

    public init(path: String?, maxQueuedLines: Int = 10_000) {
        self.path = path
        self.maxQueuedLines = maxQueuedLines
    }
}

public struct AdminConfig: Sendable, Equatable {
    public var address: SocketAddressConfig
    /// Whether the gateway keeps metrics and serves them at `GET /metrics` (`metrics: false`
    /// turns them off; on by default).
    public var metrics: Bool = true
    /// `auth: { bearer_token: { env | file } }`: every admin endpoint but `/health` and `/ready`
    /// (which probes call) requires `Authorization: Bearer <token>`.
    public var bearerToken: SecretSource? = nil
    /// HTTPS on the admin listener; with `client_certificates: required`, only clients with a
    /// certificate from `client_ca_file` get in (mTLS).
    public var tls: ListenerTLSConfig? = nil

    /// Loopback only, unless the configuration says otherwise.
    public static let defaultAddress = SocketAddressConfig(host: "127.0.0.1", port: 9901)

    public init(address: SocketAddressConfig = AdminConfig.defaultAddress, metrics: Bool = true) {
        self.address = address
        self.metrics = metrics
    }
}

/// A dedicated listener for gRPC (grpc-swift-2 owns its HTTP/2 connections).
public struct GRPCListenerConfig: Sendable, Equatable {
    public var address: SocketAddressConfig
    /// TLS on the gRPC listener: one certificate (reloaded when it changes), client
    /// certificates none or required.
    public var tls: ListenerTLSConfig? = nil
    /// `idle_timeout` (a connection with no call in progress, or one that never finishes its
    /// TLS handshake or HTTP/2 preface, is closed after it), `max_connections`,
    /// `max_concurrent_streams`; the header and body limits of HTTP listeners do not apply.
    public var limits = ListenerLimits()
    public var keepalive = GRPCKeepalive()
    /// The largest request message; larger ones fail with RESOURCE_EXHAUSTED.
    public var maxMessageBytes = GRPCListenerConfig.defaultMaxMessageBytes

    public static let defaultMaxMessageBytes = 4 * 1024 * 1024

    public init(address: SocketAddressConfig) {
        self.address = address
    }
}

/// Keepalive on the gRPC listener (gRFC A8/A9): the server pings a connection that has sent
/// nothing for `interval` and closes it without an answer within `timeout`; a client that
/// pings more often than `minClientInterval` (or without calls, unless permitted) is sent
/// GOAWAY ENHANCE_YOUR_CALM.
public struct GRPCKeepalive: Sendable, Equatable {
    public var interval: Duration = .seconds(2 * 60 * 60)
    public var timeout: Duration = .seconds(20)
    public var minClientInterval: Duration = .seconds(5 * 60)
    public var permitWithoutCalls = false

    public init() {}
}

public struct SinkConfig: Sendable {
    public var name: String
    /// The key of the sink's kind (`kafka`, `file`, ...): the connector that builds it.
    public var kind: String
    /// The settings the kind's connector read.
    public var settings: any SinkSettings
    /// Bytes (event values, keys and headers) handed to the sink whose fate is not yet known.
    public var maxInFlightBytes: Int
    /// Events handed to the sink whose fate is not yet known.
    public var maxInFlightEvents: Int
    /// The sink's entry as canonical YAML: a new configuration whose entry reads the same can
    /// keep the running sink. nil: never kept.
    public var source: String?
    /// The entry as YAML (read again when an operator retunes the running sink).
    public var entry: String? = nil

    public static let defaultMaxInFlightBytes = 32 * 1024 * 1024
    public static let defaultMaxInFlightEvents = 50_000
}

public struct RouteConfig: Sendable {
    public var name: String
    public var match: RouteMatchConfig
    /// Names of the policies the route runs (in stage order, not listed order).
    public var policies: [String]
    public var action: Action
    /// `idempotency:` (HTTP ingest routes): retries with the same `Idempotency-Key` are answered
    /// once.
    public var idempotency: IdempotencyConfig? = nil
    /// The entry as canonical YAML (what a reload compares to say a route changed).
    public var source: String? = nil

    public enum Action: Sendable {
        case ingest(IngestConfig)
        case proxy(ProxyConfig)
    }
}

public struct RouteMatchConfig: Sendable {
    /// For a gRPC route, the service and (optionally) method it serves; nil for HTTP routes.
    public var grpc: GRPCMatch?
    public var path: PathPattern
    /// Upper-case methods; empty means any method.
    public var methods: [String]
    /// Exact host (case-insensitive, port ignored) or `*.suffix`; nil means any host.
    public var host: String?
    /// Headers that must be present with exactly these values (names case-insensitive).
    public var headers: [(name: String, value: String)]
    /// Query parameters that must be present (value nil) or have exactly this value — the first
    /// occurrence, percent-decoded, as `QueryString` reads it everywhere.
    public var query: [(name: String, value: String?)]

    public init(
        path: PathPattern, methods: [String] = [], host: String? = nil, headers: [(name: String, value: String)] = [],
        query: [(name: String, value: String?)] = [], grpc: GRPCMatch? = nil
    ) {
        self.grpc = grpc
        self.path = path
        self.methods = methods
        self.host = host
        self.headers = headers
        self.query = query
    }
}

public struct IngestConfig: Sendable {
    public var sink: String
    public var topic: ParameterTemplate
    public var topicsAllowed: Set<String>?
    public var key: KeySource?
    /// The key of events that get none from `key` (rendered with the route's parameters); from
    /// a Kinesis sink's `partition_key` template.
    public var defaultKey: ParameterTemplate?
    public var ack: AckMode
    /// Request headers copied into each event's record headers.
    public var headersToKafka: [String]
    public var maxBodyBytes: Int
    public var maxEvents: Int
    public var maxEventBytes: Int
    /// How long a request may wait for room in a full sink queue before it gets 503.
    public var maxWait: Duration
    /// The API producers speak to this route.
    public var api: IngestAPI = .sluice
    /// How `api: cloudevents` writes events: the Kafka protocol binding's binary mode for sinks
    /// whose records carry headers, else the structured JSON event.
    public var cloudEventsEncoding: CloudEventsEncoding = .kafkaBinary
    /// The cluster id in `api: confluent_v3` paths (`cluster_id`); others are 404.
    public var clusterID = IngestConfig.defaultClusterID
    /// `schema`: every event is validated before it is sent; one that breaks it fails alone.
    public var schema: EventSchema?
    /// `dead_letter`: where an event goes instead of failing when the route's schema refuses it
    /// or the sink refuses it for good (a failure that is not retryable).
    public var deadLetter: DeadLetterConfig?
    /// `spool` (with `ack: spooled`): the route's write-ahead spool.
    public var spool: SpoolConfig?
    /// `mirror`: a copy of (a fraction of) the events to a second destination, best effort.
    public var mirror: IngestMirrorConfig?
    /// `sinks` (fan-out) or `split`: the route writes to several sinks; nil: to `sink` alone.
    /// With targets, `sink` is the first target's (its kind's rules apply to the route's topic).
    public var targets: IngestTargets?
    public static let defaultClusterID = "sluice"

    /// Every sink the route writes its events to (not its dead letters or mirror).
    public var sinkNames: [String] { self.targets?.targets.map(\.sink) ?? [self.sink] }

    public init(
        sink: String, topic: ParameterTemplate, topicsAllowed: Set<String>? = nil, key: KeySource? = nil, ack: AckMode = .sink,
        headersToKafka: [String] = [], maxBodyBytes: Int = Self.defaultMaxBodyBytes, maxEvents: Int = Self.defaultMaxEvents,
        maxEventBytes: Int = Self.defaultMaxEventBytes, maxWait: Duration = Self.defaultMaxWait
    ) {
        self.sink = sink
        self.topic = topic
        self.topicsAllowed = topicsAllowed
        self.key = key
        self.ack = ack
        self.headersToKafka = headersToKafka
        self.maxBodyBytes = maxBodyBytes
        self.maxEvents = maxEvents
        self.maxEventBytes = maxEventBytes
        self.maxWait = maxWait
    }

    public static let defaultMaxBodyBytes = 16 * 1024 * 1024
    public static let defaultMaxEvents = 10_000
    public static let defaultMaxEventBytes = 1_000_000
    public static let defaultMaxWait = Duration.seconds(5)
}

/// An ingest route's `dead_letter: { sink, topic }`.
public struct DeadLetterConfig: Sendable, Equatable {
    public var sink: String
    public var topic: String
    /// The sink's records carry no headers (Kinesis, Zerobus, files): a dead letter is a JSON
    /// envelope with the reason and the event, instead of the event with `sluice-*` headers.
    public var envelope: Bool

    public init(sink: String, topic: String, envelope: Bool) {
        self.sink = sink
        self.topic = topic
        self.envelope = envelope
    }
}

/// An ingest route's `schema: { json_schema_file, draft, format_assertion }`, compiled when the
/// configuration is read (a schema that does not compile is a configuration error).
public struct EventSchema: Sendable {
    /// The file, as written.
    public var file: String
    /// `json_schema_file`: events are validated, and go out as they came.
    public var schema: JSONSchema?
    /// `avro_file`: each JSON event is transcoded to Avro's binary encoding (one that does not
    /// fit fails as a violation), and goes out in that form.
    public var avro: AvroSchema?
    /// `protobuf: { descriptor_set, message }`: each JSON event is transcoded to the message's
    /// binary encoding (proto3 JSON mapping).
    public var protobuf: ProtobufSchema?
    /// `schema_id`: Avro and Protobuf values are framed in Confluent's wire format (magic byte 0, the id as a
    /// 4-byte big-endian integer) for consumers that look the schema up in a Schema Registry.
    public var schemaID: UInt32?
    /// `registry`: the id comes from a Schema Registry instead, looked up per subject.
    public var registry: SchemaRegistryConfig?
    /// Violations named in one event's error, at most.
    public var maxViolations: Int
    /// The schema file's JSON (a JSON Schema or an Avro schema), as `sluice catalog` publishes it.
    public var document: JSONValue?
    /// The JSON Schema dialect of a schema without `$schema` (`draft`).
    public var draft = JSONSchemaDraft.draft2020_12

    public init(file: String, schema: JSONSchema, maxViolations: Int = 4, document: JSONValue? = nil) {
        self.file = file
        self.schema = schema
        self.maxViolations = maxViolations
        self.document = document
    }

    public init(file: String, avro: AvroSchema, schemaID: UInt32? = nil, document: JSONValue? = nil) {
        self.file = file
        self.document = document
        self.avro = avro
        self.schemaID = schemaID
        self.maxViolations = 1
    }

    public init(file: String, protobuf: ProtobufSchema, schemaID: UInt32? = nil) {
        self.file = file
        self.protobuf = protobuf
        self.schemaID = schemaID
        self.maxViolations = 1
    }
}

/// `schema: { …, registry: {…} }`: the schema id that frames Avro and Protobuf values comes
/// from a Confluent-compatible Schema Registry — the id under which the route's schema is
/// registered for the record's subject — instead of a fixed `schema_id`.
public struct SchemaRegistryConfig: Sendable, Equatable {
    /// The registry's base URL (`http://registry:8081`, or with a path prefix), without a
    /// trailing slash.
    public var url: String
    /// The subject, `{topic}` the record's topic (default `{topic}-value`: TopicNameStrategy).
    public var subject: ParameterTemplate
    /// `AVRO` or `PROTOBUF`: how the registry reads `schema`.
    public var schemaType: String
    /// The schema as the registry holds it: the Avro file's text, or the `.proto` source.
    public var schema: String
    /// Register the schema under a subject that does not have it (default false: look up only).
    public var autoRegister: Bool
    /// Each call to the registry, at most.
    public var timeout: Duration
    /// A failed lookup is answered from memory this long before the registry is asked again.
    public var retryAfter: Duration
    /// Subjects whose id is kept, at most; past it the oldest is forgotten (looked up again).
    public var maxSubjects: Int
    /// PEM trust roots for an https registry (default: the system's).
    public var caFile: String?
    /// HTTP basic auth, for a registry that asks for it.
    public var username: String?
    public var password: String?

    public static let defaultSubject = try! ParameterTemplate.parse("{topic}-value").get()

    public init(
        url: String, subject: ParameterTemplate = Self.defaultSubject, schemaType: String, schema: String, autoRegister: Bool = false,
        timeout: Duration = .seconds(5), retryAfter: Duration = .seconds(5), maxSubjects: Int = 1000, caFile: String? = nil,
        username: String? = nil, password: String? = nil
    ) {
        self.url = url
        self.subject = subject
        self.schemaType = schemaType
        self.schema = schema
        self.autoRegister = autoRegister
        self.timeout = timeout
        self.retryAfter = retryAfter
        self.maxSubjects = maxSubjects
        self.caFile = caFile
        self.username = username
        self.password = password
    }
}

/// A gRPC route's service (`sluice.v1.Ingest`) and optional method (`PublishStream`).
public struct GRPCMatch: Sendable, Equatable {
    public var service: String
    public var method: String?

    public init(service: String, method: String?) {
        self.service = service
        self.method = method
    }
}

/// Where an event's record key comes from.
public enum KeySource: Sendable, Equatable {
    case header(String)
    case query(String)
    /// An RFC 6901 JSON Pointer into each event, e.g. `/user/id`.
    case jsonPointer([String])
}

/// The API an ingest route speaks.
public enum IngestAPI: String, Sendable, CaseIterable {
    /// Sluice's own: NDJSON, JSON or raw bodies; the topic from the route.
    case sluice
    /// Confluent REST Proxy v2 produce: `POST {prefix}/topics/{topic}[/partitions/{p}]` with
    /// `records[]`; the topic comes from the request path under the route's `path_prefix`.
    case confluentV2 = "confluent_v2"
    /// CloudEvents 1.0 over HTTP (binary, structured, batched); the topic from the route.
    case cloudevents
    /// Confluent REST Proxy v3 produce: `POST {prefix}/v3/clusters/{cluster_id}/topics/{topic}/records`
    /// (one record or a stream of them) and `.../records:batch`.
    case confluentV3 = "confluent_v3"

    /// Whether the topic comes from the API's own path instead of the route's `topic`.
    public var topicFromPath: Bool { self == .confluentV2 || self == .confluentV3 }
}

/// How CloudEvents are written to a sink.
public enum CloudEventsEncoding: Sendable {
    /// `ce_` record headers, `content-type`, the data as the value, `partitionkey` as the key.
    case kafkaBinary
    /// The JSON event format (`application/cloudevents+json`) as the value.
    case structuredJSON
}

public enum AckMode: String, Sendable {
    /// Answer after the backend made every event durable.
    case sink
    /// Answer 202 once every event is in the sink's bounded queue.
    case accepted
    /// Answer 202 once every event is in the route's write-ahead spool and fsynced; a forwarder
    /// drains the spool into the sink.
    case spooled

    /// Whether the answer comes before the sink has settled the events.
    public var answersBeforeTheSink: Bool { self != .sink }
}

/// An ingest route's `mirror: { sink, topic, fraction }`: every event the route's sink takes is
/// also offered — without waiting — to the mirror sink, or a random `fraction` of them. Best
/// effort: a mirror that is full, slow or failing never changes the response.
public typealias IngestMirrorConfig = IngestTarget

/// An ingest route's several sinks: `sinks: [...]` with `mode: all | any`, or `split`.
public struct IngestTargets: Sendable, Equatable {
    public enum Mode: Sendable, Equatable {
        /// Every event to every target; delivered once every target settled it.
        case all
        /// Every event to every target; delivered once one target settled it.
        case any
        /// Each event to one target, chosen by the targets' fractions.
        case split(SplitBy)
    }

    /// How a split picks an event's target.
    public enum SplitBy: String, Sendable, Equatable, CaseIterable {
        /// At random, by the fractions.
        case random
        /// By a hash of the event's key (keyless events at random): a key stays on its target, and
        /// moving a fraction moves only the keys in between.
        case key
    }

    public var mode: Mode
    public var targets: [IngestTarget]

    public init(mode: Mode, targets: [IngestTarget]) {
        self.mode = mode
        self.targets = targets
    }
}

/// One sink of an ingest route's `sinks`, `split` or `mirror`, and the destination there.
public struct IngestTarget: Sendable, Equatable {
    public var sink: String
    /// The destination there; `{topic}` is the route's topic (default: the same topic).
    public var topic: ParameterTemplate
    /// The share of the events this target gets (`split`, `mirror`; 0 < fraction <= 1).
    public var fraction: Double

    public init(sink: String, topic: ParameterTemplate = try! ParameterTemplate.parse("{topic}").get(), fraction: Double = 1) {
        self.sink = sink
        self.topic = topic
        self.fraction = fraction
    }
}

/// An ingest route's `spool: { directory, max_bytes, segment_bytes }` (with `ack: spooled`).
public struct SpoolConfig: Sendable, Equatable {
    /// Where the segments and the checkpoint live; one route, one process.
    public var directory: String
    /// Bytes of segments on disk, at most: past it requests wait up to max_wait, then 503.
    public var maxBytes: Int
    /// Segment files rotate at this size; a wholly forwarded one is deleted.
    public var segmentBytes: Int

    public static let defaultMaxBytes = 1 << 30
    public static let defaultSegmentBytes = 64 << 20

    public init(directory: String, maxBytes: Int = Self.defaultMaxBytes, segmentBytes: Int = Self.defaultSegmentBytes) {
        self.directory = directory
        self.maxBytes = maxBytes
        self.segmentBytes = segmentBytes
    }
}

/// Process-wide limits.
public struct ProcessConfig: Sendable, Equatable {
    /// File descriptors kept free of client connections: the admin listener, sinks, upstreams,
    /// files and logs use them. Client connections on the HTTP and gRPC listeners together stay
    /// below the descriptor limit (RLIMIT_NOFILE) minus this reserve; past it they are closed
    /// at once, so a connection flood cannot take the admin port or the sinks down with it.
    public var descriptorReserve = 256

    public init() {}
}

public struct ShutdownConfig: Sendable, Equatable {
    /// How long in-flight requests may take to finish after a stop signal.
    public var drainTimeout: Duration
    /// How long sinks may take to deliver what they hold after the listeners have drained.
    public var flushTimeout: Duration
}

/// Metadata for `sluice catalog` (OpenAPI, AsyncAPI, Backstage): who owns the gateway's APIs and
/// where clients reach them. Only the catalog reads it; a reload that changes it changes nothing else.
public struct CatalogConfig: Sendable, Equatable {
    /// The documents' title; default "Sluice event ingest".
    public var title = "Sluice event ingest"
    /// The documents' version (`info.version`); default "1.0.0".
    public var version = "1.0.0"
    public var description: String?
    /// The Backstage entities' `spec.owner` (a group or user reference); default "unknown".
    public var owner = "unknown"
    /// The Backstage entities' `spec.system`, if any.
    public var system: String?
    /// The Backstage entities' `spec.lifecycle`; default "production".
    public var lifecycle = "production"
    /// Where clients reach the listeners (`https://events.example.com`), as OpenAPI `servers`;
    /// empty: each listener's own address.
    public var servers: [String] = []
    /// The Backstage entities' name prefix (metadata.name); default "sluice".
    public var name = "sluice"

    public init() {}
}
