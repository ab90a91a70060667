// libFuzzer target: a configuration from YAML text to a validated SluiceConfiguration or the list
// of what is wrong (the SluiceConfig sources, built by scripts/fuzz.sh). Never a crash or hang;
// every error names where it is; JSON pointers for keys read back what they were written from.
import FileSink
import Foundation
import KafkaSink
import KinesisSink
import SluiceCore
import ZerobusSink

let sinkKinds = [KafkaSink.kind, FileSink.kind, KinesisSink.kind, ZerobusSink.kind]
let environment = ["SLUICE_FUZZ_SECRET": "s3cret-value-0123456789abcdef0123", "KAFKA": "127.0.0.1:9092"]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let text = String(validating: UnsafeBufferPointer(start: data, count: size), as: UTF8.self) else { return 0 }
    do throws(ConfigValidationError) {
        let config = try SluiceConfiguration.parse(yaml: text, environment: environment, sinkKinds: sinkKinds)
        precondition(!config.listeners.isEmpty, "a valid config without a listener")
    } catch {
        precondition(!error.errors.isEmpty, "refused without saying why")
        for problem in error.errors {
            precondition(!problem.message.isEmpty, "an error without a message")
            // A secret from the environment is never repeated in an error.
            precondition(!problem.message.contains(environment["SLUICE_FUZZ_SECRET"]!), "an error message repeats a secret")
        }
    }
    if let tokens = JSONPointer.tokens(text) {
        let written = JSONPointer.encode(tokens)
        precondition(JSONPointer.tokens(written) == tokens, "a JSON pointer does not read back")
        // ~0 and ~1 are the only escapes, so writing gives back the text read, scalar for scalar.
        precondition(written.unicodeScalars.elementsEqual(text.unicodeScalars), "a JSON pointer writes back differently")
    }
    return 0
}
