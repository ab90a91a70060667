import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import SluiceHTTP

/// Sluice's own HTTP/1.1 encoding: the listener's answers (HTTP1ConnectionHandler) and the
/// upstream client's requests (HTTP1RequestEncoder): the exact bytes for each framing rule, and
/// a whole message leaving as one write.
@Suite struct HTTP1MessageEncodingTests {
    static func channel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(HTTP1ConnectionHandler(idleTimeout: .hours(1), maxHeaderBytes: 16384))
        return channel
    }

    static func request(_ channel: EmbeddedChannel, _ method: HTTPMethod) throws {
        try channel.writeInbound(HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: method, uri: "/x")))
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        while try channel.readInbound(as: HTTPServerRequestPart.self) != nil {}
    }

    /// Every write that reached the socket side, as text.
    static func written(_ channel: EmbeddedChannel) throws -> [String] {
        var writes: [String] = []
        while let data = try channel.readOutbound(as: IOData.self) {
            guard case .byteBuffer(let buffer) = data else { Issue.record("a file region"); continue }
            writes.append(String(buffer: buffer))
        }
        return writes
    }

    static func head(_ status: HTTPResponseStatus, _ headers: HTTPHeaders = [:]) -> HTTPServerResponsePart {
        .head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))
    }

    static func body(_ text: String) -> HTTPServerResponsePart {
        .body(.byteBuffer(ByteBuffer(string: text)))
    }

    /// An answer written as `HTTPServer.write` writes a whole one: head, body, end, one flush.
    static func answerWhole(_ channel: EmbeddedChannel, _ head: HTTPServerResponsePart, _ body: String) throws {
        channel.write(head, promise: nil)
        channel.write(Self.body(body), promise: nil)
        try channel.writeAndFlush(HTTPServerResponsePart.end(nil)).wait()
    }

    @Test func aWholeAnswerLeavesAsOneWrite() throws {
        let channel = try Self.channel()
        try Self.request(channel, .GET)
        try Self.answerWhole(channel, Self.head(.ok, ["content-length": "5", "x-a": "b"]), "hello")
        #expect(try Self.written(channel) == ["HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: b\r\n\r\nhello"])
        #expect(try channel.finish().isClean)
    }

    @Test func anAnswerToHEADCarriesItsHeadOnly() throws {
        let channel = try Self.channel()
        try Self.request(channel, .HEAD)
        channel.write(Self.head(.ok, ["content-length": "5"]), promise: nil)
        let bodyWrite = channel.write(Self.body("hello"))
        try channel.writeAndFlush(HTTPServerResponsePart.end(nil)).wait()
        #expect(throws: HTTP1MessageEncodingError.self) { try bodyWrite.wait() }
        #expect(try Self.written(channel) == ["HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"])
    }

    @Test func anAnswerWithoutALengthIsChunkedWithItsTrailers() throws {
        let channel = try Self.channel()
        try Self.request(channel, .POST)
        try channel.writeAndFlush(Self.head(.ok, ["content-type": "text/plain"])).wait()
        try channel.writeAndFlush(Self.body("abc")).wait()
        let large = String(repeating: "z", count: HTTP1MessageEncoding.coalescedBodyBytes + 1)
        try channel.writeAndFlush(Self.body(large)).wait()
        try channel.writeAndFlush(HTTPServerResponsePart.end(["grpc-status": "0"])).wait()
        let writes = try Self.written(channel)
        #expect(
            writes.joined()
                == "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n4001\r\n\(large)\r\n0\r\ngrpc-status: 0\r\n\r\n"
        )
        // The large part is not copied: its size line, the part itself and its CRLF.
        #expect(writes.contains(large))
    }

    @Test func statusesWithoutABodyLoseTheirFraming() throws {
        let channel = try Self.channel()
        try Self.request(channel, .GET)
        try Self.request(channel, .GET)
        channel.write(Self.head(.noContent, ["content-length": "0", "transfer-encoding": "chunked", "x": "1"]), promise: nil)
        try channel.writeAndFlush(HTTPServerResponsePart.end(nil)).wait()
        channel.write(Self.head(.notModified, ["etag": "\"v1\""]), promise: nil)
        try channel.writeAndFlush(HTTPServerResponsePart.end(nil)).wait()
        #expect(try Self.written(channel).joined() == "HTTP/1.1 204 No Content\r\nx: 1\r\n\r\nHTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\n\r\n")
    }

    @Test func anInterimAnswerGoesOutAtOnceAndLeavesTheMethodForTheFinalOne() throws {
        let channel = try Self.channel()
        try Self.request(channel, .HEAD)
        try Self.request(channel, .GET)
        try channel.writeAndFlush(Self.head(.continue)).wait()
        #expect(try Self.written(channel) == ["HTTP/1.1 100 Continue\r\n\r\n"])
        // The HEAD's answer: a length and no body.
        try Self.answerWhole(channel, Self.head(.ok, ["content-length": "2"]), "no")
        // The GET's answer, pipelined behind it, keeps its body.
        try Self.answerWhole(channel, Self.head(.custom(code: 299, reasonPhrase: "Fine"), ["content-length": "2"]), "ok")
        #expect(
            try Self.written(channel).joined()
                == "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nHTTP/1.1 299 Fine\r\ncontent-length: 2\r\n\r\nok")
    }

    @Test func aLengthWinsOverTransferEncoding() throws {
        let channel = try Self.channel()
        try Self.request(channel, .GET)
        try Self.answerWhole(channel, Self.head(.ok, ["transfer-encoding": "chunked", "content-length": "1"]), "a")
        #expect(try Self.written(channel) == ["HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na"])
    }

    // MARK: Requests

    static func requestChannel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(HTTP1RequestEncoder())
        return channel
    }

    static func requestHead(_ method: HTTPMethod, _ uri: String, _ headers: HTTPHeaders) -> HTTPClientRequestPart {
        .head(HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: headers))
    }

    @Test func aWholeRequestLeavesAsOneWrite() throws {
        let channel = try Self.requestChannel()
        channel.write(Self.requestHead(.GET, "/item?a=1", ["host": "up", "x-forwarded-for": "127.0.0.1"]), promise: nil)
        try channel.writeAndFlush(HTTPClientRequestPart.end(nil)).wait()
        channel.write(Self.requestHead(.POST, "/in", ["content-length": "3"]), promise: nil)
        channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(string: "abc"))), promise: nil)
        channel.write(HTTPClientRequestPart.end(nil), promise: nil)
        channel.flush()
        #expect(
            try Self.written(channel) == [
                "GET /item?a=1 HTTP/1.1\r\nhost: up\r\nx-forwarded-for: 127.0.0.1\r\n\r\n",
                "POST /in HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc",
            ])
        #expect(try channel.finish().isClean)
    }

    /// Fields past the room a head asks for (HTTP1MessageEncoding.fieldsRoom), and one field
    /// larger than that room by itself: the same bytes as a head that fits, in order.
    @Test func aHeadLargerThanTheRoomAskedForIsWrittenWhole() throws {
        let long = String(repeating: "v", count: 3 * HTTP1MessageEncoding.fieldsRoom)
        var fields: [(String, String)] = [("host", "up")]
        for index in 0..<40 { fields.append(("x-field-\(index)", "value-\(index)")) }
        fields.append(("x-long", long))
        fields.append(("x-last", "1"))
        let channel = try Self.requestChannel()
        channel.write(Self.requestHead(.GET, "/big", HTTPHeaders(fields)), promise: nil)
        try channel.writeAndFlush(HTTPClientRequestPart.end(nil)).wait()
        let expected = "GET /big HTTP/1.1\r\n" + fields.map { "\($0.0): \($0.1)\r\n" }.joined() + "\r\n"
        #expect(try Self.written(channel) == [expected])
        #expect(try channel.finish().isClean)
    }

    @Test func requestsAreFramedByTheirMethod() throws {
        let channel = try Self.requestChannel()
        // A POST without a length goes chunked, with its trailers.
        try channel.writeAndFlush(Self.requestHead(.POST, "/s", ["te": "trailers"])).wait()
        try channel.writeAndFlush(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(string: "0123456789abcdef!")))).wait()
        try channel.writeAndFlush(HTTPClientRequestPart.end(["x-sum": "1"])).wait()
        // A GET that says chunked keeps it; a TRACE has no body framing at all.
        channel.write(Self.requestHead(.GET, "/g", ["transfer-encoding": "chunked"]), promise: nil)
        try channel.writeAndFlush(HTTPClientRequestPart.end(nil)).wait()
        channel.write(Self.requestHead(.TRACE, "/t", ["content-length": "4"]), promise: nil)
        try channel.writeAndFlush(HTTPClientRequestPart.end(nil)).wait()
        channel.write(Self.requestHead(.DELETE, "/d", [:]), promise: nil)
        try channel.writeAndFlush(HTTPClientRequestPart.end(nil)).wait()
        #expect(
            try Self.written(channel).joined()
                == "POST /s HTTP/1.1\r\nte: trailers\r\ntransfer-encoding: chunked\r\n\r\n11\r\n0123456789abcdef!\r\n0\r\nx-sum: 1\r\n\r\n"
                + "GET /g HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
                + "TRACE /t HTTP/1.1\r\n\r\n"
                + "DELETE /d HTTP/1.1\r\n\r\n")
    }

    // MARK: What may not be sent

    /// Records the errors that go down the pipeline past the encoder.
    final class ErrorRecorder: ChannelInboundHandler {
        typealias InboundIn = Any
        var errors: [any Error] = []
        func errorCaught(context: ChannelHandlerContext, error: any Error) { self.errors.append(error) }
    }

    static func expectRefused(_ write: EventLoopFuture<Void>) {
        #expect(throws: HTTP1MessageEncodingError.fieldNotSendable) { try write.wait() }
    }

    @Test(arguments: [
        HTTPResponseHead(version: .http1_1, status: .ok, headers: ["x-a": "b\r\nset-cookie: admin=1"]),
        HTTPResponseHead(version: .http1_1, status: .ok, headers: ["x-a": "nul\u{0}"]),
        HTTPResponseHead(version: .http1_1, status: .ok, headers: ["bad name": "v"]),
        HTTPResponseHead(version: .http1_1, status: .ok, headers: ["": "v"]),
        HTTPResponseHead(version: .http1_1, status: .custom(code: 200, reasonPhrase: "OK\r\nx-b: c")),
    ])
    func anAnswerThatMayNotBeSentIsNotWrittenAndNothingFollowsIt(_ refused: HTTPResponseHead) throws {
        let channel = try Self.channel()
        let recorder = ErrorRecorder()
        try channel.pipeline.syncOperations.addHandler(recorder)
        try Self.request(channel, .GET)
        try Self.request(channel, .GET)
        try Self.request(channel, .GET)
        // The first answer is held whole (not flushed yet) when the second one is refused.
        channel.write(Self.head(.ok, ["content-length": "2", "x-tab": "a\tb"]), promise: nil)
        channel.write(Self.body("ok"), promise: nil)
        channel.write(HTTPServerResponsePart.end(nil), promise: nil)
        Self.expectRefused(channel.write(HTTPServerResponsePart.head(refused)))
        Self.expectRefused(channel.write(Self.body("no")))
        Self.expectRefused(channel.write(HTTPServerResponsePart.end(nil)))
        // The framing is lost for what follows: the next answer is refused too.
        Self.expectRefused(channel.writeAndFlush(Self.head(.ok, ["content-length": "0"])))
        #expect(try Self.written(channel) == ["HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-tab: a\tb\r\n\r\nok"])
        #expect(recorder.errors.count == 1)
        #expect(recorder.errors.first as? HTTP1MessageEncodingError == .fieldNotSendable)
    }

    @Test func answerTrailersThatMayNotBeSentEndNothing() throws {
        let channel = try Self.channel()
        let recorder = ErrorRecorder()
        try channel.pipeline.syncOperations.addHandler(recorder)
        try Self.request(channel, .POST)
        try channel.writeAndFlush(Self.head(.ok)).wait()
        try channel.writeAndFlush(Self.body("abc")).wait()
        Self.expectRefused(channel.writeAndFlush(HTTPServerResponsePart.end(["grpc-message": "a\nb"])))
        // No last chunk: the client sees an unfinished answer, not a forged one.
        #expect(try Self.written(channel).joined() == "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
        #expect(recorder.errors.count == 1)
    }

    @Test(arguments: [
        HTTPRequestHead(version: .http1_1, method: .GET, uri: "/a b"),
        HTTPRequestHead(version: .http1_1, method: .GET, uri: "/a\r\nx: y"),
        HTTPRequestHead(version: .http1_1, method: .GET, uri: "/caf\u{e9}"),
        HTTPRequestHead(version: .http1_1, method: .GET, uri: ""),
        HTTPRequestHead(version: .http1_1, method: .RAW(value: "GE T"), uri: "/"),
        HTTPRequestHead(version: .http1_1, method: .GET, uri: "/", headers: ["host": "up\r\n\r\nGET /admin HTTP/1.1"]),
        HTTPRequestHead(version: .http1_1, method: .GET, uri: "/", headers: ["x:y": "v"]),
    ])
    func aRequestThatMayNotBeSentIsNotWrittenUntilTheNextHead(_ refused: HTTPRequestHead) throws {
        let channel = try Self.requestChannel()
        let recorder = ErrorRecorder()
        try channel.pipeline.syncOperations.addHandler(recorder)
        Self.expectRefused(channel.write(HTTPClientRequestPart.head(refused)))
        Self.expectRefused(channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(string: "x")))))
        Self.expectRefused(channel.writeAndFlush(HTTPClientRequestPart.end(nil)))
        #expect(try Self.written(channel).isEmpty)
        #expect(recorder.errors.first as? HTTP1MessageEncodingError == .fieldNotSendable)
        // A request's refusal ends with it: the next one goes out.
        channel.write(Self.requestHead(.GET, "/ok?a=%20&b=[1]", ["host": "up"]), promise: nil)
        try channel.writeAndFlush(HTTPClientRequestPart.end(nil)).wait()
        #expect(try Self.written(channel) == ["GET /ok?a=%20&b=[1] HTTP/1.1\r\nhost: up\r\n\r\n"])
    }

    @Test func requestTrailersThatMayNotBeSentAreNotWritten() throws {
        let channel = try Self.requestChannel()
        try channel.writeAndFlush(Self.requestHead(.POST, "/s", [:])).wait()
        try channel.writeAndFlush(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(string: "ab")))).wait()
        Self.expectRefused(channel.writeAndFlush(HTTPClientRequestPart.end(["x-sum\r\n": "1"])))
        #expect(try Self.written(channel).joined() == "POST /s HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n")
    }
}

extension HTTP1MessageEncodingTests {
    /// A request the encoder refuses is the request's fault: the proxy answers 400
    /// invalid_request and the endpoint's health is not charged (a broken answer still is).
    @Test func aRefusedRequestIsTheRequestsFaultNotTheEndpoints() {
        #expect(ProxyHandler.classify(HTTP1UpstreamError.unsendableRequest) == .request)
        #expect(ProxyHandler.classify(HTTP1UpstreamError.invalidAnswer) == .reset)
    }
}
