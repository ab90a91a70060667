import NIOCore
@testable import SluiceHTTP
import SluiceCore
import Testing

@Suite struct JSONScannerTests {
    static func validate(_ text: String) -> JSONScanner.SyntaxError? {
        Array(text.utf8).withUnsafeBytes { raw in
            do throws(JSONScanner.SyntaxError) {
                try JSONScanner.validate(raw)
                return nil
            } catch {
                return error
            }
        }
    }

    @Test(arguments: [
        #"{"a":1}"#, "[]", "{}", "  true ", "null", "-0.5e+10", #""\u00e9\n\"""#, #"{"a":[1,{"b":null}],"c":"d"}"#, "0",
    ])
    func acceptsValidJSON(text: String) {
        #expect(Self.validate(text) == nil)
    }

    @Test(arguments: [
        "{", #"{"a":1,}"#, "[1,]", "01", "1.", "tru", #""unterminated"#, #"{"a" 1}"#, "{} {}", "", #""bad \x escape""#,
        "\"raw\u{01}control\"", "[" + String(repeating: "[", count: 200) + String(repeating: "]", count: 201),
    ])
    func rejectsInvalidJSON(text: String) {
        #expect(Self.validate(text) != nil)
    }

    @Test func longStringsAreScannedCorrectlyAroundEveryEightByteBoundary() {
        for offset in 0..<17 {
            let pad = String(repeating: "a", count: offset)
            #expect(Self.validate("\"\(pad)é日本\(pad)\\\"\(pad)\"") == nil)
            #expect(Self.validate("\"\(pad)\u{01}\(pad)\"") != nil, "control character after \(offset) bytes")
            #expect(Self.validate("\"\(pad)\(pad)") != nil, "unterminated after \(offset) bytes")
            #expect(Self.validate("[\"\(pad)\", \"\(pad)\\u0041\"]") == nil)
        }
    }

    @Test func findsTopLevelArrayElementsWithTheirExactBytes() throws {
        let text = #"[ {"a": 1} , "x",3,[4, 5] ]"#
        let bytes = Array(text.utf8)
        let ranges = try bytes.withUnsafeBytes { raw throws(JSONScanner.SyntaxError) in try JSONScanner.topLevelArrayElements(raw) }
        let elements = ranges?.map { String(decoding: bytes[$0], as: UTF8.self) }
        #expect(elements == [#"{"a": 1}"#, #""x""#, "3", "[4, 5]"])
    }

    @Test func resolvesPointersToScalars() {
        let text = #"{"user":{"id":"u-\u0031","n":42,"ok":true,"obj":{},"list":["a","b"]},"a/b":"slash"}"#
        func lookup(_ pointer: [String]) -> JSONScanner.PointerResult {
            Array(text.utf8).withUnsafeBytes { JSONScanner.scalar(at: pointer, in: $0) }
        }
        #expect(lookup(["user", "id"]) == .value(Array("u-1".utf8)))
        #expect(lookup(["user", "n"]) == .value(Array("42".utf8)))
        #expect(lookup(["user", "ok"]) == .value(Array("true".utf8)))
        #expect(lookup(["user", "list", "1"]) == .value(Array("b".utf8)))
        #expect(lookup(["a/b"]) == .value(Array("slash".utf8)))
        #expect(lookup(["user", "obj"]) == .notScalar)
        #expect(lookup(["user", "missing"]) == .missing)
        #expect(lookup(["user", "id", "deeper"]) == .missing)
    }
}

@Suite struct NDJSONDecoderTests {
    static func decode(_ chunks: [String], maxLine: Int = 1000) throws(BodyDecodingError) -> [String] {
        var decoder = NDJSONDecoder(maxLineBytes: maxLine)
        var events: [Event] = []
        for chunk in chunks {
            try decoder.feed(ByteBuffer(string: chunk), into: &events)
        }
        try decoder.finish(into: &events)
        return events.map { String(buffer: $0.value) }
    }

    @Test func splitsLinesAcrossChunkBoundariesAndSkipsBlankLines() throws {
        let events = try Self.decode([#"{"a":"#, "1}\n\n", "  \n", #"{"b":2}"#, "\r\n", #"[3]"#])
        #expect(events == [#"{"a":1}"#, #"{"b":2}"#, "[3]"])
    }

    @Test func namesTheLineOfInvalidJSON() {
        do {
            _ = try Self.decode(["{\"ok\":1}\n\n{\"bad\":}\n"])
            Issue.record("expected an error")
        } catch {
            #expect(error.status == 400)
            #expect(error.line == 3)
            #expect(error.message.hasPrefix("line 3, column 8:"))
        }
    }

    @Test func limitsLineLengthEvenBeforeTheNewlineArrives() {
        do {
            _ = try Self.decode(["{\"a\":\"", String(repeating: "x", count: 200)], maxLine: 100)
            Issue.record("expected an error")
        } catch {
            #expect(error.status == 413)
            #expect(error.line == 1)
            #expect(error.code == "event_too_large")
        }
    }

    @Test func jsonBodiesSplitArraysAndKeepObjectsWhole() throws {
        let array = try JSONBodyDecoder.decode(ByteBuffer(string: #"[{"a":1}, 2]"#), maxEventBytes: 100)
        #expect(array.map { String(buffer: $0.value) } == [#"{"a":1}"#, "2"])
        let object = try JSONBodyDecoder.decode(ByteBuffer(string: #"{"a":[1,2]}"#), maxEventBytes: 100)
        #expect(object.map { String(buffer: $0.value) } == [#"{"a":[1,2]}"#])
        #expect(throws: BodyDecodingError.self) { try JSONBodyDecoder.decode(ByteBuffer(string: "[1,"), maxEventBytes: 100) }
        #expect(throws: BodyDecodingError.self) { try JSONBodyDecoder.decode(ByteBuffer(string: "[\"0123456789\"]"), maxEventBytes: 5) }
    }

    @Test func contentTypesChooseTheFormat() {
        #expect(BodyFormat(contentType: "application/x-ndjson") == .ndjson)
        #expect(BodyFormat(contentType: "Application/JSON; charset=utf-8") == .json)
        #expect(BodyFormat(contentType: "text/plain") == .raw)
        #expect(BodyFormat(contentType: nil) == .raw)
    }
}
