import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

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
