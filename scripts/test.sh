#!/usr/bin/env bash
# Sets up and runs every test: unit tests and the end-to-end tests that drive the real
# `sluice` binary against a real Kafka-protocol broker started here (and stopped on exit).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

export KAFKA_PORT="${KAFKA_PORT:-19092}"
trap 'scripts/kafka-broker.sh stop' EXIT
scripts/kafka-broker.sh start
export SLUICE_TEST_KAFKA_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"

swift build --build-tests

# Every fuzz target briefly, from its committed seeds (longer runs: scripts/fuzz.sh run TARGET
# SECONDS); after the build (some targets link it), before the test run, so the test runner's
# summary stays the last line. A fixed seed: the gate is reproducible, not a lottery; exploring
# with new seeds is `scripts/fuzz.sh all SECONDS` (each finding becomes a committed seed).
if [[ $# -eq 0 ]]; then
    FUZZ_SEED="${FUZZ_SEED:-1}" scripts/fuzz.sh all "${FUZZ_SECONDS:-15}"
fi

# The release binary a container image ships (deploy/Containerfile runs the same script), with the
# Swift runtime linked in: built and checked (no Swift library loaded from the system; it runs).
if [[ $# -eq 0 ]]; then
    scripts/build-release.sh
fi

swift test --skip-build "$@"
