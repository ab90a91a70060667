import SluiceCore
import Testing

@Suite struct PercentEncodingTests {
    @Test func decodesEscapesAndRefusesMalformedOnesAndInvalidUTF8() {
        #expect(PercentEncoding.decode(Array("a%2Fb".utf8)) == "a/b")
        #expect(PercentEncoding.decode(Array("%zz".utf8)) == nil)
        #expect(PercentEncoding.decode(Array("%4".utf8)) == nil)
        #expect(PercentEncoding.decode(Array("%C3%A9".utf8)) == "é")
        #expect(PercentEncoding.decode(Array("%FF".utf8)) == nil)
        #expect(PercentEncoding.decode(Array("plain".utf8)) == "plain")
    }

    @Test func encodesAllButUnreservedBytes() {
        #expect(PercentEncoding.encode("a b/é~") == "a%20b%2F%C3%A9~")
        #expect(PercentEncoding.encode("a b/c", keepSlash: true) == "a%20b/c")
    }

    /// One reading for ingest keys and policies: names are decoded too, '+' is a space, a
    /// malformed value is no value.
    @Test func queryParametersAreReadOneWay() {
        #expect(QueryString.firstValue(of: "key", in: "a=1&key=x+y%21&key=second") == "x y!")
        #expect(QueryString.firstValue(of: "key", in: "%6Bey=spelled") == "spelled")
        #expect(QueryString.firstValue(of: "key", in: "key") == "")
        #expect(QueryString.firstValue(of: "key", in: "key=%zz") == nil)
        #expect(QueryString.firstValue(of: "key", in: "other=1") == nil)
        #expect(QueryString.firstValue(of: "a b", in: "a+b=1") == "1")
    }
}
