import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

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

/// One pipelined connection to a Redis server, for the global rate limit: commands are written
/// as they come and answered in order. Connects on first use and again after a failure; a
/// command not answered within `timeout` fails, and closes the connection (a reply that
/// arrives late must not be taken for the next command's).
final class RedisClient: Sendable {
    let host: String
    let port: Int
    let password: String?
    let timeout: Duration
    /// Commands waiting for replies; past it commands fail at once.
    let maxPending: Int
    private let group: any EventLoopGroup
    private let state = NIOLockedValueBox<State>(State())

    private struct State {
        var channel: (any Channel)?
        var connecting: EventLoopFuture<any Channel>?
    }

    init(host: String, port: Int, password: String?, timeout: Duration, maxPending: Int = 10_000, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.host = host
        self.port = port
        self.password = password
        self.timeout = timeout
        self.maxPending = maxPending
        self.group = group
    }

    func command(_ arguments: [String]) async throws -> RESPValue {
        let channel = try await self.channel().get()
        return try await Self.send(arguments, on: channel, timeout: self.timeout)
    }

    private static func send(_ arguments: [String], on channel: any Channel, timeout: Duration) async throws -> RESPValue {
        let promise = channel.eventLoop.makePromise(of: RESPValue.self)
        channel.writeAndFlush(RedisRequest(arguments: arguments, promise: promise), promise: nil)
        let timer = channel.eventLoop.scheduleTask(in: TimeAmount(timeout)) {
            channel.close(promise: nil)
        }
        defer { timer.cancel() }
        let reply = try await promise.futureResult.get()
        if case .error(let message) = reply { throw RedisError(message) }
        return reply
    }

    private func channel() -> EventLoopFuture<any Channel> {
        let eventLoop = self.group.any()
        return self.state.withLockedValue { state -> EventLoopFuture<any Channel> in
            if let channel = state.channel, channel.isActive { return channel.eventLoop.makeSucceededFuture(channel) }
            if let connecting = state.connecting { return connecting }
            let maxPending = self.maxPending
            let connecting = ClientBootstrap(group: eventLoop)
                .connectTimeout(TimeAmount(self.timeout))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RESPDecoder()))
                        try channel.pipeline.syncOperations.addHandler(RedisHandler(maxPending: maxPending))
                    }
                }
                .connect(host: self.host, port: self.port)
                .flatMap { channel -> EventLoopFuture<any Channel> in
                    guard let password = self.password else { return channel.eventLoop.makeSucceededFuture(channel) }
                    let promise = channel.eventLoop.makePromise(of: RESPValue.self)
                    channel.writeAndFlush(RedisRequest(arguments: ["AUTH", password], promise: promise), promise: nil)
                    return promise.futureResult.flatMapThrowing { reply in
                        if case .error = reply {
                            channel.close(promise: nil)
                            throw RedisError("Redis refused the password")
                        }
                        return channel
                    }
                }
            state.connecting = connecting
            connecting.whenComplete { result in
                self.state.withLockedValue { state in
                    state.connecting = nil
                    if case .success(let channel) = result { state.channel = channel }
                }
            }
            return connecting
        }
    }

    /// RESP2 request bytes: an array of bulk strings.
    static func encode(_ arguments: [String], into buffer: inout ByteBuffer) {
        buffer.writeString("*\(arguments.count)\r\n")
        for argument in arguments {
            buffer.writeString("$\(argument.utf8.count)\r\n")
            buffer.writeString(argument)
            buffer.writeString("\r\n")
        }
    }
}

struct RedisRequest {
    var arguments: [String]
    var promise: EventLoopPromise<RESPValue>
}

/// Writes commands and hands each reply to the oldest waiting command.
final class RedisHandler: ChannelDuplexHandler {
    typealias InboundIn = RESPValue
    typealias OutboundIn = RedisRequest
    typealias OutboundOut = ByteBuffer

    private var waiting = CircularBuffer<EventLoopPromise<RESPValue>>()
    private let maxPending: Int

    init(maxPending: Int) {
        self.maxPending = maxPending
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = self.unwrapOutboundIn(data)
        guard self.waiting.count < self.maxPending else {
            request.promise.fail(RedisError("too many Redis commands waiting"))
            promise?.fail(RedisError("too many Redis commands waiting"))
            return
        }
        self.waiting.append(request.promise)
        var buffer = context.channel.allocator.buffer(capacity: 128)
        RedisClient.encode(request.arguments, into: &buffer)
        context.write(self.wrapOutboundOut(buffer), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let reply = self.unwrapInboundIn(data)
        guard let promise = self.waiting.popFirst() else {
            context.close(promise: nil)  // a reply nobody asked for: the stream is out of step
            return
        }
        promise.succeed(reply)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.failAll(RedisError("the Redis connection closed"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.failAll(error)
        context.close(promise: nil)
    }

    private func failAll(_ error: any Error) {
        while let promise = self.waiting.popFirst() { promise.fail(error) }
    }
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
        guard let type = buffer.readInteger(as: UInt8.self), let line = Self.line(&buffer) else { return nil }
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
            buffer.moveReaderIndex(forwardBy: 2)
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

    /// The text up to CRLF (consumed), or nil when the line is not complete yet.
    private static func line(_ buffer: inout ByteBuffer) -> String? {
        let view = buffer.readableBytesView
        guard let cr = view.firstIndex(of: UInt8(ascii: "\r")), view.index(after: cr) < view.endIndex else {
            if view.count > 64 * 1024 { return nil }
            return nil
        }
        let length = cr - view.startIndex
        let text = buffer.readString(length: length)
        buffer.moveReaderIndex(forwardBy: 2)
        return text
    }
}
