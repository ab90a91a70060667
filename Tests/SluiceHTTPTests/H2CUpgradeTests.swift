import NIOCore
import NIOEmbedded
import NIOHPACK
import Testing

@testable import SluiceHTTP

/// `Upgrade: h2c`: which heads are upgraded, how stream 1 is encoded, and where it is spliced.
@Suite struct H2CUpgradeTests {
    /// What curl 7.88 sends for `curl --http2 http://…` (a GET).
    static let curlHead = """
        GET /v1/things?a=1 HTTP/1.1\r
        Host: localhost:8080\r
        User-Agent: curl/7.88.1\r
        Accept: */*\r
        Connection: Upgrade, HTTP2-Settings\r
        Upgrade: h2c\r
        HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r
        \r

        """

    static func parse(_ head: String, maxHeaderListSize: Int = 32 * 1024) -> H2CUpgradeRequest? {
        H2CUpgradeRequest(head: Array(head.utf8), maxHeaderListSize: maxHeaderListSize)
    }

    @Test func curlsUpgradeRequestBecomesStreamOneWithoutHopByHopFields() throws {
        let request = try #require(Self.parse(Self.curlHead))
        #expect(request.method == "GET")
        #expect(request.target == "/v1/things?a=1")
        #expect(request.authority == "localhost:8080")
        #expect(request.fields.map(\.name) == ["user-agent", "accept"])
    }

    @Test func nghttpsOptionsAsteriskUpgradeIsAccepted() {
        let head = Self.curlHead.replacingOccurrences(of: "GET /v1/things?a=1", with: "OPTIONS *")
        #expect(Self.parse(head)?.target == "*")
        // Only OPTIONS may use the asterisk form.
        #expect(Self.parse(Self.curlHead.replacingOccurrences(of: "/v1/things?a=1", with: "*")) == nil)
    }

    @Test(arguments: [
        ("a body by length", "Upgrade: h2c\r\n", "Upgrade: h2c\r\nContent-Length: 9\r\n"),
        ("a chunked body", "Upgrade: h2c\r\n", "Upgrade: h2c\r\nTransfer-Encoding: chunked\r\n"),
        ("Expect", "Upgrade: h2c\r\n", "Upgrade: h2c\r\nExpect: 100-continue\r\n"),
        ("HTTP/1.0", "HTTP/1.1\r\nHost", "HTTP/1.0\r\nHost"),
        ("another protocol", "Upgrade: h2c", "Upgrade: websocket"),
        ("no HTTP2-Settings in Connection", "Connection: Upgrade, HTTP2-Settings", "Connection: Upgrade"),
        ("no Upgrade in Connection", "Connection: Upgrade, HTTP2-Settings", "Connection: HTTP2-Settings"),
        ("two HTTP2-Settings", "Upgrade: h2c\r\n", "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n"),
        ("settings not in whole entries", "AAMAAABkAAQCAAAAAAIAAAAA", "AAMAAABkAAQ"),
        ("settings outside base64url", "AAMAAABkAAQCAAAAAAIAAAAA", "AAMAAABk+AQCAAAAAAIAAAA/"),
        ("no Host", "Host: localhost:8080\r\n", ""),
        ("two Hosts", "Host: localhost:8080\r\n", "Host: a\r\nHost: b\r\n"),
        ("CONNECT", "GET /v1/things?a=1", "CONNECT /x"),
        ("an obs-folded field", "Accept: */*\r\n", "Accept: */*\r\n  continued\r\n"),
        ("a field without a colon", "Accept: */*\r\n", "Accept */*\r\n"),
        ("a bare LF", "Accept: */*\r\n", "Accept: */*\nX: y\r\n"),
        ("a non-ASCII byte", "curl/7.88.1", "curl/7.88.1 é"),
        ("a space in the field name", "Accept: */*", "Accept : */*"),
    ])
    func headsThatAreNotUnambiguousUpgradesStayHTTP1(_ case: (String, String, String)) {
        let (what, from, to) = `case`
        let head = Self.curlHead.replacingOccurrences(of: from, with: to)
        #expect(head != Self.curlHead, "the case changes the head: \(what)")
        #expect(Self.parse(head) == nil, "not upgraded: \(what)")
    }

    @Test func contentLengthZeroIsNoBody() {
        #expect(Self.parse(Self.curlHead.replacingOccurrences(of: "Upgrade: h2c\r\n", with: "Upgrade: h2c\r\nContent-Length: 0\r\n")) != nil)
    }

    @Test func fieldsNamedByConnectionAndTEOtherThanTrailersAreDropped() throws {
        let head = Self.curlHead
            .replacingOccurrences(of: "Connection: Upgrade, HTTP2-Settings", with: "Connection: Upgrade, HTTP2-Settings, X-Hop")
            .replacingOccurrences(of: "Accept: */*\r\n", with: "Accept: */*\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nTE: gzip\r\nX-Kept:  spaced value \t\r\n")
        let request = try #require(Self.parse(head))
        #expect(request.fields.map(\.name) == ["user-agent", "accept", "x-kept"])
        #expect(request.fields.last?.value == "spaced value")
        let trailers = try #require(Self.parse(Self.curlHead.replacingOccurrences(of: "Accept: */*\r\n", with: "Accept: */*\r\nTE: trailers\r\n")))
        #expect(trailers.fields.contains { $0.name == "te" && $0.value == "trailers" })
    }

    @Test func aHeadOverTheHTTP2HeaderListLimitStaysHTTP1() {
        // 4 pseudo-headers and 2 fields, each counted with 32 bytes of overhead (RFC 7541 §4.1).
        #expect(Self.parse(Self.curlHead, maxHeaderListSize: 100) == nil)
        #expect(Self.parse(Self.curlHead, maxHeaderListSize: 4096) != nil)
    }

    @Test(arguments: [
        ("GET / HTTP/1.1\r\nHost: x\r\n\r\nbody", H2CUpgradeRequest.HeadScan.complete(27)),
        ("GET / HTTP/1.1\r\nHost: x\r\n\r", .incomplete),
        ("GET / HTTP/1.1\r\nHost: x\r\n", .incomplete),
        ("GET / HTTP/1.1\r\nHost: x\n\n", .notUpgrade),  // bare LF: HTTP/1.1's parser answers 400 at once
        ("GET / HTTP/1.1\r\r\n\r\n", .notUpgrade),
        ("GET / HTTP/1.1\rHost: x", .notUpgrade),
        ("GET / HTTP/1.1\r\nX: \u{1}", .notUpgrade),
        ("GET / HTTP/1.1\r\nX: é", .notUpgrade),
        ("\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", .notUpgrade),
    ])
    func scanningTheHeadDecidesAsSoonAsItCan(_ case: (String, H2CUpgradeRequest.HeadScan)) {
        #expect(H2CUpgradeRequest.scanHead(ByteBuffer(string: `case`.0).readableBytesView) == `case`.1)
    }

    /// The frames decode (as NIO's HTTP/2 server decodes them) to the request, and leave the
    /// decoder's dynamic table empty for the client's own header blocks.
    @Test func streamOneDecodesWithAnEmptyDynamicTable() throws {
        let request = try #require(Self.parse(Self.curlHead))
        var frames = request.headerFrames()
        let (type, flags, stream, payload) = try #require(Self.readFrame(&frames))
        #expect(type == 0x1 && flags == 0x5 && stream == 1, "one HEADERS frame with END_STREAM and END_HEADERS")
        #expect(frames.readableBytes == 0)
        var decoder = HPACKDecoder(allocator: ByteBufferAllocator())
        var block = payload
        let headers = try decoder.decodeHeaders(from: &block)
        #expect(headers.map(\.name) == [":method", ":scheme", ":authority", ":path", "user-agent", "accept"])
        #expect(headers[":path"] == ["/v1/things?a=1"])
        #expect(headers[":authority"] == ["localhost:8080"])
        // Literal fields without indexing: nothing entered the decoder's dynamic table.
        #expect(headers.allSatisfy { $0.indexable == .nonIndexable })
        // A client block that refers to the first dynamic entry (index 62) finds none.
        var reference = ByteBuffer(bytes: [0x80 | 62])
        #expect(throws: (any Error).self) { try decoder.decodeHeaders(from: &reference) }
    }

    @Test func aLargeHeaderBlockContinuesInContinuationFrames() throws {
        let big = String(repeating: "v", count: 40_000)
        let request = try #require(Self.parse(
            Self.curlHead.replacingOccurrences(of: "Accept: */*\r\n", with: "Accept: */*\r\nX-Big: \(big)\r\n"), maxHeaderListSize: 64 * 1024))
        var frames = request.headerFrames()
        var block = ByteBuffer()
        var kinds: [(UInt8, UInt8)] = []
        while let (type, flags, stream, payload) = Self.readFrame(&frames) {
            #expect(stream == 1)
            #expect(payload.readableBytes <= 16384)
            kinds.append((type, flags))
            var payload = payload
            block.writeBuffer(&payload)
        }
        #expect(kinds.map(\.0) == [0x1, 0x9, 0x9])
        #expect(kinds.map(\.1) == [0x1, 0x0, 0x4], "END_STREAM on HEADERS, END_HEADERS on the last CONTINUATION")
        var decoder = HPACKDecoder(allocator: ByteBufferAllocator(), maxDynamicTableSize: 4096, maxHeaderListSize: 64 * 1024)
        let headers = try decoder.decodeHeaders(from: &block)
        #expect(headers["x-big"] == [big])
    }

    @Test func hpackIntegersUseTheirPrefixAndContinuationBytes() {
        var buffer = ByteBuffer()
        H2CUpgradeRequest.writeInteger(126, prefixBits: 7, into: &buffer)
        H2CUpgradeRequest.writeInteger(127, prefixBits: 7, into: &buffer)
        H2CUpgradeRequest.writeInteger(1337, prefixBits: 5, into: &buffer)  // RFC 7541 C.1.2
        #expect(Array(buffer.readableBytesView) == [126, 127, 0, 31, 154, 10])
    }

    static func readFrame(_ buffer: inout ByteBuffer) -> (UInt8, UInt8, UInt32, ByteBuffer)? {
        guard buffer.readableBytes >= 9 else { return nil }
        let high = buffer.readInteger(as: UInt8.self)!
        let low = buffer.readInteger(as: UInt16.self)!
        let type = buffer.readInteger(as: UInt8.self)!
        let flags = buffer.readInteger(as: UInt8.self)!
        let stream = buffer.readInteger(as: UInt32.self)!
        let payload = buffer.readSlice(length: Int(high) << 16 | Int(low))!
        return (type, flags, stream, payload)
    }

    // MARK: - The sniffer

    /// Records what reaches the protocol's pipeline once the sniffer has decided.
    final class Received: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        var bytes = ByteBuffer()
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var incoming = self.unwrapInboundIn(data)
            self.bytes.writeBuffer(&incoming)
        }
    }

    static func sniffingChannel() throws -> (EmbeddedChannel, Received, EventLoopFuture<HTTPProtocolSniffer<String>.WireProtocol>) {
        let channel = EmbeddedChannel()
        let received = Received()
        let promise = channel.eventLoop.makePromise(of: String.self)
        let sniffer = HTTPProtocolSniffer<String>(
            promise: promise, h2cUpgrade: .init(maxHeadBytes: 4096, maxHeaderListSize: 4096)
        ) { channel, wireProtocol in
            try channel.pipeline.syncOperations.addHandler(received)
            return wireProtocol == .http1 ? "http1" : "http2"
        }
        try channel.pipeline.syncOperations.addHandler(sniffer)
        let decided = promise.futureResult.map { $0 == "http1" ? HTTPProtocolSniffer<String>.WireProtocol.http1 : .http2 }
        return (channel, received, decided)
    }

    @Test func anUpgradeAnswers101AndPutsStreamOneAfterTheClientsPreface() throws {
        let (channel, received, decided) = try Self.sniffingChannel()
        let head = Self.curlHead
        // The head in two reads: nothing is decided before its blank line.
        try channel.writeInbound(ByteBuffer(string: String(head.prefix(40))))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        try channel.writeInbound(ByteBuffer(string: String(head.dropFirst(40))))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: H2CUpgradeRequest.switchingProtocols))
        #expect(try decided.wait() == .http2)

        // The client's preface: magic and a SETTINGS frame (one entry), then a PING, in pieces.
        let magic = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
        let settings: [UInt8] = [0, 0, 6, 0x4, 0, 0, 0, 0, 0] + [0, 3, 0, 0, 0, 100]
        let ping: [UInt8] = [0, 0, 8, 0x6, 0, 0, 0, 0, 0] + [1, 2, 3, 4, 5, 6, 7, 8]
        let client = magic + settings + ping
        try channel.writeInbound(ByteBuffer(bytes: client.prefix(30)))
        #expect(received.bytes.readableBytes == 0, "held until the SETTINGS frame is whole")
        try channel.writeInbound(ByteBuffer(bytes: client.dropFirst(30)))
        let stream1 = Self.parse(head)!.headerFrames()
        var expected = ByteBuffer(bytes: magic + settings)
        expected.writeImmutableBuffer(stream1)
        expected.writeBytes(ping)
        #expect(received.bytes == expected)
        // The sniffer has stepped aside: later bytes pass straight through.
        try channel.writeInbound(ByteBuffer(bytes: ping))
        #expect(received.bytes.readableBytes == expected.readableBytes + ping.count)
        _ = try channel.finish()
    }

    @Test func anUpgradeWithABodyIsReplayedToHTTP1AsItCame() throws {
        let (channel, received, decided) = try Self.sniffingChannel()
        let request = Self.curlHead.replacingOccurrences(of: "Upgrade: h2c\r\n", with: "Upgrade: h2c\r\nContent-Length: 9\r\n") + "{\"id\":1}\n"
        try channel.writeInbound(ByteBuffer(string: request))
        #expect(try decided.wait() == .http1)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil, "no 101")
        #expect(received.bytes == ByteBuffer(string: request))
        _ = try channel.finish()
    }

    @Test func aHeadPastTheLimitIsLeftToHTTP1() throws {
        let (channel, received, decided) = try Self.sniffingChannel()
        let partial = "GET / HTTP/1.1\r\nX-Long: " + String(repeating: "x", count: 5000)
        try channel.writeInbound(ByteBuffer(string: partial))
        #expect(try decided.wait() == .http1)
        #expect(received.bytes == ByteBuffer(string: partial))
        _ = try channel.finish()
    }

    @Test func aBareLFHeadGoesToHTTP1WithoutWaitingForABlankLine() throws {
        let (channel, received, decided) = try Self.sniffingChannel()
        try channel.writeInbound(ByteBuffer(string: "POST /v1/events/t HTTP/1.1\nHost: x\n"))
        #expect(try decided.wait() == .http1)
        #expect(received.bytes == ByteBuffer(string: "POST /v1/events/t HTTP/1.1\nHost: x\n"))
        _ = try channel.finish()
    }

    @Test func aClientThatDoesNotOpenWithThePrefaceIsPassedOnForHTTP2ToReject() throws {
        let (channel, received, _) = try Self.sniffingChannel()
        try channel.writeInbound(ByteBuffer(string: Self.curlHead))
        _ = try channel.readOutbound(as: ByteBuffer.self)
        try channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(received.bytes == ByteBuffer(string: "GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        _ = try channel.finish()
    }
}
