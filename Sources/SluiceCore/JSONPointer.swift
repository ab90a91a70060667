/// RFC 6901 JSON Pointers, read and written over Unicode scalars rather than Characters: a `/` or
/// `~` that a neighbouring combining mark or prepend character folds into one Character still
/// separates or escapes (a Character-level split let `},\u{070F}/x` read as one token and write
/// back as another).
public enum JSONPointer {
    /// `""` -> `[]` (the whole document), `/a/b~1c` -> `["a", "b/c"]`; nil when the text neither is
    /// empty nor starts with `/`, or has a `~` not followed by `0` or `1`.
    public static func tokens(_ text: some StringProtocol) -> [String]? {
        var scalars = text.unicodeScalars.makeIterator()
        guard let first = scalars.next() else { return [] }
        guard first == "/" else { return nil }
        var tokens: [String] = []
        var token = String.UnicodeScalarView()
        while let scalar = scalars.next() {
            switch scalar {
            case "/":
                tokens.append(String(token))
                token = String.UnicodeScalarView()
            case "~":
                switch scalars.next() {
                case "0": token.append("~")
                case "1": token.append("/")
                default: return nil
                }
            default:
                token.append(scalar)
            }
        }
        tokens.append(String(token))
        return tokens
    }

    /// `["a", "b/c"]` -> `/a/b~1c`; `[]` -> `""`.
    public static func encode(_ tokens: some Sequence<String>) -> String {
        var out = String.UnicodeScalarView()
        for token in tokens {
            out.append("/")
            for scalar in token.unicodeScalars {
                switch scalar {
                case "~": out.append(contentsOf: "~0".unicodeScalars)
                case "/": out.append(contentsOf: "~1".unicodeScalars)
                default: out.append(scalar)
                }
            }
        }
        return String(out)
    }
}
