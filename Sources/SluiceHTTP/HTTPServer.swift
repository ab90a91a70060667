import Logging
import NIOCore
import NIOConcurrencyHelpers
import NIOExtras
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import ServiceLifecycle
import SluiceConfig
import SluiceCore
import SluiceTLS
import SluiceConnections
import SluiceTracing
import Tracing

/// Answers requests; shared by every connection and stream of a listener.
public protocol HTTPResponder: Sendable {
    func respond(to request: HTTPRequest, body: inout RequestBody) async -> HTTPResponse
}

/// One request as handlers see it, whether it came over HTTP/1.1 or HTTP/2.
public struct HTTPRequest: Sendable {
    public var head: HTTPRequestHead
    /// The path without the query string, in canonical form (see `RequestTarget`): what routes,
    /// policies and upstreams see. Escapes of reserved characters stay encoded.
    public var path: String
    /// The raw query string, without `?`.
    public var query: Substring?
    /// Why the request target was refused (it is then not routed: 400), or nil.
    public var targetProblem: RequestTarget.Problem?
    /// The authority of an absolute-form target, which replaces the Host header (RFC 9112 3.2.2).
    public var targetAuthority: String?
    public var isHTTP2: Bool
    /// The peer's IP address, when the connection has one.
    public var remoteIP: String?
    /// Whether the request came over TLS.
    public var isTLS: Bool
    /// The client's verified certificate, on a TLS listener that asks for one.
    public var tlsClient: TLSClientIdentity?
    /// The event loop of the client's connection (an upgrade tunnel's upstream connection
    /// shares it), when served by a listener.
    public var eventLoop: (any EventLoop)?

    public init(head: HTTPRequestHead, isHTTP2: Bool, remoteIP: String? = nil, isTLS: Bool = false, tlsClient: TLSClientIdentity? = nil) {
        self.head = head
        self.isHTTP2 = isHTTP2
        self.remoteIP = remoteIP
        self.isTLS = isTLS
        self.tlsClient = tlsClient
        switch RequestTarget.parse(head.uri) {
        case .success(let target):
            self.path = target.path
            self.query = target.query.map { Substring($0) }
            self.targetAuthority = target.authority
        case .failure(let problem):
            self.path = "/"
            self.query = nil
            self.targetProblem = problem
        }
    }

    public var method: String { self.head.method.rawValue }

    /// The first value of a header (names are case-insensitive).
    public func header(_ name: String) -> String? {
        self.head.headers.first(name: name)
    }

    public var host: String? {
        self.targetAuthority ?? self.header("host") ?? self.header(":authority")
    }

    /// One pass over the fields: why the first one that may not be passed on may not (a name
    /// that is not a token, a control character in a value), and how many are named Host
    /// (`head.headers["host"].count` would make an array of their values).
    func checkHeaders() -> (problem: String?, hosts: Int) {
        var hosts = 0
        for (name, value) in self.head.headers {
            if let problem = HeaderFieldCheck.problem(name: name, value: value) { return (problem, hosts) }
            if HeaderFieldCheck.isHost(name) { hosts += 1 }
        }
        return (nil, hosts)
    }

    /// The first value of a query parameter, percent-decoded ('+' is a space).
    public func queryParameter(_ name: String) -> String? {
        self.query.flatMap { QueryString.firstValue(of: name, in: $0) }
    }
}

/// A listener: accepts TCP connections and serves HTTP/1.1 (keep-alive) and cleartext HTTP/2
/// (prior knowledge) on the same port.
///
/// On graceful shutdown it stops accepting, lets in-flight requests finish (HTTP/1.1
/// connections close after their current response, HTTP/2 connections get GOAWAY), and
/// after `drainTimeout` closes whatever is left.
public final class HTTPServer: Service, Listening, Sendable {
    public let name: String
    private let host: String
    private let port: Int
    private let responder: any HTTPResponder
    private let limits: ListenerLimits
    private let tls: ListenerTLS?
    /// Whether a cleartext HTTP/1.1 connection may switch to HTTP/2 by `Upgrade: h2c`.
    private let h2cUpgrade: Bool
    private let drainTimeout: Duration
    /// Open connections against max_connections and, on data-plane listeners, the process's cap.
    private let connections: ListenerConnections
    private let group: any EventLoopGroup
    private let logger: Logger
    /// Told about every request when its response has gone out (metrics, access log).
    private let observer: (any ExchangeObserver)?
    private let bound = NIOLockedValueBox<SocketAddress?>(nil)
    private let boundWaiters = NIOLockedValueBox<[CheckedContinuation<SocketAddress?, Never>]>([])

    public init(
        name: String,
        host: String,
        port: Int,
        responder: any HTTPResponder,
        limits: ListenerLimits = ListenerLimits(),
        tls: ListenerTLS? = nil,
        h2cUpgrade: Bool = true,
        drainTimeout: Duration = .seconds(10),
        connectionCap: ClientConnectionCap? = nil,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        observer: (any ExchangeObserver)? = nil,
        logger: Logger
    ) {
        self.name = name
        self.observer = observer
        self.connections = ListenerConnections(maxConnections: limits.maxConnections, cap: connectionCap)
        self.host = host
        self.port = port
        self.responder = responder
        self.limits = limits
        self.tls = tls
        self.h2cUpgrade = h2cUpgrade && tls == nil
        self.drainTimeout = drainTimeout
        self.group = group
        var logger = logger
        logger[metadataKey: "listener"] = "\(name)"
        self.logger = logger
    }

    private let draining = NIOLockedValueBox(false)

    /// The address the listener is bound to, once it is accepting.
    public var localAddress: SocketAddress? {
        self.bound.withLockedValue { $0 }
    }

    /// Whether the listener is bound and not draining.
    public var isAccepting: Bool {
        self.localAddress != nil && !self.draining.withLockedValue { $0 }
    }

    /// Waits until the listener is bound (or failed to bind: nil).
    public func waitUntilBound() async -> SocketAddress? {
        await withCheckedContinuation { continuation in
            let address: SocketAddress?? = self.bound.withLockedValue { bound in
                if let bound { return .some(bound) }
                self.boundWaiters.withLockedValue { $0.append(continuation) }
                return .none
            }
            if let address { continuation.resume(returning: address) }
        }
    }

    private func publishBound(_ address: SocketAddress?) {
        self.bound.withLockedValue { $0 = address }
        let waiters = self.boundWaiters.withLockedValue { waiters in
            defer { waiters = [] }
            return waiters
        }
        for waiter in waiters { waiter.resume(returning: address) }
    }

    enum Connection: Sendable {
        case http1(RequestParts, PeerState)
        case http2(NIOHTTP2Handler.AsyncStreamMultiplexer<RequestParts>, PeerState)
    }

    /// What a connection tells its requests about its peer, found once when it is set up (the
    /// address's text alone cost ~3,000 instructions, ~1.7% of a proxied request, when each
    /// request formatted it again).
    struct PeerState: Sendable {
        var isTLS: Bool
        var client: TLSClientIdentity?
        /// The peer's IP address, when the connection has one.
        var ip: String?
    }

    public func run() async throws {
        let quiesce = ServerQuiescingHelper(group: self.group)
        let limits = self.limits
        let connections = self.connections
        let logger = self.logger
        let tls = self.tls
        // h2c upgrades read heads up to HTTP/1.1's own limits (a field and the list each
        // maxHeaderBytes), plus room for the request line.
        let h2cUpgrade = self.h2cUpgrade
            ? HTTPProtocolSniffer<Connection>.H2CUpgradeLimits(maxHeadBytes: limits.maxHeaderBytes + 8 * 1024, maxHeaderListSize: limits.maxHeaderBytes)
            : nil
        let serverChannel: NIOAsyncChannel<EventLoopFuture<Connection>, Never>
        do {
            serverChannel = try await ServerBootstrap(group: self.group)
                .serverChannelOption(.backlog, value: 1024)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                    }
                }
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelOption(.maxMessagesPerRead, value: 16)
                .bind(host: self.host, port: self.port) { channel in
                    // Past max_connections (or the process's cap) a new connection is closed at once.
                    if let refusal = connections.admit(channel) {
                        logger.debug("connection refused", metadata: ["reason": "\(refusal)"])
                        return channel.eventLoop.makeFailedFuture(ConnectionLimitReached())
                    }
                    return channel.eventLoop.makeCompletedFuture {
                        let promise = channel.eventLoop.makePromise(of: Connection.self)
                        // Over TLS the sniffer sees decrypted bytes: it decides once the handshake is done.
                        let sniffer = HTTPProtocolSniffer<Connection>(
                            promise: promise, timeout: TimeAmount(limits.idleTimeout), h2cUpgrade: h2cUpgrade
                        ) { channel, wireProtocol in
                            let peer = PeerState(
                                isTLS: tls != nil, client: tls == nil ? nil : ListenerTLS.clientIdentity(of: channel),
                                ip: channel.remoteAddress?.ipAddress)
                            return try Self.configure(channel, wireProtocol, limits: limits, peer: peer)
                        }
                        if let tls {
                            // Before the TLS handler reads anything: it looks at the option when a
                            // close_notify comes, which may be in the same read as the request, before
                            // the sniffer has configured HTTP/1.1 (see `configure`).
                            try channel.syncOptions?.setOption(.allowRemoteHalfClosure, value: true)
                            try channel.pipeline.syncOperations.addHandlers(tls.makeHandlers())
                        }
                        try channel.pipeline.syncOperations.addHandler(sniffer)
                        return promise.futureResult
                    }
                }
        } catch {
            self.publishBound(nil)
            self.logger.error("cannot listen", metadata: ["address": "\(self.host):\(self.port)", "error": "\(error)"])
            throw error
        }
        self.publishBound(serverChannel.channel.localAddress)
        self.logger.info("listening", metadata: ["address": "\(serverChannel.channel.localAddress.map { "\($0)" } ?? "?")"])

        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await self.serve(serverChannel)
            }
            if let tls = self.tls {
                group.addTask {
                    // Returns only when cancelled with the others: it never ends the listener.
                    await tls.watch(logger: self.logger)
                }
            }
            group.addTask {
                // Stop accepting on graceful shutdown; give in-flight requests drainTimeout.
                guard (try? await gracefulShutdown()) != nil else { return }
                self.draining.withLockedValue { $0 = true }
                self.logger.info("draining", metadata: ["timeout": "\(self.drainTimeout)"])
                quiesce.initiateShutdown(promise: nil)
                do {
                    try await Task.sleep(for: self.drainTimeout)
                    self.logger.warning("drain timeout passed; closing remaining connections")
                } catch {
                    // Every connection finished in time.
                }
            }
            await group.next()
            group.cancelAll()
        }
        self.logger.info("listener stopped")
    }

    private static func configure(
        _ channel: any Channel,
        _ wireProtocol: HTTPProtocolSniffer<Connection>.WireProtocol,
        limits: ListenerLimits,
        peer: PeerState
    ) throws -> Connection {
        let sync = channel.pipeline.syncOperations
        let bodyReadTimeout = TimeAmount(limits.bodyReadTimeout)
        let minBodyRate = limits.minBodyRate
        switch wireProtocol {
        case .http1:
            var decoderLimits = NIOHTTPDecoderLimitConfiguration()
            decoderLimits.maxHeaderFieldSize = limits.maxHeaderBytes
            decoderLimits.maxHeaderListSize = limits.maxHeaderBytes
            // No pipelining assistance: HTTP1ConnectionHandler and the listener's one-at-a-time
            // loop do that job without stopping reads between requests. No HTTPResponseEncoder
            // or NIOHTTPResponseHeadersValidator either: HTTP1ConnectionHandler encodes answers
            // (HTTP1MessageEncoding), checking every field as it copies it.
            try sync.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes, limitConfiguration: decoderLimits)))
            try sync.addHandler(HTTP1ConnectionHandler(idleTimeout: TimeAmount(limits.idleTimeout), maxHeaderBytes: limits.maxHeaderBytes))
            // A client that half-closes after its request still gets the answer: a TCP FIN in
            // cleartext, a close_notify over TLS (NIOSSLHandler reads it as the end of input when
            // half-closure is allowed; a FIN without one is an unclean shutdown, an error).
            try channel.syncOptions?.setOption(.allowRemoteHalfClosure, value: true)
            try sync.addHandler(BodyReadTimeoutHandler(stallTimeout: bodyReadTimeout, minRate: minBodyRate, rateGrace: bodyReadTimeout))
            let parts = RequestParts(channel: channel)
            try sync.addHandler(RequestPartsReader(parts))
            return .http1(parts, peer)
        case .http2:
            try sync.addHandler(IdleStateHandler(readTimeout: TimeAmount(limits.idleTimeout)))
            var configuration = NIOHTTP2Handler.Configuration()
            configuration.connection.initialSettings = [
                HTTP2Setting(parameter: .maxConcurrentStreams, value: limits.maxConcurrentStreams),
                HTTP2Setting(parameter: .maxHeaderListSize, value: limits.maxHeaderBytes),
            ]
            let multiplexer = try sync.configureAsyncHTTP2Pipeline(mode: .server, configuration: configuration) { stream in
                stream.eventLoop.makeCompletedFuture {
                    try stream.pipeline.syncOperations.addHandler(HTTP2FramePayloadToHTTP1ServerCodec())
                    try stream.pipeline.syncOperations.addHandler(BodyReadTimeoutHandler(stallTimeout: bodyReadTimeout, minRate: minBodyRate, rateGrace: bodyReadTimeout))
                    let parts = RequestParts(channel: stream)
                    try stream.pipeline.syncOperations.addHandler(RequestPartsReader(parts))
                    return parts
                }
            }
            try sync.addHandler(HTTP2IdleCloseHandler())
            return .http2(multiplexer, peer)
        }
    }

    private func serve(_ serverChannel: NIOAsyncChannel<EventLoopFuture<Connection>, Never>) async {
        do {
            try await serverChannel.executeThenClose { inbound in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in inbound {
                        // The connection's task runs on its channel's event loop (see
                        // EventLoopTaskExecutor); its HTTP/2 streams' tasks inherit it.
                        group.addTask(executorPreference: EventLoopTaskExecutor(connection.eventLoop)) {
                            guard let connection = try? await connection.get() else { return }
                            switch connection {
                            case .http1(let parts, let peer):
                                await self.serveHTTP1(parts, peer: peer)
                            case .http2(let multiplexer, let peer):
                                await self.serveHTTP2(multiplexer, peer: peer)
                            }
                        }
                    }
                }
            }
        } catch {
            self.logger.error("listener failed", metadata: ["error": "\(error)"])
        }
    }

    private func serveHTTP1(_ parts: RequestParts, peer: PeerState) async {
        let channel = parts.channel
        // Whatever ends the loop (a last request, an error, the client gone), the connection closes.
        defer { channel.close(promise: nil) }
        do {
            while let part = try await parts.next() {
                guard case .head(let head) = part else { continue }
                let started = ExchangeStart(observed: self.observer != nil)
                var body = RequestBody(parts: parts, sendContinue: Self.continueSender(head, channel))
                var request = HTTPRequest(
                    head: head, isHTTP2: false, remoteIP: peer.ip, isTLS: peer.isTLS, tlsClient: peer.client)
                request.eventLoop = channel.eventLoop
                let span = Self.startSpan(request)
                var response = await RequestTracing.withCurrent(span) { await self.responder.respond(to: request, body: &body) }
                if let tunnel = response.tunnel {
                    // 101 from the upstream: the connection becomes its tunnel until either side closes.
                    self.finish(request, response, span: span, started: started, bytesIn: body.bytesRead, bytesOut: 0)
                    do {
                        try await Self.switchProtocols(response, to: channel, tunnel: tunnel)
                    } catch {
                        tunnel.abandon()
                        throw error
                    }
                    try? await channel.closeFuture.get()
                    return
                }
                // HTTP/1.0 has no chunked coding: a streamed answer is delimited by closing.
                let closeDelimited = response.stream != nil && head.version.major == 1 && head.version.minor == 0
                if let handback = response.requestBodyHandback {
                    // Full duplex: the body is still flowing upstream while the answer goes
                    // out; the connection is kept if the body then ends (or drains) cleanly.
                    var keepAlive = head.isKeepAlive && !closeDelimited
                    if !keepAlive { response.headers.replaceOrAdd(name: "connection", value: "close") }
                    var written = WrittenBytes()
                    var failure: (any Error)?
                    do {
                        try await Self.write(response, version: head.version, to: channel, written: &written)
                    } catch {
                        failure = error
                    }
                    body = await handback.take()
                    self.finish(request, response, span: span, started: started, bytesIn: body.bytesRead, bytesOut: written.count)
                    if let failure { throw failure }
                    if keepAlive, !body.isComplete { keepAlive = await body.drain(limit: 64 * 1024) }
                    if !keepAlive { return }
                    continue
                }
                // Keep the connection only if the whole request body has been read.
                let complete = response.readsRequestBody ? false : body.isComplete ? true : await body.drain(limit: 64 * 1024)
                let keepAlive = head.isKeepAlive && complete && !closeDelimited
                if !keepAlive { response.headers.replaceOrAdd(name: "connection", value: "close") }
                var written = WrittenBytes()
                defer { self.finish(request, response, span: span, started: started, bytesIn: body.bytesRead, bytesOut: written.count) }
                try await Self.write(response, version: head.version, to: channel, written: &written)
                if !keepAlive { return }
            }
        } catch {
            self.logger.debug("connection ended", metadata: ["error": "\(error)"])
        }
    }

    private func serveHTTP2(
        _ multiplexer: NIOHTTP2Handler.AsyncStreamMultiplexer<RequestParts>,
        peer: PeerState
    ) async {
        do {
            try await withThrowingDiscardingTaskGroup { group in
                for try await stream in multiplexer.inbound {
                    group.addTask {
                        await self.serveHTTP2Stream(stream, peer: peer)
                    }
                }
            }
        } catch {
            self.logger.debug("http/2 connection ended", metadata: ["error": "\(error)"])
        }
    }

    private func serveHTTP2Stream(_ parts: RequestParts, peer: PeerState) async {
        let stream = parts.channel
        // The answer has gone out whole (or failed): the stream is done either way.
        defer { stream.close(promise: nil) }
        do {
            guard let part = try await parts.next(), case .head(let head) = part else { return }
            let started = ExchangeStart(observed: self.observer != nil)
            var body = RequestBody(parts: parts, sendContinue: Self.continueSender(head, stream))
            let request = HTTPRequest(
                head: head, isHTTP2: true, remoteIP: peer.ip, isTLS: peer.isTLS, tlsClient: peer.client)
            let span = Self.startSpan(request)
            let response = await RequestTracing.withCurrent(span) { await self.responder.respond(to: request, body: &body) }
            var written = WrittenBytes()
            defer { self.finish(request, response, span: span, started: started, bytesIn: body.bytesRead, bytesOut: written.count) }
            try await Self.write(response, version: head.version, to: stream, written: &written)
        } catch {
            self.logger.debug("http/2 stream ended", metadata: ["error": "\(error)"])
        }
    }

    /// For `Expect: 100-continue`, a closure that sends the interim `100 Continue` response.
    private static func continueSender(_ head: HTTPRequestHead, _ channel: any Channel) -> (@Sendable () async throws -> Void)? {
        // Most requests have no Expect: asked first, without making an array of values.
        guard head.headers.contains(name: "expect"), head.headers["expect"].contains(where: { $0.lowercased() == "100-continue" })
        else { return nil }
        let version = head.version
        return {
            try await channel.eventLoop.flatSubmit { () -> EventLoopFuture<Void> in
                guard channel.isActive else { return channel.eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel) }
                return channel.writeAndFlush(HTTPServerResponsePart.head(HTTPResponseHead(version: version, status: .continue)))
            }.get()
        }
    }

    /// Writes the 101 head, then hands the connection's bytes to the tunnel: the HTTP/1.1
    /// handlers leave the pipeline (what they hold is not part of the tunnel: a client sends
    /// nothing after an upgrade request before its 101).
    private static func switchProtocols(
        _ response: HTTPResponse, to channel: any Channel, tunnel: UpgradeTunnel
    ) async throws {
        let head = HTTPResponseHead(version: .http1_1, status: .switchingProtocols, headers: response.headers)
        try await channel.eventLoop.flatSubmit { () -> EventLoopFuture<Void> in
            guard channel.isActive else { return channel.eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel) }
            return channel.writeAndFlush(HTTPServerResponsePart.head(head)).flatMapThrowing {
                let sync = channel.pipeline.syncOperations
                // The tunnel ends when either side closes (a client's half-close included).
                try channel.syncOptions?.setOption(.allowRemoteHalfClosure, value: false)
                try tunnel.attach(client: channel)
                // Whatever HTTP/1.1 handler is still there sees no more bytes; remove them all.
                for handler in HTTP1PipelineHandlers.find(in: sync) {
                    sync.removeHandler(handler, promise: nil)
                }
            }
        }.get()
    }

    /// Writes a whole response and returns once it has left the channel: the connection or
    /// stream may be closed right after without cutting it short. (Writes handed to an
    /// NIOAsyncChannel writer are only queued; closing then drops what the peer's window or the
    /// socket buffer has not taken yet — an HTTP/2 stream is reset mid-response.)
    private static func write(_ response: HTTPResponse, version: HTTPVersion, to channel: any Channel, written: inout WrittenBytes) async throws {
        if let stream = response.stream {
            try await self.write(response, streaming: stream, version: version, to: channel, written: &written)
            return
        }
        var headers = response.headers
        let length = String(response.body.readableBytes)
        // A proxied answer read whole usually carries the right one already, and an answer made
        // by `HTTPResponse.json` always does; replacing costs several times the lookup.
        if !FieldName.holdOnly("content-length", length, in: headers) { headers.replaceOrAdd(name: "content-length", value: length) }
        if version.major >= 2 { headers.remove(name: "connection") }
        let head = HTTPResponseHead(version: version.major >= 2 ? version : .http1_1, status: response.status, headers: headers)
        let body = response.body
        let trailers = response.trailers?.value
        @Sendable func writeWhole() -> EventLoopFuture<Void> {
            // A connection closed meanwhile (a body timeout, the client gone) gets no response:
            // its HTTP handlers may already have reset their state for it.
            guard channel.isActive else { return channel.eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel) }
            channel.write(HTTPServerResponsePart.head(head), promise: nil)
            if body.readableBytes > 0 {
                channel.write(HTTPServerResponsePart.body(.byteBuffer(body)), promise: nil)
            }
            return channel.writeAndFlush(HTTPServerResponsePart.end(trailers))
        }
        if channel.eventLoop.inEventLoop {
            // The connection's task runs on its loop (EventLoopTaskExecutor): written right here,
            // and when the socket took it all during the flush, done without suspending.
            let done = writeWhole()
            if let result = Self.resultIfSettled(done) {
                try result.get()
            } else {
                try await done.get()
            }
        } else {
            // One hop to the event loop for the whole response.
            try await channel.eventLoop.flatSubmit(writeWhole).get()
        }
        written.count = body.readableBytes
    }

    /// A future's result if it is already settled (asked on its event loop: a settled future
    /// runs the callback at once), else nil.
    private static func resultIfSettled(_ future: EventLoopFuture<Void>) -> Result<Void, any Error>? {
        let settled = NIOLoopBoundBox<Result<Void, any Error>?>(nil, eventLoop: future.eventLoop)
        future.whenComplete { settled.value = $0 }
        return settled.value
    }

    /// The request's server span, continuing the client's `traceparent` (nil when tracing is off).
    private static func startSpan(_ request: HTTPRequest) -> (any Span)? {
        guard RequestTracing.isEnabled else { return nil }
        let headers = request.head.headers
        return RequestTracing.startServerSpan(request.method) { headers.first(name: $0) }
    }

    /// A request's response has gone out (or failed to): ends its span and tells the observer.
    private func finish(
        _ request: HTTPRequest, _ response: HTTPResponse, span: (any Span)?, started: ExchangeStart, bytesIn: Int, bytesOut: Int
    ) {
        var response = response
        var bytesIn = bytesIn
        // An answer that read the request body itself (a REST Proxy v3 stream) knows, once it has
        // gone out, what the stream handed over; the handler's facts were written before.
        if let tally = response.bodyTally {
            let totals = tally.totals
            response.facts.events = totals.events
            response.facts.eventBytes = totals.eventBytes
            bytesIn = totals.bodyBytes
        }
        let protocolName = request.isHTTP2 ? "HTTP/2" : (request.head.version.minor == 0 ? "HTTP/1.0" : "HTTP/1.1")
        var traceID: String?
        if let span {
            let status = Int(response.status.code)
            if let path = response.facts.routePath { span.operationName = "\(request.method) \(path)" }
            span.updateAttributes { attributes in
                attributes["http.request.method"] = request.method
                attributes["url.path"] = request.path
                attributes["url.scheme"] = request.isTLS ? "https" : "http"
                attributes["http.response.status_code"] = status
                attributes["network.protocol.version"] = request.isHTTP2 ? "2" : (request.head.version.minor == 0 ? "1.0" : "1.1")
                attributes["http.request.body.size"] = bytesIn
                attributes["http.response.body.size"] = bytesOut
                if let route = response.facts.routePath { attributes["http.route"] = route }
                if let client = request.remoteIP { attributes["client.address"] = client }
                if let name = response.facts.route { attributes["sluice.route"] = name }
                attributes["sluice.listener"] = self.name
                if response.facts.events > 0 { attributes["sluice.events"] = response.facts.events }
            }
            // Server spans: only 5xx is an error (OpenTelemetry HTTP conventions).
            if status >= 500 { span.setStatus(SpanStatus(code: .error)) }
            traceID = RequestTracing.traceID(of: span)
            span.end()
        }
        guard let observer = self.observer else { return }
        observer.observe(
            ExchangeRecord(
                transport: .http, listener: self.name, method: request.method, path: request.path, protocolName: protocolName,
                status: Int(response.status.code), facts: response.facts, bytesIn: bytesIn, bytesOut: bytesOut,
                duration: .now - started.instant, client: request.remoteIP, traceID: traceID, startedAt: started.wallClock))
    }
}

/// When a request's head arrived: for its duration and, when it is observed, its timestamp.
struct ExchangeStart {
    let instant: ContinuousClock.Instant
    let wallClock: Double

    init(observed: Bool) {
        self.instant = .now
        self.wallClock = observed ? WallClock.now() : 0
    }
}

/// Response body bytes written so far.
struct WrittenBytes {
    var count = 0
}

extension HTTPServer {
    /// Writes the head, then each part of the body once the previous one has been written to
    /// the connection. A failure of the source (an upstream cut mid-body) throws, and the caller
    /// closes the connection (HTTP/1.1) or resets the stream (HTTP/2): the client sees a
    /// truncated response, never a complete-looking one.
    fileprivate static func write(
        _ response: HTTPResponse, streaming stream: any AsyncSequence<ByteBuffer, any Error> & Sendable, version: HTTPVersion,
        to channel: any Channel, written: inout WrittenBytes
    ) async throws {
        var headers = response.headers
        if version.major >= 2 { headers.remove(name: "connection") }
        // To an HTTP/1.0 client, a body of unknown length goes without chunked coding, ended by
        // closing the connection (the encoder frames it so for an HTTP/1.0 head).
        let responseVersion: HTTPVersion = version.major >= 2 ? version : (version == .http1_0 ? .http1_0 : .http1_1)
        let head = HTTPResponseHead(version: responseVersion, status: response.status, headers: headers)
        // The head goes out at once (an event stream's client sees it before the first event),
        // without waiting for it: a failed write shows on the next one.
        guard channel.isActive else { throw ChannelError.ioOnClosedChannel }
        channel.writeAndFlush(HTTPServerResponsePart.head(head), promise: nil)
        for try await part in stream where part.readableBytes > 0 {
            try await channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(part))).get()
            written.count += part.readableBytes
        }
        try await channel.writeAndFlush(HTTPServerResponsePart.end(response.trailers?.value)).get()
    }
}

/// The HTTP/1.1 handlers `configure` puts in a connection's pipeline (those present).
enum HTTP1PipelineHandlers {
    static func find(in sync: ChannelPipeline.SynchronousOperations) -> [any RemovableChannelHandler] {
        var found: [any RemovableChannelHandler] = []
        if let handler = try? sync.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self) { found.append(handler) }
        if let handler = try? sync.handler(type: HTTP1ConnectionHandler.self) { found.append(handler) }
        if let handler = try? sync.handler(type: BodyReadTimeoutHandler.self) { found.append(handler) }
        return found
    }
}

/// Closes an HTTP/2 connection when its IdleStateHandler reports no reads for the idle timeout,
/// or when the client's input ends (HTTP/2 has no half-closed connection; over TLS the channel
/// allows half-closure for HTTP/1.1's sake, so the end of input does not close it by itself).
final class HTTP2IdleCloseHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = Any

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        if case ChannelEvent.inputClosed = event {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
