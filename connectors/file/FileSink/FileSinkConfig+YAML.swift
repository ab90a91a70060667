import Foundation
import SluiceConfigReader
import SluiceCore
import Yams

extension FileSink {
    /// `file:` under a sink: NDJSON segment files in a directory of its own.
    public static let kind = SinkKind(key: "file", read: FileSinkConfig.read) { config, context in
        try FileSink(config: config, context: context)
    }
}

extension FileSinkConfig: SinkSettings {
    /// Named like Kafka topics, with keys and headers; no partitions to choose.
    public var destinations: SinkDestinations { SinkDestinations(problem: TopicName.problem) }

    /// NDJSON segment files under the directory, on the gateway's own host.
    public var server: SinkServer {
        SinkServer(host: "localhost", protocol: "file", pathname: self.directory, description: "NDJSON segment files, one directory per topic")
    }

    /// Two file sinks writing one directory would interleave segments and offsets.
    public var exclusiveResource: ExclusiveSinkResource? {
        ExclusiveSinkResource(
            field: "directory", shown: self.directory, identity: URL(fileURLWithPath: self.directory).standardizedFileURL.path)
    }

    /// Reads `file:` of a sink entry.
    public static func read(_ node: Node, _ path: String, _ r: ConfigReader) -> FileSinkConfig? {
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
}
