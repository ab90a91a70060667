import NIOCore
@testable import SluiceIngest
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

    @Test func longStringsAreScannedCorrectlyAroundEverySixteenByteBoundary() {
        for offset in 0..<34 {
            let pad = String(repeating: "a", count: offset)
            #expect(Self.validate("\"\(pad)é日本\(pad)\\\"\(pad)\"") == nil)
            #expect(Self.validate("\"\(pad)\u{01}\(pad)\"") != nil, "control character after \(offset) bytes")
            #expect(Self.validate("\"\(pad)\(pad)") != nil, "unterminated after \(offset) bytes")
            #expect(Self.validate("[\"\(pad)\", \"\(pad)\\u0041\"]") == nil)
        }
    }

    /// The fast path (CSluiceScan: 16 bytes a step, then one load of the last 16 bytes of the
    /// text) jumps to the first special byte: every byte value, at every place in a step and in
    /// that last load, with more or fewer bytes after it, is judged as the byte loop alone would
    /// judge it, at its own offset.
    @Test(arguments: [1, 2, 8, 9, 15, 16, 17])
    func everyByteValueIsFoundWhereverItFallsInAStep(trailing: Int) {
        for offset in 0..<34 {
            let pad = [UInt8](repeating: UInt8(ascii: "a"), count: offset)
            for byte in UInt8.min...UInt8.max {
                let text = [UInt8(ascii: "\"")] + pad + [byte] + [UInt8](repeating: UInt8(ascii: "c"), count: trailing) + [UInt8(ascii: "\"")]
                let error = Self.validate(bytes: text)
                switch byte {
                case UInt8(ascii: "\""):
                    #expect(error?.offset == 2 + offset, "quote after \(offset)")
                case UInt8(ascii: "\\"):
                    #expect(error?.message == "invalid escape in string" && error?.offset == 1 + offset, "\\c after \(offset)")
                case ..<0x20:
                    #expect(error?.message == "control character in string" && error?.offset == 1 + offset, "\(byte) after \(offset)")
                case 0x80...:
                    #expect(error?.message == "invalid UTF-8 in string" && error?.offset == 1 + offset, "\(byte) after \(offset)")
                default:
                    #expect(error == nil, "\(byte) after \(offset)")
                }
            }
        }
    }

    static func validate(bytes: [UInt8]) -> JSONScanner.SyntaxError? {
        bytes.withUnsafeBytes { raw in
            do throws(JSONScanner.SyntaxError) {
                try JSONScanner.validate(raw)
                return nil
            } catch {
                return error
            }
        }
    }

    /// RFC 8259 8.1: strings are UTF-8; every ill-formed sequence of Unicode table 3-7 is refused,
    /// wherever it falls against the scanner's fast path.
    @Test func refusesIllFormedUTF8InStringsAndKeys() {
        let illFormed: [[UInt8]] = [
            [0x80], [0xBF], [0xC0, 0xAF], [0xC1, 0xBF], [0xC2], [0xE0, 0x80, 0x80], [0xE0, 0x9F, 0xBF], [0xED, 0xA0, 0x80],
            [0xED, 0xBF, 0xBF], [0xE2, 0x82], [0xF0, 0x8F, 0xBF, 0xBF], [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80],
            [0xFE], [0xFF], [0xE2, 0x28, 0xA1], [0xF0, 0x9F, 0x98],
        ]
        let wellFormed: [[UInt8]] = [
            [0xC2, 0x80], [0xDF, 0xBF], [0xE0, 0xA0, 0x80], [0xED, 0x9F, 0xBF], [0xEE, 0x80, 0x80], [0xF0, 0x90, 0x80, 0x80],
            [0xF4, 0x8F, 0xBF, 0xBF], Array("é日本𝄞".utf8),
        ]
        for offset in 0..<10 {
            let pad = [UInt8](repeating: UInt8(ascii: "a"), count: offset)
            for sequence in illFormed {
                let value = [UInt8(ascii: "\"")] + pad + sequence + pad + [UInt8(ascii: "\"")]
                let error = Self.validate(bytes: value)
                #expect(error?.message == "invalid UTF-8 in string", "\(sequence) after \(offset)")
                #expect(error?.offset == 1 + offset, "\(sequence) after \(offset)")
                let key = [UInt8(ascii: "{"), UInt8(ascii: "\"")] + pad + sequence + [UInt8(ascii: "\""), UInt8(ascii: ":"), UInt8(ascii: "1"), UInt8(ascii: "}")]
                #expect(Self.validate(bytes: key) != nil, "key \(sequence) after \(offset)")
            }
            for sequence in wellFormed {
                #expect(Self.validate(bytes: [UInt8(ascii: "\"")] + pad + sequence + pad + [UInt8(ascii: "\"")]) == nil, "\(sequence)")
            }
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
    static func decode(_ chunks: [String], maxLine: Int = 1000) throws(IngestError) -> [String] {
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
            #expect(error.code.httpStatus == 400)
            #expect(error.line == 3)
            #expect(error.message.hasPrefix("line 3, column 8:"))
        }
    }

    @Test func limitsLineLengthEvenBeforeTheNewlineArrives() {
        do {
            _ = try Self.decode(["{\"a\":\"", String(repeating: "x", count: 200)], maxLine: 100)
            Issue.record("expected an error")
        } catch {
            #expect(error.code.httpStatus == 413)
            #expect(error.line == 1)
            #expect(error.code == .eventTooLarge)
        }
    }

    /// A line of exactly max_event_bytes is accepted whether its CR and LF arrive with it or later.
    @Test func aLineOfExactlyTheLimitIsAcceptedHoweverItsCRLFArrives() throws {
        let line = "{\"p\":\"" + String(repeating: "a", count: 92) + "\"}"
        #expect(line.utf8.count == 100)
        for chunks in [[line + "\r\n"], [line + "\r", "\n"], [line, "\r\n"], [line, "\r", "\n"]] {
            #expect(try Self.decode(chunks, maxLine: 100) == [line], "\(chunks.map { $0.count })")
        }
        for chunks in [[line + "a\r\n"], [line + "a", "\r\n"], [line + "\r", "a\n"]] {
            #expect(throws: IngestError.self, "\(chunks.map { $0.count })") { try Self.decode(chunks, maxLine: 100) }
        }
    }

    @Test func remembersTheLineOfEveryEvent() throws {
        var decoder = NDJSONDecoder(maxLineBytes: 100)
        var events: [Event] = []
        try decoder.feed(ByteBuffer(string: "\n\n{\"a\":1}\n \n{\"b\""), into: &events)
        #expect(decoder.eventLines == [3])
        decoder.clearEventLines()
        try decoder.feed(ByteBuffer(string: ":2}\n\n[3]\n"), into: &events)
        #expect(decoder.eventLines == [5, 7])
    }

    @Test func jsonBodiesSplitArraysAndKeepObjectsWhole() throws {
        let array = try JSONBodyDecoder.decode(ByteBuffer(string: #"[{"a":1}, 2]"#), maxEventBytes: 100)
        #expect(array.map { String(buffer: $0.value) } == [#"{"a":1}"#, "2"])
        let object = try JSONBodyDecoder.decode(ByteBuffer(string: #"{"a":[1,2]}"#), maxEventBytes: 100)
        #expect(object.map { String(buffer: $0.value) } == [#"{"a":[1,2]}"#])
        #expect(throws: IngestError.self) { try JSONBodyDecoder.decode(ByteBuffer(string: "[1,"), maxEventBytes: 100) }
        #expect(throws: IngestError.self) { try JSONBodyDecoder.decode(ByteBuffer(string: "[\"0123456789\"]"), maxEventBytes: 5) }
    }

    @Test func contentTypesChooseTheFormat() {
        #expect(BodyFormat(contentType: "application/x-ndjson") == .ndjson)
        #expect(BodyFormat(contentType: "Application/JSON; charset=utf-8") == .json)
        #expect(BodyFormat(contentType: "text/plain") == .raw)
        #expect(BodyFormat(contentType: nil) == .raw)
    }
}
