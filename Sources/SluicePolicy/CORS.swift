import Foundation
import SluiceCore

/// `cors`: browsers on other origins may call the route.
public struct CORSConfig: Sendable {
    /// Exact origins (`https://app.example`), or `*` (not with credentials).
    public var allowOrigins: Set<String>
    public var allowMethods: Set<String>
    /// Lower-case request headers a browser may send.
    public var allowHeaders: Set<String>
    public var exposeHeaders: [String]
    public var maxAge: Duration
    public var allowCredentials: Bool

    public init(
        allowOrigins: Set<String>, allowMethods: Set<String> = ["POST"], allowHeaders: Set<String> = ["content-type"],
        exposeHeaders: [String] = [], maxAge: Duration = .seconds(600), allowCredentials: Bool = false
    ) {
        self.allowOrigins = allowOrigins
        self.allowMethods = allowMethods
        self.allowHeaders = allowHeaders
        self.exposeHeaders = exposeHeaders
        self.maxAge = maxAge
        self.allowCredentials = allowCredentials
    }
}

/// Runs before authentication (a preflight carries no credentials):
/// - a preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered here: 204 with the
///   allowed methods and headers, or 403 when the origin, method or a header is not allowed;
/// - any other request with an `Origin` that is not allowed is refused (403), so a page on another
///   site cannot post events with a "simple" request that skips the preflight; an allowed one gets
///   `Access-Control-Allow-Origin` (and `Vary: Origin`) on its response.
struct CORSPolicy: Policy {
    let config: CORSConfig
    var stage: PolicyStage { .cors }

    func allows(_ origin: String) -> Bool {
        self.config.allowOrigins.contains(origin) || (self.config.allowOrigins.contains("*") && !self.config.allowCredentials)
    }

    func originHeaders(_ origin: String) -> [String: String] {
        var headers = ["access-control-allow-origin": self.config.allowOrigins.contains(origin) ? origin : "*", "vary": "Origin"]
        if self.config.allowCredentials { headers["access-control-allow-credentials"] = "true" }
        return headers
    }

    /// Refuses an origin it does not allow, answers a preflight itself, and sets the origin's
    /// headers on the handled response.
    func handle<Response: PolicyResponse>(
        _ request: PolicyRequest, _ identity: PolicyIdentity,
        next: (PolicyRequest, PolicyIdentity) async -> PolicyOutcome<Response>
    ) async -> PolicyOutcome<Response> {
        guard let origin = request.header("origin") else { return await next(request, identity) }  // not a browser's cross-origin call
        let refused = PolicyRejection(.corsRefused, message: "this origin may not call this route")
        guard self.allows(origin) else { return .answered(refused) }
        if request.method == "OPTIONS", let wanted = request.header("access-control-request-method") {
            let headers = (request.header("access-control-request-headers") ?? "").split(separator: ",").map {
                $0.trimmingCharacters(in: .whitespaces).lowercased()
            }.filter { !$0.isEmpty }
            guard self.config.allowMethods.contains(wanted.uppercased()), headers.allSatisfy(self.config.allowHeaders.contains) else {
                return .answered(refused)
            }
            var answer = self.originHeaders(origin)
            answer["access-control-allow-methods"] = self.config.allowMethods.sorted().joined(separator: ", ")
            if !self.config.allowHeaders.isEmpty {
                answer["access-control-allow-headers"] = self.config.allowHeaders.sorted().joined(separator: ", ")
            }
            answer["access-control-max-age"] = String(self.config.maxAge.components.seconds)
            return .answered(PolicyRejection(status: 204, code: "", message: "", headers: answer))
        }
        let outcome = await next(request, identity)
        // A later policy's refusal keeps its own headers only.
        guard case .handled(var response) = outcome else { return outcome }
        var headers = self.originHeaders(origin)
        if !self.config.exposeHeaders.isEmpty {
            headers["access-control-expose-headers"] = self.config.exposeHeaders.joined(separator: ", ")
        }
        for (name, value) in headers.sorted(by: { $0.key < $1.key }) { response.setHeader(name: name, value: value) }
        return .handled(response)
    }
}
