import Foundation
import SluiceConfigReader
import SluiceCore
import Yams

extension ZerobusSink {
    /// `zerobus:` under a sink: one ingest stream per table over gRPC.
    public static let kind = SinkKind(key: "zerobus", read: ZerobusSinkConfig.read) { config, context in
        try ZerobusSink(config: config, context: context)
    }
}

extension ZerobusSinkConfig: SinkSettings {
    public var destinations: SinkDestinations {
        SinkDestinations(
            problem: ZerobusSinkConfig.tableProblem, defaultTopic: self.table, defaultTopicKey: "table", carriesHeaders: false, carriesKeys: false)
    }

    /// The Zerobus ingest endpoint: one gRPC stream per table.
    public var server: SinkServer {
        let host = self.endpoint.host ?? self.endpoint.absoluteString
        return SinkServer(
            host: self.endpoint.port.map { "\(host):\($0)" } ?? host, protocol: self.usesTLS ? "grpcs" : "grpc",
            description: "Databricks Zerobus ingest (EphemeralStream, durability acks)")
    }

    /// Reads `zerobus:` of a sink entry.
    public static func read(_ node: Node, _ path: String, _ r: ConfigReader) -> ZerobusSinkConfig? {
        let allowed = [
            "endpoint", "workspace_url", "workspace_id", "table", "record_type", "descriptor_set", "message", "client_id", "client_secret",
            "max_in_flight_records", "batch", "max_record_bytes", "ca_file", "open_timeout", "ack_timeout", "delivery_timeout",
        ]
        guard let fields = r.mapping(node, path, allowed: allowed) else { return nil }
        var ok = true
        func url(_ key: String, example: String) -> URL? {
            r.required(fields[key], in: path, key: key) { r.httpURL($0, $1, example: example) }
        }
        let endpoint = url("endpoint", example: "https://1234567890123456.zerobus.us-west-2.cloud.databricks.com")
        let workspace = url("workspace_url", example: "https://dbc-a1b2c3d4-e5f6.cloud.databricks.com")
        if let endpoint, endpoint.path.count > 1 {
            r.error(path + ".endpoint", "a gRPC endpoint has no path: use scheme://host[:port]")
            ok = false
        }
        let clientID = r.required(fields["client_id"], in: path, key: "client_id") { r.nonEmptyString($0, $1) }
        var secret: SecretSource?
        if let (n, p) = fields["client_secret"] {
            secret = r.secretSource(n, p)
            if secret == nil { ok = false }
        } else {
            r.error(path + ".client_secret", "required: { env: VARIABLE } or { file: PATH }")
            ok = false
        }
        guard let endpoint, let workspace, let clientID, let secret else { return nil }
        var config = ZerobusSinkConfig(endpoint: endpoint, workspaceURL: workspace, clientID: clientID, clientSecret: secret)
        if let (n, p) = fields["workspace_id"], let text = r.nonEmptyString(n, p) { config.workspaceID = text }
        if let (n, p) = fields["table"] {
            if let table = r.destinationTemplate(n, p, problem: ZerobusSinkConfig.tableProblem) { config.table = table } else { ok = false }
        }
        let recordType = fields["record_type"].flatMap { r.string($0.0, $0.1) } ?? "json"
        switch recordType {
        case "json":
            for key in ["descriptor_set", "message"] where fields[key] != nil {
                r.error(path + "." + key, "only for record_type: proto")
                ok = false
            }
        case "proto":
            let file = r.required(fields["descriptor_set"], in: path, key: "descriptor_set") { r.nonEmptyString($0, $1) }
            let message = r.required(fields["message"], in: path, key: "message") { r.nonEmptyString($0, $1) }
            if let file, let message {
                switch ZerobusSinkConfig.ProtoSchema.load(file: file, message: message) {
                case .success(let schema): config.recordType = .proto(schema)
                case .failure(let error):
                    r.error(path + ".descriptor_set", error.description)
                    ok = false
                }
            } else {
                ok = false
            }
        default:
            r.error(path + ".record_type", "expected json or proto, got \"\(recordType)\"")
            ok = false
        }
        if let (n, p) = fields["max_in_flight_records"] {
            if let v = r.integer(n, p, range: 1...1_000_000) { config.maxInFlightRecords = v } else { ok = false }
        }
        if let (n, p) = fields["batch"], let batch = r.mapping(n, p, allowed: ["max_records", "max_bytes"]) {
            if let (bn, bp) = batch["max_records"] {
                if let v = r.integer(bn, bp, range: 1...10_000) { config.maxBatchRecords = v } else { ok = false }
            }
            if let (bn, bp) = batch["max_bytes"] {
                if let v = r.size(bn, bp, min: 1024) { config.maxBatchBytes = v } else { ok = false }
            }
        } else if fields["batch"] != nil {
            ok = false
        }
        if let (n, p) = fields["max_record_bytes"] {
            if let v = r.size(n, p, min: 1) {
                if v > ZerobusSinkConfig.defaultMaxRecordBytes {
                    r.error(p, "a record travels in one gRPC message: at most \(ZerobusSinkConfig.defaultMaxRecordBytes) bytes")
                    ok = false
                } else {
                    config.maxRecordBytes = v
                }
            } else {
                ok = false
            }
        }
        if config.maxBatchBytes > ZerobusSinkConfig.defaultMaxRecordBytes {
            r.error(path + ".batch.max_bytes", "a batch is one gRPC message: at most \(ZerobusSinkConfig.defaultMaxRecordBytes) bytes")
            ok = false
        }
        if let (n, p) = fields["ca_file"] {
            if endpoint.scheme != "https" {
                r.error(p, "only for an https:// endpoint")
                ok = false
            } else if let file = r.readableFile(n, p) {
                config.caFile = file
            } else {
                ok = false
            }
        }
        if let (n, p) = fields["open_timeout"] {
            if let v = r.duration(n, p, min: .milliseconds(100)) { config.openTimeout = v } else { ok = false }
        }
        if let (n, p) = fields["ack_timeout"] {
            if let v = r.duration(n, p, min: .milliseconds(100)) { config.ackTimeout = v } else { ok = false }
        }
        if let (n, p) = fields["delivery_timeout"] {
            if let v = r.duration(n, p, min: .seconds(1)) { config.deliveryTimeout = v } else { ok = false }
        }
        return ok ? config : nil
    }
}
