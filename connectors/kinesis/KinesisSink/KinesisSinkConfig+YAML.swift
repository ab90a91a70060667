import Foundation
import SluiceConfigReader
import SluiceCore
import Yams

extension KinesisSink {
    /// `kinesis:` under a sink: PutRecords to one stream (or one per route), SigV4-signed.
    public static let kind = SinkKind(key: "kinesis", read: KinesisSinkConfig.read) { config, context in
        try KinesisSink(config: config, context: context)
    }
}

extension KinesisSinkConfig: SinkSettings {
    public var destinations: SinkDestinations {
        var defaultKey: String?
        if case .template(let text) = self.partitionKey { defaultKey = text }
        return SinkDestinations(
            problem: KinesisSinkConfig.streamProblem, defaultTopic: self.stream, defaultTopicKey: "stream", carriesHeaders: false, carriesKeys: true,
            defaultKey: defaultKey)
    }

    /// The Kinesis API endpoint of the region (or the configured one): PutRecords, SigV4-signed.
    public var server: SinkServer {
        let endpoint = self.effectiveEndpoint
        let host = endpoint.host ?? "kinesis.\(self.region).amazonaws.com"
        return SinkServer(
            host: endpoint.port.map { "\(host):\($0)" } ?? host, protocol: endpoint.scheme ?? "https",
            description: "Amazon Kinesis Data Streams in \(self.region) (PutRecords, SigV4)")
    }

    /// Reads `kinesis:` of a sink entry.
    public static func read(_ node: Node, _ path: String, _ r: ConfigReader) -> KinesisSinkConfig? {
        let allowed = [
            "region", "stream", "endpoint", "credentials", "partition_key", "max_batch_records", "max_batch_bytes", "linger",
            "max_concurrent_requests", "max_connections", "request_timeout", "delivery_timeout",
        ]
        guard let fields = r.mapping(node, path, allowed: allowed) else { return nil }
        var ok = true
        let region = r.required(fields["region"], in: path, key: "region") { r.nonEmptyString($0, $1) }
        if let region, !region.allSatisfy({ $0.isLowercase || $0.isNumber || $0 == "-" }) {
            r.error(path + ".region", "\"\(region)\" is not an AWS region name (like us-east-1)")
            ok = false
        }
        var config = KinesisSinkConfig(region: region ?? "")
        if let (n, p) = fields["stream"] {
            if let stream = r.destinationTemplate(n, p, problem: KinesisSinkConfig.streamProblem) { config.stream = stream } else { ok = false }
        }
        if let (n, p) = fields["endpoint"] {
            if let url = r.httpURL(n, p, example: "https://kinesis.us-east-1.amazonaws.com") { config.endpoint = url } else { ok = false }
        }
        if let (n, p) = fields["credentials"] {
            if let credentials = readAWSCredentials(n, p, r) { config.credentials = credentials } else { ok = false }
        }
        if let (n, p) = fields["partition_key"], let text = r.nonEmptyString(n, p) {
            if text == "random" {
                config.partitionKey = .random
            } else {
                switch ParameterTemplate.parse(text) {
                case .success(let template) where template.fixedValue != nil:
                    if text.count > KinesisSinkConfig.maxPartitionKeyLength {
                        r.error(p, "a partition key has 1 to \(KinesisSinkConfig.maxPartitionKeyLength) characters")
                        ok = false
                    } else {
                        config.partitionKey = .fixed(text)
                    }
                case .success:
                    config.partitionKey = .template(text)
                case .failure(let error):
                    r.error(p, error.message)
                    ok = false
                }
            }
        }
        if let (n, p) = fields["max_batch_records"] {
            if let v = r.integer(n, p, range: 1...KinesisSinkConfig.maxRecordsPerCall) { config.maxBatchRecords = v } else { ok = false }
        }
        if let (n, p) = fields["max_batch_bytes"] {
            if let v = r.size(n, p, min: 1024) {
                if v > KinesisSinkConfig.maxBytesPerCall {
                    r.error(p, "PutRecords takes at most 5MiB per call")
                    ok = false
                } else {
                    config.maxBatchBytes = v
                }
            } else {
                ok = false
            }
        }
        if let (n, p) = fields["linger"] {
            if let v = r.duration(n, p), v <= .seconds(10) { config.linger = v } else {
                if r.duration(n, p) != nil { r.error(p, "at most 10s") }
                ok = false
            }
        }
        if let (n, p) = fields["max_concurrent_requests"] {
            if let v = r.integer(n, p, range: 1...256) { config.maxConcurrentRequests = v } else { ok = false }
        }
        if let (n, p) = fields["max_connections"] {
            if let v = r.integer(n, p, range: 1...1024) { config.maxConnections = v } else { ok = false }
        }
        if let (n, p) = fields["request_timeout"] {
            if let v = r.duration(n, p, min: .milliseconds(100)) { config.requestTimeout = v } else { ok = false }
        }
        if let (n, p) = fields["delivery_timeout"] {
            if let v = r.duration(n, p, min: .seconds(1)) { config.deliveryTimeout = v } else { ok = false }
        }
        guard ok, region != nil else { return nil }
        return config
    }

    /// `credentials:` of an AWS sink: static keys (secret from an environment variable or a
    /// file), a shared-credentials profile, or web identity. Secrets are never accepted inline.
    static func readAWSCredentials(_ node: Node, _ path: String, _ r: ConfigReader) -> KinesisSinkConfig.CredentialsConfig? {
        let allowed = [
            "access_key_id", "access_key_id_env", "secret_access_key_env", "secret_access_key_file", "session_token_env",
            "session_token_file", "profile", "file", "web_identity", "secret_access_key", "session_token",
        ]
        guard let fields = r.mapping(node, path, allowed: allowed) else { return nil }
        var ok = true
        for inline in ["secret_access_key", "session_token"] where fields[inline] != nil {
            r.error(path + "." + inline, "secrets are not accepted inline: use \(inline)_env (an environment variable) or \(inline)_file")
            ok = false
        }
        func source(_ literal: String?, env: String, file: String) -> KinesisSinkConfig.SecretSource? {
            let options = [literal, env, file].compactMap { $0 }.filter { fields[$0] != nil }
            if options.count > 1 {
                r.error(path, "set only one of \(options.joined(separator: ", "))")
                ok = false
                return nil
            }
            if let literal, let (n, p) = fields[literal], let value = r.nonEmptyString(n, p) { return .literal(value) }
            if let (n, p) = fields[env], let value = r.nonEmptyString(n, p) { return .environment(value) }
            if let (n, p) = fields[file], let value = r.nonEmptyString(n, p) { return .file(value) }
            return nil
        }
        let staticKeys = ["access_key_id", "access_key_id_env", "secret_access_key_env", "secret_access_key_file", "session_token_env", "session_token_file"]
        let families = [
            staticKeys.contains { fields[$0] != nil } ? "static keys" : nil, fields["profile"] != nil ? "profile" : nil,
            fields["web_identity"] != nil ? "web_identity" : nil,
        ].compactMap { $0 }
        guard families.count <= 1 else {
            r.error(path, "choose one credentials source; found \(families.joined(separator: " and "))")
            return nil
        }
        if let (n, p) = fields["web_identity"] {
            guard let wi = r.mapping(n, p, allowed: ["role_arn", "token_file", "session_name"]) else { return nil }
            let role = r.required(wi["role_arn"], in: p, key: "role_arn") { r.nonEmptyString($0, $1) }
            let token = r.required(wi["token_file"], in: p, key: "token_file") { r.nonEmptyString($0, $1) }
            let session = wi["session_name"].flatMap { r.nonEmptyString($0.0, $0.1) }
            guard ok, let role, let token else { return nil }
            return .webIdentity(roleARN: role, tokenFile: token, sessionName: session)
        }
        if let (n, p) = fields["profile"] {
            let name = r.nonEmptyString(n, p)
            let file = fields["file"].flatMap { r.nonEmptyString($0.0, $0.1) }
            guard ok, let name else { return nil }
            return .profile(name: name, file: file)
        }
        if let (_, p) = fields["file"] {
            r.error(p, "file goes with profile")
            ok = false
        }
        let id = source("access_key_id", env: "access_key_id_env", file: "__none__")
        let secret = source(nil, env: "secret_access_key_env", file: "secret_access_key_file")
        let token = source(nil, env: "session_token_env", file: "session_token_file")
        if families.isEmpty {
            return ok ? .defaultChain : nil
        }
        if id == nil { r.error(path + ".access_key_id", "required with static keys (or access_key_id_env)"); ok = false }
        if secret == nil, fields["secret_access_key"] == nil {
            r.error(path + ".secret_access_key_env", "required with static keys (or secret_access_key_file)")
            ok = false
        }
        guard ok, let id, let secret else { return nil }
        return .static(accessKeyID: id, secretAccessKey: secret, sessionToken: token)
    }
}
