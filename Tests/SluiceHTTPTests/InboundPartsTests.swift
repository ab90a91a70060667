import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import SluiceHTTP

/// How parts get from a channel to the task that serves them: in order, the end after the
/// parts read before it, reads held back while too many wait, a waiting task cancelled.
///
/// On an `NIOAsyncTestingChannel`: the task asks the channel for reads from its own thread, as
/// it does on a real event loop (an `EmbeddedChannel` may only be used from the thread that made it).
@Suite struct InboundPartsTests {
    /// Counts the reads that get past the parts' handler (it sits just before it).
    final class ReadCounter: ChannelOutboundHandler, Sendable {
        typealias OutboundIn = Any
        let reads = NIOLockedValueBox(0)
        func read(context: ChannelHandlerContext) {
            self.reads.withLockedValue { $0 += 1 }
            context.read()
        }
    }

    static func head(_ uri: String) -> HTTPServerRequestPart {
        .head(HTTPRequestHead(version: .http1_1, method: .POST, uri: uri))
    }

    static func uri(_ part: HTTPServerRequestPart?) -> String? {
        if case .head(let head) = part { return head.uri }
        return nil
    }

    static func channel(high: Int = 8, low: Int = 2) async throws -> (NIOAsyncTestingChannel, RequestParts, ReadCounter) {
        let channel = NIOAsyncTestingChannel()
        let counter = ReadCounter()
        let parts = RequestParts(channel: channel, highWatermark: high, lowWatermark: low)
        try await channel.testingEventLoop.executeInContext {
            try channel.pipeline.syncOperations.addHandler(counter)
            try channel.pipeline.syncOperations.addHandler(RequestPartsReader(parts))
        }
        return (channel, parts, counter)
    }

    /// The reads so far, once the loop has run what was asked of it before.
    static func reads(_ channel: NIOAsyncTestingChannel, _ counter: ReadCounter) async throws -> Int {
        try await channel.testingEventLoop.executeInContext { counter.reads.withLockedValue { $0 } }
    }

    @Test func partsComeInOrderAndTheCloseAfterThem() async throws {
        let (channel, parts, _) = try await Self.channel()
        try await channel.writeInbound(Self.head("/a"))
        try await channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(string: "xy")))
        try await channel.writeInbound(HTTPServerRequestPart.end(nil))
        try await channel.writeInbound(Self.head("/b"))
        channel.pipeline.fireChannelInactive()
        // Read after the close: what came before it is still handed over, then the end.
        #expect(Self.uri(try await parts.next()) == "/a")
        guard case .body(let body) = try await parts.next() else { Issue.record("no body"); return }
        #expect(String(buffer: body) == "xy")
        guard case .end = try await parts.next() else { Issue.record("no end"); return }
        #expect(Self.uri(try await parts.next()) == "/b")
        #expect(try await parts.next() == nil)
        #expect(try await parts.next() == nil)
        // Parts after the end are not handed over.
        try await channel.writeInbound(Self.head("/late"))
        #expect(try await parts.next() == nil)
    }

    @Test func anErrorComesAfterThePartsReadBeforeIt() async throws {
        struct Broken: Error {}
        let (channel, parts, _) = try await Self.channel()
        try await channel.writeInbound(Self.head("/a"))
        channel.pipeline.fireErrorCaught(Broken())
        #expect(Self.uri(try await parts.next()) == "/a")
        await #expect(throws: Broken.self) { try await parts.next() }
    }

    @Test func theClientClosingItsSideEndsTheParts() async throws {
        let (channel, parts, _) = try await Self.channel()
        try await channel.writeInbound(Self.head("/a"))
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(Self.uri(try await parts.next()) == "/a")
        #expect(try await parts.next() == nil)
    }

    @Test func readsAreHeldWhileTooManyPartsWaitAndResumeOnceTheyAreTaken() async throws {
        let (channel, parts, counter) = try await Self.channel(high: 4, low: 1)
        channel.read()
        #expect(try await Self.reads(channel, counter) == 1)
        for index in 0..<4 { try await channel.writeInbound(Self.head("/\(index)")) }
        // Four wait unread: the next read is held back.
        channel.read()
        #expect(try await Self.reads(channel, counter) == 1)
        #expect(Self.uri(try await parts.next()) == "/0")
        #expect(Self.uri(try await parts.next()) == "/1")
        #expect(try await Self.reads(channel, counter) == 1)  // two still wait, more than the low watermark
        #expect(Self.uri(try await parts.next()) == "/2")
        // Down to the low watermark: the held read goes out.
        #expect(try await Self.reads(channel, counter) == 2)
        #expect(Self.uri(try await parts.next()) == "/3")
        channel.read()
        #expect(try await Self.reads(channel, counter) == 3)
    }

    @Test func aWaitingTaskIsWokenByAPartAndByCancellation() async throws {
        let (channel, parts, _) = try await Self.channel()
        async let first = parts.next()
        // Let the task wait (it is woken either way; the part is never lost).
        try await Task.sleep(for: .milliseconds(20))
        try await channel.writeInbound(Self.head("/a"))
        #expect(Self.uri(try await first) == "/a")

        let waiting = Task { try await parts.next() }
        try await Task.sleep(for: .milliseconds(20))
        waiting.cancel()
        await #expect(throws: CancellationError.self) { try await waiting.value }
        // The parts are still readable after a cancelled wait.
        try await channel.writeInbound(Self.head("/b"))
        #expect(Self.uri(try await parts.next()) == "/b")
    }
}
