import Foundation
import SluiceCore
import Yams
import SluiceConfigReader

extension SluiceConfiguration {
    /// One entry of `upstreams:`.
    static func readUpstream(_ node: Node, _ path: String, _ r: ConfigReader) -> (name: String?, upstream: UpstreamConfig?) {
        let allowed = ["name", "endpoints", "tls", "http2", "load_balancing", "timeouts", "limits", "health_check", "outlier_detection"]
        guard let fields = r.mapping(node, path, allowed: allowed) else { return (nil, nil) }
        let name = readName(fields, path, r)
        var ok = true
        var endpoints: [SocketAddressConfig] = []
        if let items = r.required(fields["endpoints"], in: path, key: "endpoints", { r.sequence($0, $1) }) {
            if items.isEmpty { r.error(path + ".endpoints", "at least one endpoint (host:port) is required") }
            for (n, p) in items {
                guard let address = r.address(n, p) else {
                    ok = false
                    continue
                }
                if address.port == 0 { r.error(p, "an endpoint needs a port other than 0"); ok = false }
                if endpoints.contains(address) { r.error(p, "\(address) is listed twice"); ok = false }
                endpoints.append(address)
            }
            if items.count > 256 { r.error(path + ".endpoints", "at most 256 endpoints"); ok = false }
        } else {
            ok = false
        }
        var config = UpstreamConfig(name: name ?? "", endpoints: endpoints)
        config.source = canonicalYAML(node)

        if let (n, p) = fields["tls"] {
            if let tls = readUpstreamTLS(n, p, r) { config.tls = tls } else { ok = false }
        }
        if let (n, p) = fields["http2"], let value = r.bool(n, p) {
            // With tls: offered by ALPN; without: cleartext HTTP/2 with prior knowledge (h2c).
            config.http2 = value
        }
        if let (n, p) = fields["load_balancing"] {
            if case .scalar = n {
                switch r.string(n, p) {
                case "round_robin": config.loadBalancing = .roundRobin
                case "least_request": config.loadBalancing = .leastRequest
                case let other?:
                    r.error(p, "unknown load balancing \"\(other)\": use round_robin, least_request or { consistent_hash: { header: NAME } }")
                    ok = false
                case nil: ok = false
                }
            } else if let lb = r.mapping(n, p, allowed: ["consistent_hash"]) {
                if let (hn, hp) = lb["consistent_hash"], let hash = r.mapping(hn, hp, allowed: ["header"]),
                    let header = r.required(hash["header"], in: hp, key: "header", { r.nonEmptyString($0, $1) })
                {
                    config.loadBalancing = .consistentHash(header: header.lowercased())
                } else {
                    if lb["consistent_hash"] == nil { r.error(p, "expected round_robin, least_request or { consistent_hash: { header: NAME } }") }
                    ok = false
                }
            } else {
                ok = false
            }
        }
        if let (n, p) = fields["timeouts"], let t = r.mapping(n, p, allowed: ["connect", "request", "read", "idle"]) {
            if let (n, p) = t["connect"], let v = r.duration(n, p, min: .milliseconds(10)) { config.timeouts.connect = v }
            if let (n, p) = t["request"], let v = r.duration(n, p, min: .milliseconds(10)) { config.timeouts.request = v }
            if let (n, p) = t["read"], let v = r.duration(n, p, min: .milliseconds(10)) { config.timeouts.read = v }
            if let (n, p) = t["idle"], let v = r.duration(n, p, min: .seconds(1)) { config.timeouts.idle = v }
        }
        if let (n, p) = fields["limits"], let l = r.mapping(n, p, allowed: ["max_connections", "max_requests", "max_pending", "pending_timeout"]) {
            if let (n, p) = l["max_connections"], let v = r.integer(n, p, range: 1...10_000) { config.limits.maxConnections = v }
            if let (n, p) = l["max_requests"], let v = r.integer(n, p, range: 1...1_000_000) { config.limits.maxRequests = v }
            if let (n, p) = l["max_pending"], let v = r.integer(n, p, range: 0...1_000_000) { config.limits.maxPending = v }
            if let (n, p) = l["pending_timeout"], let v = r.duration(n, p, min: .milliseconds(1)) { config.limits.pendingTimeout = v }
        }
        if let (n, p) = fields["health_check"] {
            if let check = readHealthCheck(n, p, r) { config.healthCheck = check } else { ok = false }
        }
        if let (n, p) = fields["outlier_detection"],
            let o = r.mapping(n, p, allowed: ["consecutive_failures", "base_ejection_time", "max_ejection_time", "max_ejection_percent"])
        {
            if let (n, p) = o["consecutive_failures"], let v = r.integer(n, p, range: 0...1000) { config.outlierDetection.consecutiveFailures = v }
            if let (n, p) = o["base_ejection_time"], let v = r.duration(n, p, min: .milliseconds(100)) { config.outlierDetection.baseEjectionTime = v }
            if let (n, p) = o["max_ejection_time"], let v = r.duration(n, p, min: .milliseconds(100)) { config.outlierDetection.maxEjectionTime = v }
            if let (n, p) = o["max_ejection_percent"], let v = r.integer(n, p, range: 0...100) { config.outlierDetection.maxEjectionPercent = v }
            if config.outlierDetection.maxEjectionTime < config.outlierDetection.baseEjectionTime {
                r.error(p + ".max_ejection_time", "must be at least base_ejection_time")
                ok = false
            }
        }
        guard ok, name != nil else { return (name, nil) }
        return (name, config)
    }

    private static func readUpstreamTLS(_ node: Node, _ path: String, _ r: ConfigReader) -> UpstreamTLSConfig? {
        // `tls: {}` is HTTPS with the system roots. The certificate is checked against the
        // endpoint's host (AsyncHTTPClient takes SNI and the checked name from the URL).
        guard let fields = r.mapping(node, path, allowed: ["ca_file", "certificate_file", "key_file"]) else { return nil }
        var ok = true
        var tls = UpstreamTLSConfig()
        func file(_ key: String) -> String? {
            guard let (n, p) = fields[key] else { return nil }
            guard let file = r.readableFile(n, p) else {
                ok = false
                return nil
            }
            return file
        }
        tls.caFile = file("ca_file")
        tls.certificateFile = file("certificate_file")
        tls.keyFile = file("key_file")
        if (fields["certificate_file"] == nil) != (fields["key_file"] == nil) {
            r.error(path, "certificate_file and key_file go together")
            ok = false
        }
        return ok ? tls : nil
    }

    static func readListenerTLS(_ node: Node, _ path: String, _ r: ConfigReader) -> ListenerTLSConfig? {
        let allowed = ["certificates", "min_version", "client_certificates", "client_ca_file", "reload_interval"]
        guard let fields = r.mapping(node, path, allowed: allowed) else { return nil }
        var ok = true
        var certificates: [ListenerTLSConfig.Certificate] = []
        if let items = r.required(fields["certificates"], in: path, key: "certificates", { r.sequence($0, $1) }) {
            if items.isEmpty { r.error(path + ".certificates", "at least one certificate is required") }
            for (index, (n, p)) in items.enumerated() {
                guard let c = r.mapping(n, p, allowed: ["certificate_file", "key_file", "server_names"]) else {
                    ok = false
                    continue
                }
                let certificate = r.required(c["certificate_file"], in: p, key: "certificate_file", { r.readableFile($0, $1) })
                let key = r.required(c["key_file"], in: p, key: "key_file", { r.readableFile($0, $1) })
                var names: [String] = []
                if let (sn, sp) = c["server_names"], let list = r.stringList(sn, sp) {
                    names = list.map { $0.lowercased() }
                    if index == 0 { r.error(sp, "the first certificate is the default one: it has no server_names"); ok = false }
                } else if index > 0 {
                    r.error(p, "server_names is required on every certificate after the first (the default)")
                    ok = false
                }
                guard let certificate, let key else {
                    ok = false
                    continue
                }
                certificates.append(.init(certificateFile: certificate, keyFile: key, serverNames: names))
            }
        } else {
            ok = false
        }
        var tls = ListenerTLSConfig(certificates: certificates)
        if let (n, p) = fields["min_version"], let text = r.string(n, p) {
            if let version = ListenerTLSConfig.MinimumVersion(rawValue: text) {
                tls.minimumVersion = version
            } else {
                r.error(p, "expected \"1.2\" or \"1.3\", got \"\(text)\" (older versions are not offered)")
                ok = false
            }
        }
        if let (n, p) = fields["client_certificates"], let text = r.string(n, p) {
            if let mode = ListenerTLSConfig.ClientCertificates(rawValue: text) {
                tls.clientCertificates = mode
            } else {
                r.error(p, "expected none, optional or required, got \"\(text)\"")
                ok = false
            }
        }
        if let (n, p) = fields["client_ca_file"] {
            if let file = r.readableFile(n, p) { tls.clientCAFile = file } else { ok = false }
        }
        if tls.clientCertificates != .none, fields["client_ca_file"] == nil {
            r.error(path + ".client_ca_file", "required when client_certificates is \(tls.clientCertificates.rawValue)")
            ok = false
        }
        if let (n, p) = fields["reload_interval"], let v = r.duration(n, p, min: .milliseconds(100)) { tls.reloadInterval = v }
        return ok ? tls : nil
    }

    private static func readHealthCheck(_ node: Node, _ path: String, _ r: ConfigReader) -> HealthCheckConfig? {
        let allowed = ["path", "interval", "timeout", "healthy_threshold", "unhealthy_threshold", "expected_statuses"]
        guard let fields = r.mapping(node, path, allowed: allowed) else { return nil }
        var ok = true
        var check = HealthCheckConfig()
        if let (n, p) = fields["path"], let value = r.nonEmptyString(n, p) {
            // Sent as the check's request target: one the HTTP/1.1 encoder refuses would fail every
            // check and take every endpoint out of rotation.
            if let problem = RequestTargetBytes.originFormProblem(value) { r.error(p, problem); ok = false } else { check.path = value }
        }
        if let (n, p) = fields["interval"], let v = r.duration(n, p, min: .milliseconds(100)) { check.interval = v }
        if let (n, p) = fields["timeout"], let v = r.duration(n, p, min: .milliseconds(10)) { check.timeout = v }
        if let (n, p) = fields["healthy_threshold"], let v = r.integer(n, p, range: 1...100) { check.healthyThreshold = v }
        if let (n, p) = fields["unhealthy_threshold"], let v = r.integer(n, p, range: 1...100) { check.unhealthyThreshold = v }
        if let (n, p) = fields["expected_statuses"], let text = r.nonEmptyString(n, p) {
            // "200" or "200-399"
            let parts = text.split(separator: "-", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
            if parts.count == 1, let code = parts[0], (100...599).contains(code) {
                check.expectedStatuses = code...code
            } else if parts.count == 2, let low = parts[0], let high = parts[1], (100...599).contains(low), (low...599).contains(high) {
                check.expectedStatuses = low...high
            } else {
                r.error(p, "expected a status or a range like 200-399, got \"\(text)\"")
                ok = false
            }
        }
        if check.timeout > check.interval {
            r.error(path + ".timeout", "must not be longer than interval")
            ok = false
        }
        return ok ? check : nil
    }

    /// A route's `proxy:` action. `matched` is the route's path pattern (for path_rewrite).
    static func readProxy(_ node: Node, _ path: String, match: RouteMatchConfig?, upstreamNames: [String], _ r: ConfigReader) -> ProxyConfig? {
        let allowed = [
            "upstream", "splits", "mirror", "path_rewrite", "request_headers", "response_headers", "retries", "max_body_bytes",
            "upgrade",
        ]
        guard let fields = r.mapping(node, path, allowed: allowed) else { return nil }
        var ok = true
        func known(_ name: String, _ p: String) -> Bool {
            guard upstreamNames.contains(name) else {
                r.error(p, "unknown upstream \"\(name)\"" + ConfigReader.suggestion(for: name, among: upstreamNames))
                return false
            }
            return true
        }
        var config = ProxyConfig(upstream: "")
        switch (fields["upstream"], fields["splits"]) {
        case (let (n, p)?, nil):
            if let name = r.nonEmptyString(n, p), known(name, p) { config.splits = [(name, 1)] } else { ok = false }
        case (nil, let (n, p)?):
            var splits: [(upstream: String, weight: Int)] = []
            for (sn, sp) in r.sequence(n, p) ?? [] {
                guard let s = r.mapping(sn, sp, allowed: ["upstream", "weight"]),
                    let name = r.required(s["upstream"], in: sp, key: "upstream", { r.nonEmptyString($0, $1) }),
                    let weight = r.required(s["weight"], in: sp, key: "weight", { r.integer($0, $1, range: 0...10_000) })
                else {
                    ok = false
                    continue
                }
                if !known(name, sp + ".upstream") { ok = false }
                if splits.contains(where: { $0.upstream == name }) { r.error(sp + ".upstream", "\"\(name)\" is listed twice"); ok = false }
                splits.append((name, weight))
            }
            if splits.isEmpty, ok { r.error(p, "at least one split is required"); ok = false }
            if !splits.isEmpty, splits.allSatisfy({ $0.weight == 0 }) { r.error(p, "at least one split needs a weight above 0"); ok = false }
            config.splits = splits
        case (_?, _?):
            r.error(path, "upstream and splits exclude each other")
            ok = false
        case (nil, nil):
            r.error(path, "needs upstream: NAME or splits: [{ upstream, weight }]")
            ok = false
        }
        if let (n, p) = fields["mirror"], let m = r.mapping(n, p, allowed: ["upstream", "percent", "max_body_bytes", "max_in_flight"]) {
            if let name = r.required(m["upstream"], in: p, key: "upstream", { r.nonEmptyString($0, $1) }), known(name, p + ".upstream") {
                var mirror = MirrorConfig(upstream: name)
                if let (n, p) = m["percent"], let v = r.integer(n, p, range: 0...100) { mirror.percent = v }
                if let (n, p) = m["max_body_bytes"], let v = r.size(n, p, min: 0) { mirror.maxBodyBytes = v }
                if let (n, p) = m["max_in_flight"], let v = r.integer(n, p, range: 1...10_000) { mirror.maxInFlight = v }
                if config.splits.contains(where: { $0.upstream == name }) {
                    r.error(p + ".upstream", "a route cannot mirror to an upstream it also sends to")
                    ok = false
                }
                config.mirror = mirror
            } else {
                ok = false
            }
        }
        if let (n, p) = fields["path_rewrite"], let value = r.string(n, p) {
            if case .prefix? = match?.path {
                if let problem = RequestTargetBytes.pathProblem(value) { r.error(p, problem); ok = false } else { config.pathRewrite = value }
            } else if match != nil {
                r.error(p, "replaces the matched prefix: only for a route matched by path_prefix")
                ok = false
            }
        }
        if let (n, p) = fields["request_headers"] {
            if let rewrite = readHeaderRewrite(n, p, r) { config.requestHeaders = rewrite } else { ok = false }
        }
        if let (n, p) = fields["response_headers"] {
            if let rewrite = readHeaderRewrite(n, p, r) { config.responseHeaders = rewrite } else { ok = false }
        }
        if let (n, p) = fields["retries"] {
            if let retries = readRetries(n, p, r) { config.retries = retries } else { ok = false }
        }
        if let (n, p) = fields["max_body_bytes"], let v = r.size(n, p, min: 0) { config.maxBodyBytes = v }
        if let (n, p) = fields["upgrade"] {
            if let upgrade = readUpgrade(n, p, r) { config.upgrade = upgrade } else { ok = false }
        }
        return ok ? config : nil
    }

    private static func readUpgrade(_ node: Node, _ path: String, _ r: ConfigReader) -> UpgradeConfig? {
        guard let fields = r.mapping(node, path, allowed: ["protocols", "idle_timeout"]) else { return nil }
        var ok = true
        var protocols: [String] = []
        if let list = r.required(fields["protocols"], in: path, key: "protocols", { r.stringList($0, $1) }) {
            for (index, name) in list.enumerated() {
                let p = "\(path).protocols[\(index)]"
                let lower = name.lowercased()
                if !Self.isToken(lower) {
                    r.error(p, "\"\(name)\" is not a protocol name (a token, without a /version)")
                    ok = false
                } else if lower == "h2c" {
                    r.error(p, "h2c is the listener's own upgrade to HTTP/2 (h2c_upgrade), not passed to upstreams")
                    ok = false
                } else if protocols.contains(lower) {
                    r.error(p, "\"\(name)\" is listed twice")
                    ok = false
                } else {
                    protocols.append(lower)
                }
            }
            if list.isEmpty {
                r.error(path + ".protocols", "at least one protocol is required, such as websocket")
                ok = false
            }
        } else {
            ok = false
        }
        var upgrade = UpgradeConfig(protocols: protocols)
        if let (n, p) = fields["idle_timeout"] {
            if let value = r.duration(n, p, min: .seconds(1)) { upgrade.idleTimeout = value } else { ok = false }
        }
        return ok ? upgrade : nil
    }

    /// An RFC 9110 token (header names, `Upgrade` protocol names): visible ASCII but separators.
    static func isToken(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy(HeaderFieldCheck.isTokenByte)
    }

    /// Header names a proxy manages itself: rewriting them would break the exchange.
    static let managedHeaders: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "content-length", "host",
    ]

    private static func readHeaderRewrite(_ node: Node, _ path: String, _ r: ConfigReader) -> HeaderRewrite? {
        guard let fields = r.mapping(node, path, allowed: ["set", "remove"]) else { return nil }
        var ok = true
        var rewrite = HeaderRewrite()
        func valid(_ name: String, _ p: String) -> Bool {
            if !Self.isToken(name) { r.error(p, "\"\(name)\" is not a valid header name"); return false }
            if Self.managedHeaders.contains(name.lowercased()) || name.hasPrefix(":") {
                r.error(p, "\"\(name)\" is managed by the proxy and cannot be rewritten")
                return false
            }
            return true
        }
        if let (n, p) = fields["set"] {
            for (key, value, vp) in r.freeMapping(n, p) {
                guard valid(key, vp), let text = r.string(value, vp) else {
                    ok = false
                    continue
                }
                var bytes = text
                if !bytes.withUTF8(HeaderFieldCheck.isSendableValue) {
                    // What the HTTP/1.1 encoder would refuse on every request of the route.
                    r.error(vp, "a header value cannot contain a control character (HTAB is allowed)")
                    ok = false
                    continue
                }
                rewrite.set.append((key.lowercased(), text))
            }
        }
        if let (n, p) = fields["remove"], let items = r.sequence(n, p) {
            for (item, ip) in items {
                guard let name = r.nonEmptyString(item, ip), valid(name, ip) else {
                    ok = false
                    continue
                }
                rewrite.remove.append(name.lowercased())
            }
        }
        return ok ? rewrite : nil
    }

    private static func readRetries(_ node: Node, _ path: String, _ r: ConfigReader) -> RetryConfig? {
        let allowed = ["attempts", "on", "statuses", "budget_percent", "min_retry_concurrency", "max_buffered_body_bytes", "backoff"]
        guard let fields = r.mapping(node, path, allowed: allowed) else { return nil }
        var ok = true
        var retries = RetryConfig()
        if let (n, p) = fields["attempts"], let v = r.integer(n, p, range: 0...10) { retries.attempts = v }
        if let (n, p) = fields["on"], let items = r.sequence(n, p) {
            retries.on = []
            for (item, ip) in items {
                guard let text = r.nonEmptyString(item, ip) else {
                    ok = false
                    continue
                }
                guard let condition = RetryCondition(rawValue: text) else {
                    let names = RetryCondition.allCases.map(\.rawValue)
                    r.error(ip, "unknown retry condition \"\(text)\": use \(names.joined(separator: ", "))")
                    ok = false
                    continue
                }
                retries.on.insert(condition)
            }
        }
        if let (n, p) = fields["statuses"], let items = r.sequence(n, p) {
            for (item, ip) in items {
                if let code = r.integer(item, ip, range: 400...599) { retries.statuses.insert(code) } else { ok = false }
            }
        }
        if let (n, p) = fields["budget_percent"], let v = r.integer(n, p, range: 0...100) { retries.budgetPercent = v }
        if let (n, p) = fields["min_retry_concurrency"], let v = r.integer(n, p, range: 0...10_000) { retries.minRetryConcurrency = v }
        if let (n, p) = fields["max_buffered_body_bytes"], let v = r.size(n, p, min: 0) {
            if v > 16 * 1024 * 1024 { r.error(p, "at most 16MiB: a retried body is held in memory"); ok = false }
            retries.maxBufferedBodyBytes = v
        }
        if let (n, p) = fields["backoff"], let v = r.duration(n, p) { retries.backoff = v }
        return ok ? retries : nil
    }
}
