import Testing

@testable import SluiceCore

/// The bytes a request target may carry raw, and the checks of configured targets (path rewrites, health checks).
@Suite struct RequestTargetBytesTests {
    /// The bit mask agrees with its definition for every byte.
    @Test func targetByteMaskMatchesItsDefinition() {
        for byte in UInt8.min...UInt8.max {
            #expect(RequestTargetBytes.contains(byte) == RequestTargetBytes.containsSlow(byte), "byte \(byte)")
        }
    }

    @Test(arguments: ["/", "/v2", "/v2/", "/a-b_c.d~e/f:g@h/!$&'()*+,;=", "/caf%C3%A9", "/a%7cb"])
    func aPathOfPathBytesAndEscapesMayBeSent(path: String) {
        #expect(RequestTargetBytes.pathProblem(path) == nil, "\(path)")
    }

    /// What the HTTP/1.1 encoder would refuse (every request of the route would fail), and what
    /// would change the target's meaning (a query or fragment, an authority's brackets, a bad escape).
    @Test(arguments: ["", "v2", "/a b", "/a{b}", "/a|b", "/café", "/a\u{7F}", "/a\tb", "/a?b=1", "/a#b", "/[::1]", "/a%", "/a%2", "/a%zz"])
    func aPathThatWouldBreakOrChangeTheTargetIsRefused(path: String) {
        #expect(RequestTargetBytes.pathProblem(path) != nil, "\(path)")
    }

    @Test func anOriginFormTargetMayCarryAQuery() {
        #expect(RequestTargetBytes.originFormProblem("/healthz") == nil)
        #expect(RequestTargetBytes.originFormProblem("/healthz?full=1&x=[a]?b/c") == nil)
        #expect(RequestTargetBytes.originFormProblem("/health z") != nil)
        #expect(RequestTargetBytes.originFormProblem("/healthz?q={}") != nil)
        #expect(RequestTargetBytes.originFormProblem("/healthz#top") != nil)
        #expect(RequestTargetBytes.originFormProblem("/[x]?y") != nil, "brackets only in the query")
        #expect(RequestTargetBytes.originFormProblem("/healthz?a=%zz") != nil)
        #expect(RequestTargetBytes.pathProblem("/healthz?full=1") != nil, "a rewrite is a path only")
    }
}
