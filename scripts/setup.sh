#!/usr/bin/env bash
# Installs what Sluice needs to build, test and benchmark, if it is missing.
#   scripts/setup.sh          build + test dependencies
#   scripts/setup.sh bench    also the load tools used by Benchmarks/
set -euo pipefail

need_apt=()
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
pkg-config --exists rdkafka 2>/dev/null || need_apt+=(librdkafka-dev)
command -v kcat >/dev/null || need_apt+=(kcat)
command -v curl >/dev/null || need_apt+=(curl)
curl --version 2>/dev/null | grep -q HTTP2 || need_apt+=(curl)
command -v nghttp >/dev/null || need_apt+=(nghttp2-client)   # nghttp (tests), h2load (benchmarks)
if ((${#need_apt[@]})); then
    echo "setup: installing ${need_apt[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The Kafka-protocol broker used by the integration tests and benchmarks (see scripts/kafka-broker.sh).
if ! command -v noida-db >/dev/null; then
    echo "setup: installing noida-db (Kafka-protocol broker for tests)" >&2
    python3 -m pip install -q --disable-pip-version-check noida-db==0.2.3
fi

# python-hyper's h2: an independent HTTP/2 client for the stream-isolation test.
python3 -c 'import h2' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check h2==4.4.1

command -v swift >/dev/null || { echo "setup: swift is not on PATH (Swift 6.x toolchain required)" >&2; exit 1; }
