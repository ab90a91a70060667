// libFuzzer target: SluiceSchema — the JSON parser every event of a schema route goes through,
// validation against a fixed schema that uses every applicator, Avro transcoding, and the input
// compiled as a schema of its own and validated against itself.
// Built with Sources/SluiceSchema/*.swift against the debug build (SluiceCore, SwiftProtobuf) by scripts/fuzz.sh.

let fixed = try! JSONSchema.compile(
    try! JSONParser.parse(
        #"""
        {"$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}, "v": {"type": ["integer", "string"], "maxLength": 3}},
                            "unevaluatedProperties": false, "$dynamicAnchor": "n"}},
         "anyOf": [{"$ref": "#/$defs/node"}, {"type": "array", "prefixItems": [{"const": 1}], "items": {"$dynamicRef": "#n"}, "contains": {"type": "null"},
                    "minContains": 0, "uniqueItems": true, "unevaluatedItems": false}],
         "oneOf": [{"required": ["a"]}, {"not": {"required": ["a"]}}],
         "dependentSchemas": {"x": {"if": {"minProperties": 2}, "then": {"maxProperties": 3}, "else": {"enum": [1, "x", null]}}},
         "propertyNames": {"minLength": 1}, "multipleOf": 0.5}
        """#))
func makeAvro() -> AvroSchema { try! AvroSchema.compile(
    try! JSONParser.parse(
        #"{"type": "record", "name": "R", "fields": [{"name": "a", "type": ["null", "long", "string", {"type": "array", "items": "R"}]}, {"name": "m", "type": {"type": "map", "values": "double"}, "default": {}}]}"#)) }

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let value: JSONValue
    do throws(JSONParseError) {
        value = try JSONParser.parse(bytes)
    } catch {
        precondition(error.offset >= 0 && error.offset <= size, "error offset out of range")
        return 0
    }
    // Reporting and deciding agree.
    precondition(fixed.validate(value).isEmpty == fixed.isValid(value), "validate and isValid disagree")
    _ = makeAvro().encode(value)
    // The input as a schema (no patterns: those come from operators, not events).
    let text = String(decoding: bytes, as: UTF8.self)
    if !text.contains("pattern"), let schema = try? JSONSchema.compile(value) {
        precondition(schema.validate(value, maxViolations: 4).isEmpty == schema.isValid(value), "self-validation disagrees")
    }
    return 0
}
