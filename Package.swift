// swift-tools-version: 6.0
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "sluice",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "sluice", targets: ["sluice"]),
        .executable(name: "sluice-loadgen", targets: ["sluice-loadgen"]),
        .executable(name: "sluice-reference-proxy", targets: ["sluice-reference-proxy"]),
        // For Benchmarks/Micro (a separate package, so the main build does not pay for it).
        .library(name: "KinesisSink", targets: ["KinesisSink"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth.git", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0"),
    ],
    targets: [
        // Domain types: events, sinks, delivery results. No I/O.
        .target(
            name: "SluiceCore",
            dependencies: [
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),

        // JSON Schema (draft 2020-12 and draft-07), compiled once per schema. No I/O: documents a
        // schema refers to come from its caller.
        .target(
            name: "SluiceSchema",
            dependencies: ["SluiceCore", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            swiftSettings: strict
        ),

        // The config reader connectors and the gateway share: path-exact errors, units, secrets,
        // templates, and the sink kinds connectors register. Links no connector.
        .target(
            name: "SluiceConfigReader",
            dependencies: [
                "SluiceCore",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),

        // Kafka connector: librdkafka from the system (Debian librdkafka-dev).
        .systemLibrary(
            name: "CRdKafka",
            path: "connectors/kafka/CRdKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),
        .target(
            name: "KafkaSink",
            dependencies: [
                "SluiceCore",
                "SluiceConfigReader",
                .product(name: "Yams", package: "Yams"),
                "CRdKafka",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "connectors/kafka/KafkaSink",
            swiftSettings: strict
        ),

        // File connector: the embedded default sink (NDJSON segment files).
        .target(
            name: "FileSink",
            dependencies: [
                "SluiceCore",
                "SluiceConfigReader",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "connectors/file/FileSink",
            swiftSettings: strict
        ),

        // Kinesis connector: PutRecords over HTTPS, signed with SigV4 (no AWS SDK).
        .target(
            name: "KinesisSink",
            dependencies: [
                "SluiceCore",
                "SluiceConfigReader",
                .product(name: "Yams", package: "Yams"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "connectors/kinesis/KinesisSink",
            swiftSettings: strict
        ),

        // Zerobus connector: one EphemeralStream per table over grpc-swift-2 (generated client
        // committed, see scripts/generate-grpc.sh), OAuth machine-to-machine tokens.
        .target(
            name: "ZerobusSink",
            dependencies: [
                "SluiceCore",
                "SluiceConfigReader",
                .product(name: "Yams", package: "Yams"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "connectors/zerobus",
            exclude: ["Protos", "testserver", "Tests", "README.md"],
            sources: ["ZerobusSink", "Generated"],
            swiftSettings: strict
        ),

        // Policies attached to routes: authentication, authorization, rate limits (the global
        // rate limit talks to Redis through its own small RESP client).
        .target(
            name: "SluicePolicy",
            dependencies: [
                "SluiceCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strict
        ),

        // The gateway's YAML schema (listeners, routes, policies, upstreams; sinks by the kinds
        // the executable registers), validated with exact error paths.
        .target(
            name: "SluiceConfig",
            dependencies: [
                "SluiceCore",
                "SluiceConfigReader",
                "SluicePolicy",
                "SluiceSchema",
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),

        // `sluice catalog`: OpenAPI, AsyncAPI and Backstage documents from a configuration. Links no connector.
        .target(
            name: "SluiceCatalog",
            dependencies: [
                "SluiceConfig",
                "SluiceConfigReader",
                "SluiceCore",
                "SluicePolicy",
                "SluiceSchema",
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),

        // Request tracing through swift-distributed-tracing's API (the executable bootstraps the
        // OpenTelemetry tracer): W3C trace context in and out, span helpers, off unless enabled.
        .target(
            name: "SluiceTracing",
            dependencies: [
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
            ],
            swiftSettings: strict
        ),

        // The transport-neutral ingest pipeline: body decoders, topic rules, limits, keys, and
        // handing events to a sink; HTTP and gRPC are adapters around it.
        // The JSON scanner's hot loop (plain string bytes, 16 at a time with SSE2).
        .target(name: "CSluiceScan", path: "Sources/CSluiceScan"),
        .target(
            name: "SluiceIngest",
            dependencies: [
                "CSluiceScan",
                "SluiceCore",
                "SluiceConfig",
                "SluiceSchema",
                "SluiceSpool",
                "SluiceTracing",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),

        // The write-ahead spool of `ack: spooled`: checksummed segment files, group commit,
        // recovery that cuts a torn tail.
        .target(
            name: "SluiceSpool",
            dependencies: [
                "SluiceCore",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),

        // Listener TLS: certificates chosen by SNI, ALPN, client certificates and their identity,
        // certificate reload. Shared by the HTTP and gRPC listeners.
        .target(
            name: "SluiceTLS",
            dependencies: [
                "SluiceConfig",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCertificateReloading", package: "swift-nio-extras"),
            ],
            swiftSettings: strict
        ),

        // Connection admission every listener shares: the process-wide client connection cap
        // (descriptor reserve), per-listener max_connections, the protocol-start timeout.
        .target(
            name: "SluiceConnections",
            dependencies: [
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strict
        ),

        // Listeners, HTTP/1.1 + h2c, router, the HTTP adapter of the ingest pipeline, the reverse proxy.
        .target(
            name: "SluiceHTTP",
            dependencies: [
                "SluiceCore",
                "SluiceConfig",
                "SluiceTracing",
                "SluiceIngest",
                "SluiceSpool",
                "SluiceTLS",
                "SluiceConnections",
                "SluicePolicy",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "NIOCertificateReloading", package: "swift-nio-extras"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),

        // gRPC ingress: the sluice.v1.Ingest service (generated code committed, see scripts/generate-grpc.sh).
        .target(
            name: "SluiceGRPC",
            dependencies: [
                "SluiceCore",
                "SluiceConfig",
                "SluiceTracing",
                "SluiceIngest",
                "SluiceTLS",
                "SluiceConnections",
                "SluicePolicy",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "X509", package: "swift-certificates"),
            ],
            exclude: ["Protos"],
            swiftSettings: strict
        ),

        // What operators see: the Prometheus registry behind /metrics (swift-metrics handlers
        // with help text from each series' descriptor), process figures, and the observer that
        // turns every HTTP request and gRPC call into metrics.
        .target(
            name: "SluiceObservability",
            dependencies: [
                "SluiceCore",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),

        // Admin listener: readiness, liveness, the sink and upstream views, /metrics.
        .target(
            name: "SluiceAdmin",
            dependencies: [
                "SluiceCore",
                "SluiceHTTP",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),

        // Composition: builds sinks, upstreams and policies from a configuration, the gateway
        // snapshot that binds routes to them, and the servers. Knows no connector: the
        // executable hands it the sink kinds.
        .target(
            name: "SluiceGateway",
            dependencies: [
                "SluiceCore",
                "SluiceConfig",
                "SluiceConfigReader",
                "SluiceTLS",
                "SluiceConnections",
                "SluiceHTTP",
                "SluiceGRPC",
                "SluiceAdmin",
                "SluicePolicy",
                "SluiceObservability",
                "SluiceIngest",
                "SluiceSpool",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),

        .executableTarget(
            name: "sluice",
            dependencies: [
                "SluiceGateway",
                "SluiceCatalog",
                "SluiceConfig",
                "SluiceConfigReader",
                "SluiceConnections",
                "KafkaSink",
                "FileSink",
                "KinesisSink",
                "ZerobusSink",
                "SluiceObservability",
                "SluiceTracing",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "OTel", package: "swift-otel"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),

        // Load generator for Benchmarks/ (gRPC PublishStream); not part of the gateway.
        .executableTarget(
            name: "sluice-loadgen",
            dependencies: [
                "SluiceGRPC",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
            ],
            path: "Benchmarks/LoadGenerator"
        ),
        // Benchmarks/proxy-instructions.sh's floor: a handler-only NIO proxy with no gateway in it.
        .executableTarget(
            name: "sluice-reference-proxy",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Benchmarks/ReferenceProxy"
        ),

        .testTarget(name: "SluiceCoreTests", dependencies: ["SluiceCore"]),
        .testTarget(name: "SluiceObservabilityTests", dependencies: ["SluiceObservability", "SluiceCore"]),
        .testTarget(
            name: "SluiceConfigTests",
            dependencies: ["SluiceConfig", "SluiceConfigReader", "SluiceCore", "SluicePolicy", "SluiceSchema", "KafkaSink", "FileSink", "KinesisSink", "ZerobusSink"]
        ),
        .testTarget(
            name: "SluiceCatalogTests",
            dependencies: ["SluiceCatalog", "SluiceConfig", "SluiceConfigReader", "SluiceSchema", "KafkaSink", "FileSink", "KinesisSink", "ZerobusSink"]
        ),
        .testTarget(
            name: "SluiceSpoolTests",
            dependencies: ["SluiceSpool", "SluiceCore", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .testTarget(
            name: "SluiceSchemaTests",
            dependencies: ["SluiceSchema", .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        .testTarget(
            name: "SluicePolicyTests",
            dependencies: [
                "SluicePolicy",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "SluiceGRPCTests",
            dependencies: [
                "SluiceGRPC", "SluiceCore", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        .testTarget(
            name: "SluiceIngestTests",
            dependencies: ["SluiceIngest", "SluiceCore", "CSluiceScan", .product(name: "NIOCore", package: "swift-nio")]
        ),
        // The sink contract every connector's sink is checked against (Tests/EndToEndTests/SinkContractTests.swift).
        .target(
            name: "SinkContractTesting",
            dependencies: [
                "SluiceCore", "SluiceConfigReader",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Tests/SinkContract",
            swiftSettings: strict
        ),
        .testTarget(
            name: "SluiceGatewayTests",
            dependencies: [
                "SluiceGateway", "SluiceHTTP", "SluiceConfig", "SluiceConfigReader", "SluiceConnections", "SluiceCore", "FileSink",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "SluiceHTTPTests",
            dependencies: [
                "SluiceHTTP", "SluiceCore", "SluiceConfig", "SluicePolicy", "SluiceSchema", "SluiceIngest", "SluiceSpool",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
            ]
        ),
        .testTarget(name: "FileSinkTests", dependencies: ["FileSink", "SluiceCore"], path: "connectors/file/Tests"),
        .testTarget(name: "KafkaSinkTests", dependencies: ["KafkaSink", "SluiceCore", "SluiceObservability"], path: "connectors/kafka/Tests"),
        .testTarget(
            name: "KinesisSinkTests",
            dependencies: [
                "KinesisSink", "SluiceCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "connectors/kinesis/Tests",
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "ZerobusSinkTests",
            dependencies: [
                "ZerobusSink", "SluiceCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            path: "connectors/zerobus/Tests"
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "sluice",
                "SluiceCore",
                "SinkContractTesting",
                "KafkaSink",
                "FileSink",
                .product(name: "Crypto", package: "swift-crypto"),
                "SluiceGRPC",
                "KinesisSink",
                "ZerobusSink",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)

// Every Swift target, tests included, runs nonisolated async functions on their caller's
// executor (SE-0461): fewer task switches per request, each of which asks the runtime for the
// task's preferred executor under a lock. One setting for all, so protocol requirements and
// their conformances across modules agree.
for target in package.targets where [.regular, .executable, .test].contains(target.type) {
    target.swiftSettings = (target.swiftSettings ?? []) + [.enableUpcomingFeature("NonisolatedNonsendingByDefault")]
}
