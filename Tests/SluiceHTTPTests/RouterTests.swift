@testable import SluiceHTTP
import SluiceConfig
import Testing

@Suite struct RouterTests {
    static func match(_ path: PathPattern, methods: [String] = [], host: String? = nil, headers: [(String, String)] = []) -> RouteMatchConfig {
        RouteMatchConfig(path: path, methods: methods, host: host, headers: headers.map { (name: $0.0, value: $0.1) })
    }

    static let router = Router<String>([
        .init(name: "events", match: match(try! PathPattern.parseTemplate("/v1/events/{topic}").get(), methods: ["POST"]), target: "events"),
        .init(name: "exact", match: match(.exact("/v1/health"), methods: ["GET"]), target: "exact"),
        .init(name: "tenant", match: match(.prefix("/api"), headers: [("x-tenant", "acme")]), target: "tenant-api"),
        .init(name: "api", match: match(.prefix("/api")), target: "api"),
        .init(name: "host", match: match(.prefix("/"), host: "*.example.com"), target: "wildcard-host"),
    ])

    static func request(_ method: String, _ path: String, host: String? = nil, headers: [String: String] = [:]) -> RouteRequest {
        RouteRequest(method: method, path: path, host: host) { headers[$0] }
    }

    @Test func matchesTemplatesAndDecodesParameters() {
        guard case .matched(let target, let parameters) = Self.router.route(Self.request("POST", "/v1/events/or%64ers")) else {
            Issue.record("expected a match")
            return
        }
        #expect(target == "events")
        #expect(parameters == ["topic": "orders"])
    }

    @Test func templateParametersMatchOneNonEmptySegment() {
        guard case .notFound = Self.router.route(Self.request("POST", "/v1/events/")) else {
            Issue.record("an empty segment must not match a parameter")
            return
        }
        guard case .notFound = Self.router.route(Self.request("POST", "/v1/events/a/b")) else {
            Issue.record("a parameter must not span segments")
            return
        }
    }

    @Test func wrongMethodOnAMatchingPathIs405WithTheAllowedMethods() {
        guard case .methodNotAllowed(let allowed) = Self.router.route(Self.request("GET", "/v1/events/orders")) else {
            Issue.record("expected 405")
            return
        }
        #expect(allowed == ["POST"])
    }

    @Test func exactPathsMatchExactly() {
        guard case .matched("exact", _) = Self.router.route(Self.request("GET", "/v1/health")) else {
            Issue.record("expected exact")
            return
        }
        guard case .notFound = Self.router.route(Self.request("GET", "/v1/health/x")) else {
            Issue.record("exact must not match a longer path")
            return
        }
    }

    @Test func prefixesMatchAtSegmentBoundariesAndHeadersSelectRoutes() {
        guard case .matched("api", _) = Self.router.route(Self.request("GET", "/api/x")) else {
            Issue.record("expected api")
            return
        }
        guard case .matched("tenant-api", _) = Self.router.route(Self.request("GET", "/api", headers: ["x-tenant": "acme"])) else {
            Issue.record("expected the header-matched route first")
            return
        }
        guard case .notFound = Self.router.route(Self.request("GET", "/apix")) else {
            Issue.record("/api must not match /apix")
            return
        }
    }

    @Test func hostWildcardsIgnoreThePort() {
        guard case .matched("wildcard-host", _) = Self.router.route(Self.request("GET", "/other", host: "Ingest.Example.com:8443")) else {
            Issue.record("expected the wildcard host route")
            return
        }
        guard case .notFound = Self.router.route(Self.request("GET", "/other", host: "example.com")) else {
            Issue.record("*.example.com must not match the bare domain")
            return
        }
        guard case .notFound = Self.router.route(Self.request("GET", "/other")) else {
            Issue.record("a host route needs a host")
            return
        }
    }

    /// `query`: a named value (the first occurrence, percent-decoded, `+` a space) or mere
    /// presence; routes are still tried in order.
    @Test func queryParametersSelectRoutes() {
        let router = Router<String>([
            .init(name: "v2", match: RouteMatchConfig(path: .prefix("/ingest"), query: [(name: "version", value: "2 beta")]), target: "v2"),
            .init(name: "debug", match: RouteMatchConfig(path: .prefix("/ingest"), query: [(name: "debug", value: nil)]), target: "debug"),
            .init(name: "default", match: RouteMatchConfig(path: .prefix("/ingest")), target: "default"),
        ])
        func target(_ query: String?) -> String? {
            guard case .matched(let target, _) = router.route(RouteRequest(method: "POST", path: "/ingest", host: nil, query: query.map { Substring($0) }) { _ in nil })
            else { return nil }
            return target
        }
        #expect(target("version=2+beta") == "v2")
        #expect(target("a=1&version=2%20beta") == "v2")
        #expect(target("version=2+beta&version=3") == "v2", "the first occurrence counts, as everywhere")
        #expect(target("version=3&version=2+beta") == "default")
        #expect(target("debug") == "debug" && target("debug=") == "debug" && target("x=1&debug=yes") == "debug")
        #expect(target("Debug=1") == "default", "names are case-sensitive")
        #expect(target(nil) == "default" && target("version=%zz") == "default", "a malformed escape matches nothing")
    }

    @Test func pathMatchingAgreesWithTheCollectionRuleOnEveryPatternAndPath() throws {
        let patterns: [PathPattern] = [
            .exact("/v1/health"), .exact("/"), .prefix("/api"), .prefix("/api/"), .prefix("/"), .prefix("/ü"),
            try PathPattern.parseTemplate("/v1/events/{topic}").get(), try PathPattern.parseTemplate("/{a}").get(),
            try PathPattern.parseTemplate("/{a}/{b}").get(), try PathPattern.parseTemplate("/t/{id}/items").get(),
            try PathPattern.parseTemplate("/ä/{x}").get(), try PathPattern.parseTemplate("/v1/{topic}/").get(),
        ]
        let paths = [
            "", "/", "//", "/api", "/api/", "/apix", "/api/x/y", "/v1/health", "/v1/health/", "/v1/events/orders",
            "/v1/events/", "/v1/events/a/b", "/v1/events/caf%C3%A9", "/v1/events/%zz", "/v1/events/%FF", "/x", "/x/y",
            "/x//y", "/t/7/items", "/t//items", "/t/7/items/", "/ä/1", "/a%CC%88/1", "/ü", "/üx", "/ü/z", "v1/events/x",
            "/v1/orders/", "/v1/orders", "/v1//", "*", "/\u{301}x", "/a/\u{301}",
        ]
        for pattern in patterns {
            for path in paths {
                #expect(Router<String>.matchPath(pattern, path) == PathMatchReference.match(pattern, path), "\(pattern) on \(path)")
            }
        }
        #expect(Router<String>.matchPath(patterns[6], "/v1/events/caf%C3%A9") == ["topic": "café"])
        #expect(Router<String>.matchPath(patterns[8], "/x/y") == ["a": "x", "b": "y"])
    }
}
