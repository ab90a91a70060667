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

    /// A literal key with a string value writes what `field(_:_:)` writes, the value escaped.
    @Test(arguments: ["shardId-000000000001", "", "quote \" and \\ and \n", "é \u{1F600}"])
    func literalKeyStringFieldMatchesTheGeneralOne(_ value: String) throws {
        var literal = JSONWriter()
        var general = JSONWriter()
        literal.object {
            $0.field(literal: "shard_id", value)
            $0.field(literal: "sequence_number", "1")
        }
        general.object {
            $0.field("shard_id", value)
            $0.field("sequence_number", "1")
        }
        #expect(literal.bytes == general.bytes)
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(literal.bytes)) as? [String: String])
        #expect(parsed == ["shard_id": value, "sequence_number": "1"])
    }
}
