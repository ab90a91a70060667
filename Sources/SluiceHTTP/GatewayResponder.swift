import Logging
import NIOHTTP1
import SluiceConfig
import SluiceCore
import SluicePolicy

/// The data-plane responder: routes each request and runs the route's handler.
///
/// Order for every request: router -> the route's policies (authentication, authorization, rate
/// limit; the first refusal answers) -> handler -> response.
public struct GatewayResponder: HTTPResponder {
    public struct Target: Sendable {
        var policies: PolicyChain
        var action: Action
    }

    public enum Action: Sendable {
        case ingest(IngestHandler)
    }

    private let router: Router<Target>

    /// Builds the routing table from a validated configuration and the running sinks.
    public init(config: SluiceConfiguration, sinks: [String: any Sink], policies: PolicyRegistry, logger: Logger) {
        var entries: [Router<Target>.Entry] = []
        for route in config.routes where route.match.grpc == nil {
            switch route.action {
            case .ingest(let ingest):
                // Validation guarantees the sink exists.
                guard let sink = sinks[ingest.sink] else { continue }
                let handler = IngestHandler(routeName: route.name, config: ingest, sink: sink, logger: logger)
                let target = Target(policies: policies.chain(route.policies), action: .ingest(handler))
                entries.append(.init(name: route.name, match: route.match, target: target))
            }
        }
        self.router = Router(entries)
    }

    public func respond(to request: HTTPRequest, body: inout RequestBody) async -> HTTPResponse {
        var request = request
        let headers = request.head.headers
        let routeRequest = RouteRequest(method: request.method, path: request.path, host: request.host) { headers.first(name: $0) }
        switch self.router.route(routeRequest) {
        case .matched(let target, let parameters):
            if !target.policies.isEmpty {
                let policyRequest = PolicyRequest(
                    method: request.method, path: request.path, query: request.query, sourceIP: request.remoteIP
                ) { headers.first(name: $0) }
                switch await target.policies.evaluate(policyRequest) {
                case .failure(let rejection):
                    var extra = HTTPHeaders()
                    for (name, value) in rejection.headers.sorted(by: { $0.key < $1.key }) { extra.add(name: name, value: value) }
                    return .error(.init(statusCode: rejection.status), code: rejection.code, message: rejection.message, headers: extra)
                case .success(let identity):
                    // Headers set from verified claims replace whatever the client sent under those names.
                    for (name, value) in identity.headers { request.head.headers.replaceOrAdd(name: name, value: value) }
                }
            }
            switch target.action {
            case .ingest(let handler):
                return await handler.handle(request, parameters: parameters, body: &body)
            }
        case .methodNotAllowed(let allowed):
            return .error(
                .methodNotAllowed, code: "method_not_allowed",
                message: "\(request.method) is not allowed on \(request.path); allowed: \(allowed.joined(separator: ", "))",
                headers: ["allow": allowed.joined(separator: ", ")])
        case .notFound:
            return .error(.notFound, code: "no_route", message: "no route matches \(request.method) \(request.path)")
        }
    }
}
