#!/usr/bin/env bash
# Builds the release binary a container image ships (deploy/Containerfile runs this same script):
# optimised, the Swift runtime and Foundation linked in statically (--static-swift-stdlib), so the
# image needs only Debian's librdkafka1 and ca-certificates besides libc. Then checks the result:
# no Swift runtime library is loaded from the system, and the binary runs, knows its version
# and validates the quickstart configuration.
#
#   scripts/build-release.sh [OUT_DIR]     (default .build/dist; the binary is OUT_DIR/sluice)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.build/dist}"

scripts/setup.sh run
swift build -c release --static-swift-stdlib --product sluice
mkdir -p "$out"
cp "$(swift build -c release --static-swift-stdlib --show-bin-path)/sluice" "$out/sluice"
strip "$out/sluice" 2>/dev/null || true

# What the binary loads: never a Swift runtime library (it would have to be in the image).
libraries="$(ldd "$out/sluice")"
if grep -Eq 'libswift|libFoundation|libdispatch|libBlocksRuntime|not found' <<<"$libraries"; then
    echo "build-release: $out/sluice needs libraries the runtime image does not have:" >&2
    echo "$libraries" >&2
    exit 1
fi
grep -q 'librdkafka' <<<"$libraries" || { echo "build-release: librdkafka is not linked" >&2; exit 1; }

version="$("$out/sluice" --version)"
"$out/sluice" validate configs/quickstart.yaml >/dev/null
echo "build-release: $out/sluice $version ($(du -h "$out/sluice" | cut -f1)), links: $(awk '{print $1}' <<<"$libraries" | tr '\n' ' ')"
