import Logging
import NIOHTTP1
import SluiceConfig
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

    @Test func aConnectionFieldNamesFieldsBeforeAndAfterItInAnyCase() {
        let headers = HTTPHeaders([("X-Before", "1"), ("Connection", "x-before, X-AFTER"), ("x-after", "2"), ("X-Kept", "3")])
        #expect(Array(ProxyHandler.endToEnd(headers)).map(\.name) == ["X-Kept"])
    }

    @Test func fieldNamesCompareInAnyASCIICaseOnly() {
        #expect(FieldName.equals("X-Forwarded-For", "x-forwarded-for"))
        #expect(FieldName.equals("", ""))
        #expect(!FieldName.equals("x-a", "x-b"))
        #expect(!FieldName.equals("x-a", "x-ab"))
        // Bytes that equal only when bit 5 is set blindly: '-' (0x2D) and CR (0x0D), '@' and '`'.
        #expect(!FieldName.equals("a-b", "a\rb"))
        #expect(!FieldName.equals("@", "`"))
        #expect(!FieldName.equals("[", "{"))
    }

    static func upstreamHead(
        _ fields: [(String, String)], remoteIP: String? = "192.0.2.7", isTLS: Bool = false, target: String = "/p", hasBody: Bool = false
    ) -> [String] {
        let handler = ProxyHandler(
            routeName: "r", config: ProxyConfig(upstream: "u"), match: RouteMatchConfig(path: .prefix("/")), upstreams: [:],
            logger: Logger(label: "test"))
        let request = HTTPRequest(
            head: HTTPRequestHead(version: .http1_1, method: .GET, uri: target, headers: HTTPHeaders(fields)), isHTTP2: false,
            remoteIP: remoteIP, isTLS: isTLS)
        return Array(handler.upstreamHead(for: request, hasBody: hasBody).headers).map { "\($0.name): \($0.value)" }
    }

    @Test func theUpstreamHeadKeepsEndToEndFieldsAndAddsForwardingOnes() {
        #expect(Self.upstreamHead([("Host", "a.example"), ("Accept", "*/*"), ("Connection", "keep-alive")]) == [
            "Host: a.example", "Accept: */*", "x-forwarded-for: 192.0.2.7", "x-forwarded-proto: http",
        ])
        #expect(Self.upstreamHead([("Host", "a")], remoteIP: nil, isTLS: true) == ["Host: a", "x-forwarded-proto: https"])
    }

    @Test func forwardedForFieldsAreOneListWithThePeerLast() {
        #expect(Self.upstreamHead([("Host", "a"), ("X-Forwarded-For", "203.0.113.1, 203.0.113.2"), ("x-forwarded-for", "203.0.113.3")]) == [
            "Host: a", "x-forwarded-for: 203.0.113.1, 203.0.113.2, 203.0.113.3, 192.0.2.7", "x-forwarded-proto: http",
        ])
        // Without a peer address the client's fields pass as they came.
        #expect(Self.upstreamHead([("X-Forwarded-For", "203.0.113.1"), ("Host", "a")], remoteIP: nil) == [
            "X-Forwarded-For: 203.0.113.1", "Host: a", "x-forwarded-proto: http",
        ])
        // Named by Connection: the client's list is dropped, the peer's address stays.
        #expect(Self.upstreamHead([("Host", "a"), ("X-Forwarded-For", "203.0.113.1"), ("Connection", "X-Forwarded-For")]) == [
            "Host: a", "x-forwarded-for: 192.0.2.7", "x-forwarded-proto: http",
        ])
    }

    @Test func theClientsForwardedProtoIsReplaced() {
        #expect(Self.upstreamHead([("X-Forwarded-Proto", "https"), ("Host", "a")], remoteIP: nil) == ["Host: a", "x-forwarded-proto: http"])
    }

    @Test func contentLengthPassesOnlyWithABody() {
        #expect(Self.upstreamHead([("Host", "a"), ("Content-Length", "0")], remoteIP: nil) == ["Host: a", "x-forwarded-proto: http"])
        #expect(Self.upstreamHead([("Host", "a"), ("Content-Length", "3")], remoteIP: nil, hasBody: true) == [
            "Host: a", "Content-Length: 3", "x-forwarded-proto: http",
        ])
    }

    @Test func trailersInTEPassAsTheProxysOwnTE() {
        #expect(Self.upstreamHead([("Host", "a"), ("TE", "gzip, Trailers;q=1")], remoteIP: nil) == [
            "Host: a", "te: trailers", "x-forwarded-proto: http",
        ])
        #expect(Self.upstreamHead([("Host", "a"), ("TE", "gzip")], remoteIP: nil) == ["Host: a", "x-forwarded-proto: http"])
    }

    @Test func anAbsoluteFormTargetsAuthorityReplacesHost() {
        #expect(Self.upstreamHead([("Host", "other"), ("Accept", "*/*")], remoteIP: nil, target: "http://b.example:8080/p") == [
            "Accept: */*", "x-forwarded-proto: http", "host: b.example:8080",
        ])
    }

    @Test func http2AuthoritySuppliesHostOnlyWithoutOne() {
        #expect(Self.upstreamHead([(":authority", "c.example"), ("Accept", "*/*")], remoteIP: nil) == [
            "Accept: */*", "x-forwarded-proto: http", "host: c.example",
        ])
        #expect(Self.upstreamHead([(":authority", "c.example"), ("host", "d.example")], remoteIP: nil) == [
            "host: d.example", "x-forwarded-proto: http",
        ])
    }
}
