import SluiceCore
import Testing

/// RFC 6901 pointers, read and written over Unicode scalars.
@Suite struct JSONPointerTests {
    @Test func readsTokensAndEscapes() {
        #expect(JSONPointer.tokens("/a/b") == ["a", "b"])
        #expect(JSONPointer.tokens("/a~0b/c~1d") == ["a~b", "c/d"])
        #expect(JSONPointer.tokens("/~01") == ["~1"])
        #expect(JSONPointer.tokens("/") == [""])
        #expect(JSONPointer.tokens("//") == ["", ""])
        #expect(JSONPointer.tokens("") == [])
    }

    @Test func refusesWhatIsNotAPointer() {
        #expect(JSONPointer.tokens("a") == nil)
        #expect(JSONPointer.tokens("/a~2") == nil)
        #expect(JSONPointer.tokens("/a~") == nil)
        #expect(JSONPointer.tokens("#/a") == nil)
    }

    /// A prepend character (U+070F) or a combining mark (U+0301) folds a neighbouring `/` or `~`
    /// into one Character; it is still a separator or an escape. The first case is what the config
    /// fuzz target found: a Character-level split read it as one token and wrote back two.
    @Test func separatorsAndEscapesNextToCombiningScalars() {
        #expect(JSONPointer.tokens("/},\u{070F}/sluice-te") == ["},\u{070F}", "sluice-te"])
        #expect(JSONPointer.tokens("/a/\u{301}b") == ["a", "\u{301}b"])
        #expect(JSONPointer.tokens("/~\u{301}") == nil)
        #expect(JSONPointer.tokens("/~0\u{301}") == ["~\u{301}"])
        #expect(JSONPointer.encode(["},\u{070F}", "sluice-te"]) == "/},\u{070F}/sluice-te")
        #expect(JSONPointer.encode(["\u{070F}/", "~\u{301}"]).unicodeScalars.elementsEqual("/\u{070F}~1/~0\u{301}".unicodeScalars))
    }

    @Test func writesWhatItReads() {
        let cases: [[String]] = [[], [""], ["a", "b/c", "~"], ["\u{070F}/x", "y\u{301}", "~1"], ["", "", "é/~"]]
        for tokens in cases {
            let text = JSONPointer.encode(tokens)
            #expect(JSONPointer.tokens(text) == tokens, "\(text)")
        }
    }
}
