/// The JSON Schema dialects Sluice validates against.
public enum JSONSchemaDraft: String, Sendable, CaseIterable {
    case draft7 = "draft-07"
    case draft2020_12 = "2020-12"

    static func named(byMetaschema uri: String) -> JSONSchemaDraft? {
        switch uri.hasSuffix("#") ? String(uri.dropLast()) : uri {
        case "http://json-schema.org/draft-07/schema", "https://json-schema.org/draft-07/schema": return .draft7
        case "https://json-schema.org/draft/2020-12/schema", "http://json-schema.org/draft/2020-12/schema": return .draft2020_12
        default: return nil
        }
    }
}

/// One way an instance breaks its schema: where (a JSON pointer into the instance), which keyword,
/// and what it wanted.
public struct SchemaViolation: Error, Sendable, Equatable, CustomStringConvertible {
    public var instancePath: String
    public var keyword: String
    public var message: String
    public var description: String { "\(self.instancePath.isEmpty ? "/" : self.instancePath): \(self.keyword): \(self.message)" }
}

/// Why a schema cannot be used: said with where in the schema.
public struct SchemaCompileError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// A schema compiled once into a graph of nodes, each a flat list of keywords with their
/// arguments resolved (references to node numbers, patterns compiled, sets built), so
/// validating walks the graph without looking anything up by name.
public final class JSONSchema: Sendable {
    let nodes: [SchemaNode]
    let root: Int
    /// Per resource (a schema with `$id`, or a document): its `$dynamicAnchor`s and their nodes.
    let dynamicAnchors: [[String: Int]]
    /// Whether any node uses `unevaluatedProperties`/`unevaluatedItems` (then annotations are collected).
    let collectsAnnotations: Bool
    public let formatAssertion: Bool

    init(nodes: [SchemaNode], root: Int, dynamicAnchors: [[String: Int]], formatAssertion: Bool) {
        self.nodes = nodes
        self.root = root
        self.dynamicAnchors = dynamicAnchors
        self.formatAssertion = formatAssertion
        self.collectsAnnotations = nodes.contains { node in
            node.keywords.contains {
                switch $0 {
                case .unevaluatedItems, .unevaluatedProperties: return true
                default: return false
                }
            }
        }
    }

    /// Compiles `schema`. `loader` supplies documents its `$ref`s name by absolute URI (nil: unknown).
    /// - Parameters:
    ///   - draft: the dialect of documents without `$schema`.
    ///   - baseURI: the document's own URI, what its relative references resolve against.
    ///   - formatAssertion: `format` is checked (otherwise it only annotates, as both drafts say).
    public static func compile(
        _ schema: JSONValue, draft: JSONSchemaDraft = .draft2020_12, baseURI: String = "urn:sluice:schema", formatAssertion: Bool = false,
        loader: @escaping (String) -> JSONValue? = { _ in nil }
    ) throws(SchemaCompileError) -> JSONSchema {
        var compiler = SchemaCompiler(defaultDraft: draft, loader: loader)
        return try compiler.compile(schema, baseURI: baseURI, formatAssertion: formatAssertion)
    }

    /// Every violation (up to `maxViolations`); empty when `instance` is valid.
    public func validate(_ instance: JSONValue, maxViolations: Int = 8) -> [SchemaViolation] {
        let sink = ViolationSink(limit: max(1, maxViolations))
        var context = EvaluationContext(annotate: self.collectsAnnotations)
        var annotations = Annotations()
        if !self.evaluate(self.root, instance, &context, sink, &annotations), sink.violations.isEmpty {
            sink.add([], "schema", "the value does not match the schema")
        }
        return sink.violations
    }

    /// Whether `instance` is valid (stops at the first failure).
    public func isValid(_ instance: JSONValue) -> Bool {
        var context = EvaluationContext(annotate: self.collectsAnnotations)
        var annotations = Annotations()
        return self.evaluate(self.root, instance, &context, nil, &annotations)
    }
}

/// A compiled (sub)schema.
struct SchemaNode: Sendable {
    /// `true`/`false` schemas.
    var constant: Bool?
    var keywords: [Keyword] = []
    /// The resource the node belongs to: pushed on the dynamic scope when evaluation enters it.
    var resource: Int?
}

enum JSONType: Sendable {
    case null, boolean, object, array, number, string, integer

    init?(_ name: String) {
        switch name {
        case "null": self = .null
        case "boolean": self = .boolean
        case "object": self = .object
        case "array": self = .array
        case "number": self = .number
        case "string": self = .string
        case "integer": self = .integer
        default: return nil
        }
    }

    func matches(_ value: JSONValue) -> Bool {
        switch (self, value) {
        case (.null, .null), (.boolean, .bool), (.object, .object), (.array, .array), (.number, .number), (.string, .string): return true
        case (.integer, .number(let number)): return number.isFinite && number == number.rounded()
        default: return false
        }
    }

    var name: String {
        switch self {
        case .null: return "null"
        case .boolean: return "boolean"
        case .object: return "object"
        case .array: return "array"
        case .number: return "number"
        case .string: return "string"
        case .integer: return "integer"
        }
    }
}

/// The names `properties` lists, for `additionalProperties` to skip: searched in order when
/// few (cheaper than hashing each member's name), hashed when many.
struct PropertyNames: Sendable {
    let list: [String]
    let set: Set<String>?

    init(_ names: [String]) {
        self.list = names
        self.set = names.count > 8 ? Set(names) : nil
    }

    func contains(_ name: String) -> Bool {
        if let set { return set.contains(name) }
        return self.list.contains(name)
    }
}

/// A compiled `pattern` (ECMA-262 as the drafts say; Swift's regex syntax is a close superset).
final class SchemaPattern: @unchecked Sendable {
    let source: String
    private let regex: Regex<AnyRegexOutput>

    init(_ source: String) throws(SchemaCompileError) {
        self.source = source
        do {
            self.regex = try Regex(source)
        } catch {
            throw SchemaCompileError("invalid pattern \"\(source)\": \(error)")
        }
        // Compiled now, once, rather than by whichever event first needs it.
        _ = try? self.regex.firstMatch(in: "")
    }

    func matches(_ text: String) -> Bool {
        (try? self.regex.firstMatch(in: text)) != nil
    }
}

enum Keyword: Sendable {
    case ref(Int)
    /// `$dynamicRef` whose static target has a `$dynamicAnchor` of this name.
    case dynamicRef(Int, String)
    case type([JSONType])
    case enumeration([JSONValue])
    case constant(JSONValue)
    case multipleOf(Double)
    case maximum(Double)
    case exclusiveMaximum(Double)
    case minimum(Double)
    case exclusiveMinimum(Double)
    case maxLength(Int)
    case minLength(Int)
    case pattern(SchemaPattern)
    case format(SchemaFormat)
    case maxItems(Int)
    case minItems(Int)
    case uniqueItems
    case maxProperties(Int)
    case minProperties(Int)
    case required([String])
    case dependentRequired([(String, [String])])
    case properties([(name: String, schema: Int)])
    case patternProperties([(SchemaPattern, Int)])
    case additionalProperties(Int, names: PropertyNames, patterns: [SchemaPattern])
    case propertyNames(Int)
    case dependentSchemas([(String, Int)])
    case prefixItems([Int])
    /// `items` from this index on (2020-12: after `prefixItems`; draft-07's single schema: 0).
    case items(Int, from: Int)
    case contains(Int, min: Int, max: Int?)
    case allOf([Int])
    case anyOf([Int])
    case oneOf([Int])
    case not(Int)
    case conditional(if: Int, then: Int?, else: Int?)
    case unevaluatedProperties(Int)
    case unevaluatedItems(Int)

    var name: String {
        switch self {
        case .ref: return "$ref"
        case .dynamicRef: return "$dynamicRef"
        case .type: return "type"
        case .enumeration: return "enum"
        case .constant: return "const"
        case .multipleOf: return "multipleOf"
        case .maximum: return "maximum"
        case .exclusiveMaximum: return "exclusiveMaximum"
        case .minimum: return "minimum"
        case .exclusiveMinimum: return "exclusiveMinimum"
        case .maxLength: return "maxLength"
        case .minLength: return "minLength"
        case .pattern: return "pattern"
        case .format: return "format"
        case .maxItems: return "maxItems"
        case .minItems: return "minItems"
        case .uniqueItems: return "uniqueItems"
        case .maxProperties: return "maxProperties"
        case .minProperties: return "minProperties"
        case .required: return "required"
        case .dependentRequired: return "dependentRequired"
        case .properties: return "properties"
        case .patternProperties: return "patternProperties"
        case .additionalProperties: return "additionalProperties"
        case .propertyNames: return "propertyNames"
        case .dependentSchemas: return "dependentSchemas"
        case .prefixItems: return "prefixItems"
        case .items: return "items"
        case .contains: return "contains"
        case .allOf: return "allOf"
        case .anyOf: return "anyOf"
        case .oneOf: return "oneOf"
        case .not: return "not"
        case .conditional: return "if"
        case .unevaluatedProperties: return "unevaluatedProperties"
        case .unevaluatedItems: return "unevaluatedItems"
        }
    }
}
