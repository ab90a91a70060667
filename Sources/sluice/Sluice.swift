import ArgumentParser
import FileSink
import Foundation
import KafkaSink
import KinesisSink
import SluicePolicy
import ZerobusSink
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import SluiceAdmin
import SluiceConfig
import SluiceConfigReader
import SluiceCore
import SluiceGRPC
import SluiceHTTP
import SluiceTLS
import SluiceConnections

/// The kinds of sink this build can run: each connector registers one. Adding a connector is
/// one line here (and its target in Package.swift).
let sinkKinds: [SinkKind] = [KafkaSink.kind, FileSink.kind, KinesisSink.kind, ZerobusSink.kind]

@main
struct Sluice: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "An ingress gateway for event pipelines: HTTP in, Kafka (and files) out.",
        subcommands: [Run.self, Validate.self, PrintDefaultConfig.self]
    )
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start the gateway.",
        discussion: "Without --config, runs the embedded quickstart configuration (file sink in ./data/events)."
    )

    @Option(name: .long, help: "Path to the YAML configuration.")
    var config: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func run() async throws {
        let level = self.logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "sluice")

        let configuration: SluiceConfiguration
        do {
            if let path = self.config {
                configuration = try SluiceConfiguration.load(path: path, sinkKinds: sinkKinds)
            } else {
                logger.info("no --config given: running the embedded quickstart configuration")
                configuration = try SluiceConfiguration.parse(yaml: DefaultConfig.yaml, sinkKinds: sinkKinds)
            }
        } catch {
            for problem in error.errors { printError(problem.description) }
            throw ExitCode(1)
        }

        // Client connections on every data-plane listener stay below the descriptor limit by the reserve.
        let descriptorLimit = ClientConnectionCap.raiseDescriptorLimit()
        let reserve = configuration.process.descriptorReserve
        guard descriptorLimit == .max || descriptorLimit - reserve >= 64 else {
            printError(
                "process.descriptor_reserve: the descriptor limit (ulimit -n) is \(descriptorLimit); with a reserve of \(reserve) "
                    + "fewer than 64 client connections would remain: raise the limit or lower the reserve")
            throw ExitCode(1)
        }
        let clientConnectionCap = descriptorLimit == .max ? Int.max : descriptorLimit - reserve
        ClientConnectionCap.shared.setLimit(clientConnectionCap)
        logger.info(
            "descriptor limit", metadata: ["limit": "\(descriptorLimit)", "reserve": "\(reserve)", "client_connections_max": "\(clientConnectionCap)"])

        var sinks: [String: any Sink] = [:]
        var sinkServices: [any Service] = []
        let environment = ProcessInfo.processInfo.environment
        for sinkConfig in configuration.sinks {
            guard let kind = sinkKinds.first(where: { $0.key == sinkConfig.kind }) else {
                preconditionFailure("sink \(sinkConfig.name) has kind \(sinkConfig.kind), which the parser was not given")
            }
            let context = SinkContext(
                name: sinkConfig.name,
                budget: InFlightBudget(maxBytes: sinkConfig.maxInFlightBytes, maxEvents: sinkConfig.maxInFlightEvents),
                flushTimeout: configuration.shutdown.flushTimeout, logger: logger, environment: environment)
            do {
                let sink = try kind.make(sinkConfig.settings, context)
                sinks[sinkConfig.name] = sink
                sinkServices.append(sink)
            } catch {
                printError("sinks: \(sinkConfig.name): cannot start: \(error)")
                throw ExitCode(1)
            }
        }

        let policies: PolicyRegistry
        do {
            policies = try await PolicyRegistry.build(configuration.policies)
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
        var upstreams: [String: Upstream] = [:]
        for upstreamConfig in configuration.upstreams {
            do {
                upstreams[upstreamConfig.name] = try Upstream(config: upstreamConfig, logger: logger)
            } catch {
                printError("upstreams: \(upstreamConfig.name): cannot start: \(error)")
                throw ExitCode(1)
            }
        }
        let responder = GatewayResponder(config: configuration, sinks: sinks, upstreams: upstreams, policies: policies, logger: logger)
        var listeners: [HTTPServer] = []
        for listener in configuration.listeners {
            var tls: ListenerTLS?
            if let tlsConfig = listener.tls {
                do {
                    tls = try ListenerTLS(config: tlsConfig)
                } catch {
                    printError("listeners: \(listener.name): cannot load TLS certificates: \(error)")
                    throw ExitCode(1)
                }
            }
            listeners.append(
                HTTPServer(
                    name: listener.name, host: listener.address.host, port: listener.address.port, responder: responder,
                    limits: listener.limits, tls: tls, drainTimeout: configuration.shutdown.drainTimeout, connectionCap: .shared,
                    logger: logger))
        }
        var grpcServer: GRPCIngestServer?
        if let grpc = configuration.grpc {
            let routes = configuration.routes.compactMap { route -> GRPCIngestRoute? in
                guard route.match.grpc != nil, case .ingest(let ingest) = route.action, let sink = sinks[ingest.sink] else { return nil }
                return GRPCIngestRoute(name: route.name, match: route.match, ingest: ingest, sink: sink, policies: policies.chain(route.policies))
            }
            let health = HealthService(sinks: configuration.sinks.compactMap { sinks[$0.name] }, servedByGRPC: Set(routes.map(\.sink.name)))
            do {
                grpcServer = try GRPCIngestServer(
                    config: grpc, tls: try grpc.tls.map { try ListenerTLS(config: $0) }, connectionCap: .shared,
                    drainTimeout: configuration.shutdown.drainTimeout,
                    service: IngestService(routes: routes, logger: logger), health: health, logger: logger)
            } catch {
                printError("grpc: cannot load TLS certificates: \(error)")
                throw ExitCode(1)
            }
        }
        var allListeners: [any Listening] = listeners
        if let grpcServer { allListeners.append(grpcServer) }

        var services: [any Service] = []
        if let admin = configuration.admin {
            let orderedSinks = configuration.sinks.compactMap { sinks[$0.name] }
            services.append(
                HTTPServer(
                    name: "admin", host: admin.address.host, port: admin.address.port,
                    responder: AdminResponder(
                        listeners: allListeners, sinks: orderedSinks, upstreams: configuration.upstreams.compactMap { upstreams[$0.name] }),
                    drainTimeout: .seconds(1), logger: logger))
        }
        // ServiceGroup stops services in reverse order: listeners drain first, then sinks flush,
        // and the admin listener (first) answers /ready with 503 until the very end.
        services.append(contentsOf: sinkServices)
        // Upstreams close their pooled connections after the listeners have drained.
        services.append(contentsOf: configuration.upstreams.compactMap { upstreams[$0.name] })
        if let grpcServer { services.append(grpcServer) }
        services.append(contentsOf: listeners)

        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
        logger.info("stopped")
    }
}

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a configuration file and print every error with its path.",
        discussion: "Exits 0 when the configuration is valid, 1 otherwise."
    )

    @Argument(help: "Path to the YAML configuration.")
    var file: String

    func run() throws {
        do {
            let config = try SluiceConfiguration.load(path: self.file, sinkKinds: sinkKinds)
            print(
                "\(self.file): valid (\(config.listeners.count) listener(s), \(config.sinks.count) sink(s), "
                    + "\(config.upstreams.count) upstream(s), \(config.routes.count) route(s))")
        } catch {
            for problem in error.errors { print("\(self.file): \(problem)") }
            throw ExitCode(1)
        }
    }
}

struct PrintDefaultConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "default-config",
        abstract: "Print the embedded quickstart configuration."
    )

    func run() throws {
        print(DefaultConfig.yaml)
    }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
