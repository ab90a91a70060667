import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Logging
import NIOCore
import NIOConcurrencyHelpers
import ServiceLifecycle
import SluiceConfig
import SluiceCore
import SluiceTLS
import SluiceConnections

/// The gRPC listener: grpc-swift-2 over its NIO HTTP/2 transport, serving `sluice.v1.Ingest`
/// and `grpc.health.v1.Health`.
///
/// It is a listener of its own rather than a path on the HTTP listeners: grpc-swift-2's server
/// transport owns its connections end to end (accept, HTTP/2, streams), and offers no way to hand
/// it streams that another HTTP/2 stack has already accepted.
public final class GRPCIngestServer: Service, Listening {
    public let name = "grpc"
    private let server: GRPCServer<HTTP2ServerTransport.Posix>
    private let logger: Logger
    private let state = NIOLockedValueBox((bound: false, draining: false))
    private let tls: ListenerTLS?

    /// With `tls`: HTTPS with its default certificate (re-read when the files change) and, when
    /// the listener requires them, client certificates checked against its CA bundle.
    /// `drainTimeout`: how long a connection told to go away (shutdown, idle) may take to finish
    /// its calls.
    public init(
        config: GRPCListenerConfig, tls: ListenerTLS? = nil, connectionCap: ClientConnectionCap? = nil, drainTimeout: Duration = .seconds(10),
        service: IngestService, health: HealthService, observer: (any ExchangeObserver)? = nil, logger: Logger
    ) throws {
        let host = config.address.host
        let port = config.address.port
        let security: HTTP2ServerTransport.Posix.TransportSecurity
        if let tls {
            let caFile = tls.config.clientCertificates == .required ? tls.config.clientCAFile : nil
            security = try .tls(certificateReloader: tls) { config in
                if let caFile {
                    config.clientCertificateVerification = .noHostnameVerification
                    config.trustRoots = .certificates([.file(path: caFile, format: .pem)])
                }
            }
        } else {
            security = .plaintext
        }
        let limits = config.limits
        let connections = ListenerConnections(maxConnections: limits.maxConnections, cap: connectionCap)
        let transportConfig = HTTP2ServerTransport.Posix.Config.defaults { transport in
            // A connection with no call in progress — including one that never finishes its TLS
            // handshake or HTTP/2 preface — is closed after idle_timeout (the timer starts on accept).
            transport.connection.maxIdleTime = config.limits.idleTimeout
            transport.connection.maxGraceTime = drainTimeout
            transport.connection.keepalive = .init(
                time: config.keepalive.interval, timeout: config.keepalive.timeout,
                clientBehavior: .init(
                    minPingIntervalWithoutCalls: config.keepalive.minClientInterval, allowWithoutCalls: config.keepalive.permitWithoutCalls))
            transport.http2.maxConcurrentStreams = config.limits.maxConcurrentStreams
            transport.rpc.maxRequestPayloadSize = config.maxMessageBytes
            // Past max_connections (or the process's client connection cap) a new connection is closed at once.
            transport.channelDebuggingCallbacks.onAcceptTCPConnection = { channel in
                if connections.admit(channel) != nil { return channel.eventLoop.makeSucceededVoidFuture() }
                // maxIdleTime closes gracefully (GOAWAY, a PING round trip): a peer that never
                // sent its preface is closed outright.
                return channel.eventLoop.makeCompletedFuture {
                    try ProtocolStartTimeoutHandler.install(on: channel, timeout: limits.idleTimeout)
                }
            }
        }
        self.server = GRPCServer(
            transport: .http2NIOPosix(
                address: host.contains(":") ? .ipv6(host: host, port: port) : .ipv4(host: host, port: port), transportSecurity: security,
                config: transportConfig),
            services: [service, health],
            interceptors: [RoutePolicyInterceptor(routes: service.routes, observer: observer)]
        )
        self.tls = tls
        self.logger = logger
    }

    public var isAccepting: Bool {
        self.state.withLockedValue { $0.bound && !$0.draining }
    }

    /// Waits until the listener is bound (true) or could not bind (false).
    public func waitUntilBound() async -> Bool {
        (try? await self.server.listeningAddress) != nil
    }

    public func run() async throws {
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                try await withGracefulShutdownHandler {
                    try await self.server.serve()
                } onGracefulShutdown: {
                    self.state.withLockedValue { $0.draining = true }
                    self.server.beginGracefulShutdown()
                }
            }
            if let tls = self.tls {
                group.addTask {
                    // Certificate reloads until shutdown begins.
                    try? await cancelWhenGracefulShutdown {
                        await tls.watch(logger: self.logger)
                    }
                }
            }
            if let address = try await self.server.listeningAddress {
                self.state.withLockedValue { $0.bound = true }
                self.logger.info("gRPC listening", metadata: ["address": "\(address)"])
            }
        }
        self.logger.info("gRPC listener stopped")
    }
}
