// libFuzzer target: sizes and durations as a config writes them (64KiB, 250ms, 5m).
// Built with Sources/SluiceConfigReader/Units.swift by scripts/fuzz.sh.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if let bytes = ByteSize.parse(input) {
        precondition(bytes >= 0, "negative size")
        precondition(ByteSize.parse(ByteSize.format(bytes)) == bytes, "size does not round-trip")
    }
    if let duration = DurationText.parse(input) {
        precondition(duration >= .zero, "negative duration")
        _ = DurationText.format(duration)
    }
    return 0
}
