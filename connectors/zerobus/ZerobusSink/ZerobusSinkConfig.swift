import Foundation
import SluiceCore

/// A `zerobus:` sink as configured.
public struct ZerobusSinkConfig: Sendable, Equatable {
    /// The ingest endpoint: `https://<workspace id>.zerobus.<region>.cloud.databricks.com` (TLS),
    /// or `http://host:port` for a local server (plaintext).
    public var endpoint: URL
    /// The workspace's URL; tokens come from `{workspace_url}/oidc/v1/token`.
    public var workspaceURL: URL
    /// The workspace id in the token's `resource`; by default the first label of the endpoint's host.
    public var workspaceID: String?
    /// The table for routes that set no `topic` (catalog.schema.table; may use route parameters).
    public var table: String?
    public var recordType: RecordType
    /// The OAuth client (service principal) id.
    public var clientID: String
    public var clientSecret: SecretSource
    /// Records sent on one table's stream and not yet acknowledged; past this, sending waits.
    public var maxInFlightRecords: Int
    /// Records per `ingest_record_batch` (1: every record as its own `ingest_record`).
    public var maxBatchRecords: Int
    /// Bytes of records per batch message.
    public var maxBatchBytes: Int
    /// The largest record accepted (gRPC's default 4 MiB message limit, less room for framing).
    public var maxRecordBytes: Int
    /// Trusted CA certificates (PEM) for a TLS endpoint; the system's roots when nil.
    public var caFile: String?
    /// Opening a stream (connect, token, create_stream answered) may take this long.
    public var openTimeout: Duration
    /// An event not acknowledged by then fails (retryable).
    public var deliveryTimeout: Duration
    /// A stream whose oldest unacknowledged record has waited this long without any ack arriving is
    /// presumed to have lost acks: it is half-closed (the service acknowledges what it has) and what
    /// stays unacknowledged is sent again on a new stream.
    public var ackTimeout: Duration

    public static let defaultMaxRecordBytes = 4 * 1024 * 1024 - 16 * 1024

    public init(
        endpoint: URL, workspaceURL: URL, workspaceID: String? = nil, table: String? = nil, recordType: RecordType = .json,
        clientID: String, clientSecret: SecretSource, maxInFlightRecords: Int = 50_000, maxBatchRecords: Int = 500,
        maxBatchBytes: Int = 1024 * 1024, maxRecordBytes: Int = Self.defaultMaxRecordBytes, caFile: String? = nil,
        openTimeout: Duration = .seconds(15), deliveryTimeout: Duration = .seconds(30), ackTimeout: Duration = .seconds(10)
    ) {
        self.endpoint = endpoint
        self.workspaceURL = workspaceURL
        self.workspaceID = workspaceID
        self.table = table
        self.recordType = recordType
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.maxInFlightRecords = maxInFlightRecords
        self.maxBatchRecords = maxBatchRecords
        self.maxBatchBytes = maxBatchBytes
        self.maxRecordBytes = maxRecordBytes
        self.caFile = caFile
        self.openTimeout = openTimeout
        self.deliveryTimeout = deliveryTimeout
        self.ackTimeout = ackTimeout
    }

    public enum RecordType: Sendable, Equatable {
        /// Each event is one JSON object (`json_record`).
        case json
        /// Each event is one protobuf-encoded message of `descriptor` (`proto_encoded_record`).
        case proto(ProtoSchema)
    }

    /// The message type of proto records, from a descriptor set (`protoc --descriptor_set_out`).
    public struct ProtoSchema: Sendable, Equatable {
        /// The descriptor set file.
        public var file: String
        /// The message's full name (package.Message).
        public var message: String
        /// The serialized `google.protobuf.DescriptorProto` sent in `create_stream`.
        public var descriptor: [UInt8]

        public init(file: String, message: String, descriptor: [UInt8]) {
            self.file = file
            self.message = message
            self.descriptor = descriptor
        }
    }

    /// Whether the endpoint is reached over TLS.
    public var usesTLS: Bool { self.endpoint.scheme == "https" }

    /// The workspace id for tokens: configured, else the endpoint host's first label.
    public var effectiveWorkspaceID: String {
        if let id = self.workspaceID { return id }
        let host = self.endpoint.host ?? ""
        return String(host.split(separator: ".").first ?? Substring(host))
    }

    /// Why `table` is not a Unity Catalog table name (catalog.schema.table), or nil.
    public static func tableProblem(_ table: String) -> String? {
        let parts = table.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts.allSatisfy({ !$0.isEmpty }) else {
            return "\"\(table.prefix(80))\" is not a table name: use catalog.schema.table"
        }
        for part in parts {
            if part.utf8.count > 255 { return "each part of a table name has at most 255 bytes" }
            if part.unicodeScalars.contains(where: { $0.properties.generalCategory == .control || $0 == " " || $0 == "/" }) {
                return "\"\(table.prefix(80))\" is not a table name: no spaces, slashes or control characters"
            }
        }
        return nil
    }
}
