// libFuzzer target: the Kafka sink's reader of librdkafka's statistics (TinyJSON in
// KafkaStatistics.swift), checked against Sluice's own JSON validator: what the reader accepts is
// valid JSON, and valid JSON no deeper than its bound it accepts; feeding any bytes to the
// statistics never crashes.
import CoreMetrics
@testable import SluiceIngest  // the debug build is compiled for testing: JSONScanner.validate

let statistics = KafkaStatistics(sink: "fuzz", factory: NOOPMetricsHandler.instance)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    var reader = TinyJSON(bytes)
    let parsed = reader.parse()
    let valid: Bool
    do throws(JSONScanner.SyntaxError) {
        try JSONScanner.validate(bytes)
        valid = true
    } catch {
        valid = false
    }
    if parsed != nil {
        precondition(valid, "the statistics reader accepted what is not JSON")
    } else if valid {
        precondition(nestingDepth(bytes) > TinyJSON.maxDepth, "the statistics reader refused valid JSON within its depth")
    }
    _ = statistics.update(json: bytes)
    return 0
}
