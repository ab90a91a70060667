import NIOCore
import NIOHTTP1
import SluiceCore

/// HTTP/1.1 message encoding for both ends of the proxy: the listener's answers (inside
/// `HTTP1ConnectionHandler`'s one pipeline step) and the requests of the upstream client
/// (`HTTP1RequestEncoder`), in place of NIO's `HTTPResponseEncoder`/`HTTPRequestEncoder`, whose
/// framing rules it keeps.
///
/// Why not NIO's encoders: they wrote every header as four separate buffer writes (name, `": "`,
/// value, CRLF: ~600 instructions a header under callgrind, ~4,600 per proxied answer and as
/// much per upstream request) and a whole message as up to three socket writes (head, body, an
/// empty write for the end). Here the start line and each field are one write of copied bytes,
/// and a message written whole — head, a body of at most `coalescedBodyBytes`, end, nothing
/// flushed in between, as `HTTPServer.write` and the upstream exchange do — leaves as one
/// buffer. Nothing reaches the socket before a flush either way, so holding the head back until
/// its body or the flush changes no timing.
///
/// Framing (RFC 9112 §6): an answer that may not carry a body (1xx, 204, 304, and any answer to
/// `HEAD` or `CONNECT`) drops `content-length`/`transfer-encoding` where the status forbids a
/// body and never carries body bytes; a message with `content-length` drops
/// `transfer-encoding`; any other HTTP/1.1 answer, and a POST, PUT or PATCH without a length,
/// is sent chunked (other requests only when they say so themselves; TRACE never has a body).
///
/// What may be sent (in place of NIO's `NIOHTTPResponseHeadersValidator` and
/// `NIOHTTPRequestHeadersValidator`, two pipeline steps that walked every field again): each
/// field is checked by `HeaderFieldCheck`'s rules while it is copied, the request line's method
/// is a token and its target holds only URI bytes, and a reason phrase holds no control byte. A
/// head or trailers that break them is not written at all: the write's promise fails with
/// `HTTP1MessageEncodingError.fieldNotSendable` and the error goes down the pipeline (as NIO's
/// validators did with a parser error, which the upstream client could not tell from a broken
/// answer). The parts that follow a refused answer are refused too (the connection's
/// framing is lost); for requests, until the next head.
struct HTTP1MessageEncoding {
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
    /// A head or trailers broke the rules of what may be sent: the parts that follow are refused.
    private var refusing = false

    /// A request head was read: its answer's framing depends on the method.
    mutating func requestRead(_ method: HTTPMethod) {
        self.requestMethods.append(method)
    }

    /// Encodes an answer's `part` and writes what is due to `context`'s next handler.
    mutating func write(answer part: HTTPServerResponsePart, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        if self.refusing {
            promise?.fail(HTTP1MessageEncodingError.fieldNotSendable)
            return
        }
        switch part {
        case .head(var head):
            let code = head.status.code
            let interim = code >= 100 && code < 200 && code != 101
            var answersConnect = false
            if !interim, let method = self.requestMethods.popFirst() {
                self.suppressBody = method == .HEAD || method == .CONNECT
                answersConnect = method == .CONNECT
            }
            let chunked = Self.frame(&head.headers, version: head.version, body: answersConnect || !head.status.mayHaveResponseBody ? .no : .yes)
            self.chunked = self.suppressBody ? false : chunked
            var buffer = self.takeHeld(context, extra: Self.headCapacity)
            let start = buffer.writerIndex
            guard Self.encode(head, into: &buffer) else {
                return self.refuse(buffer, from: start, context: context, promise: promise)
            }
            self.writeHead(buffer, context: context, promise: promise, hold: !interim)
        case .body(let data):
            if self.suppressBody {
                // No body for HEAD/CONNECT answers (RFC 9112 §6.3): refused, not sent.
                promise?.fail(HTTP1MessageEncodingError.bodyNotAllowed)
                return
            }
            self.writeBody(data, context: context, promise: promise)
        case .end(let trailers):
            self.suppressBody = false
            self.writeEnd(trailers, context: context, promise: promise)
        }
    }

    /// Encodes a request's `part` and writes what is due to `context`'s next handler.
    mutating func write(request part: HTTPClientRequestPart, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        switch part {
        case .head(var head):
            self.refusing = false
            let body: BodyExpectation
            switch head.method {
            case .TRACE: body = .no
            case .POST, .PUT, .PATCH: body = .yes
            default: body = .unlikely
            }
            self.chunked = Self.frame(&head.headers, version: head.version, body: body)
            var buffer = self.takeHeld(context, extra: Self.headCapacity)
            let start = buffer.writerIndex
            guard Self.encode(head, into: &buffer) else {
                return self.refuse(buffer, from: start, context: context, promise: promise)
            }
            self.writeHead(buffer, context: context, promise: promise, hold: true)
        case .body(let data):
            if self.refusing {
                promise?.fail(HTTP1MessageEncodingError.fieldNotSendable)
                return
            }
            self.writeBody(data, context: context, promise: promise)
        case .end(let trailers):
            if self.refusing {
                promise?.fail(HTTP1MessageEncodingError.fieldNotSendable)
                return
            }
            self.writeEnd(trailers, context: context, promise: promise)
        }
    }

    /// A head or trailers may not be sent: what was encoded of it since `start` is dropped (the
    /// held bytes before it stay), the write fails and the error goes down the pipeline.
    private mutating func refuse(_ buffer: ByteBuffer, from start: Int, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        var kept = buffer
        kept.moveWriterIndex(to: start)
        self.held = kept.readableBytes > 0 ? kept : nil
        self.refusing = true
        self.chunked = false
        promise?.fail(HTTP1MessageEncodingError.fieldNotSendable)
        context.fireErrorCaught(HTTP1MessageEncodingError.fieldNotSendable)
    }

    /// Whether a message may carry a body, by its method or status.
    enum BodyExpectation { case no, yes, unlikely }

    /// Makes the framing fields agree with the message (NIO's rules); true if it goes chunked.
    private static func frame(_ fields: inout HTTPHeaders, version: HTTPVersion, body: BodyExpectation) -> Bool {
        let http11 = version.major == 1 && version.minor >= 1
        switch body {
        case .no:
            if fields.contains(name: "content-length") { fields.remove(name: "content-length") }
            if fields.contains(name: "transfer-encoding") { fields.remove(name: "transfer-encoding") }
            return false
        case .yes, .unlikely:
            if fields.contains(name: "content-length") {
                if fields.contains(name: "transfer-encoding") { fields.remove(name: "transfer-encoding") }
                return false
            }
            guard http11 else { return false }
            if body == .yes {
                fields.replaceOrAdd(name: "transfer-encoding", value: "chunked")
                return true
            }
            return fields.first(name: "transfer-encoding") == "chunked"
        }
    }

    private mutating func writeHead(_ buffer: ByteBuffer, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?, hold: Bool) {
        if promise == nil && hold {
            self.held = buffer
        } else {
            context.write(NIOAny(IOData.byteBuffer(buffer)), promise: promise)
        }
    }

    private mutating func writeBody(_ data: IOData, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
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
            // The part's closing CRLF is the size line's own last two bytes (shared storage,
            // no buffer of its own).
            var crlf = line
            crlf.moveReaderIndex(to: crlf.writerIndex - 2)
            context.write(NIOAny(IOData.byteBuffer(line)), promise: nil)
            context.write(NIOAny(data), promise: nil)
            context.write(NIOAny(IOData.byteBuffer(crlf)), promise: promise)
        } else {
            self.flushHeld(context)
            context.write(NIOAny(data), promise: promise)
        }
    }

    private mutating func writeEnd(_ trailers: HTTPHeaders?, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        if self.chunked {
            var buffer = self.takeHeld(context, extra: trailers == nil ? 5 : Self.headCapacity)
            let start = buffer.writerIndex
            buffer.writeStaticString("0\r\n")
            if let trailers {
                guard Self.encode(trailers, into: &buffer) else {
                    return self.refuse(buffer, from: start, context: context, promise: promise)
                }
            } else {
                buffer.writeStaticString("\r\n")
            }
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

    /// Room asked for before a head is written: most heads fit, a larger one grows the buffer.
    static let headCapacity = 512
    /// The most bytes `HTTP/x.y` takes (two 64-bit integers written out).
    static let versionRoom = 5 + 20 + 1 + 20

    /// Writes the head, or returns false (having written part of it at most) if it may not be sent.
    static func encode(_ head: HTTPRequestHead, into buffer: inout ByteBuffer) -> Bool {
        // METHOD SP target SP HTTP/x.y CRLF, in one write.
        var method = head.method.rawValue
        var target = head.uri
        let sendable = method.withUTF8 { method in
            target.withUTF8 { target in
                guard HeaderFieldCheck.isSendableName(method), RequestTargetBytes.isSendable(target) else { return false }
                let length = method.count + target.count + Self.versionRoom + 4
                buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { out in
                    var at = Self.put(method, into: out, at: 0)
                    out[at] = UInt8(ascii: " ")
                    at = Self.put(target, into: out, at: at + 1)
                    out[at] = UInt8(ascii: " ")
                    at = Self.put(head.version, into: out, at: at + 1)
                    out[at] = UInt8(ascii: "\r")
                    out[at + 1] = UInt8(ascii: "\n")
                    return at + 2
                }
                return true
            }
        }
        return sendable && self.encode(head.headers, into: &buffer)
    }

    /// Writes the head, or returns false (having written part of it at most) if it may not be sent.
    static func encode(_ head: HTTPResponseHead, into buffer: inout ByteBuffer) -> Bool {
        // HTTP/x.y SP code SP reason CRLF, in one write.
        var reason = head.status.reasonPhrase
        let code = head.status.code
        let sendable = reason.withUTF8 { reason in
            guard HeaderFieldCheck.isSendableValue(reason) else { return false }
            let length = Self.versionRoom + 1 + 20 + 1 + reason.count + 2
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { out in
                var at = Self.put(head.version, into: out, at: 0)
                out[at] = UInt8(ascii: " ")
                at += 1
                if code >= 100 && code <= 999 {
                    out[at] = UInt8(ascii: "0") + UInt8(code / 100)
                    out[at + 1] = UInt8(ascii: "0") + UInt8(code / 10 % 10)
                    out[at + 2] = UInt8(ascii: "0") + UInt8(code % 10)
                    at += 3
                } else {
                    // Not a status code HTTP/1.1 can carry; written as it is (at most 20 digits).
                    var digits = String(code)
                    at = digits.withUTF8 { Self.put($0, into: out, at: at) }
                }
                out[at] = UInt8(ascii: " ")
                at = Self.put(reason, into: out, at: at + 1)
                out[at] = UInt8(ascii: "\r")
                out[at + 1] = UInt8(ascii: "\n")
                return at + 2
            }
            return true
        }
        return sendable && self.encode(head.headers, into: &buffer)
    }

    /// Each field as `name: value` CRLF, then the blank line, in one pass and as few writes as
    /// the buffer's room allows (one, for a head that fits the room asked for before it: a
    /// write per field cost ~100 instructions of buffer bookkeeping each; a first pass to size
    /// the write costs as much, as each field read from HTTPHeaders is a copy), each field
    /// checked as it is copied. False (having written part of them at most) if one may not be sent.
    static func encode(_ fields: HTTPHeaders, into buffer: inout ByteBuffer) -> Bool {
        var index = fields.startIndex
        var room = Self.fieldsRoom
        var outcome = FieldsOutcome.needsRoom
        while outcome == .needsRoom {
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: room) { out in
                var at = 0
                while index < fields.endIndex {
                    var (name, value) = fields[index]
                    let end: Int = name.withUTF8 { name in
                        value.withUTF8 { value in
                            guard HeaderFieldCheck.isSendableName(name), HeaderFieldCheck.isSendableValue(value) else { return -1 }
                            let length = name.count + value.count + 4
                            guard at + length <= out.count else {
                                room = length
                                return -2
                            }
                            var end = Self.put(name, into: out, at: at)
                            out[end] = UInt8(ascii: ":")
                            out[end + 1] = UInt8(ascii: " ")
                            end = Self.put(value, into: out, at: end + 2)
                            out[end] = UInt8(ascii: "\r")
                            out[end + 1] = UInt8(ascii: "\n")
                            return end + 2
                        }
                    }
                    switch end {
                    case -1:
                        outcome = .refused
                        return at
                    case -2:
                        return at
                    default:
                        at = end
                        index = fields.index(after: index)
                    }
                }
                guard at + 2 <= out.count else {
                    room = 2
                    return at
                }
                out[at] = UInt8(ascii: "\r")
                out[at + 1] = UInt8(ascii: "\n")
                outcome = .written
                return at + 2
            }
        }
        return outcome == .written
    }

    /// Room asked for before each write of fields (a field that needs more asks for its own).
    static let fieldsRoom = 256

    enum FieldsOutcome { case needsRoom, written, refused }

    @inline(__always)
    private static func put(_ bytes: UnsafeBufferPointer<UInt8>, into out: UnsafeMutableRawBufferPointer, at: Int) -> Int {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return at }
        (out.baseAddress! + at).copyMemory(from: source, byteCount: bytes.count)
        return at + bytes.count
    }

    /// `HTTP/x.y`: 8 bytes for one-digit versions, at most `versionRoom` for any other.
    @inline(__always)
    private static func put(_ version: HTTPVersion, into out: UnsafeMutableRawBufferPointer, at: Int) -> Int {
        if version.major >= 0 && version.major <= 9 && version.minor >= 0 && version.minor <= 9 {
            out[at] = UInt8(ascii: "H")
            out[at + 1] = UInt8(ascii: "T")
            out[at + 2] = UInt8(ascii: "T")
            out[at + 3] = UInt8(ascii: "P")
            out[at + 4] = UInt8(ascii: "/")
            out[at + 5] = UInt8(ascii: "0") + UInt8(version.major)
            out[at + 6] = UInt8(ascii: ".")
            out[at + 7] = UInt8(ascii: "0") + UInt8(version.minor)
            return at + 8
        }
        var text = "HTTP/\(version.major).\(version.minor)"
        return text.withUTF8 { Self.put($0, into: out, at: at) }
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

/// A message part the encoding refuses (the promise of its write fails with it).
enum HTTP1MessageEncodingError: Error {
    /// Body bytes for an answer to HEAD or CONNECT, which has none.
    case bodyNotAllowed
    /// A head or trailers with a field, method, target or reason phrase HTTP/1.1 may not carry
    /// (and every part after it, until the next request head).
    case fieldNotSendable
}

/// The request encoder of Sluice's upstream connections, the pooled client's and the upgrade
/// tunnel's (in place of NIO's `HTTPRequestEncoder`, at its place in the pipeline: below the
/// response decoder, which watches the requests go by to frame the answers to HEAD).
final class HTTP1RequestEncoder: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = IOData

    private var encoding = HTTP1MessageEncoding()

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        self.encoding.write(request: self.unwrapOutboundIn(data), context: context, promise: promise)
    }

    func flush(context: ChannelHandlerContext) {
        self.encoding.flushHeld(context)
        context.flush()
    }
}
