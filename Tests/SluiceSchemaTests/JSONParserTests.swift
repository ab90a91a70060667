import SluiceSchema
import Testing

@Suite struct JSONParserTests {
    @Test func valuesNumbersAndStringsAreReadAsWritten() throws {
        let value = try JSONParser.parse(#" {"a": [1, 1.5e2, -0, true, null], "b": "\u00e9\ud83d\ude00\n", "a": "last wins"} "#)
        guard case .object(let object) = value else {
            Issue.record("an object")
            return
        }
        #expect(object.count == 2)
        #expect(object["a"] == .string("last wins"))
        #expect(object["b"] == .string("é😀\n"))
        #expect(try JSONParser.parse("1.0") == JSONParser.parse("1"), "numbers compare by value")
        #expect(try JSONParser.parse(#""\ud800x""#) == .string("\u{FFFD}x"), "a lone surrogate reads as U+FFFD")
        #expect(try JSONParser.parse(#""e\u0301""#) != JSONParser.parse(#""\u00e9""#), "strings compare by code point, not canonically")
    }

    @Test func brokenTextIsRefusedWithWhere() {
        for (text, offset) in [("", 0), ("[1,]", 3), ("{\"a\" 1}", 5), ("01", 2), ("\"tab\there\"", 4), ("[1] x", 4), ("tru", 3), ("1.", 2)] {
            do {
                _ = try JSONParser.parse(text)
                Issue.record("accepted \(text.debugDescription)")
            } catch {
                #expect(error.offset == offset, "\(text.debugDescription): \(error)")
            }
        }
        #expect(throws: JSONParseError.self) { try JSONParser.parse(String(repeating: "[", count: 600) + String(repeating: "]", count: 600)) }
    }

    @Test func violationsNameThePointerAndTheKeyword() throws {
        let schema = try JSONSchema.compile(
            try JSONParser.parse(#"{"properties": {"a/b": {"items": {"type": "integer"}}, "c": {"enum": [1, 2]}}, "required": ["d"]}"#))
        let violations = schema.validate(try JSONParser.parse(#"{"a/b": [1, 2.5, "x"], "c": 3}"#))
        #expect(violations.map(\.description) == [
            "/a~1b/1: type: expected integer, got number", "/a~1b/2: type: expected integer, got string",
            "/c: enum: the value is not one of the 2 allowed", #"/: required: missing required property "d""#,
        ])
        #expect(schema.validate(try JSONParser.parse(#"{"a/b": [1, 2.5, "x"], "c": 3}"#), maxViolations: 1).count == 1)
        #expect(schema.validate(try JSONParser.parse(#"{"d": 0}"#)).isEmpty)
    }
}
