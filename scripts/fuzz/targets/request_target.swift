// libFuzzer target: RequestTarget (canonical paths), the router's path matching, HeaderFieldCheck and
// the configuration's target checks (RequestTargetBytes).
// Built with Sources/SluiceHTTP/RequestTarget.swift and Router.swift (and the router's reference rule,
// Tests/SluiceHTTPTests/PathMatchReference.swift) against the debug build by scripts/fuzz.sh.
import SluiceConfig
import SluiceCore

let fixedPatterns: [PathPattern] = [
    .exact("/v1/health"), .prefix("/api"), .prefix("/api/"), .prefix("/"),
    try! PathPattern.parseTemplate("/v1/events/{topic}").get(), try! PathPattern.parseTemplate("/{a}/{b}").get(),
    try! PathPattern.parseTemplate("/t/{id}/items").get(),
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if case .success(let target) = RequestTarget.parse(input) {
        let path = target.path
        precondition(path == "*" || path.hasPrefix("/"), "canonical path must start with /")
        if path != "*" {
            precondition(!path.contains("//"), "canonical path has an empty segment")
            for segment in path.split(separator: "/", omittingEmptySubsequences: false) {
                precondition(segment != "." && segment != "..", "canonical path has a dot segment")
            }
            precondition(!path.utf8.contains { $0 <= 0x20 || $0 >= 0x7F || $0 == UInt8(ascii: "\\") }, "forbidden byte survived")
            // Only bytes a target may carry raw: what the HTTP/1.1 encoder sends without refusing.
            precondition(path.utf8.allSatisfy(RequestTargetBytes.contains), "a byte no target may carry raw survived in the path")
            precondition(target.query?.utf8.allSatisfy(RequestTargetBytes.contains) ?? true, "a byte no target may carry raw survived in the query")
            // The canonical form is a fixed point: what an upstream re-normalises is what Sluice judged.
            guard case .success(let again) = RequestTarget.parse(path) else { preconditionFailure("canonical path refused: \(path)") }
            precondition(again.path == path, "not a fixed point: \(path) -> \(again.path)")
            let lower = path.lowercased()
            precondition(!lower.contains("%2f") && !lower.contains("%5c") && !lower.contains("%00"), "encoded slash survived")
        }
        if RequestTarget.alreadyCanonical(input) != nil {
            // The copy-free path agrees with the full canonicalisation.
            let bytes = Array(input.utf8)
            let end = bytes.firstIndex(of: UInt8(ascii: "?")) ?? bytes.count
            guard case .success(let slow) = RequestTarget.canonicalPath(bytes[..<end]) else { preconditionFailure("fast path accepted \(input)") }
            precondition(slow == target.path, "fast path disagrees: \(target.path) vs \(slow)")
        }
    }
    // A target the configuration accepts (a health check's, a path rewrite) is one the HTTP/1.1
    // encoder sends: a check that let through what it refuses would fail every request.
    if RequestTargetBytes.originFormProblem(input) == nil {
        let sendable = Array(input.utf8).withUnsafeBufferPointer(RequestTargetBytes.isSendable)
        precondition(sendable && !input.contains("#"), "a configured target the encoder refuses: \(input.debugDescription)")
    }
    if RequestTargetBytes.pathProblem(input) == nil {
        precondition(RequestTargetBytes.originFormProblem(input) == nil && !input.contains("?"), "a rewrite that is not a path: \(input.debugDescription)")
    }
    // Path matching agrees with its rule, on the raw input and on its canonical path, against
    // fixed patterns and one parsed from the input's first half.
    let mid = input.utf8.count / 2
    var patterns = fixedPatterns
    if case .success(let parsed) = PathPattern.parseTemplate(String(decoding: Array(input.utf8.prefix(mid)), as: UTF8.self)) {
        patterns.append(parsed)
        if case .exact(let text) = parsed { patterns.append(.prefix(text)) }
    }
    var paths = [input]
    if case .success(let target) = RequestTarget.parse(input) { paths.append(target.path) }
    for pattern in patterns {
        for path in paths {
            let matched = Router<Int>.matchPath(pattern, path)
            let expected = PathMatchReference.match(pattern, path)
            if matched != expected { fatalError("router disagrees: \(pattern) on \(path.debugDescription): \(String(describing: matched)) vs \(String(describing: expected))") }
        }
    }
    // Header checks never trap and agree with a byte-wise reading.
    let name = String(decoding: Array(input.utf8.prefix(mid)), as: UTF8.self)
    let value = String(decoding: Array(input.utf8.dropFirst(mid)), as: UTF8.self)
    let problem = HeaderFieldCheck.problem(name: name, value: value)
    let badValue = value.utf8.contains { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F }
    let badName = name.utf8.isEmpty || !name.utf8.allSatisfy(HeaderFieldCheck.isTokenByte)
    precondition((problem != nil) == (badValue || badName), "header check disagrees")
    return 0
}
