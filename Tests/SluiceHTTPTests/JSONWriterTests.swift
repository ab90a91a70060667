import Foundation
@testable import SluiceHTTP
import Testing

@Suite struct JSONWriterTests {
    static let integers: [Int64] = [0, 1, 9, 10, 99, 100, 12_345, -1, -10, -987_654_321, Int64(Int32.max), Int64(Int32.min), .max, .min]

    /// The one-append receipt writes what the general writer writes, digit for digit.
    @Test(arguments: integers)
    func integerPairObjectMatchesTheFieldByFieldWriter(_ value: Int64) throws {
        for other in Self.integers {
            var fast = JSONWriter()
            var general = JSONWriter()
            for writer in [0, 1] {
                // First in an array, then after a comma.
                if writer == 0 {
                    fast.openArray()
                    general.openArray()
                }
                fast.integerPairObject("partition", value, "offset", other)
                general.object {
                    $0.field("partition", value)
                    $0.field("offset", other)
                }
            }
            fast.closeArray()
            general.closeArray()
            #expect(fast.bytes == general.bytes)
            let parsed = try #require(try JSONSerialization.jsonObject(with: Data(fast.bytes)) as? [[String: Any]])
            #expect(parsed.count == 2)
            #expect((parsed[0]["partition"] as? NSNumber)?.int64Value == value)
            #expect((parsed[1]["offset"] as? NSNumber)?.int64Value == other)
        }
    }
}
