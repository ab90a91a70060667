import NIOHTTP1
import Testing

@testable import SluiceHTTP

/// What a proxy route passes on of a message's header fields: everything but the hop-by-hop
/// ones (RFC 9110 7.6.1), those the `Connection` field names, pseudo-fields and `Expect`.
@Suite struct ProxyHeaderFilterTests {
    static let hopByHop = [
        "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer",
        "transfer-encoding", "upgrade", "expect",
    ]

    @Test func everyHopByHopNameIsKnownInAnyCase() {
        for name in Self.hopByHop {
            #expect(ProxyHandler.isHopByHop(name), "\(name)")
            #expect(ProxyHandler.isHopByHop(name.uppercased()), "\(name)")
            #expect(ProxyHandler.isHopByHop(String(name.enumerated().map { $0.offset % 2 == 0 ? Character($0.element.uppercased()) : $0.element })))
        }
    }

    @Test func namesOfTheSameLengthOrCloseSpellingsAreNotHopByHop() {
        // Same lengths as listed names, one byte off, or a byte that only equals a listed one
        // when bit 5 is set blindly (CR | 0x20 is '-', 'M' - 0x20 is '-' + 0x20...).
        for name in ["tf", "ta", "accept", "expecT ", "trailers", "upgradE1", "connectio", "keep\ralive",
                     "content-length", "proxy_connection", "transfer_encoding", "x-forwarded-for", "host", "", "t", "TE2"]
        {
            #expect(!ProxyHandler.isHopByHop(name), "\(name.debugDescription)")
        }
    }

    @Test func aMessageWithoutHopByHopFieldsPassesWhole() {
        let headers = HTTPHeaders([("Host", "a"), ("Accept", "*/*"), ("X-Thing", "1"), ("x-thing", "2")])
        let kept = ProxyHandler.endToEnd(headers)
        #expect(Array(kept).map { "\($0.name): \($0.value)" } == ["Host: a", "Accept: */*", "X-Thing: 1", "x-thing: 2"])
    }

    @Test func hopByHopFieldsAndTheOnesConnectionNamesAreDropped() {
        let headers = HTTPHeaders([
            ("Host", "a"), ("Connection", "keep-alive, X-Private ,close"), ("Keep-Alive", "timeout=5"), ("x-private", "secret"),
            ("TE", "trailers"), ("Transfer-Encoding", "chunked"), ("Upgrade", "h2c"), (":authority", "a"), ("X-Kept", "yes"),
            ("Proxy-Authorization", "Basic x"), ("Expect", "100-continue"),
        ])
        let kept = ProxyHandler.endToEnd(headers)
        #expect(Array(kept).map { "\($0.name): \($0.value)" } == ["Host: a", "X-Kept: yes"])
    }

    @Test func connectionTokensAreTrimmedAndEmptyOnesSkipped() {
        var names: [String] = []
        // keep-alive is hop-by-hop already; `close` is an option, not a field, and dropping a
        // field of that name is harmless.
        ProxyHandler.fieldsNamed(byConnection: " ,\tX-A\t, ,keep-alive,Close,  x-b", into: &names)
        #expect(names == ["X-A", "Close", "x-b"])
        names = []
        ProxyHandler.fieldsNamed(byConnection: "", into: &names)
        #expect(names.isEmpty)
    }
}
