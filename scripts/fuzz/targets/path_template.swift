// libFuzzer target: route path templates and parameter templates (topics, keys).
// Built with Sources/SluiceConfigReader/PathPattern.swift, ParameterTemplate.swift and ConfigError.swift by scripts/fuzz.sh.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if case .success(let pattern) = PathPattern.parseTemplate(input) {
        let names = pattern.parameters
        precondition(Set(names).count == names.count, "a parameter appears twice")
    }
    if case .success(let template) = ParameterTemplate.parse(input) {
        // The template prints back as it was written, and renders without traps.
        precondition(template.description == input, "template does not round-trip: \(input) -> \(template.description)")
        let values = Dictionary(template.parameters.map { ($0, "v") }, uniquingKeysWith: { a, _ in a })
        _ = template.render(values)
    }
    return 0
}
