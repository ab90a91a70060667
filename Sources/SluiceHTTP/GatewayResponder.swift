import Logging
import NIOHTTP1
import SluiceConfig
import SluiceCore

/// The data-plane responder: routes each request and runs the route's handler.
///
/// Order for every request: router -> policy chain (none yet) -> handler -> response.
public struct GatewayResponder: HTTPResponder {
    public enum Target: Sendable {
        case ingest(IngestHandler)
    }

    private let router: Router<Target>

    /// Builds the routing table from a validated configuration and the running sinks.
    public init(config: SluiceConfiguration, sinks: [String: any Sink], logger: Logger) {
        var entries: [Router<Target>.Entry] = []
        for route in config.routes where route.match.grpc == nil {
            switch route.action {
            case .ingest(let ingest):
                // Validation guarantees the sink exists.
                guard let sink = sinks[ingest.sink] else { continue }
                let handler = IngestHandler(routeName: route.name, config: ingest, sink: sink, logger: logger)
                entries.append(.init(name: route.name, match: route.match, target: .ingest(handler)))
            }
        }
        self.router = Router(entries)
    }

    public func respond(to request: HTTPRequest, body: inout RequestBody) async -> HTTPResponse {
        let headers = request.head.headers
        let routeRequest = RouteRequest(method: request.method, path: request.path, host: request.host) { headers.first(name: $0) }
        switch self.router.route(routeRequest) {
        case .matched(.ingest(let handler), let parameters):
            return await handler.handle(request, parameters: parameters, body: &body)
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
