@testable import SluicePolicy

/// A handled request as the tests report it to the chain.
struct TestResponse: PolicyResponse {
    var eventCount: Int
    var bytesRead: Int
    var headers: [String: String] = [:]

    func whenFinished(_ body: @escaping @Sendable (_ events: Int, _ bytes: Int) async -> Void) async {
        await body(self.eventCount, self.bytesRead)
    }

    mutating func setHeader(name: String, value: String) {
        self.headers[name] = value
    }
}

extension PolicyChain {
    /// Runs the chain with a handler that accepts `events` events of `bytes` bytes: the identity the
    /// handler was given, or the refusal (or early answer).
    func evaluate(_ request: PolicyRequest, events: Int = 0, bytes: Int = 0) async -> Result<PolicyIdentity, PolicyRejection> {
        var established: PolicyIdentity?
        let outcome = await self.handle(request) { _, identity in
            established = identity
            return .handled(TestResponse(eventCount: events, bytesRead: bytes))
        }
        switch outcome {
        case .answered(let rejection): return .failure(rejection)
        case .handled:
            guard let established else { preconditionFailure("handled without running the handler") }
            return .success(established)
        }
    }
}
