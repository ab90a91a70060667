import ArgumentParser
import CoreMetrics
import FileSink
import Foundation
import KafkaSink
import KinesisSink
import ZerobusSink
import Logging
import ServiceLifecycle
import SluiceCatalog
import SluiceConfig
import SluiceConfigReader
import SluiceGateway
import SluiceConnections
import SluiceObservability
import SluiceTracing
import OTel
import Tracing
import Instrumentation

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
        subcommands: [Run.self, Validate.self, Catalog.self, PrintDefaultConfig.self, Top.self]
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

    @Flag(name: .long, help: "Reload when the configuration file changes (besides SIGHUP and POST /reload).")
    var watch = false

    func run() async throws {
        let level = self.logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "sluice")

        let environment = ProcessInfo.processInfo.environment
        let source = self.config.map { ConfigurationSource.file($0, sinkKinds: sinkKinds, environment: environment) }
        let loaded: LoadedConfiguration
        do {
            if let source {
                loaded = try source.load().get()
            } else {
                logger.info("no --config given: running the embedded quickstart configuration")
                loaded = LoadedConfiguration(
                    configuration: try SluiceConfiguration.parse(yaml: DefaultConfig.yaml, sinkKinds: sinkKinds), text: DefaultConfig.yaml)
            }
        } catch {
            for problem in error.errors { printError(problem.description) }
            throw ExitCode(1)
        }
        if self.watch, self.config == nil {
            printError("--watch needs --config FILE (the embedded configuration never changes)")
            throw ExitCode(1)
        }
        let configuration = loaded.configuration

        // Client connections on every data-plane listener stay below the descriptor limit by the reserve.
        let reserve = configuration.process.descriptorReserve
        switch ClientConnectionCap.shared.limitToDescriptors(reserve: reserve) {
        case .failure(let error):
            printError(error.description)
            throw ExitCode(1)
        case .success(let (descriptors, connections)):
            logger.info("descriptor limit", metadata: ["limit": "\(descriptors)", "reserve": "\(reserve)", "client_connections_max": "\(connections)"])
        }

        // Traces, when configured (or asked for by OTEL_TRACES_EXPORTER): swift-otel's tracer,
        // bootstrapped once; its exporter runs as the first service, so it stops last and
        // flushes the spans of the shutdown too.
        var tracingService: (any Service)?
        do {
            tracingService = try Self.startTracing(configuration.tracing, environment: ProcessInfo.processInfo.environment, logger: logger)
        } catch {
            printError("tracing: \(error)")
            throw ExitCode(1)
        }

        // Metrics live as long as the process: a reload keeps counting into the same series.
        let exporter = configuration.admin?.metrics == true ? PrometheusExporter(version: sluiceVersion) : nil
        let gateway: Gateway
        do {
            gateway = try await Gateway(
                configuration: configuration, loaded: loaded, source: source,
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
                services: ([tracingService].compactMap { $0 } + gateway.services + [ReloadTriggers(gateway: gateway, watchedFile: self.watch ? self.config : nil)])
                    .map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
        withExtendedLifetime(gateway) {}
        logger.info("stopped")
    }
}

extension Run {
    /// Bootstraps the OpenTelemetry tracer for `config` (nil: only if `OTEL_TRACES_EXPORTER`
    /// names an exporter); returns the exporter's service, or nil when tracing stays off. The
    /// standard `OTEL_*` variables override the configuration.
    static func startTracing(_ config: TracingConfig?, environment: [String: String], logger: Logger) throws -> (any Service)? {
        let fromEnvironment = environment["OTEL_TRACES_EXPORTER"].map { !$0.isEmpty && $0 != "none" } ?? false
        guard config != nil || fromEnvironment else { return nil }
        let config = config ?? TracingConfig()
        var otel = OTel.Configuration.default
        otel.serviceName = config.serviceName
        otel.logs.enabled = false
        otel.metrics.enabled = false
        otel.traces.enabled = true
        otel.traces.exporter = .otlp
        otel.propagators = [.traceContext]
        switch config.otlpProtocol {
        case .httpProtobuf: otel.traces.otlpExporter.protocol = .httpProtobuf
        case .grpc: otel.traces.otlpExporter.protocol = .grpc
        }
        if let endpoint = config.endpoint {
            // Like OTEL_EXPORTER_OTLP_ENDPOINT: over HTTP, a base URL gets the signal's path.
            var url = endpoint
            if config.otlpProtocol == .httpProtobuf, let schemeEnd = url.range(of: "://"),
                !url[schemeEnd.upperBound...].contains("/") || url.hasSuffix("/")
            {
                url = (url.hasSuffix("/") ? url : url + "/") + "v1/traces"
            }
            otel.traces.otlpExporter.endpoint = url
        }
        otel.traces.sampler = .parentBasedTraceIDRatio(ratio: config.sampleRatio) ?? .parentBasedAlwaysOn
        let (tracer, service) = try OTel.makeTracingBackend(configuration: otel)
        InstrumentationSystem.bootstrap(tracer)
        RequestTracing.enable()
        logger.info("tracing", metadata: ["service": "\(config.serviceName)", "sample_ratio": "\(config.sampleRatio)"])
        return service
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

struct Catalog: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the API catalog of a configuration: OpenAPI 3.1, AsyncAPI 3.0 or Backstage entities.",
        discussion: """
            openapi and asyncapi are JSON documents; backstage is a YAML stream (a Component and an \
            API per route group, each API with its definition). Without --config, the embedded \
            quickstart configuration. Exits 1 (with every error) when the configuration is invalid.
            """
    )

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case openapi, asyncapi, backstage
    }

    @Option(name: .long, help: "Path to the YAML configuration.")
    var config: String?

    @Option(name: .long, help: "openapi, asyncapi or backstage.")
    var format: Format

    func run() throws {
        let configuration: SluiceConfiguration
        do {
            if let path = self.config {
                configuration = try SluiceConfiguration.load(path: path, sinkKinds: sinkKinds)
            } else {
                configuration = try SluiceConfiguration.parse(yaml: DefaultConfig.yaml, sinkKinds: sinkKinds)
            }
        } catch {
            for problem in error.errors { printError("\(self.config ?? "(embedded)"): \(problem)") }
            throw ExitCode(1)
        }
        switch self.format {
        case .openapi: print(JSONText.pretty(OpenAPIDocument.make(configuration)), terminator: "")
        case .asyncapi: print(JSONText.pretty(AsyncAPIDocument.make(configuration)), terminator: "")
        case .backstage:
            do {
                print(try BackstageEntities.yaml(configuration), terminator: "")
            } catch {
                printError("backstage: \(error)")
                throw ExitCode(1)
            }
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
