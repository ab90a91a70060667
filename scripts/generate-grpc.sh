#!/usr/bin/env bash
# Regenerates the committed Swift code for Sources/SluiceGRPC/Protos and connectors/zerobus/Protos
# (CI does not run this).
# Needs protoc (Debian protobuf-compiler); builds the two plugins in their own scratch path.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { echo "install protobuf-compiler (apt-get install protobuf-compiler)" >&2; exit 1; }
scratch="$PWD/.build-codegen"
(cd scripts/codegen && swift build -c release --scratch-path "$scratch" --product protoc-gen-swift \
    && swift build -c release --scratch-path "$scratch" --product protoc-gen-grpc-swift-2)
bin="$scratch/release"
out=Sources/SluiceGRPC/Generated
rm -rf "$out" && mkdir -p "$out"
protoc --proto_path=Sources/SluiceGRPC/Protos \
    --plugin=protoc-gen-swift="$bin/protoc-gen-swift" --swift_out="$out" --swift_opt=Visibility=Public \
    --plugin=protoc-gen-grpc-swift-2="$bin/protoc-gen-grpc-swift-2" --grpc-swift-2_out="$out" \
    --grpc-swift-2_opt=Visibility=Public,Server=true,Client=true \
    sluice/v1/ingest.proto grpc/health/v1/health.proto
echo "generated: $(cd "$out" && find . -name "*.swift" | sort | tr "\n" " ")"

# The Zerobus connector's client of databricks.zerobus.Zerobus (google/protobuf/duration.proto
# comes with protoc; SwiftProtobuf has its Swift type).
out=connectors/zerobus/Generated
rm -rf "$out" && mkdir -p "$out"
protoc --proto_path=connectors/zerobus/Protos \
    --plugin=protoc-gen-swift="$bin/protoc-gen-swift" --swift_out="$out" --swift_opt=Visibility=Internal \
    --plugin=protoc-gen-grpc-swift-2="$bin/protoc-gen-grpc-swift-2" --grpc-swift-2_out="$out" \
    --grpc-swift-2_opt=Visibility=Internal,Server=false,Client=true \
    databricks/zerobus/zerobus_service.proto
echo "generated: $(cd "$out" && find . -name "*.swift" | sort | tr "\n" " ")"
