import SluiceConfig
import SluiceSchema
import Yams

/// Backstage catalog entities for a configuration (`sluice catalog --format backstage`): a
/// Component for the gateway and an API per group of routes — `<name>-http` (type openapi: every
/// HTTP route) and `<name>-events` (type asyncapi: where every ingest route, HTTP or gRPC,
/// writes) — each with its definition, the owner, system and lifecycle from `catalog:`.
public enum BackstageEntities {
    /// The entities as `backstage.io/v1alpha1` objects, in the order they are written.
    public static func make(_ config: SluiceConfiguration) -> [JSONValue] {
        let catalog = config.catalog
        var apis: [JSONValue] = []
        var names: [String] = []
        func api(_ suffix: String, type: String, title: String, description: String, definition: JSONValue) {
            let name = "\(catalog.name)-\(suffix)"
            names.append(name)
            apis.append(
                object([
                    ("apiVersion", string("backstage.io/v1alpha1")),
                    ("kind", string("API")),
                    ("metadata", object([("name", string(name)), ("title", string(title)), ("description", string(description)), ("tags", strings(["sluice", type]))])),
                    (
                        "spec",
                        object([
                            ("type", string(type)), ("lifecycle", string(catalog.lifecycle)), ("owner", string(catalog.owner)),
                            ("system", catalog.system.map(string)), ("definition", string(JSONText.pretty(definition))),
                        ])
                    ),
                ]))
        }
        let httpRoutes = config.routes.filter { $0.match.grpc == nil }
        if !httpRoutes.isEmpty {
            api(
                "http", type: "openapi", title: "\(catalog.title) (HTTP)",
                description: "HTTP routes: " + httpRoutes.map(\.name).joined(separator: ", "), definition: OpenAPIDocument.make(config))
        }
        let ingestRoutes = config.routes.filter {
            if case .ingest = $0.action { return true }
            return false
        }
        if !ingestRoutes.isEmpty {
            api(
                "events", type: "asyncapi", title: "\(catalog.title) (events)",
                description: "Where the ingest routes write: " + ingestRoutes.map(\.name).joined(separator: ", "), definition: AsyncAPIDocument.make(config))
        }
        let component = object([
            ("apiVersion", string("backstage.io/v1alpha1")),
            ("kind", string("Component")),
            (
                "metadata",
                object([
                    ("name", string(catalog.name)), ("title", string(catalog.title)),
                    ("description", string(catalog.description ?? "A Sluice ingress gateway for event pipelines.")),
                    ("tags", strings(["sluice", "gateway"])),
                ])
            ),
            (
                "spec",
                object([
                    ("type", string("service")), ("lifecycle", string(catalog.lifecycle)), ("owner", string(catalog.owner)),
                    ("system", catalog.system.map(string)), ("providesApis", strings(names)),
                ])
            ),
        ])
        return [component] + apis
    }

    /// The entities as a YAML stream, one document each.
    public static func yaml(_ config: SluiceConfiguration) throws -> String {
        let documents = try Self.make(config).map { try Yams.serialize(node: Self.node($0), width: -1, allowUnicode: true) }
        return documents.map { "---\n" + $0 }.joined()
    }

    /// A YAML node of a JSON value: mappings keep their order; strings stay strings (quoted when
    /// plain YAML would read them as something else).
    static func node(_ value: JSONValue) -> Node {
        switch value {
        case .null: return Node("null", Tag(.null))
        case .bool(let flag): return Node(flag ? "true" : "false", Tag(.bool))
        case .number(let number):
            return number == number.rounded() && abs(number) < 1e15 ? Node(String(Int64(number)), Tag(.int)) : Node("\(number)", Tag(.float))
        case .string(let text):
            let style: Node.Scalar.Style = text.contains("\n") ? .literal : .any
            return Node(text, Tag(.str), style)
        case .array(let items): return Node(items.map(Self.node))
        case .object(let members): return Node(members.members.map { (Node($0.key, Tag(.str)), Self.node($0.value)) })
        }
    }
}
