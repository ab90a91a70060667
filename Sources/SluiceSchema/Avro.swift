import Foundation
import SluiceCore

/// An Avro schema (`.avsc`), compiled to transcode JSON events into Avro's binary encoding.
/// Named types (records, enums, fixed) are resolved by full name once; a union takes the first
/// branch whose type the JSON value has (a plain JSON event carries no union tags; Avro's own
/// JSON encoding, `{"type": value}`, is taken too).
public final class AvroSchema: Sendable {
    indirect enum Node: Sendable {
        case null, boolean, int, long, float, double, bytes, string
        case record(name: String, fields: [Field])
        case enumeration(name: String, symbols: [String])
        case array(Node)
        case map(Node)
        case union([Node])
        case fixed(name: String, size: Int)
        /// A named type, by the index of its definition in `named`.
        case reference(Int)
    }

    struct Field: Sendable {
        var name: String
        var type: Node
        var defaultValue: JSONValue?
    }

    let root: Node
    let named: [Node]

    init(root: Node, named: [Node]) {
        self.root = root
        self.named = named
    }

    /// Compiles an `.avsc` document.
    public static func compile(_ json: JSONValue) throws(SchemaCompileError) -> AvroSchema {
        var compiler = AvroCompiler()
        let root = try compiler.node(json, namespace: nil)
        return AvroSchema(root: root, named: compiler.definitions.map { $0 ?? .null })
    }

    /// The Avro binary encoding of `value`, or why it does not fit (with the JSON pointer).
    public func encode(_ value: JSONValue) -> Result<[UInt8], SchemaViolation> {
        var out: [UInt8] = []
        var path: [String] = []
        do throws(SchemaViolation) {
            try self.write(value, as: self.root, into: &out, path: &path)
            return .success(out)
        } catch {
            return .failure(error)
        }
    }

    private func resolved(_ node: Node) -> Node {
        if case .reference(let index) = node { return self.named[index] }
        return node
    }

    private func fail(_ path: [String], _ message: String) -> SchemaViolation {
        SchemaViolation(instancePath: JSONPointer.encode(path), keyword: "avro", message: message)
    }

    /// Whether `value` has the kind of JSON `node` takes (for choosing a union's branch).
    private func accepts(_ value: JSONValue, _ node: Node) -> Bool {
        switch (self.resolved(node), value) {
        case (.null, .null), (.boolean, .bool), (.string, .string), (.bytes, .string), (.fixed, .string), (.enumeration, .string): return true
        case (.int, .number(let number)), (.long, .number(let number)): return number == number.rounded() && abs(number) < 9.3e18
        case (.float, .number), (.double, .number): return true
        case (.record, .object), (.map, .object): return true
        case (.array, .array): return true
        default: return false
        }
    }

    private func write(_ value: JSONValue, as node: Node, into out: inout [UInt8], path: inout [String]) throws(SchemaViolation) {
        switch (self.resolved(node), value) {
        case (.null, .null):
            return
        case (.boolean, .bool(let flag)):
            out.append(flag ? 1 : 0)
        case (.int, .number(let number)):
            guard number == number.rounded(), number >= -2_147_483_648, number <= 2_147_483_647 else {
                throw self.fail(path, "expected an int (32-bit integer), got \(number)")
            }
            Self.varint(Int64(number), into: &out)
        case (.long, .number(let number)):
            guard number == number.rounded(), abs(number) < 9.2e18 else { throw self.fail(path, "expected a long (64-bit integer), got \(number)") }
            Self.varint(Int64(number), into: &out)
        case (.float, .number(let number)):
            withUnsafeBytes(of: Float(number).bitPattern.littleEndian) { out.append(contentsOf: $0) }
        case (.double, .number(let number)):
            withUnsafeBytes(of: number.bitPattern.littleEndian) { out.append(contentsOf: $0) }
        case (.string, .string(let text)):
            Self.varint(Int64(text.utf8.count), into: &out)
            out.append(contentsOf: text.utf8)
        case (.bytes, .string(let text)):
            let bytes = try self.latin1(text, path)
            Self.varint(Int64(bytes.count), into: &out)
            out.append(contentsOf: bytes)
        case (.fixed(let name, let size), .string(let text)):
            let bytes = try self.latin1(text, path)
            guard bytes.count == size else { throw self.fail(path, "expected \(size) bytes for fixed \(name), got \(bytes.count)") }
            out.append(contentsOf: bytes)
        case (.enumeration(let name, let symbols), .string(let text)):
            guard let index = symbols.firstIndex(of: text) else {
                throw self.fail(path, "\"\(text)\" is not a symbol of enum \(name) (\(symbols.joined(separator: ", ")))")
            }
            Self.varint(Int64(index), into: &out)
        case (.record(let name, let fields), .object(let object)):
            for field in fields {
                path.append(field.name)
                defer { path.removeLast() }
                if let member = object[field.name] {
                    try self.write(member, as: field.type, into: &out, path: &path)
                } else if let fallback = field.defaultValue {
                    try self.write(fallback, as: field.type, into: &out, path: &path)
                } else {
                    path.removeLast()
                    defer { path.append(field.name) }
                    throw self.fail(path, "missing field \"\(field.name)\" of record \(name) (it has no default)")
                }
            }
            for (key, _) in object.members where !fields.contains(where: { $0.name == key }) {
                path.append(key)
                throw self.fail(path, "record \(name) has no field \"\(key)\"")
            }
        case (.array(let items), .array(let values)):
            if !values.isEmpty {
                Self.varint(Int64(values.count), into: &out)
                for (index, item) in values.enumerated() {
                    path.append(String(index))
                    defer { path.removeLast() }
                    try self.write(item, as: items, into: &out, path: &path)
                }
            }
            out.append(0)
        case (.map(let values), .object(let object)):
            if object.count > 0 {
                Self.varint(Int64(object.count), into: &out)
                for (key, item) in object.members {
                    Self.varint(Int64(key.utf8.count), into: &out)
                    out.append(contentsOf: key.utf8)
                    path.append(key)
                    defer { path.removeLast() }
                    try self.write(item, as: values, into: &out, path: &path)
                }
            }
            out.append(0)
        case (.union(let branches), _):
            // Avro's JSON encoding of a union, {"type": value}, names the branch.
            if case .object(let tagged) = value, tagged.count == 1, let (tag, inner) = tagged.members.first,
                let index = branches.firstIndex(where: { self.typeName($0) == tag })
            {
                Self.varint(Int64(index), into: &out)
                return try self.write(inner, as: branches[index], into: &out, path: &path)
            }
            guard let index = branches.firstIndex(where: { self.accepts(value, $0) }) else {
                throw self.fail(path, "the value fits no branch of the union (\(branches.map(self.typeName).joined(separator: ", ")))")
            }
            Self.varint(Int64(index), into: &out)
            try self.write(value, as: branches[index], into: &out, path: &path)
        case (let expected, _):
            throw self.fail(path, "expected \(self.typeName(expected)), got \(value.typeName)")
        }
    }

    private func latin1(_ text: String, _ path: [String]) throws(SchemaViolation) -> [UInt8] {
        var bytes: [UInt8] = []
        for scalar in text.unicodeScalars {
            guard scalar.value <= 0xFF else { throw self.fail(path, "bytes are written as a string of code points up to U+00FF") }
            bytes.append(UInt8(scalar.value))
        }
        return bytes
    }

    private func typeName(_ node: Node) -> String {
        switch self.resolved(node) {
        case .null: return "null"
        case .boolean: return "boolean"
        case .int: return "int"
        case .long: return "long"
        case .float: return "float"
        case .double: return "double"
        case .bytes: return "bytes"
        case .string: return "string"
        case .record(let name, _), .enumeration(let name, _), .fixed(let name, _): return name
        case .array: return "array"
        case .map: return "map"
        case .union: return "union"
        case .reference: return "?"
        }
    }

    /// Zigzag, then base-128 varint (Avro's int and long).
    static func varint(_ value: Int64, into out: inout [UInt8]) {
        var zigzag = UInt64(bitPattern: (value << 1) ^ (value >> 63))
        while zigzag >= 0x80 {
            out.append(UInt8(zigzag & 0x7F) | 0x80)
            zigzag >>= 7
        }
        out.append(UInt8(zigzag))
    }
}

/// Reads `.avsc` JSON into nodes, defining named types by full name (namespace.name).
struct AvroCompiler {
    var definitions: [AvroSchema.Node?] = []
    var names: [String: Int] = [:]

    mutating func node(_ json: JSONValue, namespace: String?) throws(SchemaCompileError) -> AvroSchema.Node {
        switch json {
        case .string(let name):
            switch name {
            case "null": return .null
            case "boolean": return .boolean
            case "int": return .int
            case "long": return .long
            case "float": return .float
            case "double": return .double
            case "bytes": return .bytes
            case "string": return .string
            default:
                let full = name.contains(".") ? name : (namespace.map { "\($0).\(name)" } ?? name)
                guard let index = self.names[full] ?? self.names[name] else { throw SchemaCompileError("avro: unknown type \"\(name)\"") }
                return .reference(index)
            }
        case .array(let branches):
            var nodes: [AvroSchema.Node] = []
            for branch in branches { nodes.append(try self.node(branch, namespace: namespace)) }
            return .union(nodes)
        case .object(let object):
            guard let type = object["type"] else { throw SchemaCompileError("avro: a schema object needs a type") }
            guard case .string(let kind) = type else { return try self.node(type, namespace: namespace) }
            switch kind {
            case "record", "error", "enum", "fixed":
                guard let name = object["name"]?.stringValue else { throw SchemaCompileError("avro: a \(kind) needs a name") }
                let space = name.contains(".") ? nil : (object["namespace"]?.stringValue ?? namespace)
                let full = name.contains(".") ? name : (space.map { "\($0).\(name)" } ?? name)
                let innerSpace = full.contains(".") ? String(full[..<full.lastIndex(of: ".")!]) : nil
                let index = self.definitions.count
                self.definitions.append(nil)
                self.names[full] = index
                let node: AvroSchema.Node
                switch kind {
                case "enum":
                    guard case .array(let symbols)? = object["symbols"] else { throw SchemaCompileError("avro: enum \(full) needs symbols") }
                    node = .enumeration(name: full, symbols: symbols.compactMap(\.stringValue))
                case "fixed":
                    guard let size = object["size"]?.countValue else { throw SchemaCompileError("avro: fixed \(full) needs a size") }
                    node = .fixed(name: full, size: size)
                default:
                    guard case .array(let list)? = object["fields"] else { throw SchemaCompileError("avro: record \(full) needs fields") }
                    var fields: [AvroSchema.Field] = []
                    for field in list {
                        guard case .object(let entry) = field, let fieldName = entry["name"]?.stringValue, let fieldType = entry["type"] else {
                            throw SchemaCompileError("avro: record \(full) has a field without a name or type")
                        }
                        fields.append(.init(name: fieldName, type: try self.node(fieldType, namespace: innerSpace), defaultValue: entry["default"]))
                    }
                    node = .record(name: full, fields: fields)
                }
                self.definitions[index] = node
                return .reference(index)
            case "array":
                guard let items = object["items"] else { throw SchemaCompileError("avro: an array needs items") }
                return .array(try self.node(items, namespace: namespace))
            case "map":
                guard let values = object["values"] else { throw SchemaCompileError("avro: a map needs values") }
                return .map(try self.node(values, namespace: namespace))
            default:
                // A primitive with attributes (a logical type annotates its underlying type).
                return try self.node(.string(kind), namespace: namespace)
            }
        default:
            throw SchemaCompileError("avro: a schema is a type name, an object or a union")
        }
    }
}
