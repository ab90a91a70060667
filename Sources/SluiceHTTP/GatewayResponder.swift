import Logging
import NIOHTTP1
import SluiceConfig
import SluiceCore
import SluiceIngest
import SluicePolicy
import SluiceSpool

/// The HTTP routes of one gateway snapshot: each route's policy chain and handler, bound to the
/// running sinks and upstreams. Immutable; a new configuration builds a new table.
public struct HTTPRouteTable: Sendable {
    /// A class, as its handlers are: the router hands the matched target to every request, and
    /// a reference is one retain where a value is one per string, array and handler inside.
    public final class Target: Sendable {
        let name: String
        /// The route's path pattern, as written.
        let path: String
        let policies: PolicyChain
        let action: Action
        /// The route's `idempotency`, when it has one.
        let idempotency: IdempotencyGuard?

        init(name: String, path: String, policies: PolicyChain, action: Action, idempotency: IdempotencyGuard? = nil) {
            self.name = name
            self.path = path
            self.policies = policies
            self.action = action
            self.idempotency = idempotency
        }

        /// What the access log, metrics and traces say about a request this route serves.
        var facts: ExchangeFacts {
            var facts: ExchangeFacts
            switch self.action {
            case .ingest(let handler): facts = ExchangeFacts(route: self.name, sink: handler.sink.name)
            case .proxy: facts = ExchangeFacts(route: self.name)
            }
            facts.routePath = self.path
            return facts
        }
    }

    public enum Action: Sendable {
        case ingest(IngestHandler)
        case proxy(ProxyHandler)
    }

    let router: Router<Target>
    /// Counts the requests running on this table (and the snapshot it belongs to).
    public let leases: SnapshotLeases

    /// Builds the table from a validated configuration and the running sinks and upstreams.
    public init(
        config: SluiceConfiguration, sinks: [String: any Sink], upstreams: [String: Upstream] = [:], policies: PolicyRegistry,
        idempotencyStores: [String: any IdempotencyStore] = [:], spools: [String: Spool] = [:], leases: SnapshotLeases = SnapshotLeases(),
        logger: Logger
    ) {
        self.leases = leases
        var entries: [Router<Target>.Entry] = []
        for route in config.routes where route.match.grpc == nil {
            switch route.action {
            case .ingest(let ingest):
                // Validation guarantees the sink exists.
                guard let sink = RouteSinks.sink(for: ingest, among: sinks) else { continue }
                var prefix: String?
                if case .prefix(let value) = route.match.path { prefix = value }
                let handler = IngestHandler(
                    pipeline: IngestPipeline(
                        routeName: route.name, config: ingest, sink: sink, deadLetterSink: ingest.deadLetter.flatMap { sinks[$0.sink] },
                        spool: spools[route.name], mirrorSink: ingest.mirror.flatMap { sinks[$0.sink] }, logger: logger),
                    pathPrefix: ingest.api.topicFromPath ? prefix : nil)
                let idempotency = route.idempotency.flatMap { config in
                    idempotencyStores[route.name].map { IdempotencyGuard(routeName: route.name, config: config, store: $0, logger: logger) }
                }
                let target = Target(
                    name: route.name, path: route.match.path.template, policies: policies.chain(route.policies), action: .ingest(handler),
                    idempotency: idempotency)
                entries.append(.init(name: route.name, match: route.match, target: target))
            case .proxy(let proxy):
                let handler = ProxyHandler(routeName: route.name, config: proxy, match: route.match, upstreams: upstreams, logger: logger)
                let target = Target(
                    name: route.name, path: route.match.path.template, policies: policies.chain(route.policies), action: .proxy(handler))
                entries.append(.init(name: route.name, match: route.match, target: target))
            }
        }
        self.router = Router(entries)
    }
}

/// The data-plane responder: routes each request and runs the route's handler.
///
/// Order for every request: router -> the route's policies as middleware (CORS, authentication,
/// authorization, rate limit; the first refusal or early answer answers, and each acts again on
/// the way out) -> handler -> response. The route table is read once per request from the
/// gateway's current snapshot, so a request runs start to end on one configuration.
public struct GatewayResponder: HTTPResponder {
    private let routes: @Sendable () -> HTTPRouteTable

    /// `routes`: the current route table (the gateway snapshot's).
    public init(routes: @escaping @Sendable () -> HTTPRouteTable) {
        self.routes = routes
    }

    public func respond(to request: HTTPRequest, body: inout RequestBody) async -> HTTPResponse {
        let response = await self.answer(request, body: &body)
        // A gRPC caller reads errors from grpc-status, not from HTTP statuses and JSON.
        return response.ownError != nil && HTTPResponse.isGRPC(request) ? response.asGRPCStatus() : response
    }

    private func answer(_ request: HTTPRequest, body: inout RequestBody) async -> HTTPResponse {
        // One canonical target and well-formed headers before anything looks at them.
        if let problem = request.targetProblem {
            return .error(.invalidPath, message: problem.message)
        }
        if request.path == "*", request.head.method != .OPTIONS {
            return .error(.invalidPath, message: "the request target \"*\" is for OPTIONS only")
        }
        let fields = request.checkHeaders()
        if let problem = fields.problem {
            return .error(.invalidHeader, message: problem)
        }
        // RFC 9112 3.2: an HTTP/1.1 request has exactly one Host.
        if !request.isHTTP2 {
            let hosts = fields.hosts
            if hosts > 1 || (hosts == 0 && request.head.version.minor >= 1) {
                return .error(.invalidHost, message: "an HTTP/1.1 request needs exactly one Host header")
            }
        }
        var request = request
        if let authority = request.targetAuthority {
            request.head.headers.replaceOrAdd(name: "host", value: authority)
        }
        let headers = request.head.headers
        let table = self.routes()
        // The request holds its snapshot until its response is made: a reload drains what only
        // the old snapshot used once no request holds it.
        table.leases.acquire()
        defer { table.leases.release() }
        let router = table.router
        var routeRequest = RouteRequest(method: request.method, path: request.path, host: request.host, query: request.query) {
            headers.first(name: $0)
        }
        // A CORS preflight is routed by the method it asks about, and answered by that route's
        // cors policy (if it has one).
        if request.method == "OPTIONS", let wanted = headers.first(name: "access-control-request-method") {
            var asked = routeRequest
            asked.method = wanted.uppercased()
            if case .matched(let target, _) = router.route(asked), target.policies.answersPreflights { routeRequest = asked }
        }
        let reroutedPreflight = routeRequest.method != request.method
        switch router.route(routeRequest) {
        case .matched(let target, let parameters):
            guard !target.policies.isEmpty else {
                var response = await Self.run(target, request, parameters: parameters, identity: nil, body: &body).response
                response.facts.route = target.name
                response.facts.routePath = target.path
                return response
            }
            let policyRequest = PolicyRequest(
                method: request.method, path: request.path, query: request.query, sourceIP: request.remoteIP,
                tlsPrincipals: request.tlsClient?.principals ?? []
            ) { headers.first(name: $0) }
            let outcome = await target.policies.handle(policyRequest) { (_, identity) async -> PolicyOutcome<HandledRequest> in
                if reroutedPreflight {
                    // Routed by the method it asked about, but not answered by the cors policy (no
                    // Origin): never run the handler for an OPTIONS request.
                    return .answered(PolicyRejection(.corsRefused, message: "this origin may not call this route"))
                }
                var request = request
                // Headers set from verified claims replace whatever the client sent under those
                // names. A claim that cannot be a header value (a control character: signed, but
                // perhaps a user's own text) is dropped like an absent one: passed on, it would
                // be refused on the way upstream and count against a healthy endpoint.
                for (name, value) in identity.headers {
                    if let value, HeaderFieldCheck.problem(name: name, value: value) == nil {
                        request.head.headers.replaceOrAdd(name: name, value: value)
                    } else {
                        request.head.headers.remove(name: name)
                    }
                }
                var handled = await Self.run(target, request, parameters: parameters, identity: identity.client, body: &body)
                handled.response.facts.identity = identity.client
                return .handled(handled)
            }
            switch outcome {
            case .handled(let handled):
                var response = handled.response
                response.facts.route = target.name
                response.facts.routePath = target.path
                return response
            case .answered(let rejection):
                var extra = HTTPHeaders()
                for (name, value) in rejection.headers.sorted(by: { $0.key < $1.key }) { extra.add(name: name, value: value) }
                var response: HTTPResponse
                if rejection.status == 204 {
                    response = HTTPResponse(status: .noContent, headers: extra)  // a preflight's answer
                } else if case .ingest(let handler) = target.action {
                    // Refused in the API the client speaks (REST Proxy's error body and codes on its routes).
                    response = handler.refusal(status: rejection.status, code: rejection.code, message: rejection.message, headers: extra)
                } else {
                    response = .error(.init(statusCode: rejection.status), code: rejection.code, message: rejection.message, headers: extra)
                }
                response.facts = target.facts
                response.facts.identity = rejection.client
                if (400..<500).contains(rejection.status), let policy = rejection.policy {
                    response.facts.denial = (policy, rejection.code)
                }
                return response
            }
        case .methodNotAllowed(let allowed):
            return .error(
                .methodNotAllowed,
                message: "\(request.method) is not allowed on \(request.path); allowed: \(allowed.joined(separator: ", "))",
                headers: ["allow": allowed.joined(separator: ", ")])
        case .notFound:
            return .error(.noRoute, message: "no route matches \(request.method) \(request.path)")
        }
    }

    /// Runs the route's handler; `identity`: the client the policies identified (an idempotency
    /// key's scope).
    private static func run(
        _ target: HTTPRouteTable.Target, _ request: HTTPRequest, parameters: [String: String], identity: String?, body: inout RequestBody
    ) async -> HandledRequest {
        switch target.action {
        case .ingest(let handler):
            guard let idempotency = target.idempotency else { return await handler.handle(request, parameters: parameters, body: &body) }
            return await idempotency.handle(request, identity: identity, body: &body, handler: handler) { body in
                await handler.handle(request, parameters: parameters, body: &body)
            }
        case .proxy(let handler):
            return HandledRequest(response: await handler.handle(request, body: &body), eventCount: 0, bytesRead: body.bytesRead)
        }
    }
}
