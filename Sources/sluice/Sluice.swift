import ArgumentParser
import CoreMetrics
import FileSink
import Foundation
import KafkaSink
import KinesisSink
import ZerobusSink
import Logging
import ServiceLifecycle
import SluiceConfig
import SluiceConfigReader
import SluiceGateway
import SluiceConnections
import SluiceObservability

/// The kinds of sink this build can run: each connector registers one. Adding a connector is
/// one line here (and its target in Package.swift).
let sinkKinds: [SinkKind] = [KafkaSink.kind, FileSink.kind, KinesisSink.kind, ZerobusSink.kind]

/// This build's version (`sluice --version`, the `sluice_build_info` series).
let sluiceVersion = "0.15.0"

@main
struct Sluice: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "An ingress gateway for event pipelines: HTTP in, Kafka (and files) out.",
        version: sluiceVersion,
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
        let reserve = configuration.process.descriptorReserve
        switch ClientConnectionCap.shared.limitToDescriptors(reserve: reserve) {
        case .failure(let error):
            printError(error.description)
            throw ExitCode(1)
        case .success(let (descriptors, connections)):
            logger.info("descriptor limit", metadata: ["limit": "\(descriptors)", "reserve": "\(reserve)", "client_connections_max": "\(connections)"])
        }

        // Metrics live as long as the process: a reload keeps counting into the same series.
        let exporter = configuration.admin?.metrics == true ? PrometheusExporter(version: sluiceVersion) : nil
        let gateway: Gateway
        do {
            gateway = try await Gateway(
                configuration: configuration,
                builder: GatewayBuilder(
                    sinkKinds: sinkKinds, logger: logger, environment: ProcessInfo.processInfo.environment,
                    metrics: exporter?.factory ?? NOOPMetricsHandler.instance),
                connectionCap: .shared, exporter: exporter)
        } catch {
            printError(error.description)
            throw ExitCode(1)
        }
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: gateway.services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
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
