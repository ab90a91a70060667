import Foundation
import SluiceCore
import SwiftProtobuf

/// A Protobuf message type from a descriptor set (`protoc --descriptor_set_out --include_imports`),
/// compiled to transcode JSON events (proto3's JSON mapping) into the message's binary encoding.
/// Field names are taken as their JSON name or as written; 64-bit integers as numbers or
/// strings; bytes as base64; enums by name or number; maps as objects; repeated scalars packed
/// as proto3 packs them. Unknown fields are refused.
public final class ProtobufSchema: Sendable {
    enum Kind: Sendable {
        case double, float, int64, uint64, int32, uint32, sint32, sint64, fixed32, fixed64, sfixed32, sfixed64, bool, string, bytes
        case enumeration(Int)
        case message(Int)
    }

    struct Field: Sendable {
        var name: String
        var number: Int
        var kind: Kind
        var repeated: Bool
        var packed: Bool
    }

    struct Message: Sendable {
        var name: String
        var fields: [Field]
        /// JSON name and field name -> position in `fields`.
        var byName: [String: Int]
        var isMapEntry: Bool
    }

    struct EnumType: Sendable {
        var name: String
        var values: [String: Int32]
    }

    let messages: [Message]
    let enums: [EnumType]
    let root: Int
    /// Full name -> position in `messages`: the type an `Any` names.
    let messageIndex: [String: Int]
    /// Where the message sits in its file (top-level index, then nested ones): Confluent's
    /// wire format names the message by these.
    public let messageIndexes: [Int]

    init(messages: [Message], enums: [EnumType], root: Int, messageIndexes: [Int]) {
        self.messages = messages
        self.enums = enums
        self.root = root
        self.messageIndexes = messageIndexes
        self.messageIndex = Dictionary(messages.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// Compiles message `name` (`package.Message`) of a serialized `FileDescriptorSet`.
    public static func compile(descriptorSet: [UInt8], message name: String) throws(SchemaCompileError) -> ProtobufSchema {
        let set: Google_Protobuf_FileDescriptorSet
        do {
            set = try Google_Protobuf_FileDescriptorSet(serializedBytes: descriptorSet)
        } catch {
            throw SchemaCompileError("not a FileDescriptorSet (protoc --descriptor_set_out --include_imports): \(error)")
        }
        // Every message and enum by full name, with where each message sits in its file.
        var messageDescriptors: [(name: String, descriptor: Google_Protobuf_DescriptorProto, proto3: Bool, indexes: [Int])] = []
        var enumDescriptors: [(name: String, descriptor: Google_Protobuf_EnumDescriptorProto)] = []
        func collect(_ message: Google_Protobuf_DescriptorProto, prefix: String, proto3: Bool, indexes: [Int]) {
            let full = prefix.isEmpty ? message.name : "\(prefix).\(message.name)"
            messageDescriptors.append((full, message, proto3, indexes))
            for (index, nested) in message.nestedType.enumerated() { collect(nested, prefix: full, proto3: proto3, indexes: indexes + [index]) }
            for nested in message.enumType { enumDescriptors.append(("\(full).\(nested.name)", nested)) }
        }
        for file in set.file {
            let proto3 = file.syntax == "proto3"
            for (index, message) in file.messageType.enumerated() { collect(message, prefix: file.package, proto3: proto3, indexes: [index]) }
            for item in file.enumType { enumDescriptors.append((file.package.isEmpty ? item.name : "\(file.package).\(item.name)", item)) }
        }
        var messageIndex: [String: Int] = [:]
        for (position, entry) in messageDescriptors.enumerated() { messageIndex[entry.name] = position }
        var enumIndex: [String: Int] = [:]
        for (position, entry) in enumDescriptors.enumerated() { enumIndex[entry.name] = position }
        guard let root = messageIndex[name] else {
            throw SchemaCompileError("no message \(name) in the descriptor set (messages: \(messageDescriptors.prefix(8).map(\.name).joined(separator: ", ")))")
        }
        var messages: [Message] = []
        for entry in messageDescriptors {
            var fields: [Field] = []
            var byName: [String: Int] = [:]
            for field in entry.descriptor.field {
                let kind: Kind
                switch field.type {
                case .double: kind = .double
                case .float: kind = .float
                case .int64: kind = .int64
                case .uint64: kind = .uint64
                case .int32: kind = .int32
                case .uint32: kind = .uint32
                case .sint32: kind = .sint32
                case .sint64: kind = .sint64
                case .fixed32: kind = .fixed32
                case .fixed64: kind = .fixed64
                case .sfixed32: kind = .sfixed32
                case .sfixed64: kind = .sfixed64
                case .bool: kind = .bool
                case .string: kind = .string
                case .bytes: kind = .bytes
                case .enum:
                    guard let position = enumIndex[String(field.typeName.drop { $0 == "." })] else {
                        throw SchemaCompileError("\(entry.name).\(field.name): unknown enum \(field.typeName)")
                    }
                    kind = .enumeration(position)
                case .message:
                    guard let position = messageIndex[String(field.typeName.drop { $0 == "." })] else {
                        throw SchemaCompileError("\(entry.name).\(field.name): unknown message \(field.typeName)")
                    }
                    kind = .message(position)
                default:
                    throw SchemaCompileError("\(entry.name).\(field.name): groups are not supported")
                }
                let repeated = field.label == .repeated
                let scalar: Bool
                switch kind {
                case .string, .bytes, .message: scalar = false
                default: scalar = true
                }
                let packed = repeated && scalar && (field.options.hasPacked ? field.options.packed : entry.proto3)
                byName[field.name] = fields.count
                if field.hasJsonName { byName[field.jsonName] = fields.count }
                fields.append(Field(name: field.name, number: Int(field.number), kind: kind, repeated: repeated, packed: packed))
            }
            messages.append(Message(name: entry.name, fields: fields, byName: byName, isMapEntry: entry.descriptor.options.mapEntry))
        }
        let enums = enumDescriptors.map { entry in
            EnumType(name: entry.name, values: Dictionary(entry.descriptor.value.map { ($0.name, $0.number) }, uniquingKeysWith: { first, _ in first }))
        }
        return ProtobufSchema(messages: messages, enums: enums, root: root, messageIndexes: messageDescriptors[root].indexes)
    }

    /// The message's binary encoding of `value`, or why it does not fit (with the JSON pointer).
    public func encode(_ value: JSONValue) -> Result<[UInt8], SchemaViolation> {
        var out: [UInt8] = []
        var path: [String] = []
        do throws(SchemaViolation) {
            try self.write(value, message: self.root, into: &out, path: &path)
            return .success(out)
        } catch {
            return .failure(error)
        }
    }

    /// Confluent's message-index prefix: `[0]` as one zero byte, otherwise the count and the
    /// indexes as zigzag varints.
    public var confluentIndexPrefix: [UInt8] {
        if self.messageIndexes == [0] { return [0] }
        var out: [UInt8] = []
        Self.varint(Self.zigzag(Int64(self.messageIndexes.count)), into: &out)
        for index in self.messageIndexes { Self.varint(Self.zigzag(Int64(index)), into: &out) }
        return out
    }

    private func fail(_ path: [String], _ message: String) -> SchemaViolation {
        SchemaViolation(instancePath: JSONPointer.encode(path), keyword: "protobuf", message: message)
    }

    private func write(_ value: JSONValue, message index: Int, into out: inout [UInt8], path: inout [String]) throws(SchemaViolation) {
        let message = self.messages[index]
        if let special = try self.wellKnown(value, message, path) {
            out.append(contentsOf: special)
            return
        }
        guard case .object(let object) = value else { throw self.fail(path, "expected an object for \(message.name), got \(value.typeName)") }
        for (name, member) in object.members {
            guard let position = message.byName[name] else { throw self.fail(path + [name], "\(message.name) has no field \"\(name)\"") }
            let field = message.fields[position]
            // null is the field's default (not written), except a google.protobuf.Value's null.
            if case .null = member {
                guard case .message(let type) = field.kind, !field.repeated, self.messages[type].name == "google.protobuf.Value" else { continue }
            }
            path.append(name)
            defer { path.removeLast() }
            if field.repeated {
                if case .message(let entryIndex) = field.kind, self.messages[entryIndex].isMapEntry {
                    guard case .object(let entries) = member else { throw self.fail(path, "expected an object (a map)") }
                    let entry = self.messages[entryIndex]
                    for (key, item) in entries.members {
                        var body: [UInt8] = []
                        path.append(key)
                        defer { path.removeLast() }
                        let keyField = entry.fields.first { $0.number == 1 }
                        let valueField = entry.fields.first { $0.number == 2 }
                        guard let keyField, let valueField else { throw self.fail(path, "a map entry without key or value") }
                        try self.writeField(keyField, Self.mapKey(key, keyField.kind), into: &body, path: &path)
                        try self.writeField(valueField, item, into: &body, path: &path)
                        Self.tag(field.number, 2, into: &out)
                        Self.varint(UInt64(body.count), into: &out)
                        out.append(contentsOf: body)
                    }
                    continue
                }
                guard case .array(let items) = member else { throw self.fail(path, "expected an array (a repeated field)") }
                if field.packed {
                    var body: [UInt8] = []
                    for (position, item) in items.enumerated() {
                        path.append(String(position))
                        defer { path.removeLast() }
                        try self.writeScalar(field.kind, item, into: &body, path: path)
                    }
                    if !body.isEmpty {
                        Self.tag(field.number, 2, into: &out)
                        Self.varint(UInt64(body.count), into: &out)
                        out.append(contentsOf: body)
                    }
                } else {
                    for (position, item) in items.enumerated() {
                        path.append(String(position))
                        defer { path.removeLast() }
                        try self.writeField(field, item, into: &out, path: &path)
                    }
                }
                continue
            }
            try self.writeField(field, member, into: &out, path: &path)
        }
    }

    /// The well-known types' own JSON forms (proto3 JSON mapping): a `Timestamp` as an RFC 3339
    /// string, a `Duration` as `"1.5s"`, a wrapper as its bare value, a `FieldMask` as
    /// `"a.b,fooBar"`; `Struct`, `Value` and `ListValue` as any JSON object, value and array; an
    /// `Any` as the named message's JSON with `"@type"`. nil: not one of them (or, for the types
    /// whose form is not an object, given as an object, which the general path takes).
    private func wellKnown(_ value: JSONValue, _ message: Message, _ path: [String]) throws(SchemaViolation) -> [UInt8]? {
        var out: [UInt8] = []
        switch message.name {
        case "google.protobuf.Struct":
            guard case .object(let object) = value else { throw self.fail(path, "expected an object (a google.protobuf.Struct)") }
            try Self.structFields(object, into: &out, path: path)
            return out
        case "google.protobuf.Value":
            try Self.value(value, into: &out, path: path)
            return out
        case "google.protobuf.ListValue":
            guard case .array(let items) = value else { throw self.fail(path, "expected an array (a google.protobuf.ListValue)") }
            try Self.listValues(items, into: &out, path: path)
            return out
        case "google.protobuf.Any":
            guard case .object(let object) = value else { throw self.fail(path, "expected an object with \"@type\" (a google.protobuf.Any)") }
            return try self.any(object, path: path)
        default:
            break
        }
        if case .object = value { return nil }
        switch message.name {
        case "google.protobuf.FieldMask":
            guard case .string(let text) = value else { throw self.fail(path, "expected a field mask like \"user.displayName,photo\"") }
            for mask in text.split(separator: ",", omittingEmptySubsequences: true) {
                guard let snake = Self.snakeCasePath(mask) else {
                    throw self.fail(path, "\"\(mask)\" is not a field path in lowerCamelCase (like user.displayName)")
                }
                Self.tag(1, 2, into: &out)
                Self.varint(UInt64(snake.utf8.count), into: &out)
                out.append(contentsOf: snake.utf8)
            }
        case "google.protobuf.Timestamp":
            guard case .string(let text) = value, let (seconds, nanos) = Self.timestamp(text) else {
                throw self.fail(path, "expected an RFC 3339 timestamp like 2026-12-03T10:15:30.5Z")
            }
            Self.secondsAndNanos(seconds, nanos, into: &out)
        case "google.protobuf.Duration":
            guard case .string(let text) = value, let (seconds, nanos) = Self.duration(text) else {
                throw self.fail(path, "expected a duration like \"1.5s\"")
            }
            Self.secondsAndNanos(seconds, nanos, into: &out)
        case "google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.Int64Value", "google.protobuf.UInt64Value",
            "google.protobuf.Int32Value", "google.protobuf.UInt32Value", "google.protobuf.BoolValue", "google.protobuf.StringValue",
            "google.protobuf.BytesValue":
            guard let field = message.fields.first(where: { $0.number == 1 }) else { return nil }
            var path = path
            try self.writeField(field, value, into: &out, path: &path)
        default:
            return nil
        }
        return out
    }

    /// `Struct.fields` (1, map<string, Value>): one entry per member.
    private static func structFields(_ object: JSONObject, into out: inout [UInt8], path: [String]) throws(SchemaViolation) {
        for (key, member) in object.members {
            var entry: [UInt8] = []
            Self.lengthDelimited(1, Array(key.utf8), into: &entry)
            var item: [UInt8] = []
            try Self.value(member, into: &item, path: path + [key])
            Self.lengthDelimited(2, item, into: &entry)
            Self.lengthDelimited(1, entry, into: &out)
        }
    }

    /// `ListValue.values` (1, repeated Value).
    private static func listValues(_ items: [JSONValue], into out: inout [UInt8], path: [String]) throws(SchemaViolation) {
        for (position, element) in items.enumerated() {
            var item: [UInt8] = []
            try Self.value(element, into: &item, path: path + [String(position)])
            Self.lengthDelimited(1, item, into: &out)
        }
    }

    /// A `Value`: its oneof `kind` — null_value (1), number_value (2), string_value (3),
    /// bool_value (4), struct_value (5), list_value (6).
    private static func value(_ value: JSONValue, into out: inout [UInt8], path: [String]) throws(SchemaViolation) {
        switch value {
        case .null:
            Self.tag(1, 0, into: &out)
            out.append(0)
        case .number(let number):
            guard number.isFinite else {
                throw SchemaViolation(instancePath: JSONPointer.encode(path), keyword: "protobuf", message: "a Value's number must be finite")
            }
            Self.tag(2, 1, into: &out)
            withUnsafeBytes(of: number.bitPattern.littleEndian) { out.append(contentsOf: $0) }
        case .string(let text):
            Self.lengthDelimited(3, Array(text.utf8), into: &out)
        case .bool(let flag):
            Self.tag(4, 0, into: &out)
            out.append(flag ? 1 : 0)
        case .object(let object):
            var body: [UInt8] = []
            try Self.structFields(object, into: &body, path: path)
            Self.lengthDelimited(5, body, into: &out)
        case .array(let items):
            var body: [UInt8] = []
            try Self.listValues(items, into: &body, path: path)
            Self.lengthDelimited(6, body, into: &out)
        }
    }

    /// An `Any`: `type_url` (1) and the named message's encoding (2). The type must be in the
    /// descriptor set; a well-known type with a JSON form of its own carries it in `"value"`.
    private func any(_ object: JSONObject, path: [String]) throws(SchemaViolation) -> [UInt8] {
        guard case .string(let typeURL)? = object["@type"], let slash = typeURL.lastIndex(of: "/") else {
            throw self.fail(path + ["@type"], "an Any needs \"@type\": \"type.googleapis.com/package.Message\"")
        }
        let name = String(typeURL[typeURL.index(after: slash)...])
        guard let index = self.messageIndex[name] else {
            throw self.fail(path + ["@type"], "\(name) is not in the descriptor set (protoc --include_imports with its .proto)")
        }
        let fields = JSONObject(object.members.filter { $0.key != "@type" }.map { ($0.key, $0.value) })
        var content: JSONValue = .object(fields)
        if self.messages[index].name.hasPrefix("google.protobuf."), self.messages[index].name != "google.protobuf.Empty" {
            guard case .object(let wrapped) = content, wrapped.members.count == 1, let inner = wrapped["value"] else {
                throw self.fail(path, "an Any of \(name) carries its JSON form in \"value\"")
            }
            content = inner
        }
        var body: [UInt8] = []
        var innerPath = path
        try self.write(content, message: index, into: &body, path: &innerPath)
        var out: [UInt8] = []
        Self.lengthDelimited(1, Array(typeURL.utf8), into: &out)
        Self.lengthDelimited(2, body, into: &out)
        return out
    }

    /// `user.displayName` -> `user.display_name`; nil for a segment that is not lowerCamelCase
    /// (an underscore, a leading capital), which the JSON form cannot carry.
    static func snakeCasePath(_ path: Substring) -> String? {
        var out = ""
        for segment in path.split(separator: ".", omittingEmptySubsequences: false) {
            guard let first = segment.first, first.isLetter, first.isLowercase, !segment.contains("_") else { return nil }
            if !out.isEmpty { out.append(".") }
            for character in segment {
                if character.isUppercase {
                    out.append("_")
                    out.append(contentsOf: character.lowercased())
                } else {
                    out.append(character)
                }
            }
        }
        return out
    }

    private static func lengthDelimited(_ number: Int, _ bytes: [UInt8], into out: inout [UInt8]) {
        Self.tag(number, 2, into: &out)
        Self.varint(UInt64(bytes.count), into: &out)
        out.append(contentsOf: bytes)
    }

    private static func secondsAndNanos(_ seconds: Int64, _ nanos: Int32, into out: inout [UInt8]) {
        if seconds != 0 {
            Self.tag(1, 0, into: &out)
            Self.varint(UInt64(bitPattern: seconds), into: &out)
        }
        if nanos != 0 {
            Self.tag(2, 0, into: &out)
            Self.varint(UInt64(bitPattern: Int64(nanos)), into: &out)
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` as seconds since the epoch and nanoseconds.
    static func timestamp(_ text: String) -> (Int64, Int32)? {
        let bytes = Array(text.utf8)
        func number(_ range: Range<Int>) -> Int? {
            guard range.upperBound <= bytes.count, bytes[range].allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
            return bytes[range].reduce(0) { $0 * 10 + Int($1 - 0x30) }
        }
        guard bytes.count >= 20, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"), bytes[10] | 0x20 == UInt8(ascii: "t"),
            bytes[13] == UInt8(ascii: ":"), bytes[16] == UInt8(ascii: ":"),
            let year = number(0..<4), let month = number(5..<7), let day = number(8..<10), let hour = number(11..<13),
            let minute = number(14..<16), let second = number(17..<19), (1...12).contains(month), (1...31).contains(day), hour < 24,
            minute < 60, second < 60
        else { return nil }
        var position = 19
        var nanos = 0
        if bytes[position] == UInt8(ascii: ".") {
            position += 1
            var digits = 0
            while position < bytes.count, (0x30...0x39).contains(bytes[position]) {
                if digits < 9 { nanos = nanos * 10 + Int(bytes[position] - 0x30) }
                digits += 1
                position += 1
            }
            guard digits > 0 else { return nil }
            for _ in min(digits, 9)..<9 { nanos *= 10 }
        }
        var offset = 0
        if position == bytes.count - 1, bytes[position] | 0x20 == UInt8(ascii: "z") {
        } else if position == bytes.count - 6, bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-"),
            bytes[position + 3] == UInt8(ascii: ":"), let offsetHours = number((position + 1)..<(position + 3)),
            let offsetMinutes = number((position + 4)..<(position + 6))
        {
            offset = (offsetHours * 3600 + offsetMinutes * 60) * (bytes[position] == UInt8(ascii: "+") ? 1 : -1)
        } else {
            return nil
        }
        // Days from the civil date (Howard Hinnant's algorithm).
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        return (Int64(days * 86_400 + hour * 3600 + minute * 60 + second - offset), Int32(nanos))
    }

    /// `"-1.5s"` as seconds and nanoseconds (both negative for a negative duration).
    static func duration(_ text: String) -> (Int64, Int32)? {
        guard text.hasSuffix("s") else { return nil }
        var body = Substring(text.dropLast())
        let negative = body.hasPrefix("-")
        if negative { body = body.dropFirst() }
        let parts = body.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let whole = parts.first, !whole.isEmpty, whole.allSatisfy(\.isASCII), let seconds = Int64(whole) else { return nil }
        var nanos: Int32 = 0
        if parts.count == 2 {
            let fraction = parts[1]
            guard !fraction.isEmpty, fraction.count <= 9, fraction.allSatisfy({ $0.isASCII && $0.isNumber }), let digits = Int32(fraction) else { return nil }
            nanos = digits
            for _ in fraction.count..<9 { nanos *= 10 }
        }
        return negative ? (-seconds, -nanos) : (seconds, nanos)
    }

    /// A map key, from its JSON object key, as the value of the key field's type.
    private static func mapKey(_ key: String, _ kind: Kind) -> JSONValue {
        switch kind {
        case .bool: return .bool(key == "true")
        case .string: return .string(key)
        default: return .string(key)  // integers are read from strings too
        }
    }

    /// One field occurrence: tag and value.
    private func writeField(_ field: Field, _ value: JSONValue, into out: inout [UInt8], path: inout [String]) throws(SchemaViolation) {
        switch field.kind {
        case .message(let index):
            var body: [UInt8] = []
            try self.write(value, message: index, into: &body, path: &path)
            Self.tag(field.number, 2, into: &out)
            Self.varint(UInt64(body.count), into: &out)
            out.append(contentsOf: body)
        case .string, .bytes:
            Self.tag(field.number, 2, into: &out)
            try self.writeScalar(field.kind, value, into: &out, path: path)
        case .double, .fixed64, .sfixed64:
            Self.tag(field.number, 1, into: &out)
            try self.writeScalar(field.kind, value, into: &out, path: path)
        case .float, .fixed32, .sfixed32:
            Self.tag(field.number, 5, into: &out)
            try self.writeScalar(field.kind, value, into: &out, path: path)
        default:
            Self.tag(field.number, 0, into: &out)
            try self.writeScalar(field.kind, value, into: &out, path: path)
        }
    }

    /// A value without its tag (length-prefixed for strings and bytes).
    private func writeScalar(_ kind: Kind, _ value: JSONValue, into out: inout [UInt8], path: [String]) throws(SchemaViolation) {
        func integer(_ range: ClosedRange<Double>, _ name: String) throws(SchemaViolation) -> Int64 {
            switch value {
            case .number(let number) where number == number.rounded() && range.contains(number): return Int64(number)
            case .string(let text):
                if let parsed = Int64(text), range.contains(Double(parsed)) { return parsed }
            default: break
            }
            throw self.fail(path, "expected \(name), got \(value.typeName)")
        }
        func unsigned(_ limit: Double, _ name: String) throws(SchemaViolation) -> UInt64 {
            switch value {
            case .number(let number) where number == number.rounded() && number >= 0 && number <= limit: return UInt64(number)
            case .string(let text):
                if let parsed = UInt64(text), Double(parsed) <= limit { return parsed }
            default: break
            }
            throw self.fail(path, "expected \(name), got \(value.typeName)")
        }
        func real() throws(SchemaViolation) -> Double {
            switch value {
            case .number(let number): return number
            case .string("NaN"): return .nan
            case .string("Infinity"): return .infinity
            case .string("-Infinity"): return -.infinity
            default: throw self.fail(path, "expected a number, got \(value.typeName)")
            }
        }
        switch kind {
        case .int32: Self.varint(UInt64(bitPattern: try integer(-2_147_483_648...2_147_483_647, "int32")), into: &out)
        case .int64: Self.varint(UInt64(bitPattern: try integer(-9.22e18...9.22e18, "int64")), into: &out)
        case .uint32: Self.varint(try unsigned(4_294_967_295, "uint32"), into: &out)
        case .uint64: Self.varint(try unsigned(1.8446e19, "uint64"), into: &out)
        case .sint32: Self.varint(Self.zigzag(try integer(-2_147_483_648...2_147_483_647, "sint32")), into: &out)
        case .sint64: Self.varint(Self.zigzag(try integer(-9.22e18...9.22e18, "sint64")), into: &out)
        case .bool:
            guard case .bool(let flag) = value else { throw self.fail(path, "expected a boolean, got \(value.typeName)") }
            out.append(flag ? 1 : 0)
        case .fixed32: withUnsafeBytes(of: UInt32(try unsigned(4_294_967_295, "fixed32")).littleEndian) { out.append(contentsOf: $0) }
        case .sfixed32: withUnsafeBytes(of: Int32(try integer(-2_147_483_648...2_147_483_647, "sfixed32")).littleEndian) { out.append(contentsOf: $0) }
        case .fixed64: withUnsafeBytes(of: try unsigned(1.8446e19, "fixed64").littleEndian) { out.append(contentsOf: $0) }
        case .sfixed64: withUnsafeBytes(of: try integer(-9.22e18...9.22e18, "sfixed64").littleEndian) { out.append(contentsOf: $0) }
        case .float: withUnsafeBytes(of: Float(try real()).bitPattern.littleEndian) { out.append(contentsOf: $0) }
        case .double: withUnsafeBytes(of: try real().bitPattern.littleEndian) { out.append(contentsOf: $0) }
        case .string:
            guard case .string(let text) = value else { throw self.fail(path, "expected a string, got \(value.typeName)") }
            Self.varint(UInt64(text.utf8.count), into: &out)
            out.append(contentsOf: text.utf8)
        case .bytes:
            guard case .string(let text) = value else { throw self.fail(path, "expected base64 bytes, got \(value.typeName)") }
            // Standard or URL-safe base64, padded or not (proto3 JSON accepts either).
            var normalized = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
            while normalized.utf8.count % 4 != 0 { normalized += "=" }
            guard let bytes = Array(normalized.utf8).withUnsafeBytes({ Base64.decode($0) }) else { throw self.fail(path, "not base64") }
            Self.varint(UInt64(bytes.count), into: &out)
            out.append(contentsOf: bytes)
        case .enumeration(let index):
            let type = self.enums[index]
            switch value {
            case .string(let name):
                guard let number = type.values[name] else { throw self.fail(path, "\"\(name)\" is not a value of enum \(type.name)") }
                Self.varint(UInt64(bitPattern: Int64(number)), into: &out)
            case .number(let number) where number == number.rounded() && abs(number) <= 2_147_483_647:
                Self.varint(UInt64(bitPattern: Int64(number)), into: &out)
            default:
                throw self.fail(path, "expected a value of enum \(type.name), got \(value.typeName)")
            }
        case .message:
            throw self.fail(path, "a message cannot be packed")
        }
    }

    static func tag(_ number: Int, _ wireType: UInt64, into out: inout [UInt8]) {
        Self.varint(UInt64(number) << 3 | wireType, into: &out)
    }

    static func zigzag(_ value: Int64) -> UInt64 {
        UInt64(bitPattern: (value << 1) ^ (value >> 63))
    }

    static func varint(_ value: UInt64, into out: inout [UInt8]) {
        var value = value
        while value >= 0x80 {
            out.append(UInt8(value & 0x7F) | 0x80)
            value >>= 7
        }
        out.append(UInt8(value))
    }
}
