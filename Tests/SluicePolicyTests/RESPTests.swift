import NIOCore
import Testing

@testable import SluicePolicy

/// The global rate limit's RESP2 parsing: whole replies, replies split anywhere, refusals.
@Suite struct RESPTests {
    static let reply = "*2\r\n:1\r\n$3\r\n4.5\r\n"

    @Test func parsesAWholeReply() throws {
        var buffer = ByteBuffer(string: Self.reply + "+OK\r\n")
        #expect(try RESPDecoder.parse(&buffer, depth: 0) == .array([.integer(1), .bulk(Array("4.5".utf8))]))
        #expect(try RESPDecoder.parse(&buffer, depth: 0) == .simple("OK"))
        #expect(buffer.readableBytes == 0)
    }

    @Test func waitsForTheRestOfASplitReply() throws {
        let bytes = Array(Self.reply.utf8)
        for cut in 1..<bytes.count {
            var buffer = ByteBuffer(bytes: bytes[..<cut])
            #expect(try RESPDecoder.parse(&buffer, depth: 0) == nil, "cut at \(cut)")
        }
    }

    @Test func parsesErrorsNullsAndRefusesGarbage() throws {
        var errors = ByteBuffer(string: "-NOSCRIPT No matching script\r\n$-1\r\n*-1\r\n")
        #expect(try RESPDecoder.parse(&errors, depth: 0) == .error("NOSCRIPT No matching script"))
        #expect(try RESPDecoder.parse(&errors, depth: 0) == .bulk(nil))
        #expect(try RESPDecoder.parse(&errors, depth: 0) == .array(nil))
        var garbage = ByteBuffer(string: "?what\r\n")
        #expect(throws: RedisError.self) { try RESPDecoder.parse(&garbage, depth: 0) }
        var huge = ByteBuffer(string: "$999999999\r\n")
        #expect(throws: RedisError.self) { try RESPDecoder.parse(&huge, depth: 0) }
    }

    @Test func refusesLinesWithoutBoundsOrCRLF() throws {
        // A line that never ends is refused once it passes the bound, not buffered for ever.
        var endless = ByteBuffer(string: "+" + String(repeating: "x", count: RESPDecoder.maxLineBytes + 1))
        #expect(throws: RedisError.self) { try RESPDecoder.parse(&endless, depth: 0) }
        var bareCR = ByteBuffer(string: "+OK\rX\r\n")
        #expect(throws: RedisError.self) { try RESPDecoder.parse(&bareCR, depth: 0) }
        var overrun = ByteBuffer(string: "$3\r\n4.5XY")
        #expect(throws: RedisError.self) { try RESPDecoder.parse(&overrun, depth: 0) }
    }

    @Test func encodesCommandsAsArraysOfBulkStrings() {
        var buffer = ByteBuffer()
        RedisClient.encode(["EVALSHA", "abc", "1", "k é"], into: &buffer)
        #expect(String(buffer: buffer) == "*4\r\n$7\r\nEVALSHA\r\n$3\r\nabc\r\n$1\r\n1\r\n$4\r\nk é\r\n")
    }
}
