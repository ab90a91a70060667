#!/usr/bin/env bash
# Micro-benchmarks (ordo-one/benchmark) in their own package, Benchmarks/Micro, built in
# .build-micro so the main build never pays for them. First run ~5 minutes (builds the
# benchmark package and Sluice's KinesisSink in release), later runs seconds.
#   Benchmarks/micro.sh [extra `swift package benchmark` arguments, e.g. --filter "sign.*"]
set -euo pipefail
cd "$(dirname "$0")/Micro"
swift package --scratch-path ../../.build-micro benchmark --format markdown "$@"
