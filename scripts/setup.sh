#!/usr/bin/env bash
# Installs what Sluice needs, if it is missing.
#   scripts/setup.sh run      what building and running needs (librdkafka)
#   scripts/setup.sh          also what the tests and benchmarks need (kcat, curl, nghttp2, nginx, openssl, redis, prometheus, chromium,
#                             the noida-db test broker, python-hyper's h2, grpcio, and the
#                             Kinesis emulators moto and MiniStack)
set -euo pipefail

need_apt=()
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
pkg-config --exists rdkafka 2>/dev/null || need_apt+=(librdkafka-dev)
mode="${1:-test}"
if [[ "$mode" != run ]]; then
    command -v kcat >/dev/null || need_apt+=(kcat)
    command -v curl >/dev/null || need_apt+=(curl)
    curl --version 2>/dev/null | grep -q HTTP2 || need_apt+=(curl)
    command -v nghttp >/dev/null || need_apt+=(nghttp2-client)   # nghttp (tests), h2load (tests, benchmarks)
    command -v openssl >/dev/null || need_apt+=(openssl)          # test certificates
    # nginx: a TLS/HTTP/2 upstream in the proxy tests, and the reference in the proxy benchmark.
    [[ -x /usr/sbin/nginx ]] || command -v nginx >/dev/null || need_apt+=(nginx)
    command -v redis-server >/dev/null || need_apt+=(redis-server)  # the global rate limit's store
    command -v prometheus >/dev/null || need_apt+=(prometheus)      # scrapes /metrics in the tests; promtool lints it
    # A real browser for the ops console test (driven by selenium through the Debian driver).
    [[ -x /usr/bin/chromium ]] || need_apt+=(chromium)
    [[ -x /usr/bin/chromedriver ]] || need_apt+=(chromium-driver)
fi
if ((${#need_apt[@]})); then
    echo "setup: installing ${need_apt[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq
    # Packages with a service (nginx, redis) must not start it: the tests start their own, on loopback.
    no_start=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        no_start=1
    fi
    status=0
    $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null || status=$?
    if [[ -n "$no_start" ]]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
    ((status == 0)) || exit "$status"
fi

command -v swift >/dev/null || { echo "setup: swift is not on PATH (Swift 6.x toolchain required)" >&2; exit 1; }
[[ "$mode" == run ]] && exit 0

# The Kafka-protocol broker used by the integration tests and benchmarks (see scripts/kafka-broker.sh).
if ! command -v noida-db >/dev/null; then
    echo "setup: installing noida-db (Kafka-protocol broker for tests)" >&2
    python3 -m pip install -q --disable-pip-version-check noida-db==0.2.3
    # Under pyenv a new console script needs a shim before it is on PATH.
    if command -v pyenv >/dev/null; then pyenv rehash; fi
fi

# Independent clients for the tests: python-hyper's h2 (HTTP/2 stream isolation) and grpcio
# (gRPC PublishStream), with grpcio-tools to generate its stubs from Sluice's proto.
python3 -c 'import h2' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check h2==4.4.1
# A real WebSocket server and client for the upgrade-proxy tests (scripts/testing/websocket_peer.py).
python3 -c 'import websockets' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check websockets==15.0.1
# selenium drives the ops console in Chromium (scripts/testing/console_check.py).
python3 -c 'import selenium' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check selenium==4.51.0
# The OTLP trace receiver of the tracing tests (scripts/testing/otlp_receiver.py).
python3 -c 'import opentelemetry.proto.collector.trace.v1.trace_service_pb2' 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check opentelemetry-proto==1.45.0
python3 -c 'import grpc, grpc_tools' 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check grpcio==1.85.1 grpcio-tools==1.85.1
# The official CloudEvents SDK: the client and the decoder of the records (cloudevents_check.py).
python3 -c 'import cloudevents.core.bindings.kafka' 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check cloudevents==2.2.0
# fastavro: decodes the Avro records a route with schema.avro_file writes (avro_decode.py).
python3 -c 'import fastavro' 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check fastavro==1.9.7

# Kinesis peers (both check SigV4): moto (preinstalled on these machines; pinned here) and
# MiniStack, with boto3 for the test helpers. MiniStack brings a newer botocore; moto 5.2.1
# works with it.
python3 -c 'import moto, flask, boto3' 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check "moto[server]==5.2.1"
# The Zerobus test server's TLS certificate and the policy benchmark's RS256 token (moto brings
# it too; named here because they use it directly).
python3 -c 'import cryptography' 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check cryptography==48.0.0
if ! command -v ministack >/dev/null; then
    echo "setup: installing ministack (Kinesis emulator for tests)" >&2
    python3 -m pip install -q --disable-pip-version-check ministack==1.5.33
    if command -v pyenv >/dev/null; then pyenv rehash; fi
fi

# The official Zerobus SDK (databricks-zerobus-ingest-sdk) proves the project's Zerobus test
# server speaks the protocol. It pins protobuf < 7, which grpcio-tools 1.85 cannot use, so it
# lives in a venv of its own.
sdk_venv="$(cd "$(dirname "$0")/.." && pwd)/.testbed/zerobus-sdk"
if ! "$sdk_venv/bin/python" -c 'import zerobus' 2>/dev/null; then
    echo "setup: installing databricks-zerobus-ingest-sdk into $sdk_venv" >&2
    python3 -m venv "$sdk_venv"
    "$sdk_venv/bin/pip" install -q --disable-pip-version-check databricks-zerobus-ingest-sdk==1.10.0
fi

# Confluent's own Schema Registry client and Avro deserializer read back what Sluice framed with
# an id from a registry (scripts/testing/registry_decode.py). Its dependencies (Authlib, httpx)
# would move packages other tools pin, so it lives in a venv of its own too.
confluent_venv="$(cd "$(dirname "$0")/.." && pwd)/.testbed/confluent-kafka"
if ! "$confluent_venv/bin/python" -c 'import confluent_kafka.schema_registry.avro' 2>/dev/null; then
    echo "setup: installing confluent-kafka into $confluent_venv" >&2
    python3 -m venv "$confluent_venv"
    "$confluent_venv/bin/pip" install -q --disable-pip-version-check "confluent-kafka[schemaregistry,avro]==2.16.1"
fi

# The API catalog's checkers (scripts/testing/catalog_check.py): openapi-spec-validator, jsonschema
# for the AsyncAPI and Backstage schemas, schemathesis against a live gateway, and
# kubernetes-validate for deploy/kubernetes. Schemathesis pins its own stack, so a venv of their own.
catalog_venv="$(cd "$(dirname "$0")/.." && pwd)/.testbed/catalog"
if ! "$catalog_venv/bin/python" -c 'import openapi_spec_validator, schemathesis, kubernetes_validate, yaml, referencing' 2>/dev/null; then
    echo "setup: installing schemathesis, openapi-spec-validator and kubernetes-validate into $catalog_venv" >&2
    python3 -m venv "$catalog_venv"
    "$catalog_venv/bin/pip" install -q --disable-pip-version-check \
        schemathesis==4.32.5 openapi-spec-validator==0.9.0 kubernetes-validate==1.37.0
fi
