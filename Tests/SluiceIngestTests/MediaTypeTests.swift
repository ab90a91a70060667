import SluiceIngest
import Testing

@Suite struct MediaTypeTests {
    @Test func theTypeIsWhatPrecedesTheFirstSemicolonTrimmedAndLowerCased() {
        #expect(MediaType.essence(of: "application/x-ndjson") == "application/x-ndjson")
        #expect(MediaType.essence(of: " Application/JSON ; charset=utf-8") == "application/json")
        #expect(MediaType.essence(of: "\tTEXT/Plain\t;a=b;c=d") == "text/plain")
        #expect(MediaType.essence(of: "application/json;") == "application/json")
        #expect(MediaType.essence(of: ";application/json") == "", "nothing before the semicolon is no type")
        #expect(MediaType.essence(of: "   ") == "" && MediaType.essence(of: "") == "" && MediaType.essence(of: nil) == "")
        #expect(MediaType.essence(of: "Application/Ä+JSON") == "application/ä+json", "non-ASCII lower-cases as Unicode")
        let accept = "text/html, Application/JSON;q=0.9"
        #expect(accept.split(separator: ",").map { MediaType.essence(of: $0) } == ["text/html", "application/json"])
    }

    @Test func theBodyFormatFollowsTheMediaType() {
        #expect(BodyFormat(contentType: "Application/X-NDJSON; charset=utf-8") == .ndjson)
        #expect(BodyFormat(contentType: " application/json") == .json)
        #expect(BodyFormat(contentType: "application/jsonx") == .raw)
        #expect(BodyFormat(contentType: nil) == .raw)
    }
}
