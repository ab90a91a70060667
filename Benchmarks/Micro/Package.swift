// swift-tools-version: 6.1
// Micro-benchmarks (ordo-one/benchmark), kept out of the main package so its build does not
// pay for them. Run: Benchmarks/micro.sh (or `swift package benchmark` in this directory).
import PackageDescription

let package = Package(
    name: "sluice-micro-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(name: "sluice", path: "../.."),
    ],
    targets: [
        .executableTarget(
            name: "SigV4",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "KinesisSink", package: "sluice"),
            ],
            path: "Benchmarks/SigV4",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    ]
)
