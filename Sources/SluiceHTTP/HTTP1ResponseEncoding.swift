import NIOCore
import NIOHTTP1

/// The listener's HTTP/1.1 response encoding, run inside `HTTP1ConnectionHandler`'s one
/// pipeline step (in place of NIO's `HTTPResponseEncoder`, whose framing rules it keeps).
///
/// Why not NIO's encoder: it wrote every header as four separate buffer writes (name, `": "`,
/// value, CRLF: ~600 instructions a header under callgrind, ~4,600 per proxied answer) and a
/// whole response as three socket writes (head, body, an empty write for the end). Here a head
/// is sized first and copied in one pass, and a response written whole — head, a body of at
/// most `coalescedBodyBytes`, end, nothing flushed in between, as `HTTPServer.write` does —
/// leaves as one buffer. Nothing reaches the socket before a flush either way, so holding the
/// head back until its body or the flush changes no timing.
///
/// Framing (RFC 9112 §6): an answer that may not carry a body (1xx, 204, 304, and any answer to
/// `HEAD` or `CONNECT`) drops `content-length`/`transfer-encoding` where the status forbids a
/// body and never carries body bytes; an answer with `content-length` drops `transfer-encoding`;
/// any other HTTP/1.1 answer is sent chunked.
struct HTTP1ResponseEncoding {
    /// Body parts up to this size are copied behind their head (or chunk line) instead of
    /// being written as a buffer of their own.
    static let coalescedBodyBytes = 16 * 1024

    /// The methods of requests read whose final answer has not been written yet, oldest first.
    private var requestMethods = CircularBuffer<HTTPMethod>(initialCapacity: 2)
    /// The answer being written goes to a HEAD or CONNECT request: no body bytes.
    private var suppressBody = false
    private var chunked = false
    /// Bytes encoded and not yet handed to the channel (a head waiting for its body and end).
    private var held: ByteBuffer?

    /// A request head was read: its answer's framing depends on the method.
    mutating func requestRead(_ method: HTTPMethod) {
        self.requestMethods.append(method)
    }

    /// Encodes `part` and writes what is due to `context`'s next handler.
    mutating func write(_ part: HTTPServerResponsePart, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        switch part {
        case .head(var head):
            let code = head.status.code
            let interim = code >= 100 && code < 200 && code != 101
            var answersConnect = false
            if !interim, let method = self.requestMethods.popFirst() {
                self.suppressBody = method == .HEAD || method == .CONNECT
                answersConnect = method == .CONNECT
            }
            var chunked = false
            if answersConnect || !head.status.mayHaveResponseBody {
                if head.headers.contains(name: "content-length") { head.headers.remove(name: "content-length") }
                if head.headers.contains(name: "transfer-encoding") { head.headers.remove(name: "transfer-encoding") }
            } else if head.headers.contains(name: "content-length") {
                if head.headers.contains(name: "transfer-encoding") { head.headers.remove(name: "transfer-encoding") }
            } else if head.version.major == 1 && head.version.minor >= 1 {
                head.headers.replaceOrAdd(name: "transfer-encoding", value: "chunked")
                chunked = true
            }
            self.chunked = self.suppressBody ? false : chunked
            var buffer = self.takeHeld(context, extra: Self.encodedLength(head))
            Self.encode(head, into: &buffer)
            if promise == nil && !interim {
                self.held = buffer
            } else {
                context.write(NIOAny(IOData.byteBuffer(buffer)), promise: promise)
            }

        case .body(let data):
            if self.suppressBody {
                // No body for HEAD/CONNECT answers (RFC 9112 §6.3): refused, not sent.
                promise?.fail(HTTP1ResponseEncodingError.bodyNotAllowed)
                return
            }
            guard data.readableBytes > 0 else {
                // Written all the same, so that its promise completes in order.
                self.flushHeld(context)
                context.write(NIOAny(data), promise: promise)
                return
            }
            if case .byteBuffer(let bytes) = data, promise == nil, bytes.readableBytes <= Self.coalescedBodyBytes {
                var buffer = self.takeHeld(context, extra: bytes.readableBytes + (self.chunked ? 20 : 0))
                if self.chunked { Self.writeChunkLine(bytes.readableBytes, into: &buffer) }
                buffer.writeImmutableBuffer(bytes)
                if self.chunked { buffer.writeStaticString("\r\n") }
                self.held = buffer
                return
            }
            if self.chunked {
                var line = self.takeHeld(context, extra: 20)
                Self.writeChunkLine(data.readableBytes, into: &line)
                context.write(NIOAny(IOData.byteBuffer(line)), promise: nil)
                context.write(NIOAny(data), promise: nil)
                context.write(NIOAny(IOData.byteBuffer(context.channel.allocator.buffer(staticString: "\r\n"))), promise: promise)
            } else {
                self.flushHeld(context)
                context.write(NIOAny(data), promise: promise)
            }

        case .end(let trailers):
            self.suppressBody = false
            if self.chunked {
                var buffer = self.takeHeld(context, extra: 5 + (trailers.map(Self.encodedLength) ?? 0))
                buffer.writeStaticString("0\r\n")
                if let trailers { Self.encode(trailers, into: &buffer) } else { buffer.writeStaticString("\r\n") }
                context.write(NIOAny(IOData.byteBuffer(buffer)), promise: promise)
            } else if let held = self.held {
                self.held = nil
                context.write(NIOAny(IOData.byteBuffer(held)), promise: promise)
            } else if let promise {
                // Nothing to write; an empty write keeps the promise in order with the others.
                context.write(NIOAny(IOData.byteBuffer(ByteBuffer())), promise: promise)
            }
            self.chunked = false
        }
    }

    /// Hands what is held to the channel (before a flush, or before a write that cannot join it).
    mutating func flushHeld(_ context: ChannelHandlerContext) {
        guard let held = self.held else { return }
        self.held = nil
        context.write(NIOAny(IOData.byteBuffer(held)), promise: nil)
    }

    /// The held bytes to append to (with room for `extra` more), or a new buffer.
    private mutating func takeHeld(_ context: ChannelHandlerContext, extra: Int) -> ByteBuffer {
        guard var buffer = self.held else { return context.channel.allocator.buffer(capacity: extra) }
        self.held = nil
        buffer.reserveCapacity(minimumWritableBytes: extra)
        return buffer
    }

    // MARK: - Serialization

    /// The bytes `encode(_ head:)` writes.
    static func encodedLength(_ head: HTTPResponseHead) -> Int {
        // "HTTP/1.1 200 " + reason + CRLF, then the fields and the blank line.
        13 + head.status.reasonPhrase.utf8.count + 2 + self.encodedLength(head.headers)
    }

    /// The bytes `encode(_ fields:)` writes: each `name: value` CRLF, then CRLF.
    static func encodedLength(_ fields: HTTPHeaders) -> Int {
        var length = 2
        for (name, value) in fields { length += name.utf8.count + value.utf8.count + 4 }
        return length
    }

    static func encode(_ head: HTTPResponseHead, into buffer: inout ByteBuffer) {
        let version = head.version
        if version.major >= 0 && version.major <= 9 && version.minor >= 0 && version.minor <= 9 {
            buffer.writeStaticString("HTTP/")
            buffer.writeInteger(UInt8(ascii: "0") + UInt8(version.major))
            buffer.writeInteger(UInt8(ascii: "."))
            buffer.writeInteger(UInt8(ascii: "0") + UInt8(version.minor))
        } else {
            buffer.writeString("HTTP/\(version.major).\(version.minor)")
        }
        let code = head.status.code
        if code >= 100 && code <= 999 {
            buffer.writeMultipleIntegers(
                UInt8(ascii: " "), UInt8(ascii: "0") + UInt8(code / 100), UInt8(ascii: "0") + UInt8(code / 10 % 10),
                UInt8(ascii: "0") + UInt8(code % 10), UInt8(ascii: " "))
        } else {
            buffer.writeString(" \(code) ")
        }
        Self.copy(head.status.reasonPhrase, into: &buffer)
        buffer.writeStaticString("\r\n")
        self.encode(head.headers, into: &buffer)
    }

    /// Each field as `name: value` CRLF, then the blank line: one size check, one pass of copies.
    static func encode(_ fields: HTTPHeaders, into buffer: inout ByteBuffer) {
        let length = self.encodedLength(fields)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { out in
            var at = 0
            for (name, value) in fields {
                at = Self.copy(name, to: out, at: at)
                out[at] = UInt8(ascii: ":")
                out[at + 1] = UInt8(ascii: " ")
                at = Self.copy(value, to: out, at: at + 2)
                out[at] = UInt8(ascii: "\r")
                out[at + 1] = UInt8(ascii: "\n")
                at += 2
            }
            out[at] = UInt8(ascii: "\r")
            out[at + 1] = UInt8(ascii: "\n")
            return at + 2
        }
    }

    private static func copy(_ string: String, to out: UnsafeMutableRawBufferPointer, at: Int) -> Int {
        var string = string
        return string.withUTF8 { utf8 in
            guard let source = utf8.baseAddress, utf8.count > 0 else { return at }
            (out.baseAddress! + at).copyMemory(from: source, byteCount: utf8.count)
            return at + utf8.count
        }
    }

    private static func copy(_ string: String, into buffer: inout ByteBuffer) {
        var string = string
        string.withUTF8 { utf8 in _ = buffer.writeBytes(UnsafeRawBufferPointer(utf8)) }
    }

    /// A chunk's size line: the length in hex, CRLF.
    private static func writeChunkLine(_ length: Int, into buffer: inout ByteBuffer) {
        var digits = 1
        while length >> (4 * digits) != 0 { digits += 1 }
        for shift in stride(from: 4 * (digits - 1), through: 0, by: -4) {
            let nibble = UInt8((length >> shift) & 0xF)
            buffer.writeInteger(nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10)
        }
        buffer.writeStaticString("\r\n")
    }
}

/// A response part the encoding refuses (the promise of its write fails with it).
enum HTTP1ResponseEncodingError: Error {
    /// Body bytes for an answer to HEAD or CONNECT, which has none.
    case bodyNotAllowed
}
