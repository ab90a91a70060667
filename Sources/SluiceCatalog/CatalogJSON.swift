import SluiceSchema

/// Building catalog documents: ordered JSON objects whose nil members are left out.
func object(_ pairs: [(String, JSONValue?)]) -> JSONValue {
    var result = JSONObject()
    for (key, value) in pairs {
        if let value { result[key] = value }
    }
    return .object(result)
}

func string(_ text: String) -> JSONValue { .string(text) }
func integer(_ value: Int) -> JSONValue { .number(Double(value)) }
func strings(_ items: [String]) -> JSONValue { .array(items.map(JSONValue.string)) }
func reference(_ pointer: String) -> JSONValue { object([("$ref", .string(pointer))]) }

/// JSON text of a catalog document: two-space indented, members in the order they were built.
public enum JSONText {
    public static func pretty(_ value: JSONValue) -> String {
        var out = ""
        write(value, indent: 0, into: &out)
        out += "\n"
        return out
    }

    private static func write(_ value: JSONValue, indent: Int, into out: inout String) {
        switch value {
        case .null: out += "null"
        case .bool(let flag): out += flag ? "true" : "false"
        case .number(let number):
            if number == number.rounded(), abs(number) < 1e15 {
                out += String(Int64(number))
            } else {
                out += "\(number)"
            }
        case .string(let text): quote(text, into: &out)
        case .array(let items):
            guard !items.isEmpty else {
                out += "[]"
                return
            }
            out += "[\n"
            for (position, item) in items.enumerated() {
                out += String(repeating: " ", count: indent + 2)
                write(item, indent: indent + 2, into: &out)
                out += position == items.count - 1 ? "\n" : ",\n"
            }
            out += String(repeating: " ", count: indent) + "]"
        case .object(let members):
            guard members.count > 0 else {
                out += "{}"
                return
            }
            out += "{\n"
            for (position, member) in members.members.enumerated() {
                out += String(repeating: " ", count: indent + 2)
                quote(member.key, into: &out)
                out += ": "
                write(member.value, indent: indent + 2, into: &out)
                out += position == members.count - 1 ? "\n" : ",\n"
            }
            out += String(repeating: " ", count: indent) + "}"
        }
    }

    private static func quote(_ text: String, into out: inout String) {
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}

/// A user's schema placed inside a catalog document at `pointer` (a JSON Pointer fragment like
/// `#/components/schemas/orders`): its own `#…` references are rewritten to point inside it
/// there, and its root `$schema`/`$id` are dropped (the document's dialect governs).
func embedded(_ schema: JSONValue, at pointer: String) -> JSONValue {
    func rewrite(_ value: JSONValue) -> JSONValue {
        switch value {
        case .array(let items): return .array(items.map(rewrite))
        case .object(let members):
            var result = JSONObject()
            for (key, member) in members.members {
                if key == "$ref", case .string(let target) = member, target.hasPrefix("#") {
                    result[key] = .string(pointer + String(target.dropFirst()))
                } else {
                    result[key] = rewrite(member)
                }
            }
            return .object(result)
        default: return value
        }
    }
    guard case .object(let members) = schema else { return schema }
    var root = JSONObject()
    for (key, member) in members.members where key != "$schema" && key != "$id" { root[key] = member }
    return rewrite(.object(root))
}
