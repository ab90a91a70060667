#!/usr/bin/env bash
# Sets up, builds and runs the gateway on the embedded quickstart configuration
# (HTTP on 127.0.0.1:8080, admin on 127.0.0.1:9901, events appended to ./data/events).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh run
swift build -c release --product sluice
exec .build/release/sluice run "$@"
