import SluiceCore
@testable import SluiceHTTP
import Testing

@Suite struct RequestTargetTests {
    static func path(_ uri: String) -> String? {
        try? RequestTarget.parse(uri).get().path
    }

    /// Every spelling of a path that means /static/secret/x is that path (Envoy's normalize_path
    /// and merge_slashes): an authorization rule on the canonical form cannot be walked around.
    @Test(arguments: [
        "/static/secret/x", "/static/%73ecret/x", "/static/%73%65%63%72%65%74/x", "/static//secret/x", "/static/./secret/x",
        "/static/x/../secret/x", "/static/%2e/secret/x", "/static/a/b/%2E%2E/%2e%2e/secret/x", "///static///secret//x",
        "/../static/secret/x", "/static/secret/./x", "/static/secret/y/../x",
    ])
    func spellingsOfOnePathAreOnePath(uri: String) {
        #expect(Self.path(uri) == "/static/secret/x", "\(uri)")
    }

    @Test func keepsTrailingSlashesQueriesAndReservedEscapes() throws {
        #expect(Self.path("/a/b/") == "/a/b/")
        #expect(Self.path("/a/b/.") == "/a/b/")
        #expect(Self.path("/a/..") == "/")
        #expect(Self.path("/") == "/")
        #expect(Self.path("/a%3bb%3Fc%20d") == "/a%3Bb%3Fc%20d", "reserved and other escapes stay encoded, in upper case")
        #expect(Self.path("/~user/%7euser") == "/~user/~user")
        #expect(Self.path("/a;b=c/d") == "/a;b=c/d")
        let target = try RequestTarget.parse("/a//b?x=%2F&y=..").get()
        #expect(target.path == "/a/b" && target.query == "x=%2F&y=.." && target.authority == nil)
        #expect(try RequestTarget.parse("*").get().path == "*")
    }

    /// Bytes a target may not carry raw, which clients send anyway, are sent percent-encoded:
    /// raw, the HTTP/1.1 encoder would refuse the upstream request.
    @Test func bytesATargetMayNotCarryRawAreEscaped() throws {
        let target = try RequestTarget.parse("/a{b}|c\"^`<x>?q={\"k\":[1]}|<>^`&r=a\\b").get()
        #expect(target.path == "/a%7Bb%7D%7Cc%22%5E%60%3Cx%3E")
        #expect(target.query == "q=%7B%22k%22:[1]%7D%7C%3C%3E%5E%60&r=a%5Cb")
        // An HTTP/2 :path is not checked by an HTTP/1.1 parser: bytes outside ASCII in its query.
        #expect(try RequestTarget.parse("/s?q=caf\u{e9}").get().query == "q=caf%C3%A9")
        // The same path, encoded or not, is one path.
        #expect(Self.path("/a%7bb%7D") == Self.path("/a{b}"))
        for uri in ["/a{b}", "/a?q={x}", "/a|b", "/s?q=caf\u{e9}", "/a?b\\c"] {
            let target = try RequestTarget.parse(uri).get()
            let sent = target.path + (target.query.map { "?" + $0 } ?? "")
            #expect(sent.utf8.allSatisfy(RequestTargetBytes.contains), "\(uri) -> \(sent)")
        }
    }

    @Test func absoluteFormTargetsGiveTheirAuthority() throws {
        let target = try RequestTarget.parse("http://Ingest.Example:8080/v1/./events?x=1").get()
        #expect(target.path == "/v1/events" && target.query == "x=1" && target.authority == "Ingest.Example:8080")
        #expect(try RequestTarget.parse("HTTPS://h").get().path == "/")
        #expect(try RequestTarget.parse("http://h?q").get().query == "q")
        #expect(try RequestTarget.parse("http://[::1]:80/x").get().authority == "[::1]:80")
    }

    @Test(arguments: [
        "", "x", "v1/events", "ftp://h/x", "http://", "http://u@h/x", "http:///x", "h:443", "/a%2Fb", "/a%2fb", "/a%5Cb", "/a%00",
        "/a%zz", "/a%2", "/a%", "/a\\b", "/a b", "/a#b", "/a\u{01}", "/café", "/..;/x", "/a/.;x/b", "/a/..;/b", "/a?b c", "/a?b#c",
        "/a?\u{7F}",
    ])
    func refusesTargetsWhoseMeaningIsAmbiguous(uri: String) {
        #expect(Self.path(uri) == nil, "\(uri)")
    }
}

extension RequestTargetTests {
    /// The copy-free path for ordinary targets gives exactly what the full canonicalisation gives.
    @Test(arguments: [
        "/", "/a", "/a/b/", "/v1/events/orders?x=1&y=2", "/a.b/c-d_e~f", "/a;b=c", "/a?", "/a?b?c", "/a/b.", "/a/.b", "/a/..b",
        "/a//b", "/a/./b", "/a%41", "/a?b c", "/a/.", "/a{b}", "/a?q={x}", "/a|b?c", "/a?b\\c", "/a?[1]@x",
    ])
    func theFastPathAgreesWithTheFullOne(uri: String) {
        guard let fast = RequestTarget.alreadyCanonical(uri) else { return }
        var bytes = Array(uri.utf8)
        var query: String?
        if let mark = bytes.firstIndex(of: UInt8(ascii: "?")) {
            query = String(decoding: bytes[(mark + 1)...], as: UTF8.self)
            bytes = Array(bytes[..<mark])
        }
        #expect(fast.path == (try? RequestTarget.canonicalPath(bytes[...]).get()), "\(uri)")
        #expect(fast.query == query, "\(uri)")
    }
}
