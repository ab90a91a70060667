#!/usr/bin/env bash
# Kinesis ingest throughput, beside the Kafka path, in the same run.
#
#   (k) N 200-byte events POSTed to Sluice as NDJSON (EVENTS_PER_REQUEST per request, CONNECTIONS
#       connections, ack: sink) into a Kinesis sink whose endpoint is the project's PutRecords
#       server (scripts/testing/kinesis_fault_server.py --no-store): it verifies every SigV4
#       signature with botocore, like AWS would, but keeps nothing.
#   (f) the same events through the same Sluice into Kafka (noida-db), for comparison.
#
# Prints events/s for each, the ratio (k)/(f), and CPU per event in Sluice and in the endpoint
# (an endpoint near 100% of a core is the bottleneck, not Sluice). Everything on 127.0.0.1,
# bounded by request counts. Usage: Benchmarks/kinesis-ingest.sh  (env: N, EVENTS_PER_REQUEST,
# CONNECTIONS, KINESIS_CONCURRENCY, KINESIS_LINGER, KAFKA_PORT, SLUICE_PORT, KINESIS_PORT)
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib.sh

N="${N:-200000}"
EVENTS_PER_REQUEST="${EVENTS_PER_REQUEST:-100}"
CONNECTIONS="${CONNECTIONS:-32}"
export KAFKA_PORT="${KAFKA_PORT:-19093}"
SLUICE_PORT="${SLUICE_PORT:-18080}"
ADMIN_PORT="${ADMIN_PORT:-18081}"
KINESIS_PORT="${KINESIS_PORT:-18085}"
BROKER="127.0.0.1:$KAFKA_PORT"
work=".testbed/bench-kinesis"
mkdir -p "$work"

scripts/setup.sh
build_sluice

trap stop_started EXIT
start_kafka_broker
start_kinesis_endpoint "$work/endpoint.log"

write_ndjson_request "$EVENTS_PER_REQUEST"

cat >"$work/sluice.yaml" <<YAML
listeners: [{ name: bench, address: "127.0.0.1:$SLUICE_PORT" }]
admin: { address: "127.0.0.1:$ADMIN_PORT" }
sinks:
$(kinesis_sink_yaml kinesis)
      max_concurrent_requests: ${KINESIS_CONCURRENCY:-8}
      linger: ${KINESIS_LINGER:-10ms}
  - name: kafka
    kafka: { bootstrap_servers: ["$BROKER"] }
routes:
  - name: kinesis
    match: { path: /kinesis, methods: [POST] }
    ingest: { sink: kinesis, key: "json:/user" }
  - name: kafka
    match: { path: /kafka, methods: [POST] }
    ingest: { sink: kafka, topic: bench-kinesis-beside, key: "json:/user" }
YAML
KINESIS_CONCURRENCY="${KINESIS_CONCURRENCY:-8}" KINESIS_LINGER="${KINESIS_LINGER:-10ms}" BENCH_KINESIS_SECRET=bench-secret start_sluice "$work/sluice.yaml" "$work/sluice.log" "$ADMIN_PORT"

requests=$((N / EVENTS_PER_REQUEST))

s0=$(cpu_of_pid "$sluice_pid"); e0=$(cpu_of_pid "$kinesis_pid")
krps=$(run_ndjson_load kinesis)
s1=$(cpu_of_pid "$sluice_pid"); e1=$(cpu_of_pid "$kinesis_pid")
klat=$(latency)
stored=$(curl -fs "http://127.0.0.1:$KINESIS_PORT/_stats" | python3 -c "import json,sys; d=json.load(sys.stdin); print(d['records'], d['calls'], d['signature_failures'])")
read -r records calls bad <<<"$stored"
[[ "$records" -ge "$N" && "$bad" == 0 ]] || { echo "endpoint stored $records of $N records ($bad bad signatures)" >&2; exit 1; }

frps=$(run_ndjson_load kafka)
s2=$(cpu_of_pid "$sluice_pid")
flat=$(latency)

kinesis=$(python3 -c "print(round($krps * $EVENTS_PER_REQUEST))")
kafka=$(python3 -c "print(round($frps * $EVENTS_PER_REQUEST))")
cat <<OUT
date:                             $(date -u +%Y-%m-%d)
events:                           $N x 200 B, NDJSON x$EVENTS_PER_REQUEST per request, HTTP/1.1 x$CONNECTIONS connections
(k) Sluice -> Kinesis endpoint:   $kinesis events/s  (request time $klat; $(per_event_us "$s0" "$s1" "$N") us CPU/event in Sluice,
                                  $(per_event_us "$e0" "$e1" "$N") us CPU/event in the endpoint; $calls PutRecords calls, avg $((records / calls)) records)
(f) Sluice -> Kafka (same run):   $kafka events/s  (request time $flat; $(per_event_us "$s1" "$s2" "$N") us CPU/event in Sluice)
ratio (k)/(f):                    $(python3 -c "print(f'{$kinesis / $kafka:.2f}')")
OUT
