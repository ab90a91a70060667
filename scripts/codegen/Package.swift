// swift-tools-version: 6.0
// Builds the protoc plugins that generate Sluice's committed gRPC code (scripts/generate-grpc.sh).
// Kept apart from the main package so that its build never pays for them.
import PackageDescription

let package = Package(
    name: "sluice-codegen",
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf.git", exact: "1.39.0"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", exact: "2.4.1"),
    ],
    targets: []
)
