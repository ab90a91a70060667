import SluiceCore
import Yams

/// A configuration file as operators see it through the admin API (`GET /config`): its YAML
/// as JSON, with every value that could be a secret replaced by `"[redacted]"`.
///
/// Sluice takes no secret inline (they are `{ env: … }` / `{ file: … }` references, and API keys
/// are stored as hashes), so redaction is a second line of defence: any scalar under a key that
/// names a secret (`password`, `secret`, `token`, `credential`, `authorization`, `keys`, a Kafka
/// property like `sasl.password` or `ssl.key.password`), and every key hash, is hidden; a
/// reference (`{ env: NAME }`, `{ file: PATH }`, `*_env`, `*_file`) is shown, for it is not the
/// secret.
public enum ConfigDocument {
    public static let redacted = "[redacted]"

    /// The YAML document as JSON bytes; nil when it does not parse.
    public static func redactedJSON(yaml: String) -> [UInt8]? {
        guard let root = try? Yams.compose(yaml: yaml) else { return nil }
        var out: [UInt8] = []
        self.write(root, secret: false, to: &out)
        return out
    }

    /// Whether a value under `key` may be a secret.
    static func namesSecret(_ key: String) -> Bool {
        let key = key.lowercased()
        if key.hasSuffix("_env") || key.hasSuffix("_file") || key == "env" || key == "file" || key.hasSuffix("_url") { return false }
        return ["password", "secret", "token", "credential", "authorization", "jaas", "private"].contains { key.contains($0) }
            || key == "keys" || key == "hmac_keys" || key == "users" || key.hasSuffix(".key") || key == "sha256"
    }

    private static func write(_ node: Node, secret: Bool, to out: inout [UInt8]) {
        switch node {
        case .scalar(let scalar):
            if secret {
                self.string(self.redacted, to: &out)
            } else if scalar.style == .plain, let number = Int(scalar.string) {
                out.append(contentsOf: String(number).utf8)
            } else if scalar.style == .plain, ["true", "false"].contains(scalar.string) {
                out.append(contentsOf: scalar.string.utf8)
            } else if scalar.style == .plain, ["null", "~", ""].contains(scalar.string) {
                out.append(contentsOf: "null".utf8)
            } else {
                self.string(scalar.string, to: &out)
            }
        case .mapping(let mapping):
            // A reference to where a secret lives is not the secret.
            let isReference = mapping.count == 1 && mapping.keys.allSatisfy { ["env", "file"].contains($0.string ?? "") }
            out.append(UInt8(ascii: "{"))
            var first = true
            for (key, value) in mapping {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                let name = key.string ?? ""
                self.string(name, to: &out)
                out.append(UInt8(ascii: ":"))
                self.write(value, secret: (secret && !isReference) || self.namesSecret(name), to: &out)
            }
            out.append(UInt8(ascii: "}"))
        case .sequence(let sequence):
            out.append(UInt8(ascii: "["))
            var first = true
            for item in sequence {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                self.write(item, secret: secret, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .alias:
            self.string(self.redacted, to: &out)
        }
    }

    private static func string(_ text: String, to out: inout [UInt8]) {
        var text = text
        text.withUTF8 { JSONString.append($0, to: &out) }
    }
}
