#!/usr/bin/env bash
# Zerobus ingest throughput, beside the Kafka path and the official SDK, in the same run.
#
#   (z) N 200-byte JSON events POSTed to Sluice as NDJSON (EVENTS_PER_REQUEST per request,
#       CONNECTIONS connections, ack: sink) into a Zerobus sink streaming to the project's test
#       server (connectors/zerobus/testserver, --no-store: it parses every record and acks, keeps
#       only counts). Every event is answered only once the server acknowledged it.
#   (s) the same N records ingested straight into the same server by the official Python SDK
#       (databricks-zerobus-ingest-sdk, Rust core) in batches of EVENTS_PER_REQUEST: what the
#       server takes from the vendor's own client.
#   (f) the same events through the same Sluice into Kafka (noida-db).
#
# Prints events/s for each, the ratios (z)/(s) and (z)/(f), and CPU per event in Sluice and in
# the server (a server near 100% of a core is the bottleneck, not Sluice). Everything on
# 127.0.0.1, bounded by counts. Usage: Benchmarks/zerobus-ingest.sh
# (env: N, EVENTS_PER_REQUEST, CONNECTIONS, KAFKA_PORT, SLUICE_PORT, ZEROBUS_PORT)
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib.sh

N="${N:-200000}"
EVENTS_PER_REQUEST="${EVENTS_PER_REQUEST:-100}"
CONNECTIONS="${CONNECTIONS:-32}"
export KAFKA_PORT="${KAFKA_PORT:-19093}"
SLUICE_PORT="${SLUICE_PORT:-18080}"
ADMIN_PORT="${ADMIN_PORT:-18081}"
ZEROBUS_PORT="${ZEROBUS_PORT:-18086}"
ZEROBUS_HTTP_PORT="${ZEROBUS_HTTP_PORT:-18087}"
BROKER="127.0.0.1:$KAFKA_PORT"
work=".testbed/bench-zerobus"
mkdir -p "$work"

scripts/setup.sh
build_sluice

zerobus_pid=""
trap 'stop_pid_in zerobus_pid; stop_started' EXIT
start_kafka_broker

write_ndjson_request "$EVENTS_PER_REQUEST"

committed() { curl -fs "http://127.0.0.1:$ZEROBUS_HTTP_PORT/_stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['committed_count'])"; }

# (s) the official SDK, straight into a fresh server.
start_zerobus_server "$work/server.log"
e0=$(cpu_of_pid "$zerobus_pid")
sdk=$(.testbed/zerobus-sdk/bin/python scripts/testing/zerobus_sdk_bench.py "$ZEROBUS_PORT" "$ZEROBUS_HTTP_PORT" bench bench-secret \
    main.bench.events "$work/request.ndjson" "$N" "$EVENTS_PER_REQUEST" | tail -n 1)  # the SDK logs to stdout
e1=$(cpu_of_pid "$zerobus_pid")
read -r sdk_seconds sdk_cpu <<<"$(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d['seconds'], d['cpu_seconds'])" "$sdk")"
[[ "$(committed)" -ge "$N" ]] || { echo "the SDK run left $(committed) of $N records committed" >&2; exit 1; }
stop_pid_in zerobus_pid

# (z) and (f) through Sluice, with a fresh server.
start_zerobus_server "$work/server.log"
cat >"$work/sluice.yaml" <<YAML
listeners: [{ name: bench, address: "127.0.0.1:$SLUICE_PORT" }]
admin: { address: "127.0.0.1:$ADMIN_PORT" }
sinks:
$(zerobus_sink_yaml zerobus)
  - name: kafka
    kafka: { bootstrap_servers: ["$BROKER"] }
routes:
  - name: zerobus
    match: { path: /zerobus, methods: [POST] }
    ingest: { sink: zerobus }
  - name: kafka
    match: { path: /kafka, methods: [POST] }
    ingest: { sink: kafka, topic: bench-zerobus-beside, key: "json:/user" }
YAML
BENCH_ZEROBUS_SECRET=bench-secret start_sluice "$work/sluice.yaml" "$work/sluice.log" "$ADMIN_PORT"

requests=$((N / EVENTS_PER_REQUEST))

s0=$(cpu_of_pid "$sluice_pid"); z0=$(cpu_of_pid "$zerobus_pid")
zrps=$(run_ndjson_load zerobus)
s1=$(cpu_of_pid "$sluice_pid"); z1=$(cpu_of_pid "$zerobus_pid")
zlat=$(latency)
[[ "$(committed)" -ge "$N" ]] || { echo "the server committed $(committed) of $N records" >&2; exit 1; }

frps=$(run_ndjson_load kafka)
s2=$(cpu_of_pid "$sluice_pid")
flat=$(latency)

zerobus=$(python3 -c "print(round($zrps * $EVENTS_PER_REQUEST))")
direct=$(python3 -c "print(round($N / $sdk_seconds))")
kafka=$(python3 -c "print(round($frps * $EVENTS_PER_REQUEST))")
cat <<OUT
date:                             $(date -u +%Y-%m-%d)
events:                           $N x 200 B JSON
(z) Sluice -> Zerobus server:     $zerobus events/s  (NDJSON x$EVENTS_PER_REQUEST, HTTP/1.1 x$CONNECTIONS; request time $zlat;
                                  $(per_event_us "$s0" "$s1" "$N") us CPU/event in Sluice, $(per_event_us "$z0" "$z1" "$N") us CPU/event in the server)
(s) official SDK -> same server:  $direct events/s  ($(python3 -c "print(f'{$sdk_cpu * 1e6 / $N:.2f}')") us CPU/event in the SDK client, $(per_event_us "$e0" "$e1" "$N") us in the server)
(f) Sluice -> Kafka (same run):   $kafka events/s  (request time $flat; $(per_event_us "$s1" "$s2" "$N") us CPU/event in Sluice)
ratio (z)/(s):                    $(python3 -c "print(f'{$zerobus / $direct:.2f}')")
ratio (z)/(f):                    $(python3 -c "print(f'{$zerobus / $kafka:.2f}')")
OUT
