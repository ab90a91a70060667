import Foundation
import SluiceCore

/// Compiles schema documents into `JSONSchema` nodes: indexes every resource (`$id`) and anchor
/// of each document it meets, then compiles subschemas on demand by their canonical location,
/// so a location referenced from many places (or from itself) is one node.
struct SchemaCompiler {
    struct Location: Hashable {
        var document: String
        var pointer: [String]

        var key: String { self.document + "#" + JSONPointer.encode(self.pointer) }

        func appending(_ tokens: String...) -> Location {
            Location(document: self.document, pointer: self.pointer + tokens)
        }
    }

    /// What a document's resources say about the keywords in force.
    struct Dialect: Equatable {
        var draft: JSONSchemaDraft
        /// Validation vocabulary (type, minimum, …) in force (a custom metaschema may leave it out).
        var validation = true
    }

    let defaultDraft: JSONSchemaDraft
    let loader: (String) -> JSONValue?
    private var documents: [String: JSONValue] = [:]
    /// Resource URI (no fragment) -> its location.
    private var resources: [String: Location] = [:]
    /// "resource#name" -> location, for `$anchor`, `$dynamicAnchor` and draft-07 `$id: "#name"`.
    private var anchors: [String: Location] = [:]
    /// Resource URI -> its dynamic anchors' names and locations.
    private var dynamicAnchorsOf: [String: [String: Location]] = [:]
    /// Every schema location met while indexing: its base URI and dialect.
    private var bases: [Location: (base: URIReference, dialect: Dialect)] = [:]
    private var memo: [Location: Int] = [:]
    private var nodes: [SchemaNode] = []
    private var resourceNumbers: [String: Int] = [:]
    private var dynamicAnchorTables: [[String: Int]] = []

    init(defaultDraft: JSONSchemaDraft, loader: @escaping (String) -> JSONValue?) {
        self.defaultDraft = defaultDraft
        self.loader = loader
    }

    mutating func compile(_ schema: JSONValue, baseURI: String, formatAssertion: Bool) throws(SchemaCompileError) -> JSONSchema {
        let uri = URIReference(baseURI).withoutFragment.text
        self.documents[uri] = schema
        try self.index(document: uri, schema)
        let root = try self.node(at: Location(document: uri, pointer: []))
        return JSONSchema(nodes: self.nodes, root: root, dynamicAnchors: self.dynamicAnchorTables, formatAssertion: formatAssertion)
    }

    // MARK: Indexing

    private mutating func index(document uri: String, _ json: JSONValue) throws(SchemaCompileError) {
        self.resources[uri] = self.resources[uri] ?? Location(document: uri, pointer: [])
        let dialect = try self.dialect(of: json, inherited: Dialect(draft: self.defaultDraft))
        self.walk(json, at: Location(document: uri, pointer: []), base: URIReference(uri), dialect: dialect)
    }

    /// The dialect `$schema` names (a custom metaschema is loaded for its `$vocabulary`).
    private mutating func dialect(of json: JSONValue, inherited: Dialect) throws(SchemaCompileError) -> Dialect {
        guard case .object(let object) = json, let metaschema = object["$schema"]?.stringValue else { return inherited }
        if let draft = JSONSchemaDraft.named(byMetaschema: metaschema) { return Dialect(draft: draft) }
        let uri = URIReference(metaschema).withoutFragment.text
        guard let meta = self.loader(uri)?.objectValue else { return inherited }
        var dialect = Dialect(draft: meta["$schema"]?.stringValue.flatMap(JSONSchemaDraft.named(byMetaschema:)) ?? inherited.draft)
        if dialect.draft == .draft2020_12, let vocabularies = meta["$vocabulary"]?.objectValue {
            dialect.validation = vocabularies["https://json-schema.org/draft/2020-12/vocab/validation"] != nil
        }
        return dialect
    }

    private mutating func walk(_ json: JSONValue, at location: Location, base: URIReference, dialect: Dialect) {
        guard case .object(let object) = json else {
            self.bases[location] = (base, dialect)
            return
        }
        var base = base
        var dialect = dialect
        if location.pointer.isEmpty == false, object["$schema"] != nil, let inner = try? self.dialect(of: json, inherited: dialect) {
            dialect = inner
        }
        let refHidesSiblings = dialect.draft == .draft7 && object["$ref"] != nil
        if let id = object["$id"]?.stringValue, !refHidesSiblings {
            let resolved = base.resolve(URIReference(id))
            if dialect.draft == .draft7, id.hasPrefix("#") {
                if let name = resolved.fragment, !name.isEmpty { self.anchors[base.withoutFragment.text + "#" + name] = location }
            } else {
                base = resolved.withoutFragment
                self.resources[base.text] = location
                if dialect.draft == .draft7, let name = resolved.fragment, !name.isEmpty, !name.hasPrefix("/") {
                    self.anchors[base.text + "#" + name] = location
                }
            }
        }
        if dialect.draft == .draft2020_12 {
            if let name = object["$anchor"]?.stringValue { self.anchors[base.text + "#" + name] = location }
            if let name = object["$dynamicAnchor"]?.stringValue {
                self.anchors[base.text + "#" + name] = location
                self.dynamicAnchorsOf[base.text, default: [:]][name] = location
            }
        }
        self.bases[location] = (base, dialect)
        for (key, value) in object.members {
            switch key {
            case "additionalProperties", "propertyNames", "not", "if", "then", "else", "contains", "additionalItems",
                "unevaluatedProperties", "unevaluatedItems":
                self.walk(value, at: location.appending(key), base: base, dialect: dialect)
            case "items":
                if case .array(let items) = value {
                    for (position, item) in items.enumerated() { self.walk(item, at: location.appending(key, String(position)), base: base, dialect: dialect) }
                } else {
                    self.walk(value, at: location.appending(key), base: base, dialect: dialect)
                }
            case "allOf", "anyOf", "oneOf", "prefixItems":
                for (position, item) in (value.arrayValue ?? []).enumerated() {
                    self.walk(item, at: location.appending(key, String(position)), base: base, dialect: dialect)
                }
            case "properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies":
                for (name, item) in value.objectValue?.members ?? [] where item.objectValue != nil || item.boolValue != nil {
                    self.walk(item, at: location.appending(key, name), base: base, dialect: dialect)
                }
            default:
                break
            }
        }
    }

    // MARK: Resolving

    /// The JSON at `location`, and its base and dialect.
    private mutating func lookup(_ location: Location) throws(SchemaCompileError) -> (JSONValue, URIReference, Dialect) {
        guard var json = self.documents[location.document] else { throw SchemaCompileError("no document \(location.document)") }
        var base = URIReference(location.document)
        var dialect = Dialect(draft: self.defaultDraft)
        if let known = self.bases[Location(document: location.document, pointer: [])] {
            base = known.base
            dialect = known.dialect
        }
        for (depth, token) in location.pointer.enumerated() {
            switch json {
            case .object(let object):
                guard let next = object[token] else { throw SchemaCompileError("\(location.key) points at nothing") }
                json = next
            case .array(let items):
                guard let position = Int(token), items.indices.contains(position) else { throw SchemaCompileError("\(location.key) points at nothing") }
                json = items[position]
            default:
                throw SchemaCompileError("\(location.key) points at nothing")
            }
            if let known = self.bases[Location(document: location.document, pointer: Array(location.pointer[...depth]))] {
                base = known.base
                dialect = known.dialect
            }
        }
        return (json, base, dialect)
    }

    /// The location a `$ref` (or `$dynamicRef`) names, loading its document when it is not known yet.
    private mutating func resolve(_ reference: String, from base: URIReference) throws(SchemaCompileError) -> Location {
        let target = base.resolve(URIReference(reference))
        let resource = target.withoutFragment.text
        if self.resources[resource] == nil {
            guard let document = self.loader(resource) else { throw SchemaCompileError("cannot resolve $ref \"\(reference)\": \(resource) is unknown") }
            self.documents[resource] = document
            try self.index(document: resource, document)
        }
        guard let root = self.resources[resource] else { throw SchemaCompileError("cannot resolve $ref \"\(reference)\"") }
        let fragment = (target.fragment ?? "").removingPercentEncoding ?? ""
        if fragment.isEmpty { return root }
        if let tokens = JSONPointer.tokens(fragment) {
            return Location(document: root.document, pointer: root.pointer + tokens)
        }
        guard let anchor = self.anchors[resource + "#" + fragment] else {
            throw SchemaCompileError("cannot resolve $ref \"\(reference)\": no anchor \"\(fragment)\" in \(resource)")
        }
        return anchor
    }

    // MARK: Compiling

    /// The node for the schema at `location`, compiled once.
    private mutating func node(at location: Location) throws(SchemaCompileError) -> Int {
        if let known = self.memo[location] { return known }
        let index = self.nodes.count
        self.memo[location] = index
        self.nodes.append(SchemaNode())
        let (json, base, dialect) = try self.lookup(location)
        let node = try self.compileNode(json, at: location, base: base, dialect: dialect)
        self.nodes[index] = node
        return index
    }

    private mutating func compileNode(_ json: JSONValue, at location: Location, base: URIReference, dialect: Dialect) throws(SchemaCompileError) -> SchemaNode {
        var node = SchemaNode()
        if case .bool(let value) = json {
            node.constant = value
            return node
        }
        guard case .object(let object) = json else { throw SchemaCompileError("\(location.key): a schema is an object or a boolean") }
        let draft7 = dialect.draft == .draft7
        // The resource the node belongs to (entering it puts the resource on the dynamic scope); a
        // resource's dynamic anchors are compiled when its first node is.
        if let number = self.resourceNumbers[base.text] {
            node.resource = number
        } else {
            let number = self.dynamicAnchorTables.count
            self.dynamicAnchorTables.append([:])
            self.resourceNumbers[base.text] = number
            node.resource = number
            for (name, anchorLocation) in self.dynamicAnchorsOf[base.text] ?? [:] {
                self.dynamicAnchorTables[number][name] = try self.node(at: anchorLocation)
            }
        }
        var keywords: [Keyword] = []
        var late: [Keyword] = []
        func sub(_ key: String) throws(SchemaCompileError) -> Int { try self.node(at: location.appending(key)) }
        func subs(_ key: String) throws(SchemaCompileError) -> [Int] {
            guard case .array(let items) = object[key] else { throw SchemaCompileError("\(location.key)/\(key): expected an array of schemas") }
            var result: [Int] = []
            for position in items.indices { result.append(try self.node(at: location.appending(key, String(position)))) }
            return result
        }
        func count(_ key: String) throws(SchemaCompileError) -> Int? {
            guard let value = object[key] else { return nil }
            guard let count = value.countValue else { throw SchemaCompileError("\(location.key)/\(key): expected a non-negative integer") }
            return count
        }
        func number(_ key: String) throws(SchemaCompileError) -> Double? {
            guard let value = object[key] else { return nil }
            guard let number = value.doubleValue else { throw SchemaCompileError("\(location.key)/\(key): expected a number") }
            return number
        }

        if let reference = object["$ref"]?.stringValue {
            keywords.append(.ref(try self.node(at: try self.resolve(reference, from: base))))
            if draft7 {
                node.keywords = keywords
                return node
            }
        }
        if !draft7, let reference = object["$dynamicRef"]?.stringValue {
            let target = try self.resolve(reference, from: base)
            let staticNode = try self.node(at: target)
            let fragment = base.resolve(URIReference(reference)).fragment ?? ""
            if !fragment.isEmpty, !fragment.hasPrefix("/"), case .object(let targetObject) = try self.lookup(target).0,
                targetObject["$dynamicAnchor"]?.stringValue == fragment
            {
                keywords.append(.dynamicRef(staticNode, fragment))
            } else {
                keywords.append(.ref(staticNode))
            }
        }
        for key in ["allOf", "anyOf", "oneOf"] where object[key] != nil {
            let schemas = try subs(key)
            keywords.append(key == "allOf" ? .allOf(schemas) : key == "anyOf" ? .anyOf(schemas) : .oneOf(schemas))
        }
        if object["not"] != nil { keywords.append(.not(try sub("not"))) }
        if object["if"] != nil {
            keywords.append(.conditional(if: try sub("if"), then: object["then"] != nil ? try sub("then") : nil, else: object["else"] != nil ? try sub("else") : nil))
        }
        // Objects.
        var names: [String] = []
        var patterns: [SchemaPattern] = []
        if case .object(let properties) = object["properties"] {
            var table: [(name: String, schema: Int)] = []
            for (name, _) in properties.members { table.append((name, try self.node(at: location.appending("properties", name)))) }
            names = table.map(\.name)
            keywords.append(.properties(table))
        }
        if case .object(let patternProperties) = object["patternProperties"] {
            var list: [(SchemaPattern, Int)] = []
            for (source, _) in patternProperties.members {
                let pattern = try SchemaPattern(source)
                patterns.append(pattern)
                list.append((pattern, try self.node(at: location.appending("patternProperties", source))))
            }
            keywords.append(.patternProperties(list))
        }
        if object["additionalProperties"] != nil {
            keywords.append(.additionalProperties(try sub("additionalProperties"), names: PropertyNames(names), patterns: patterns))
        }
        if object["propertyNames"] != nil { keywords.append(.propertyNames(try sub("propertyNames"))) }
        var dependentSchemas: [(String, Int)] = []
        var dependentRequired: [(String, [String])] = []
        for key in draft7 ? ["dependencies"] : ["dependentSchemas"] {
            guard case .object(let rules) = object[key] else { continue }
            for (name, rule) in rules.members {
                if case .array(let list) = rule, key != "dependentSchemas" {
                    dependentRequired.append((name, list.compactMap(\.stringValue)))
                } else if key != "dependentRequired" {
                    dependentSchemas.append((name, try self.node(at: location.appending(key, name))))
                }
            }
        }
        if !dependentSchemas.isEmpty { keywords.append(.dependentSchemas(dependentSchemas)) }
        // Arrays.
        if draft7 {
            if case .array = object["items"] {
                let schemas = try subs("items")
                keywords.append(.prefixItems(schemas))
                if object["additionalItems"] != nil { keywords.append(.items(try sub("additionalItems"), from: schemas.count)) }
            } else if object["items"] != nil {
                keywords.append(.items(try sub("items"), from: 0))
            }
        } else {
            var prefix = 0
            if object["prefixItems"] != nil {
                let schemas = try subs("prefixItems")
                prefix = schemas.count
                keywords.append(.prefixItems(schemas))
            }
            if object["items"] != nil { keywords.append(.items(try sub("items"), from: prefix)) }
        }
        if object["contains"] != nil {
            let minimum = draft7 ? 1 : (try count("minContains") ?? 1)
            let maximum = draft7 ? nil : try count("maxContains")
            keywords.append(.contains(try sub("contains"), min: minimum, max: maximum))
        }
        if !draft7 {
            if object["unevaluatedProperties"] != nil { late.append(.unevaluatedProperties(try sub("unevaluatedProperties"))) }
            if object["unevaluatedItems"] != nil { late.append(.unevaluatedItems(try sub("unevaluatedItems"))) }
        }

        if dialect.validation {
            switch object["type"] {
            case .string(let name)?:
                guard let type = JSONType(name) else { throw SchemaCompileError("\(location.key)/type: unknown type \"\(name)\"") }
                keywords.insert(.type([type]), at: 0)
            case .array(let names)?:
                var types: [JSONType] = []
                for name in names {
                    guard let text = name.stringValue, let type = JSONType(text) else { throw SchemaCompileError("\(location.key)/type: unknown type") }
                    types.append(type)
                }
                keywords.insert(.type(types), at: 0)
            case nil: break
            default: throw SchemaCompileError("\(location.key)/type: expected a type name or a list of them")
            }
            if case .array(let values) = object["enum"] { keywords.append(.enumeration(values)) }
            if let value = object["const"] { keywords.append(.constant(value)) }
            if let value = try number("multipleOf") {
                guard value > 0 else { throw SchemaCompileError("\(location.key)/multipleOf: must be greater than 0") }
                keywords.append(.multipleOf(value))
            }
            if let value = try number("maximum") { keywords.append(.maximum(value)) }
            if let value = try number("exclusiveMaximum") { keywords.append(.exclusiveMaximum(value)) }
            if let value = try number("minimum") { keywords.append(.minimum(value)) }
            if let value = try number("exclusiveMinimum") { keywords.append(.exclusiveMinimum(value)) }
            if let value = try count("maxLength") { keywords.append(.maxLength(value)) }
            if let value = try count("minLength") { keywords.append(.minLength(value)) }
            if let source = object["pattern"]?.stringValue { keywords.append(.pattern(try SchemaPattern(source))) }
            if let value = try count("maxItems") { keywords.append(.maxItems(value)) }
            if let value = try count("minItems") { keywords.append(.minItems(value)) }
            if object["uniqueItems"]?.boolValue == true { keywords.append(.uniqueItems) }
            if let value = try count("maxProperties") { keywords.append(.maxProperties(value)) }
            if let value = try count("minProperties") { keywords.append(.minProperties(value)) }
            if case .array(let list) = object["required"] { keywords.append(.required(list.compactMap(\.stringValue))) }
            if !draft7, case .object(let rules) = object["dependentRequired"] {
                for (name, rule) in rules.members { dependentRequired.append((name, rule.arrayValue?.compactMap(\.stringValue) ?? [])) }
            }
            if !dependentRequired.isEmpty { keywords.append(.dependentRequired(dependentRequired)) }
        }
        if let name = object["format"]?.stringValue { keywords.append(.format(SchemaFormat(name))) }
        node.keywords = keywords + late
        return node
    }
}
