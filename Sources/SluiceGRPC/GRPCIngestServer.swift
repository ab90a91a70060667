import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle
import SluiceCore

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

    public init(host: String, port: Int, service: IngestService, health: HealthService, logger: Logger) {
        self.server = GRPCServer(
            transport: .http2NIOPosix(address: .ipv4(host: host, port: port), transportSecurity: .plaintext),
            services: [service, health]
        )
        self.logger = logger
    }

    public var isAccepting: Bool {
        self.state.withLockedValue { $0.bound && !$0.draining }
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
            if let address = try await self.server.listeningAddress {
                self.state.withLockedValue { $0.bound = true }
                self.logger.info("gRPC listening", metadata: ["address": "\(address)"])
            }
        }
        self.logger.info("gRPC listener stopped")
    }
}
