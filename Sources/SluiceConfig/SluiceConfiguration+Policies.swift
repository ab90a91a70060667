import Foundation
import SluiceCore
import SluicePolicy
import Yams
import SluiceConfigReader

extension SluiceConfiguration {
    /// One entry of `policies:`: a name and exactly one kind.
    static func readPolicy(_ node: Node, _ path: String, _ r: ConfigReader) -> (name: String?, policy: PolicyConfig?) {
        let kinds = ["api_key", "jwt", "basic_auth", "cors", "authz", "rate_limit"]
        guard let fields = r.mapping(node, path, allowed: ["name"] + kinds) else { return (nil, nil) }
        let name = readName(fields, path, r)
        let present = kinds.filter { fields[$0] != nil }
        guard present.count == 1 else {
            r.error(path, present.isEmpty ? "a policy needs exactly one of: \(kinds.joined(separator: ", "))" : "a policy has exactly one kind; found \(present.joined(separator: " and "))")
            return (name, nil)
        }
        var kind: PolicyConfig.Kind?
        if let (n, p) = fields["api_key"] { kind = readAPIKey(n, p, r).map { .apiKey($0) } }
        if let (n, p) = fields["jwt"] { kind = readJWT(n, p, r).map { .jwt($0) } }
        if let (n, p) = fields["basic_auth"] { kind = readBasicAuth(n, p, r).map { .basicAuth($0) } }
        if let (n, p) = fields["cors"] { kind = readCORS(n, p, r).map { .cors($0) } }
        if let (n, p) = fields["authz"] { kind = readAuthz(n, p, r).map { .authz($0) } }
        if let (n, p) = fields["rate_limit"] { kind = readRateLimit(n, p, r).map { .rateLimit($0) } }
        guard let name, let kind else { return (name, nil) }
        var policy = PolicyConfig(name: name, kind: kind)
        policy.source = canonicalYAML(node)
        return (name, policy)
    }

    static func isSHA256Hex(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    private static func readAPIKey(_ node: Node, _ path: String, _ r: ConfigReader) -> APIKeyConfig? {
        guard let fields = r.mapping(node, path, allowed: ["header", "query", "keys", "keys_file"]) else { return nil }
        var ok = true
        let source: APIKeyConfig.Source
        switch (fields["header"].flatMap { r.nonEmptyString($0.0, $0.1) }, fields["query"].flatMap { r.nonEmptyString($0.0, $0.1) }) {
        case (let header?, nil): source = .header(header)
        case (nil, let query?): source = .query(query)
        case (nil, nil):
            source = .header("X-Api-Key")
        default:
            r.error(path, "set one of header, query")
            return nil
        }
        var keys: [String: String] = [:]
        func add(_ hash: String, _ client: String, at place: String) {
            let hash = hash.lowercased()
            guard Self.isSHA256Hex(hash) else {
                r.error(place, "keys are stored as the hex SHA-256 of the key (printf %s KEY | sha256sum), never the key itself")
                ok = false
                return
            }
            if keys[hash] != nil {
                r.error(place, "this key is listed twice")
                ok = false
            }
            keys[hash] = client
        }
        if let (n, p) = fields["keys"], let items = r.sequence(n, p) {
            for (item, itemPath) in items {
                guard let key = r.mapping(item, itemPath, allowed: ["client", "sha256"]) else {
                    ok = false
                    continue
                }
                let client = r.required(key["client"], in: itemPath, key: "client") { r.nonEmptyString($0, $1) }
                let hash = r.required(key["sha256"], in: itemPath, key: "sha256") { r.nonEmptyString($0, $1) }
                if let client, let hash { add(hash, client, at: itemPath + ".sha256") } else { ok = false }
            }
        }
        if let (n, p) = fields["keys_file"], let file = r.nonEmptyString(n, p) {
            if let text = try? String(contentsOfFile: file, encoding: .utf8) {
                // One key a line: CLIENT SHA256HEX; # starts a comment.
                for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                    let content = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0]
                    let words = content.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
                    if words.isEmpty { continue }
                    guard words.count == 2 else {
                        r.error(p, "\(file) line \(number + 1): expected CLIENT SHA256HEX")
                        ok = false
                        continue
                    }
                    add(String(words[1]), String(words[0]), at: "\(p) (\(file) line \(number + 1))")
                }
            } else {
                r.error(p, "cannot read \(file)")
                ok = false
            }
        }
        if keys.isEmpty, ok {
            r.error(path, "no keys: set keys or keys_file")
            ok = false
        }
        return ok ? APIKeyConfig(source: source, keys: keys) : nil
    }

    private static func readJWT(_ node: Node, _ path: String, _ r: ConfigReader) -> JWTConfig? {
        let allowed = [
            "issuer", "audiences", "jwks_file", "jwks_url", "algorithms", "hmac_keys", "clock_skew", "client_claim", "claims_to_headers",
        ]
        guard let fields = r.mapping(node, path, allowed: allowed) else { return nil }
        var ok = true
        let issuer = r.required(fields["issuer"], in: path, key: "issuer") { r.nonEmptyString($0, $1) }
        let audiences = r.required(fields["audiences"], in: path, key: "audiences") { r.stringList($0, $1) }
        if let audiences, audiences.isEmpty {
            r.error(path + ".audiences", "at least one audience")
            ok = false
        }
        var config = JWTConfig(issuer: issuer ?? "", audiences: audiences ?? [])
        if let (n, p) = fields["algorithms"], let list = r.stringList(n, p) {
            for (i, alg) in list.enumerated() where !JWTConfig.supportedAlgorithms.contains(alg) {
                r.error("\(p)[\(i)]", alg.lowercased() == "none" ? "unsigned tokens (none) are never accepted"
                    : "\"\(alg)\" is not one of \(JWTConfig.supportedAlgorithms.sorted().joined(separator: ", "))")
                ok = false
            }
            if list.isEmpty {
                r.error(p, "at least one algorithm")
                ok = false
            }
            config.algorithms = Set(list)
        }
        if let (n, p) = fields["jwks_file"], let file = r.nonEmptyString(n, p) {
            if let text = try? String(contentsOfFile: file, encoding: .utf8) {
                if let problem = Self.jwksProblem(text) {
                    r.error(p, "\(file): \(problem)")
                    ok = false
                }
                config.jwks = text
            } else {
                r.error(p, "cannot read \(file)")
                ok = false
            }
        }
        if let (n, p) = fields["jwks_url"] {
            if let source = readJWKSURL(n, p, r) { config.jwksURL = source } else { ok = false }
        }
        if let (n, p) = fields["hmac_keys"], let items = r.sequence(n, p) {
            for (item, itemPath) in items {
                guard let entry = r.mapping(item, itemPath, allowed: ["kid", "secret"]),
                    let kid = r.required(entry["kid"], in: itemPath, key: "kid", { r.nonEmptyString($0, $1) })
                else {
                    ok = false
                    continue
                }
                guard let (sn, sp) = entry["secret"] else {
                    r.error(itemPath + ".secret", "required: { env: VARIABLE } or { file: PATH }")
                    ok = false
                    continue
                }
                guard let secretSource = r.secretSource(sn, sp) else {
                    ok = false
                    continue
                }
                do {
                    let secret = try secretSource.read(what: "HMAC secret", environment: r.environment)
                    let needed = config.algorithms.contains("HS512") ? 64 : config.algorithms.contains("HS384") ? 48 : 32
                    if secret.utf8.count < needed {
                        r.error(itemPath + ".secret", "an HMAC secret has at least as many bytes as its largest hash (\(needed))")
                        ok = false
                    }
                    config.hmacKeys[kid] = Array(secret.utf8)
                } catch {
                    r.error(itemPath + ".secret", "\(error)")
                    ok = false
                }
            }
        }
        if config.jwks == nil, config.hmacKeys.isEmpty, config.jwksURL == nil, ok {
            r.error(path, "no keys: set jwks_file, jwks_url or hmac_keys")
            ok = false
        }
        let needsHMAC = config.algorithms.contains { $0.hasPrefix("HS") }
        if needsHMAC != !config.hmacKeys.isEmpty, ok {
            r.error(path + ".algorithms", needsHMAC ? "HS algorithms need hmac_keys" : "hmac_keys need an HS algorithm in algorithms")
            ok = false
        }
        if let (n, p) = fields["clock_skew"] {
            if let v = r.duration(n, p), v <= .seconds(300) { config.clockSkew = v } else {
                if r.duration(n, p) != nil { r.error(p, "at most 5m") }
                ok = false
            }
        }
        if let (n, p) = fields["client_claim"], let claim = r.nonEmptyString(n, p) { config.clientClaim = claim }
        if let (n, p) = fields["claims_to_headers"] {
            for entry in r.freeMapping(n, p) {
                if let header = r.nonEmptyString(entry.value, entry.path) { config.claimsToHeaders[entry.key] = header } else { ok = false }
            }
        }
        guard ok, issuer != nil, audiences != nil else { return nil }
        return config
    }

    /// Why a JWKS document cannot serve (checked again, with the keys imported, at start).
    /// `jwks_url: URL` or `{ url, refresh_interval, min_refresh_interval, timeout, max_bytes, ca_file }`.
    /// HTTPS only, except to a loopback address (a local sidecar or a test).
    private static func readJWKSURL(_ node: Node, _ path: String, _ r: ConfigReader) -> JWKSURLConfig? {
        var ok = true
        var urlText: String?
        var fields: [String: (Node, String)] = [:]
        if case .scalar = node {
            urlText = r.nonEmptyString(node, path)
        } else if let mapping = r.mapping(node, path, allowed: ["url", "refresh_interval", "min_refresh_interval", "timeout", "max_bytes", "ca_file"]) {
            fields = mapping
            urlText = r.required(mapping["url"], in: path, key: "url") { r.nonEmptyString($0, $1) }
        }
        guard let urlText else { return nil }
        let urlPath = fields["url"]?.1 ?? path
        guard let url = URL(string: urlText), let scheme = url.scheme, let host = url.host, !host.isEmpty else {
            r.error(urlPath, "expected an https:// URL, got \"\(urlText)\"")
            return nil
        }
        let loopback = host == "127.0.0.1" || host == "localhost" || host == "::1"
        if scheme != "https", !(scheme == "http" && loopback) {
            r.error(urlPath, "keys are fetched over https:// (http:// only from a loopback address)")
            return nil
        }
        var source = JWKSURLConfig(url: urlText)
        if let (n, p) = fields["refresh_interval"], let v = r.duration(n, p, min: .seconds(1)) { source.refreshInterval = v }
        if let (n, p) = fields["min_refresh_interval"], let v = r.duration(n, p, min: .milliseconds(100)) { source.minRefreshInterval = v }
        if let (n, p) = fields["timeout"], let v = r.duration(n, p, min: .milliseconds(10)) { source.timeout = v }
        if let (n, p) = fields["max_bytes"], let v = r.size(n, p, min: 64) { source.maxBytes = v }
        if let (n, p) = fields["ca_file"] {
            if let file = r.readableFile(n, p) { source.caFile = file } else { ok = false }
        }
        return ok ? source : nil
    }

    static func jwksProblem(_ text: String) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
            let keys = object["keys"] as? [[String: Any]]
        else { return "not a JWKS document ({\"keys\": [...]})" }
        if keys.isEmpty { return "no keys" }
        for (index, key) in keys.enumerated() {
            guard let kid = key["kid"] as? String, !kid.isEmpty else { return "key \(index) has no kid" }
            guard ["RSA", "EC", "OKP"].contains(key["kty"] as? String ?? "") else { return "key \(kid): kty must be RSA, EC or OKP" }
            if key["d"] != nil { return "key \(kid) is a private key; give Sluice the public key only" }
        }
        return nil
    }

    private static func readBasicAuth(_ node: Node, _ path: String, _ r: ConfigReader) -> BasicAuthConfig? {
        guard let fields = r.mapping(node, path, allowed: ["htpasswd_file", "realm"]) else { return nil }
        guard let file = r.required(fields["htpasswd_file"], in: path, key: "htpasswd_file", { r.nonEmptyString($0, $1) }) else {
            return nil
        }
        let place = path + ".htpasswd_file"
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            r.error(place, "cannot read \(file)")
            return nil
        }
        var ok = true
        var users: [String: String] = [:]
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let entry = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if entry.isEmpty || entry.hasPrefix("#") { continue }
            guard let colon = entry.firstIndex(of: ":"), colon != entry.startIndex else {
                r.error(place, "\(file) line \(number + 1): expected USER:HASH")
                ok = false
                continue
            }
            let user = String(entry[..<colon])
            let hash = String(entry[entry.index(after: colon)...])
            if let problem = BasicAuthConfig.hashProblem(hash) {
                r.error(place, "\(file) line \(number + 1) (\(user)): \(problem)")
                ok = false
            }
            if users[user] != nil {
                r.error(place, "\(file) line \(number + 1): user \(user) is listed twice")
                ok = false
            }
            users[user] = hash
        }
        if users.isEmpty, ok {
            r.error(place, "\(file) has no users")
            ok = false
        }
        var config = BasicAuthConfig(users: users)
        if let (n, p) = fields["realm"], let realm = r.nonEmptyString(n, p) {
            if realm.contains("\"") {
                r.error(p, "a realm cannot contain a double quote")
                ok = false
            }
            config.realm = realm
        }
        return ok ? config : nil
    }

    private static func readCORS(_ node: Node, _ path: String, _ r: ConfigReader) -> CORSConfig? {
        let allowed = ["allow_origins", "allow_methods", "allow_headers", "expose_headers", "max_age", "allow_credentials"]
        guard let fields = r.mapping(node, path, allowed: allowed) else { return nil }
        var ok = true
        guard let origins = r.required(fields["allow_origins"], in: path, key: "allow_origins", { r.stringList($0, $1) }) else { return nil }
        for (i, origin) in origins.enumerated() where origin != "*" {
            let parts = origin.split(separator: "/", omittingEmptySubsequences: false)
            if !(origin.hasPrefix("https://") || origin.hasPrefix("http://")) || parts.count != 3 || parts[2].isEmpty {
                r.error("\(path).allow_origins[\(i)]", "an origin is scheme://host[:port] with no path, like https://app.example")
                ok = false
            }
        }
        var config = CORSConfig(allowOrigins: Set(origins))
        if let (n, p) = fields["allow_methods"], let list = r.stringList(n, p) {
            for (i, method) in list.enumerated() where !httpMethods.contains(method.uppercased()) {
                r.error("\(p)[\(i)]", "\"\(method)\" is not an HTTP method")
                ok = false
            }
            config.allowMethods = Set(list.map { $0.uppercased() })
        }
        if let (n, p) = fields["allow_headers"], let list = r.stringList(n, p) { config.allowHeaders = Set(list.map { $0.lowercased() }) }
        if let (n, p) = fields["expose_headers"], let list = r.stringList(n, p) { config.exposeHeaders = list }
        if let (n, p) = fields["max_age"] {
            if let v = r.duration(n, p), v <= .seconds(86_400) { config.maxAge = v } else {
                if r.duration(n, p) != nil { r.error(p, "at most 24h") }
                ok = false
            }
        }
        if let (n, p) = fields["allow_credentials"] {
            switch r.string(n, p) {
            case "true": config.allowCredentials = true
            case "false": config.allowCredentials = false
            default:
                r.error(p, "expected true or false")
                ok = false
            }
        }
        if config.allowCredentials, origins.contains("*") {
            r.error(path + ".allow_origins", "\"*\" cannot go with allow_credentials: name the origins")
            ok = false
        }
        return ok ? config : nil
    }

    private static func readAuthz(_ node: Node, _ path: String, _ r: ConfigReader) -> AuthzConfig? {
        guard let fields = r.mapping(node, path, allowed: ["rules", "default"]) else { return nil }
        var ok = true
        var allowByDefault = false
        if let (n, p) = fields["default"], let text = r.string(n, p) {
            switch text {
            case "allow": allowByDefault = true
            case "deny": allowByDefault = false
            default:
                r.error(p, "expected allow or deny, got \"\(text)\"")
                ok = false
            }
        }
        var rules: [AuthzConfig.Rule] = []
        if let items = r.required(fields["rules"], in: path, key: "rules", { r.sequence($0, $1) }) {
            for (item, itemPath) in items {
                guard let rule = r.mapping(item, itemPath, allowed: ["allow", "deny"]), rule.count == 1, let (verb, (n, p)) = rule.first else {
                    if r.mapping(item, itemPath, allowed: ["allow", "deny"])?.count != nil { r.error(itemPath, "a rule is one of allow: {...} or deny: {...}") }
                    ok = false
                    continue
                }
                if let condition = readCondition(n, p, r) {
                    rules.append(AuthzConfig.Rule(allow: verb == "allow", condition: condition))
                } else {
                    ok = false
                }
            }
        }
        return ok ? AuthzConfig(rules: rules, allowByDefault: allowByDefault) : nil
    }

    private static func readCondition(_ node: Node, _ path: String, _ r: ConfigReader) -> AuthzConfig.Condition? {
        let allowed = ["clients", "tls_principals", "source_cidrs", "methods", "path_prefixes", "claims", "authenticated"]
        guard let fields = r.mapping(node, path, allowed: allowed) else { return nil }
        var ok = true
        var condition = AuthzConfig.Condition()
        if let (n, p) = fields["clients"], let list = r.stringList(n, p) { condition.clients = Set(list) }
        if let (n, p) = fields["tls_principals"], let list = r.stringList(n, p) { condition.tlsPrincipals = Set(list) }
        if let (n, p) = fields["methods"], let list = r.stringList(n, p) { condition.methods = Set(list.map { $0.uppercased() }) }
        if let (n, p) = fields["path_prefixes"], let list = r.stringList(n, p) {
            for (i, prefix) in list.enumerated() where !prefix.hasPrefix("/") {
                r.error("\(p)[\(i)]", "a path prefix starts with /")
                ok = false
            }
            condition.pathPrefixes = list
        }
        if let (n, p) = fields["source_cidrs"], let list = r.stringList(n, p) {
            var cidrs: [CIDR] = []
            for (i, text) in list.enumerated() {
                if let cidr = CIDR(text) { cidrs.append(cidr) } else {
                    r.error("\(p)[\(i)]", "\"\(text)\" is not an IPv4 or IPv6 network like 10.0.0.0/8")
                    ok = false
                }
            }
            condition.sourceCIDRs = cidrs
        }
        if let (n, p) = fields["claims"] {
            var claims: [String: Set<String>] = [:]
            for entry in r.freeMapping(n, p) {
                if let values = r.stringList(entry.value, entry.path) { claims[entry.key] = Set(values) } else { ok = false }
            }
            condition.claims = claims
        }
        if let (n, p) = fields["authenticated"] {
            switch r.string(n, p) {
            case "true": condition.authenticated = true
            case "false": condition.authenticated = false
            default:
                r.error(p, "expected true or false")
                ok = false
            }
        }
        if fields.isEmpty {
            r.error(path, "an empty condition matches everything: use authz default instead")
            ok = false
        }
        return ok ? condition : nil
    }

    /// `redis: { address, password: { env | file }, timeout, failure_mode, key_prefix }`.
    static func readRedis(_ node: Node, _ path: String, _ r: ConfigReader) -> RedisConfig? {
        guard let fields = r.mapping(node, path, allowed: ["address", "password", "timeout", "failure_mode", "key_prefix"]) else { return nil }
        var ok = true
        guard let address = r.required(fields["address"], in: path, key: "address", { r.address($0, $1) }) else { return nil }
        var global = RedisConfig(host: address.host, port: address.port)
        if let (n, p) = fields["password"] {
            if let password = r.secret(n, p, what: "Redis password") { global.password = password } else { ok = false }
        }
        if let (n, p) = fields["timeout"], let v = r.duration(n, p, min: .milliseconds(1)) { global.timeout = v }
        if let (n, p) = fields["failure_mode"], let text = r.string(n, p) {
            switch text {
            case "open": global.failOpen = true
            case "closed": global.failOpen = false
            default:
                r.error(p, "expected open (let requests through while Redis is unavailable) or closed (answer 503), got \"\(text)\"")
                ok = false
            }
        }
        if let (n, p) = fields["key_prefix"], let text = r.nonEmptyString(n, p) { global.keyPrefix = text }
        return ok ? global : nil
    }

    private static func readRateLimit(_ node: Node, _ path: String, _ r: ConfigReader) -> RateLimitConfig? {
        let allowed = ["key", "unit", "rate", "burst", "scope", "redis", "overrides", "max_keys"]
        guard let fields = r.mapping(node, path, allowed: allowed) else { return nil }
        var ok = true
        var key: RateLimitConfig.Key?
        if let text = r.required(fields["key"], in: path, key: "key", { r.nonEmptyString($0, $1) }) {
            key = Self.rateLimitKey(text)
            if key == nil {
                r.error(path + ".key", "expected source_ip, client, header:NAME or claim:NAME, got \"\(text)\"")
                ok = false
            }
        }
        var unit = RateLimitConfig.Unit.requests
        if let (n, p) = fields["unit"], let text = r.string(n, p) {
            if let value = RateLimitConfig.Unit(rawValue: text) {
                unit = value
            } else {
                r.error(p, "expected requests, events or bytes, got \"\(text)\"")
                ok = false
            }
        }
        var global: RateLimitConfig.Global?
        let scope = fields["scope"].flatMap { r.string($0.0, $0.1) } ?? "local"
        switch scope {
        case "local":
            if let (_, p) = fields["redis"] {
                r.error(p, "only for scope: global")
                ok = false
            }
        case "global":
            if let redis = r.required(fields["redis"], in: path, key: "redis", { readRedis($0, $1, r) }) { global = redis } else { ok = false }
        default:
            r.error(path + ".scope", "expected local or global, got \"\(scope)\"")
            ok = false
        }
        func limit(_ fields: [String: (Node, String)], _ path: String) -> RateLimitConfig.Limit? {
            guard let text = r.required(fields["rate"], in: path, key: "rate", { r.nonEmptyString($0, $1) }) else { return nil }
            guard let perSecond = Self.rate(text) else {
                r.error(path + ".rate", "expected a rate like 100/s, 6000/min or 10/h, got \"\(text)\"")
                return nil
            }
            // The default burst (one second's worth) must fit burst's own range.
            guard perSecond <= Double(Self.maxBurst) else {
                r.error(path + ".rate", "at most \(Self.maxBurst)/s, got \"\(text)\"")
                return nil
            }
            var burst = max(1, Int(perSecond.rounded(.up)))
            if let (n, p) = fields["burst"] {
                guard let value = r.integer(n, p, range: 1...Self.maxBurst) else { return nil }
                burst = value
            }
            return RateLimitConfig.Limit(perSecond: perSecond, burst: burst, text: text)
        }
        let base = limit(fields, path)
        var overrides: [String: RateLimitConfig.Limit] = [:]
        if let (n, p) = fields["overrides"], let items = r.sequence(n, p) {
            for (item, itemPath) in items {
                guard let entry = r.mapping(item, itemPath, allowed: ["value", "rate", "burst"]),
                    let value = r.required(entry["value"], in: itemPath, key: "value", { r.nonEmptyString($0, $1) })
                else {
                    ok = false
                    continue
                }
                if overrides[value] != nil {
                    r.error(itemPath + ".value", "\"\(value)\" has two overrides")
                    ok = false
                }
                if let own = limit(entry, itemPath) { overrides[value] = own } else { ok = false }
            }
        }
        var maxKeys = 100_000
        if let (n, p) = fields["max_keys"] {
            if let value = r.integer(n, p, range: 1...10_000_000) { maxKeys = value } else { ok = false }
        }
        guard ok, let key, let base else { return nil }
        var config = RateLimitConfig(key: key, unit: unit, limit: base, overrides: overrides, maxKeys: maxKeys)
        config.global = global
        return config
    }

    static func rateLimitKey(_ text: String) -> RateLimitConfig.Key? {
        if text == "source_ip" { return .sourceIP }
        if text == "client" { return .client }
        if text.hasPrefix("header:"), text.count > 7 { return .header(String(text.dropFirst(7))) }
        if text.hasPrefix("claim:"), text.count > 6 { return .claim(String(text.dropFirst(6))) }
        return nil
    }

    /// "100/s", "6000/min", "10/h" -> per second.
    /// The largest burst, and so the largest rate per second, a rate limit takes.
    static let maxBurst = 100_000_000

    static func rate(_ text: String) -> Double? {
        let parts = text.replacingOccurrences(of: " ", with: "").split(separator: "/", maxSplits: 1)
        guard parts.count == 2, let amount = Double(parts[0]), amount > 0, amount.isFinite else { return nil }
        switch parts[1] {
        case "s", "sec", "second": return amount
        case "m", "min", "minute": return amount / 60
        case "h", "hour": return amount / 3600
        default: return nil
        }
    }
}
