import Foundation
import SluiceCore
import Testing

@Suite struct JSONStringTests {
    static let samples = ["", "plain", "shardId-000000000001", "say \"hi\"", "back\\slash", "line\nbreak\ttab\r", "\u{01}\u{1F}", "é ünïcode ✓", String(repeating: "x", count: 300),
        // A special byte in a later 8-byte word, and in the tail after the last whole word.
        "0123456789abcdef\"quoted", "0123456789abcdef01234\\", "0123456789abcdef\u{7F}\u{1F}", "ünïcødé bytes above 0x7F then \u{1E}"]

    /// Contiguous UTF-8 (a String's, an array's) and a collection without contiguous storage take
    /// different paths: both must write what JSONSerialization reads back as the same string.
    @Test(arguments: samples) func writesWhatAJSONParserReadsBack(_ text: String) throws {
        for written in [Self.written(text.utf8), Self.written(Array(text.utf8)), Self.written(text.utf8.lazy.map { $0 })] {
            #expect(written.first == UInt8(ascii: "{"))
            let object = try #require(try JSONSerialization.jsonObject(with: Data(written)) as? [String: String])
            #expect(object["k"] == text)
        }
    }

    @Test func plainTextIsCopiedAsItIs() {
        #expect(String(decoding: Self.written("shardId-1".utf8), as: UTF8.self) == #"{"k":"shardId-1"}"#)
        #expect(String(decoding: Self.written(#"a"b"#.utf8), as: UTF8.self) == #"{"k":"a\"b"}"#)
    }

    /// Every special byte (and one above 0x7F) at every place of a 24-byte run: the plain words
    /// counted are exactly those before the word that holds it.
    @Test func plainASCIIWordsStopAtTheWordHoldingASpecialByte() {
        for special: UInt8 in [0x00, 0x09, 0x1F, 0x22, 0x5C, 0x80, 0xFF] {
            for place in 0..<24 {
                var bytes = [UInt8](repeating: UInt8(ascii: "7"), count: 24)
                bytes[place] = special
                let counted = bytes.withUnsafeBufferPointer { JSONString.plainASCIIWords($0.baseAddress!, from: 0, to: 24) }
                #expect(counted == place / 8 * 8, "byte \(special) at \(place)")
            }
        }
        // Near-misses are plain: 0x20, 0x21, 0x23, 0x5B, 0x5D, 0x7F.
        let plain: [UInt8] = [0x20, 0x21, 0x23, 0x5B, 0x5D, 0x7F, 0x41, 0x30, 0x20, 0x21, 0x23, 0x5B, 0x5D, 0x7F, 0x41, 0x30, 0x31]
        #expect(plain.withUnsafeBufferPointer { JSONString.plainASCIIWords($0.baseAddress!, from: 1, to: plain.count) } == 16)
    }

    static func written(_ bytes: some Collection<UInt8>) -> [UInt8] {
        var out = Array(#"{"k":"#.utf8)
        JSONString.append(bytes, to: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }
}
