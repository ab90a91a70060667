import SluiceCore

/// Where evaluation is: the instance path (for messages), the dynamic scope, the depth.
struct EvaluationContext {
    var path: [String] = []
    var scope: [Int] = []
    var depth = 0
    let annotate: Bool
    static let maxDepth = 256

    init(annotate: Bool) {
        self.annotate = annotate
    }
}

/// What the keywords that passed say they evaluated (for `unevaluated*`).
struct Annotations {
    var properties: Set<String> = []
    var itemsUpTo = 0
    var allItems = false
    var itemIndices: Set<Int> = []

    mutating func merge(_ other: Annotations) {
        if !other.properties.isEmpty { self.properties.formUnion(other.properties) }
        self.itemsUpTo = max(self.itemsUpTo, other.itemsUpTo)
        self.allItems = self.allItems || other.allItems
        if !other.itemIndices.isEmpty { self.itemIndices.formUnion(other.itemIndices) }
    }
}

final class ViolationSink {
    var violations: [SchemaViolation] = []
    let limit: Int

    init(limit: Int) {
        self.limit = limit
    }

    var isFull: Bool { self.violations.count >= self.limit }

    func add(_ path: [String], _ keyword: String, _ message: String) {
        guard !self.isFull else { return }
        self.violations.append(SchemaViolation(instancePath: JSONPointer.encode(path), keyword: keyword, message: message))
    }
}

extension JSONSchema {
    /// Evaluates node `index` against `instance`; on success merges what it evaluated into `out`.
    /// With a `sink`, failures are reported there and evaluation goes on to find more of them.
    func evaluate(_ index: Int, _ instance: JSONValue, _ context: inout EvaluationContext, _ sink: ViolationSink?, _ out: inout Annotations) -> Bool {
        let node = self.nodes[index]
        if let constant = node.constant {
            if !constant { sink?.add(context.path, "false", "no value is allowed here") }
            return constant
        }
        guard context.depth < EvaluationContext.maxDepth else {
            sink?.add(context.path, "$ref", "the schema refers to itself more than \(EvaluationContext.maxDepth) levels deep")
            return false
        }
        context.depth += 1
        // Entering another resource (a child with its own $id, or a $ref into another document or
        // resource) puts it on the dynamic scope.
        let enters = node.resource != nil && context.scope.last != node.resource
        if enters { context.scope.append(node.resource!) }
        defer {
            context.depth -= 1
            if enters { context.scope.removeLast() }
        }
        var valid = true
        var local = Annotations()
        for keyword in node.keywords {
            if !self.apply(keyword, instance, &context, sink, &local) {
                valid = false
                guard let sink, !sink.isFull else { return false }
            }
        }
        if valid, context.annotate { out.merge(local) }
        return valid
    }

    /// Evaluates a subschema on a member or item of the instance (its annotations are its own).
    /// A `false` subschema is reported as the keyword that applied it (`additionalProperties`: the
    /// member is not allowed), which says more than "false".
    private func evaluateChild(
        _ index: Int, _ value: JSONValue, at token: String, _ context: inout EvaluationContext, _ sink: ViolationSink?,
        keyword: String? = nil
    ) -> Bool {
        var ignored = Annotations()
        context.path.append(token)
        defer { context.path.removeLast() }
        if let keyword, self.nodes[index].constant == false {
            sink?.add(context.path, keyword, "not allowed here")
            return false
        }
        return self.evaluate(index, value, &context, sink, &ignored)
    }

    private func apply(_ keyword: Keyword, _ instance: JSONValue, _ context: inout EvaluationContext, _ sink: ViolationSink?, _ local: inout Annotations) -> Bool {
        func fail(_ message: @autoclosure () -> String) -> Bool {
            sink?.add(context.path, keyword.name, message())
            return false
        }
        switch keyword {
        case .ref(let target):
            return self.evaluate(target, instance, &context, sink, &local)
        case .dynamicRef(let target, let anchor):
            var resolved = target
            for resource in context.scope {
                if let node = self.dynamicAnchors[resource][anchor] {
                    resolved = node
                    break
                }
            }
            return self.evaluate(resolved, instance, &context, sink, &local)
        case .type(let types):
            if types.contains(where: { $0.matches(instance) }) { return true }
            return fail("expected \(types.map(\.name).joined(separator: " or ")), got \(instance.typeName)")
        case .enumeration(let values):
            return values.contains(instance) || fail("the value is not one of the \(values.count) allowed")
        case .constant(let value):
            return instance == value || fail("the value is not the one allowed")
        case .multipleOf(let divisor):
            guard case .number(let number) = instance else { return true }
            let quotient = number / divisor
            guard quotient.isFinite else { return fail("not a multiple of \(divisor)") }
            return abs(quotient - quotient.rounded()) <= 1e-9 * max(1, abs(quotient)) || fail("not a multiple of \(divisor)")
        case .maximum(let limit):
            guard case .number(let number) = instance else { return true }
            return number <= limit || fail("greater than \(limit)")
        case .exclusiveMaximum(let limit):
            guard case .number(let number) = instance else { return true }
            return number < limit || fail("not less than \(limit)")
        case .minimum(let limit):
            guard case .number(let number) = instance else { return true }
            return number >= limit || fail("less than \(limit)")
        case .exclusiveMinimum(let limit):
            guard case .number(let number) = instance else { return true }
            return number > limit || fail("not greater than \(limit)")
        case .maxLength(let limit):
            guard case .string(let text) = instance else { return true }
            return text.unicodeScalars.count <= limit || fail("longer than \(limit) characters")
        case .minLength(let limit):
            guard case .string(let text) = instance else { return true }
            return text.unicodeScalars.count >= limit || fail("shorter than \(limit) characters")
        case .pattern(let pattern):
            guard case .string(let text) = instance else { return true }
            return pattern.matches(text) || fail("does not match the pattern \(pattern.source)")
        case .format(let format):
            guard self.formatAssertion else { return true }
            return format.accepts(instance) || fail("not a valid \(format.name)")
        case .maxItems(let limit):
            guard case .array(let items) = instance else { return true }
            return items.count <= limit || fail("more than \(limit) items")
        case .minItems(let limit):
            guard case .array(let items) = instance else { return true }
            return items.count >= limit || fail("fewer than \(limit) items")
        case .uniqueItems:
            guard case .array(let items) = instance, items.count > 1 else { return true }
            for i in 1..<items.count {
                for j in 0..<i where items[i] == items[j] {
                    return fail("items \(j) and \(i) are equal")
                }
            }
            return true
        case .maxProperties(let limit):
            guard case .object(let object) = instance else { return true }
            return object.count <= limit || fail("more than \(limit) properties")
        case .minProperties(let limit):
            guard case .object(let object) = instance else { return true }
            return object.count >= limit || fail("fewer than \(limit) properties")
        case .required(let names):
            guard case .object(let object) = instance else { return true }
            var ok = true
            for name in names where object[name] == nil {
                ok = fail("missing required property \"\(name)\"")
                if sink == nil { return false }
            }
            return ok
        case .dependentRequired(let rules):
            guard case .object(let object) = instance else { return true }
            for (name, needed) in rules where object[name] != nil {
                for other in needed where object[other] == nil {
                    return fail("property \"\(name)\" requires property \"\(other)\"")
                }
            }
            return true
        case .properties(let schemas):
            guard case .object(let object) = instance else { return true }
            var ok = true
            for (name, schema) in schemas {
                guard let value = object[name] else { continue }
                if context.annotate { local.properties.insert(name) }
                if !self.evaluateChild(schema, value, at: name, &context, sink) {
                    ok = false
                    if sink == nil || sink!.isFull { return false }
                }
            }
            return ok
        case .patternProperties(let patterns):
            guard case .object(let object) = instance else { return true }
            var ok = true
            for (name, value) in object.members {
                for (pattern, schema) in patterns where pattern.matches(name) {
                    if context.annotate { local.properties.insert(name) }
                    if !self.evaluateChild(schema, value, at: name, &context, sink) {
                        ok = false
                        if sink == nil || sink!.isFull { return false }
                    }
                }
            }
            return ok
        case .additionalProperties(let schema, let names, let patterns):
            guard case .object(let object) = instance else { return true }
            var ok = true
            for (name, value) in object.members where !names.contains(name) && !patterns.contains(where: { $0.matches(name) }) {
                if context.annotate { local.properties.insert(name) }
                if !self.evaluateChild(schema, value, at: name, &context, sink, keyword: keyword.name) {
                    ok = false
                    if sink == nil || sink!.isFull { return false }
                }
            }
            return ok
        case .propertyNames(let schema):
            guard case .object(let object) = instance else { return true }
            for (name, _) in object.members where !self.evaluateChild(schema, .string(name), at: name, &context, nil) {
                return fail("the property name \"\(name)\" is not allowed")
            }
            return true
        case .dependentSchemas(let rules):
            guard case .object(let object) = instance else { return true }
            var ok = true
            for (name, schema) in rules where object[name] != nil {
                if !self.evaluate(schema, instance, &context, sink, &local) {
                    ok = false
                    if sink == nil || sink!.isFull { return false }
                }
            }
            return ok
        case .prefixItems(let schemas):
            guard case .array(let items) = instance else { return true }
            var ok = true
            for (position, schema) in schemas.enumerated() where position < items.count {
                if !self.evaluateChild(schema, items[position], at: String(position), &context, sink) {
                    ok = false
                    if sink == nil || sink!.isFull { return false }
                }
            }
            if context.annotate { local.itemsUpTo = max(local.itemsUpTo, min(schemas.count, items.count)) }
            return ok
        case .items(let schema, let from):
            guard case .array(let items) = instance else { return true }
            var ok = true
            var position = from
            while position < items.count {
                if !self.evaluateChild(schema, items[position], at: String(position), &context, sink, keyword: keyword.name) {
                    ok = false
                    if sink == nil || sink!.isFull { return false }
                }
                position += 1
            }
            if context.annotate, from < items.count { local.allItems = true }
            return ok
        case .contains(let schema, let minimum, let maximum):
            guard case .array(let items) = instance else { return true }
            var matched = 0
            for (position, item) in items.enumerated() where self.evaluateChild(schema, item, at: String(position), &context, nil) {
                matched += 1
                if context.annotate { local.itemIndices.insert(position) }
            }
            if matched < minimum {
                return fail(minimum == 1 ? "no item matches the contains schema" : "fewer than \(minimum) items match the contains schema")
            }
            if let maximum, matched > maximum { return fail("more than \(maximum) items match the contains schema") }
            return true
        case .allOf(let schemas):
            var ok = true
            for schema in schemas where !self.evaluate(schema, instance, &context, sink, &local) {
                ok = false
                if sink == nil || sink!.isFull { return false }
            }
            return ok
        case .anyOf(let schemas):
            var any = false
            for schema in schemas {
                if self.evaluate(schema, instance, &context, nil, &local) {
                    any = true
                    if !context.annotate { break }
                }
            }
            return any || fail("the value matches none of the \(schemas.count) alternatives")
        case .oneOf(let schemas):
            var matching: [Int] = []
            var collected = Annotations()
            for (position, schema) in schemas.enumerated() {
                var branch = Annotations()
                if self.evaluate(schema, instance, &context, nil, &branch) {
                    matching.append(position)
                    collected = branch
                    if matching.count > 1 { break }
                }
            }
            if matching.count == 1 {
                local.merge(collected)
                return true
            }
            return fail(matching.isEmpty ? "the value matches none of the \(schemas.count) alternatives" : "the value matches alternatives \(matching[0]) and \(matching[1]); exactly one must")
        case .not(let schema):
            var ignored = Annotations()
            return !self.evaluate(schema, instance, &context, nil, &ignored) || fail("the value matches a schema it must not")
        case .conditional(let condition, let then, let otherwise):
            var conditional = Annotations()
            if self.evaluate(condition, instance, &context, nil, &conditional) {
                local.merge(conditional)
                guard let then else { return true }
                return self.evaluate(then, instance, &context, sink, &local)
            }
            guard let otherwise else { return true }
            return self.evaluate(otherwise, instance, &context, sink, &local)
        case .unevaluatedProperties(let schema):
            guard case .object(let object) = instance else { return true }
            var ok = true
            for (name, value) in object.members where !local.properties.contains(name) {
                if !self.evaluateChild(schema, value, at: name, &context, sink, keyword: keyword.name) {
                    ok = false
                    if sink == nil || sink!.isFull { return false }
                }
            }
            if ok { for (name, _) in object.members { local.properties.insert(name) } }
            return ok
        case .unevaluatedItems(let schema):
            guard case .array(let items) = instance else { return true }
            guard !local.allItems else { return true }
            var ok = true
            for position in local.itemsUpTo..<max(local.itemsUpTo, items.count) where !local.itemIndices.contains(position) {
                if !self.evaluateChild(schema, items[position], at: String(position), &context, sink, keyword: keyword.name) {
                    ok = false
                    if sink == nil || sink!.isFull { return false }
                }
            }
            if ok { local.allItems = true }
            return ok
        }
    }
}
