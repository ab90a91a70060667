import NIOCore

/// A reply in the Redis serialization protocol (RESP2).
enum RESPValue: Sendable, Equatable {
    case simple(String)
    case error(String)
    case integer(Int64)
    case bulk([UInt8]?)
    case array([RESPValue]?)

    var text: String? {
        switch self {
        case .simple(let text): return text
        case .bulk(let bytes?): return String(decoding: bytes, as: UTF8.self)
        case .integer(let value): return String(value)
        default: return nil
        }
    }
}

struct RedisError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Parses RESP2 replies; a reply split across reads waits for the rest.
struct RESPDecoder: ByteToMessageDecoder {
    typealias InboundOut = RESPValue
    /// A bulk string or array larger than this is refused (a rate-limit reply is tiny).
    static let maxLength = 1 << 20

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        var copy = buffer
        guard let value = try Self.parse(&copy, depth: 0) else { return .needMoreData }
        buffer = copy
        context.fireChannelRead(self.wrapInboundOut(value))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try self.decode(context: context, buffer: &buffer)
    }

    static func parse(_ buffer: inout ByteBuffer, depth: Int) throws -> RESPValue? {
        guard depth < 8 else { throw RedisError("RESP reply nested too deeply") }
        guard let type = buffer.readInteger(as: UInt8.self), let line = try Self.line(&buffer) else { return nil }
        switch type {
        case UInt8(ascii: "+"): return .simple(line)
        case UInt8(ascii: "-"): return .error(line)
        case UInt8(ascii: ":"):
            guard let value = Int64(line) else { throw RedisError("bad RESP integer") }
            return .integer(value)
        case UInt8(ascii: "$"):
            guard let length = Int(line), length <= Self.maxLength else { throw RedisError("bad RESP bulk length") }
            if length < 0 { return .bulk(nil) }
            guard buffer.readableBytes >= length + 2, let bytes = buffer.readBytes(length: length) else { return nil }
            guard buffer.readInteger(as: UInt16.self) == 0x0D0A else { throw RedisError("RESP bulk string not ended by CRLF") }
            return .bulk(bytes)
        case UInt8(ascii: "*"):
            guard let count = Int(line), count <= 1024 else { throw RedisError("bad RESP array length") }
            if count < 0 { return .array(nil) }
            var elements: [RESPValue] = []
            for _ in 0..<count {
                guard let element = try Self.parse(&buffer, depth: depth + 1) else { return nil }
                elements.append(element)
            }
            return .array(elements)
        default:
            throw RedisError("unexpected RESP type byte \(type)")
        }
    }

    /// A status, error or length line is longer than this only from a server that is not Redis.
    static let maxLineBytes = 64 * 1024

    /// The text up to CRLF (consumed), or nil when the line is not complete yet.
    private static func line(_ buffer: inout ByteBuffer) throws -> String? {
        let view = buffer.readableBytesView
        guard let cr = view.firstIndex(of: UInt8(ascii: "\r")), view.index(after: cr) < view.endIndex else {
            // Waiting for more of a line is bounded: the decoder would buffer whatever the peer sends.
            if view.count > Self.maxLineBytes { throw RedisError("RESP line longer than \(Self.maxLineBytes) bytes") }
            return nil
        }
        guard view[view.index(after: cr)] == UInt8(ascii: "\n") else { throw RedisError("RESP line not ended by CRLF") }
        let length = cr - view.startIndex
        guard length <= Self.maxLineBytes else { throw RedisError("RESP line longer than \(Self.maxLineBytes) bytes") }
        let text = buffer.readString(length: length)
        buffer.moveReaderIndex(forwardBy: 2)
        return text
    }
}
