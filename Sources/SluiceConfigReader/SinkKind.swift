import ServiceLifecycle
import SluiceCore
import Yams

/// A sink as the gateway runs it: it takes events, and it is a service that flushes when the
/// gateway stops.
public typealias RunnableSink = Sink & Service

/// A kind of sink a connector brings: the YAML key that selects it under `sinks[]`, how its
/// settings are read, and how a sink is built from them. The executable hands the list of kinds
/// to the configuration parser; nothing else in the gateway knows which kinds exist.
public struct SinkKind: Sendable {
    /// The key under a sink entry (`kafka`, `kinesis`, ...).
    public let key: String
    /// Reads the settings at `path`, reporting every problem on the reader; nil when any.
    public let read: @Sendable (_ node: Node, _ path: String, _ reader: ConfigReader) -> (any SinkSettings)?
    /// Builds a sink from settings this kind read.
    public let make: @Sendable (_ settings: any SinkSettings, _ context: SinkContext) throws -> any RunnableSink

    public init<Settings: SinkSettings>(
        key: String, read: @escaping @Sendable (_ node: Node, _ path: String, _ reader: ConfigReader) -> Settings?,
        make: @escaping @Sendable (_ settings: Settings, _ context: SinkContext) throws -> any RunnableSink
    ) {
        self.key = key
        self.read = { node, path, reader in read(node, path, reader) }
        self.make = { settings, context in
            guard let settings = settings as? Settings else {
                preconditionFailure("sink kind \(key) was given settings of another kind (\(type(of: settings)))")
            }
            return try make(settings, context)
        }
    }
}

/// A sink's settings, as its connector read them.
public protocol SinkSettings: Sendable {
    /// What a route may name as its `topic` through a sink with these settings.
    var destinations: SinkDestinations { get }
    /// A resource no two sinks may share (a file sink's directory), or nil.
    var exclusiveResource: ExclusiveSinkResource? { get }
    /// Where the sink's records go, as `sluice catalog` describes it (an AsyncAPI server).
    var server: SinkServer { get }
}

extension SinkSettings {
    public var exclusiveResource: ExclusiveSinkResource? { nil }
}

/// Where a sink's records go, as an AsyncAPI server object: the host (`host:port`), the protocol
/// (`kafka`, `kafka-secure`, `https`, `file`…), the path under it, and a line for people. Never
/// credentials: catalogs are published.
public struct SinkServer: Sendable, Equatable {
    public var host: String
    public var `protocol`: String
    public var pathname: String?
    public var description: String

    public init(host: String, protocol: String, pathname: String? = nil, description: String) {
        self.host = host
        self.protocol = `protocol`
        self.pathname = pathname
        self.description = description
    }
}

/// A resource only one sink may use: `field` is the key under the kind that names it, `shown`
/// what the config said, `identity` what is compared (e.g. the standardized path).
public struct ExclusiveSinkResource: Sendable, Equatable {
    public var field: String
    public var shown: String
    public var identity: String

    public init(field: String, shown: String, identity: String) {
        self.field = field
        self.shown = shown
        self.identity = identity
    }
}

/// What a sink's kind accepts as a route's destination (`topic`), and what its records carry.
public struct SinkDestinations: Sendable {
    /// Why a rendered destination cannot be used, or nil.
    public var problem: @Sendable (String) -> String?
    /// The destination for routes that set no `topic` (a Kinesis sink's `stream`).
    public var defaultTopic: String?
    /// The key under the kind that sets the default (`stream`, `table`); nil when the kind has none.
    public var defaultTopicKey: String?
    /// Whether its records carry headers (`headers_to_kafka`).
    public var carriesHeaders: Bool
    /// Whether its records have keys (`key`).
    public var carriesKeys: Bool
    /// A key template for events without one (a Kinesis sink's `partition_key` with parameters).
    public var defaultKey: String?
    /// Whether its records go to a partition the producer may choose (Kafka).
    public var carriesPartitions: Bool

    public init(
        problem: @escaping @Sendable (String) -> String?, defaultTopic: String? = nil, defaultTopicKey: String? = nil,
        carriesHeaders: Bool = true, carriesKeys: Bool = true, defaultKey: String? = nil, carriesPartitions: Bool = false
    ) {
        self.problem = problem
        self.defaultTopic = defaultTopic
        self.defaultTopicKey = defaultTopicKey
        self.carriesHeaders = carriesHeaders
        self.carriesKeys = carriesKeys
        self.defaultKey = defaultKey
        self.carriesPartitions = carriesPartitions
    }

    /// Kafka topics: named by each route, with keys, headers and partitions.
    public static let kafkaTopics = SinkDestinations(problem: TopicName.problem, carriesPartitions: true)
}
