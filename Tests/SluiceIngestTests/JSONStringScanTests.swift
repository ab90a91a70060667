import CSluiceScan
@testable import SluiceIngest
import Testing

/// The ingest path's sampling generator: the same texts on every run.
extension SplitMix64: RandomNumberGenerator {}

/// CSluiceScan's variants of the JSON scanner's plain-byte scan (8 bytes a step in a word, 16 with
/// SSE2, 32 with AVX2, and the one chosen for this CPU) against the definition, byte by byte,
/// on texts that end where their allocation does (so an overread would show under a sanitizer).
@Suite struct JSONStringScanTests {
    typealias Scan = (UnsafePointer<UInt8>?, Int, Int) -> Int

    static func plain(_ byte: UInt8) -> Bool {
        byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "\\") && byte >= 0x20 && byte < 0x80
    }

    static var variants: [(String, Scan)] {
        var variants: [(String, Scan)] = [("chosen", sluice_json_string_plain_end), ("word", sluice_json_string_plain_end_word)]
        if sluice_scan_has_sse2() != 0 { variants.append(("sse2", sluice_json_string_plain_end_sse2)) }
        if sluice_scan_has_avx2() != 0 { variants.append(("avx2", sluice_json_string_plain_end_avx2)) }
        return variants
    }

    @Test func everyVariantStopsAtTheFirstByteAStringCannotHoldAsItIs() {
        let special: [UInt8] = [UInt8(ascii: "\""), UInt8(ascii: "\\"), 0x00, 0x1F, 0x20, 0x7F, 0x80, 0xC3, 0xFF]
        var random = SplitMix64(seed: 17)
        for (name, scan) in Self.variants {
            for _ in 0..<20_000 {
                let count = Int.random(in: 0...100, using: &random)
                let density = Int.random(in: 1...40, using: &random)
                let text: [UInt8] = (0..<count).map { _ in
                    Int.random(in: 0..<density, using: &random) == 0
                        ? special.randomElement(using: &random)! : UInt8.random(in: UInt8(ascii: "a")...UInt8(ascii: "z"), using: &random)
                }
                let start = Int.random(in: 0...count, using: &random)
                let expected = text[start...].firstIndex { !Self.plain($0) } ?? count
                let found = text.withUnsafeBufferPointer { bytes in
                    // Copied to an allocation of exactly `count` bytes.
                    let exact = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(count, 1))
                    defer { exact.deallocate() }
                    _ = exact.initialize(from: bytes)
                    return scan(exact.baseAddress, start, count)
                }
                #expect(found == expected, "\(name): \(text) from \(start)")
                if found != expected { break }
            }
        }
    }
}
