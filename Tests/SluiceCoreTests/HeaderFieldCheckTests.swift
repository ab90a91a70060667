import SluiceCore
import Testing

/// The header field rules every reader and writer of fields shares (RFC 9110 5.1, 5.5).
@Suite struct HeaderFieldCheckTests {
    @Test func headerChecksFollowRFC9110() {
        #expect(HeaderFieldCheck.problem(name: "X-Ok", value: "a\tb c\u{e9}") == nil)
        #expect(HeaderFieldCheck.problem(name: "X-Bad", value: "a\u{0B}b") != nil)
        #expect(HeaderFieldCheck.problem(name: "X-Bad", value: "a\u{7F}") != nil)
        #expect(HeaderFieldCheck.problem(name: "X-Bad", value: "a\rb") != nil)
        #expect(HeaderFieldCheck.problem(name: "X(Bad)", value: "v") != nil)
        #expect(HeaderFieldCheck.problem(name: "", value: "v") != nil)
        #expect(HeaderFieldCheck.problem(name: ":path", value: "/") != nil)
        #expect(HeaderFieldCheck.problem(name: "X-\u{e9}", value: "v") != nil)
        #expect(["host", "Host", "HOST", "hOsT"].allSatisfy(HeaderFieldCheck.isHost))
        #expect(!["hos", "hosts", "ghost", "x-host", "h\u{0}st", "HOS\u{14}"].contains(where: HeaderFieldCheck.isHost))
    }

    /// The eight-bytes-a-step value check agrees with the byte rule for every byte value at every
    /// place in a word and in the tail, beside bytes at the edges of the rule (a borrow from one
    /// byte must not hide or invent another).
    @Test func theWordWiseValueCheckAgreesWithTheByteRule() {
        var disagreements: [String] = []
        for filler: UInt8 in [UInt8(ascii: "a"), 0x20, 0x7E, 0x80, 0xFF, 0x09] {
            for length in [1, 7, 8, 9, 16, 19] {
                for position in 0..<length {
                    for byte in UInt8.min...UInt8.max {
                        var bytes = [UInt8](repeating: filler, count: length)
                        bytes[position] = byte
                        let expected = bytes.allSatisfy(HeaderFieldCheck.isSendableValueByte)
                        if bytes.withUnsafeBufferPointer(HeaderFieldCheck.isSendableValue) != expected {
                            disagreements.append("filler \(filler) length \(length) at \(position): \(byte)")
                        }
                    }
                }
            }
        }
        #expect(disagreements.isEmpty, "\(disagreements.prefix(10))")
        #expect(!HeaderFieldCheck.isSendableValueByte(0x7F) && !HeaderFieldCheck.isSendableValueByte(0x0A))
        #expect(HeaderFieldCheck.isSendableValueByte(0x09) && HeaderFieldCheck.isSendableValueByte(0x80))
    }

    /// The bit mask of token bytes agrees with RFC 9110's tchar list for every byte value.
    @Test func tokenByteMaskMatchesTheDefinition() {
        for byte in UInt8.min...UInt8.max {
            #expect(HeaderFieldCheck.isTokenByte(byte) == HeaderFieldCheck.isTokenByteSlow(byte), "byte \(byte)")
        }
    }
}
