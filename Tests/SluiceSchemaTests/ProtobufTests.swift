import SluiceSchema
import SwiftProtobuf
import Testing

/// Protobuf's binary encoding of JSON events (proto3 JSON mapping), byte for byte.
@Suite struct ProtobufTests {
    /// `package t; message M { int32 a = 1; string b = 2; repeated sint32 c = 3; E e = 4; message N { bool f = 1; } N n = 5; }`
    static func descriptorSet() throws -> [UInt8] {
        var file = Google_Protobuf_FileDescriptorProto()
        file.name = "t.proto"
        file.package = "t"
        file.syntax = "proto3"
        var enumType = Google_Protobuf_EnumDescriptorProto()
        enumType.name = "E"
        enumType.value = [("ZERO", Int32(0)), ("ONE", Int32(1))].map { name, number in
            var value = Google_Protobuf_EnumValueDescriptorProto()
            value.name = name
            value.number = number
            return value
        }
        file.enumType = [enumType]
        func field(_ name: String, _ number: Int32, _ type: Google_Protobuf_FieldDescriptorProto.TypeEnum, repeated: Bool = false, typeName: String? = nil)
            -> Google_Protobuf_FieldDescriptorProto
        {
            var field = Google_Protobuf_FieldDescriptorProto()
            field.name = name
            field.number = number
            field.type = type
            field.label = repeated ? .repeated : .optional
            if let typeName { field.typeName = typeName }
            return field
        }
        var nested = Google_Protobuf_DescriptorProto()
        nested.name = "N"
        nested.field = [field("f", 1, .bool)]
        var message = Google_Protobuf_DescriptorProto()
        message.name = "M"
        message.field = [
            field("a", 1, .int32), field("b", 2, .string), field("c", 3, .sint32, repeated: true), field("e", 4, .enum, typeName: ".t.E"),
            field("n", 5, .message, typeName: ".t.M.N"),
        ]
        message.nestedType = [nested]
        file.messageType = [message]
        var set = Google_Protobuf_FileDescriptorSet()
        set.file = [file]
        return try set.serializedBytes()
    }

    @Test func fieldsAreTaggedAndPackedAsProtobufWritesThem() throws {
        let schema = try ProtobufSchema.compile(descriptorSet: try Self.descriptorSet(), message: "t.M")
        #expect(schema.messageIndexes == [0] && schema.confluentIndexPrefix == [0])
        let bytes = try schema.encode(try JSONParser.parse(#"{"a": -1, "b": "hi", "c": [1, -1], "e": "ONE", "n": {"f": true}}"#)).get()
        let expected: [UInt8] =
            [0x08] + [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]  // a = -1: ten-byte varint
            + [0x12, 0x02, 0x68, 0x69]  // b = "hi"
            + [0x1A, 0x02, 0x02, 0x01]  // c packed: zigzag 1 = 2, -1 = 1
            + [0x20, 0x01]  // e = ONE
            + [0x2A, 0x02, 0x08, 0x01]  // n = { f: true }
        #expect(bytes == expected)
        let nested = try ProtobufSchema.compile(descriptorSet: try Self.descriptorSet(), message: "t.M.N")
        #expect(nested.messageIndexes == [0, 0] && nested.confluentIndexPrefix == [0x04, 0x00, 0x00])
    }

    @Test func whatDoesNotFitIsNamedWithItsPointer() throws {
        let schema = try ProtobufSchema.compile(descriptorSet: try Self.descriptorSet(), message: "t.M")
        func problem(_ text: String) -> String? {
            if case .failure(let violation) = schema.encode(try! JSONParser.parse(text)) { return violation.description }
            return nil
        }
        #expect(problem(#"{"z": 1}"#) == #"/z: protobuf: t.M has no field "z""#)
        #expect(problem(#"{"a": 1.5}"#) == "/a: protobuf: expected int32, got number")
        #expect(problem(#"{"e": "TWO"}"#) == #"/e: protobuf: "TWO" is not a value of enum t.E"#)
        #expect(problem(#"{"c": ["x"]}"#) == "/c/0: protobuf: expected sint32, got string")
        #expect(problem(#"{"n": {"f": 1}}"#) == "/n/f: protobuf: expected a boolean, got number")
        #expect(throws: SchemaCompileError.self) { try ProtobufSchema.compile(descriptorSet: try Self.descriptorSet(), message: "t.Missing") }
        #expect(throws: SchemaCompileError.self) { try ProtobufSchema.compile(descriptorSet: [0xFF, 0xFF], message: "t.M") }
    }

    /// `google.protobuf.Timestamp` in its RFC 3339 form, against Foundation's date arithmetic.
    @Test func timestampsAreReadAsRFC3339() throws {
        var timestampFile = Google_Protobuf_FileDescriptorProto()
        timestampFile.name = "google/protobuf/timestamp.proto"
        timestampFile.package = "google.protobuf"
        timestampFile.syntax = "proto3"
        var timestamp = Google_Protobuf_DescriptorProto()
        timestamp.name = "Timestamp"
        for (name, number, type) in [("seconds", Int32(1), Google_Protobuf_FieldDescriptorProto.TypeEnum.int64), ("nanos", 2, .int32)] {
            var field = Google_Protobuf_FieldDescriptorProto()
            field.name = name
            field.number = number
            field.type = type
            timestamp.field.append(field)
        }
        timestampFile.messageType = [timestamp]
        var file = Google_Protobuf_FileDescriptorProto()
        file.name = "t.proto"
        file.package = "t"
        file.syntax = "proto3"
        var message = Google_Protobuf_DescriptorProto()
        message.name = "T"
        var field = Google_Protobuf_FieldDescriptorProto()
        field.name = "ts"
        field.number = 1
        field.type = .message
        field.typeName = ".google.protobuf.Timestamp"
        message.field = [field]
        file.messageType = [message]
        var set = Google_Protobuf_FileDescriptorSet()
        set.file = [timestampFile, file]
        let schema = try ProtobufSchema.compile(descriptorSet: try set.serializedBytes(), message: "t.T")
        func encoded(_ text: String) -> [UInt8]? { try? schema.encode(try! JSONParser.parse(#"{"ts": "\#(text)"}"#)).get() }
        func varint(_ value: Int64) -> [UInt8] {
            var out: [UInt8] = []
            var v = UInt64(bitPattern: value)
            while v >= 0x80 { out.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
            out.append(UInt8(v))
            return out
        }
        func expected(_ seconds: Int64, _ nanos: Int64) -> [UInt8] {
            var body: [UInt8] = []
            if seconds != 0 { body += [0x08] + varint(seconds) }
            if nanos != 0 { body += [0x10] + varint(nanos) }
            return [0x0A, UInt8(body.count)] + body
        }
        #expect(encoded("1970-01-01T00:00:00Z") == [0x0A, 0x00])
        #expect(encoded("1969-12-31T23:59:59Z") == expected(-1, 0))
        #expect(encoded("2000-02-29T12:00:00.000000001Z") == expected(951_825_600, 1))
        #expect(encoded("2026-12-03T11:15:30.25+01:00") == expected(1_796_292_930, 250_000_000))
        #expect(encoded("2026-12-03 10:15:30Z") == nil, "a space is not the T")
        #expect(encoded("2026-13-03T10:15:30Z") == nil)
    }

    /// `Struct`, `Value`, `ListValue`, `FieldMask` and `Any` in their proto3 JSON forms, against
    /// SwiftProtobuf's own JSON reading of the same text: the same message, byte for byte decoded.
    @Test func structValueListFieldMaskAndAnyTakeTheirJSONForms() throws {
        var set = Google_Protobuf_FileDescriptorSet()
        for (fileName, names) in [
            ("google/protobuf/struct.proto", ["Struct", "Value", "ListValue"]), ("google/protobuf/field_mask.proto", ["FieldMask"]),
            ("google/protobuf/any.proto", ["Any"]), ("google/protobuf/duration.proto", ["Duration"]),
        ] {
            var file = Google_Protobuf_FileDescriptorProto()
            file.name = fileName
            file.package = "google.protobuf"
            file.syntax = "proto3"
            file.messageType = names.map { name in
                var message = Google_Protobuf_DescriptorProto()
                message.name = name
                return message
            }
            set.file.append(file)
        }
        let descriptors = try set.serializedBytes() as [UInt8]
        func encoded(_ type: String, _ json: String) throws -> [UInt8] {
            try ProtobufSchema.compile(descriptorSet: descriptors, message: "google.protobuf.\(type)").encode(try JSONParser.parse(json)).get()
        }

        let structJSON = #"{"name": "a", "count": 2.5, "ok": true, "none": null, "tags": ["x", 1, {"deep": []}], "nested": {"k": "v"}}"#
        #expect(try Google_Protobuf_Struct(serializedBytes: try encoded("Struct", structJSON)) == Google_Protobuf_Struct(jsonString: structJSON))
        for value in [#"null"#, #"-0.5"#, #""text""#, #"false"#, #"{"a": [1, null]}"#, #"[]"#] {
            #expect(try Google_Protobuf_Value(serializedBytes: try encoded("Value", value)) == Google_Protobuf_Value(jsonString: value), "\(value)")
        }
        let list = #"[1, "two", [3], {"four": 4}]"#
        #expect(try Google_Protobuf_ListValue(serializedBytes: try encoded("ListValue", list)) == Google_Protobuf_ListValue(jsonString: list))
        let mask = #""user.displayName,photo,a.bC""#
        let decodedMask = try Google_Protobuf_FieldMask(serializedBytes: try encoded("FieldMask", mask))
        #expect(decodedMask.paths == ["user.display_name", "photo", "a.b_c"])
        #expect(decodedMask == (try Google_Protobuf_FieldMask(jsonString: mask)))
        #expect(throws: SchemaViolation.self) { try encoded("FieldMask", #""user_name""#) }

        let any = #"{"@type": "type.googleapis.com/google.protobuf.Duration", "value": "1.5s"}"#
        let decodedAny = try Google_Protobuf_Any(serializedBytes: try encoded("Any", any))
        #expect(decodedAny.typeURL == "type.googleapis.com/google.protobuf.Duration")
        #expect(try Google_Protobuf_Duration(unpackingAny: decodedAny) == Google_Protobuf_Duration(seconds: 1, nanos: 500_000_000))
        #expect(throws: SchemaViolation.self) { try encoded("Any", #"{"@type": "type.googleapis.com/t.Missing"}"#) }
        #expect(throws: SchemaViolation.self) { try encoded("Any", #"{"value": "1s"}"#) }
        #expect(throws: SchemaViolation.self) { try encoded("Struct", #"[1]"#) }
    }
}
