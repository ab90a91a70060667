/// The status codes of gRPC (grpc/status.proto) an error of Sluice's maps to. Kept here, not
/// taken from grpc-swift, so the catalogue stays free of any transport.
public enum GRPCStatusCode: Int, Sendable, Hashable {
    /// The status gRPC clients give an HTTP answer without `grpc-status` (gRPC's
    /// http-grpc-status-mapping.md): what a code outside the catalogue is answered with.
    public init(httpStatus: Int) {
        switch httpStatus {
        case 400: self = .internal
        case 401: self = .unauthenticated
        case 403: self = .permissionDenied
        case 404: self = .unimplemented
        case 429, 502, 503, 504: self = .unavailable
        default: self = .unknown
        }
    }

    case cancelled = 1
    case unknown = 2
    case invalidArgument = 3
    case deadlineExceeded = 4
    case notFound = 5
    case permissionDenied = 7
    case resourceExhausted = 8
    case failedPrecondition = 9
    case aborted = 10
    case unimplemented = 12
    case `internal` = 13
    case unavailable = 14
    case unauthenticated = 16
}

/// One kind of error Sluice answers with: a stable snake_case code, the HTTP status and gRPC
/// status it is answered with, and whether the same request may succeed if sent again.
/// Every code Sluice itself gives is declared once, below; connectors add backend codes of their
/// own (`kafka_…`, `kinesis_…`) through `DeliveryFailure`.
public struct ErrorCode: Sendable, Hashable, CustomStringConvertible {
    public let code: String
    public let httpStatus: Int
    public let grpcStatus: GRPCStatusCode
    public let isRetryable: Bool

    public init(_ code: String, http: Int, grpc: GRPCStatusCode, retryable: Bool = false) {
        self.code = code
        self.httpStatus = http
        self.grpcStatus = grpc
        self.isRetryable = retryable
    }

    public var description: String { self.code }
}

extension ErrorCode {
    // MARK: The request as sent (the client's to fix)

    /// The request target is not a path Sluice serves (see RequestTarget).
    public static let invalidPath = ErrorCode("invalid_path", http: 400, grpc: .invalidArgument)
    /// A header name or value the gateway refuses to pass on.
    public static let invalidHeader = ErrorCode("invalid_header", http: 400, grpc: .invalidArgument)
    /// HTTP/1.1 without exactly one Host header.
    public static let invalidHost = ErrorCode("invalid_host", http: 400, grpc: .invalidArgument)
    /// Not valid HTTP/1.1.
    public static let malformedRequest = ErrorCode("malformed_request", http: 400, grpc: .invalidArgument)
    /// The request head is larger than the listener's max_header_bytes.
    public static let headersTooLarge = ErrorCode("headers_too_large", http: 431, grpc: .invalidArgument)
    /// No route matches.
    public static let noRoute = ErrorCode("no_route", http: 404, grpc: .notFound)
    /// A route matches the path, not the method.
    public static let methodNotAllowed = ErrorCode("method_not_allowed", http: 405, grpc: .unimplemented)
    /// Nothing at this admin path.
    public static let notFound = ErrorCode("not_found", http: 404, grpc: .notFound)
    /// The body could not be read (the client went away or broke the protocol mid-body).
    public static let bodyReadFailed = ErrorCode("body_read_failed", http: 400, grpc: .invalidArgument)
    /// The body is larger than the route's max_body_bytes.
    public static let bodyTooLarge = ErrorCode("body_too_large", http: 413, grpc: .invalidArgument)
    /// The proxy cannot pass this request on as it is.
    public static let invalidRequest = ErrorCode("invalid_request", http: 400, grpc: .invalidArgument)

    // MARK: Ingest rules

    /// The rendered topic is not a destination of the route's sink.
    public static let invalidTopic = ErrorCode("invalid_topic", http: 400, grpc: .invalidArgument)
    /// The topic is valid but not among the route's topics_allowed.
    public static let unknownTopic = ErrorCode("unknown_topic", http: 404, grpc: .notFound)
    /// The request holds more than the route's max_events.
    public static let tooManyEvents = ErrorCode("too_many_events", http: 413, grpc: .invalidArgument)
    /// One event is larger than max_event_bytes (or than the backend takes).
    public static let eventTooLarge = ErrorCode("event_too_large", http: 413, grpc: .invalidArgument)
    /// An event (NDJSON line, JSON body) is not valid JSON.
    public static let invalidJSON = ErrorCode("invalid_json", http: 400, grpc: .invalidArgument)
    /// The route's key pointer finds an object, array or null.
    public static let invalidKey = ErrorCode("invalid_key", http: 400, grpc: .invalidArgument)
    /// The route takes keys from a JSON pointer, and the body is not JSON.
    public static let jsonRequired = ErrorCode("json_required", http: 415, grpc: .invalidArgument)
    /// The body holds no events.
    public static let noEvents = ErrorCode("no_events", http: 400, grpc: .invalidArgument)
    /// Not a valid CloudEvent (a required attribute missing, a bad name or value).
    public static let invalidCloudEvent = ErrorCode("invalid_cloudevent", http: 400, grpc: .invalidArgument)
    /// A body type the route's API does not take.
    public static let unsupportedMediaType = ErrorCode("unsupported_media_type", http: 415, grpc: .invalidArgument)
    /// A record the backend would refuse for its format (a Zerobus record that is not one JSON
    /// object or one protobuf message).
    public static let invalidRecord = ErrorCode("invalid_record", http: 400, grpc: .invalidArgument)
    /// A Kinesis partition key that is not 1 to 256 characters of UTF-8.
    public static let invalidPartitionKey = ErrorCode("invalid_partition_key", http: 400, grpc: .invalidArgument)
    /// An event that breaks the route's schema (the message names the JSON pointers and keywords).
    public static let schemaViolation = ErrorCode("schema_violation", http: 422, grpc: .invalidArgument)
    /// The route's Schema Registry could not say which id frames the events (unreachable, timed
    /// out, refused Sluice's credentials, answered what it should not): nothing was sent.
    public static let schemaRegistryUnavailable = ErrorCode("schema_registry_unavailable", http: 503, grpc: .unavailable, retryable: true)
    /// The subject has no schema like the route's and the route does not register it
    /// (`auto_register: false`), or the registry refused to register it: nothing was sent; an
    /// operator's to fix, after which the same request succeeds.
    public static let schemaNotRegistered = ErrorCode("schema_not_registered", http: 503, grpc: .failedPrecondition, retryable: true)

    // MARK: Idempotency-Key (routes with idempotency)

    /// The route requires an Idempotency-Key and the request has none.
    public static let idempotencyKeyMissing = ErrorCode("idempotency_key_missing", http: 400, grpc: .invalidArgument)
    /// An Idempotency-Key header that is not one key of 1 to 255 ASCII characters.
    public static let invalidIdempotencyKey = ErrorCode("invalid_idempotency_key", http: 400, grpc: .invalidArgument)
    /// An Idempotency-Key on a request that is answered as it streams (REST Proxy v3 streaming mode).
    public static let idempotencyNotSupported = ErrorCode("idempotency_not_supported", http: 400, grpc: .invalidArgument)
    /// A request with this key is still running (the client may retry once it has ended).
    public static let idempotencyKeyInUse = ErrorCode("idempotency_key_in_use", http: 409, grpc: .aborted)
    /// The key was used before for a different request.
    public static let idempotencyKeyReused = ErrorCode("idempotency_key_reused", http: 422, grpc: .failedPrecondition)
    /// The key store cannot be reached (Redis, failure_mode: closed) or is full of keys in flight.
    public static let idempotencyUnavailable = ErrorCode("idempotency_unavailable", http: 503, grpc: .unavailable, retryable: true)

    // MARK: The spool (ack: spooled)

    /// The route's spool stayed at max_bytes past max_wait (its sink is slower than its
    /// producers): the events were not spooled.
    public static let spoolFull = ErrorCode("spool_full", http: 503, grpc: .resourceExhausted, retryable: true)
    /// Writing or fsyncing the spool failed (a full disk among the reasons): the events were not spooled.
    public static let spoolWriteFailed = ErrorCode("spool_write_failed", http: 503, grpc: .unavailable, retryable: true)

    // MARK: Policies

    public static let unauthenticated = ErrorCode("unauthenticated", http: 401, grpc: .unauthenticated)
    public static let forbidden = ErrorCode("forbidden", http: 403, grpc: .permissionDenied)
    public static let corsRefused = ErrorCode("cors_refused", http: 403, grpc: .permissionDenied)
    public static let rateLimited = ErrorCode("rate_limited", http: 429, grpc: .resourceExhausted, retryable: true)
    /// A global rate limit whose store cannot be reached, with failure_mode: closed.
    public static let rateLimitUnavailable = ErrorCode("rate_limit_unavailable", http: 503, grpc: .unavailable, retryable: true)

    // MARK: Sinks (retryable unless the event itself is at fault)

    /// The sink's queue stayed full past the route's max_wait.
    public static let sinkSaturated = ErrorCode("sink_saturated", http: 503, grpc: .unavailable, retryable: true)
    public static let sinkShuttingDown = ErrorCode("sink_shutting_down", http: 503, grpc: .unavailable, retryable: true)
    /// The sink did not settle the event in time; it may still be delivered.
    public static let deliveryUnconfirmed = ErrorCode("delivery_unconfirmed", http: 503, grpc: .unavailable, retryable: true)
    /// Never handed to the sink: the request stopped before this event.
    public static let notAttempted = ErrorCode("not_attempted", http: 503, grpc: .unavailable, retryable: true)
    public static let fileWriteFailed = ErrorCode("file_write_failed", http: 500, grpc: .internal)
    public static let kinesisTooManyStreams = ErrorCode("kinesis_too_many_streams", http: 503, grpc: .unavailable, retryable: true)
    public static let zerobusUnavailable = ErrorCode("zerobus_unavailable", http: 503, grpc: .unavailable, retryable: true)
    public static let zerobusDeliveryTimeout = ErrorCode("zerobus_delivery_timeout", http: 503, grpc: .unavailable, retryable: true)
    public static let zerobusTooManyTables = ErrorCode("zerobus_too_many_tables", http: 503, grpc: .unavailable, retryable: true)

    // MARK: Upstreams (proxy routes)

    public static let noUpstream = ErrorCode("no_upstream", http: 503, grpc: .unavailable, retryable: true)
    public static let upstreamOverloaded = ErrorCode("upstream_overloaded", http: 503, grpc: .unavailable, retryable: true)
    public static let noHealthyUpstream = ErrorCode("no_healthy_upstream", http: 503, grpc: .unavailable, retryable: true)
    public static let upstreamTimeout = ErrorCode("upstream_timeout", http: 504, grpc: .deadlineExceeded, retryable: true)
    public static let upstreamUnavailable = ErrorCode("upstream_unavailable", http: 502, grpc: .unavailable, retryable: true)

    // MARK: Admin API

    /// No valid bearer token for the admin API.
    public static let adminUnauthorized = ErrorCode("admin_unauthorized", http: 401, grpc: .unauthenticated)
    /// A reloaded configuration is invalid, or changes what only a restart can.
    public static let configInvalid = ErrorCode("config_invalid", http: 422, grpc: .invalidArgument)
    /// A valid configuration could not be put to work (a sink that cannot start, an address in use).
    public static let reloadFailed = ErrorCode("reload_failed", http: 500, grpc: .failedPrecondition)
    /// A sink setting an operator sent is unknown or out of range.
    public static let invalidSetting = ErrorCode("invalid_setting", http: 422, grpc: .invalidArgument)
    /// The gateway is stopping.
    public static let shuttingDown = ErrorCode("shutting_down", http: 503, grpc: .unavailable, retryable: true)
}

extension ErrorCode {
    /// Every code of the catalogue, to look one up by the name a failure carries.
    public static let all: [ErrorCode] = [
        .invalidPath,
        .invalidHeader,
        .invalidHost,
        .malformedRequest,
        .headersTooLarge,
        .noRoute,
        .methodNotAllowed,
        .notFound,
        .bodyReadFailed,
        .bodyTooLarge,
        .invalidRequest,
        .invalidTopic,
        .unknownTopic,
        .tooManyEvents,
        .eventTooLarge,
        .invalidJSON,
        .invalidKey,
        .jsonRequired,
        .noEvents,
        .invalidCloudEvent,
        .unsupportedMediaType,
        .invalidRecord,
        .invalidPartitionKey,
        .schemaViolation,
        .schemaRegistryUnavailable,
        .schemaNotRegistered,
        .idempotencyKeyMissing,
        .invalidIdempotencyKey,
        .idempotencyNotSupported,
        .idempotencyKeyInUse,
        .idempotencyKeyReused,
        .idempotencyUnavailable,
        .spoolFull,
        .spoolWriteFailed,
        .unauthenticated,
        .forbidden,
        .corsRefused,
        .rateLimited,
        .rateLimitUnavailable,
        .sinkSaturated,
        .sinkShuttingDown,
        .deliveryUnconfirmed,
        .notAttempted,
        .fileWriteFailed,
        .kinesisTooManyStreams,
        .zerobusUnavailable,
        .zerobusDeliveryTimeout,
        .zerobusTooManyTables,
        .noUpstream,
        .upstreamOverloaded,
        .noHealthyUpstream,
        .upstreamTimeout,
        .upstreamUnavailable,
        .adminUnauthorized,
        .configInvalid,
        .reloadFailed,
        .invalidSetting,
        .shuttingDown,
    ]

    private static let byName = Dictionary(uniqueKeysWithValues: Self.all.map { ($0.code, $0) })

    /// The catalogue's entry for `code`; nil for a backend's own code (`kafka_…`).
    public static func named(_ code: String) -> ErrorCode? {
        Self.byName[code]
    }
}

extension DeliveryFailure {
    /// An event's failure of a kind in the catalogue.
    public init(_ code: ErrorCode, _ message: String) {
        self.init(code: code.code, message: message, isRetryable: code.isRetryable, httpStatus: code.httpStatus)
    }
}
