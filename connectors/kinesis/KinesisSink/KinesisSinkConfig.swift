import Foundation
import SluiceCore

/// A `kinesis:` sink as configured.
public struct KinesisSinkConfig: Sendable, Equatable {
    /// AWS region, e.g. `us-east-1`; part of every signature.
    public var region: String
    /// The default stream (name or ARN) for routes that set no `topic`; may use route parameters.
    public var stream: String?
    /// Where PutRecords goes; default `https://kinesis.{region}.amazonaws.com`. Override for
    /// tests, LocalStack-style emulators and VPC endpoints.
    public var endpoint: URL?
    public var credentials: CredentialsConfig
    /// How events without a key get their partition key.
    public var partitionKey: PartitionKeySource
    public var maxBatchRecords: Int
    public var maxBatchBytes: Int
    /// How long a batch waits for more events before it is sent.
    public var linger: Duration
    /// Concurrent PutRecords calls per stream at most (halved on throttling, regrown on success).
    public var maxConcurrentRequests: Int
    /// Kept-alive connections to the endpoint at most.
    public var maxConnections: Int
    /// One PutRecords call, connect to last byte.
    public var requestTimeout: Duration
    /// An event not durable by then (retries included) fails, retryable.
    public var deliveryTimeout: Duration

    /// Service limits (PutRecords): records and bytes per call, bytes per record (data +
    /// partition key), partition key length.
    public static let maxRecordsPerCall = 500
    public static let maxBytesPerCall = 5 * 1024 * 1024
    public static let maxRecordBytes = 1024 * 1024
    public static let maxPartitionKeyLength = 256

    public init(
        region: String, stream: String? = nil, endpoint: URL? = nil, credentials: CredentialsConfig = .defaultChain,
        partitionKey: PartitionKeySource = .random, maxBatchRecords: Int = Self.maxRecordsPerCall, maxBatchBytes: Int = Self.maxBytesPerCall,
        linger: Duration = .milliseconds(10), maxConcurrentRequests: Int = 8, maxConnections: Int = 16,
        requestTimeout: Duration = .seconds(10), deliveryTimeout: Duration = .seconds(30)
    ) {
        self.region = region
        self.stream = stream
        self.endpoint = endpoint
        self.credentials = credentials
        self.partitionKey = partitionKey
        self.maxBatchRecords = maxBatchRecords
        self.maxBatchBytes = maxBatchBytes
        self.linger = linger
        self.maxConcurrentRequests = maxConcurrentRequests
        self.maxConnections = maxConnections
        self.requestTimeout = requestTimeout
        self.deliveryTimeout = deliveryTimeout
    }

    public var effectiveEndpoint: URL {
        self.endpoint ?? URL(string: "https://kinesis.\(self.region).amazonaws.com")!
    }

    /// Where credentials come from. Secrets are named (environment variable or file), never inline.
    public enum CredentialsConfig: Sendable, Equatable {
        /// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, then web identity
        /// (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`), then the shared credentials file
        /// (`AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`, profile `AWS_PROFILE` or `default`).
        case defaultChain
        /// A key id with its secret (and optional session token) read from an environment
        /// variable or a file.
        case `static`(accessKeyID: SecretSource, secretAccessKey: SecretSource, sessionToken: SecretSource?)
        /// A profile of a shared credentials file.
        case profile(name: String, file: String?)
        /// STS AssumeRoleWithWebIdentity with a token file (Kubernetes service account tokens).
        case webIdentity(roleARN: String, tokenFile: String, sessionName: String?)
    }

    public typealias SecretSource = SluiceCore.SecretSource

    public enum PartitionKeySource: Sendable, Equatable {
        /// A random 128-bit hex key per event (spreads load over every shard).
        case random
        /// This fixed key for every event without one (all of them land on one shard).
        case fixed(String)
        /// A template with route parameters (`tenant-{tenant}`): each route renders it into the
        /// key of its events that have none, so the sink only ever sees the result.
        case template(String)
    }

    /// Kinesis stream names: 1-128 of `[a-zA-Z0-9_.-]`; ARNs: `arn:PARTITION:kinesis:REGION:ACCOUNT:stream/NAME`.
    public static func streamProblem(_ stream: String) -> String? {
        if stream.hasPrefix("arn:") {
            let parts = stream.split(separator: ":", maxSplits: 5, omittingEmptySubsequences: false)
            guard parts.count == 6, parts[2] == "kinesis", parts[5].hasPrefix("stream/"),
                let name = parts.last?.dropFirst("stream/".count), streamNameProblem(String(name)) == nil
            else {
                return "\"\(stream)\" is not a Kinesis stream ARN (arn:aws:kinesis:REGION:ACCOUNT:stream/NAME)"
            }
            return nil
        }
        return streamNameProblem(stream)
    }

    private static func streamNameProblem(_ name: String) -> String? {
        guard !name.isEmpty, name.utf8.count <= 128 else {
            return "a Kinesis stream name has 1 to 128 characters; \"\(name.prefix(40))\" has \(name.utf8.count)"
        }
        let allowed = name.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == 0x2E || byte == 0x5F
                || byte == 0x2D
        }
        return allowed ? nil : "\"\(name)\" is not a valid Kinesis stream name: use letters, digits, '.', '_' and '-'"
    }
}
