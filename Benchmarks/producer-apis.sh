#!/usr/bin/env bash
# The producer APIs side by side, same broker, same events, same run: Sluice's own NDJSON against
# Confluent REST Proxy v2 (JSON embedded format), v3 (a stream of concatenated records per
# request, and one long stream), and CloudEvents batches.
#
#   (n)  NDJSON, PER events per request                     (the reference of this script)
#   (v2) REST Proxy v2 {"records":[…]}, PER records per request
#   (v3) REST Proxy v3 records: PER concatenated records per request, reports streamed back
#   (v3 stream) one v3 request carrying all N records, chunked (curl), reports streamed back
#   (ce) CloudEvents batched mode, PER structured events per request
#
# Events are 200 bytes of JSON each (the value; v3/v2/CloudEvents wrap it in their envelope).
# Prints events/s and Sluice CPU per event for each, and each ratio to (n). Everything on
# 127.0.0.1, bounded by request counts. Usage: Benchmarks/producer-apis.sh (env: N, PER,
# CONNECTIONS, KAFKA_PORT, SLUICE_PORT, ADMIN_PORT, SLUICE_BIN)
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib.sh

N="${N:-200000}"
PER="${PER:-100}"
CONNECTIONS="${CONNECTIONS:-16}"
export KAFKA_PORT="${KAFKA_PORT:-19093}"
SLUICE_PORT="${SLUICE_PORT:-18080}"
ADMIN_PORT="${ADMIN_PORT:-18081}"
work=".testbed/bench-apis"
mkdir -p "$work"

scripts/setup.sh
build_sluice

trap stop_started EXIT
start_kafka_broker

python3 - "$PER" "$N" "$work" <<'PY'
import base64, json, sys
per, n, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def event(i):
    head = '{"id":%d,"kind":"bench","pad":"' % i
    return head + "x" * (200 - len(head) - 2) + '"}'
events = [event(i) for i in range(per)]
open(f"{work}/n.ndjson", "w").write("\n".join(events) + "\n")
open(f"{work}/v2.json", "w").write('{"records":[' + ",".join('{"value":%s}' % e for e in events) + "]}")
open(f"{work}/v3.json", "w").write("".join('{"value":{"type":"JSON","data":%s}}' % e for e in events))
open(f"{work}/ce.json", "w").write("[" + ",".join(
    '{"specversion":"1.0","id":"%d","source":"/bench","type":"bench","data":%s}' % (i, e) for i, e in enumerate(events)) + "]")
with open(f"{work}/v3-stream.json", "w") as f:
    for i in range(n):
        f.write('{"value":{"type":"JSON","data":%s}}' % event(i))
PY

cat >"$work/sluice.yaml" <<YAML
listeners: [{ name: main, address: "127.0.0.1:$SLUICE_PORT" }]
admin: { address: "127.0.0.1:$ADMIN_PORT" }
sinks:
  - name: events
    kafka:
      bootstrap_servers: ["127.0.0.1:$KAFKA_PORT"]
      properties: { compression.type: lz4, linger.ms: "5" }
routes:
  - name: ndjson
    match: { path: "/v1/events/{topic}", methods: [POST] }
    ingest: { sink: events, topic: "{topic}" }
  - name: rest-v2
    match: { path_prefix: /rest }
    ingest: { api: confluent_v2, sink: events, max_events: 1000000 }
  - name: rest-v3
    match: { path_prefix: /rest3 }
    ingest: { api: confluent_v3, cluster_id: bench, sink: events, max_events: 1000000, max_body_bytes: 1GiB }
  - name: cloudevents
    match: { path: "/v1/ce/{topic}", methods: [POST] }
    ingest: { api: cloudevents, sink: events, topic: "{topic}" }
YAML
start_sluice "$work/sluice.yaml" "$work/sluice.log" "$ADMIN_PORT"

requests=$((N / PER))
# run NAME BODY CONTENT-TYPE PATH: h2load, every request 2xx; prints "events/s cpu-µs/event".
run() {
    local before
    before=$(cpu_of_pid "$sluice_pid")
    h2load --h1 -c "$CONNECTIONS" -n "$requests" -d "$2" -H "content-type: $3" -H "accept: application/vnd.kafka.v2+json" \
        "http://127.0.0.1:$SLUICE_PORT$4" >"$work/load-$1.out" 2>&1
    expect_all_2xx "$requests" "$work/load-$1.out" "$1"
    local rps
    rps=$(awk '/finished in/ {print $4}' "$work/load-$1.out")
    echo "$(python3 -c "print(round($rps * $PER))") $(per_event_us "$before" "$(cpu_of_pid "$sluice_pid")" "$N")"
}
# Each record's report must say 200 (v3 answers 200 with per-record error codes).
check_v3() { grep -q '"error_code":200' "$work/last-v3.out" || { echo "v3: no successful report" >&2; exit 1; }; }

read -r n_eps n_cpu < <(run n "$work/n.ndjson" application/x-ndjson /v1/events/bench-apis-ndjson)
read -r v2_eps v2_cpu < <(run v2 "$work/v2.json" application/vnd.kafka.json.v2+json /rest/topics/bench-apis-v2)
read -r v3_eps v3_cpu < <(run v3 "$work/v3.json" application/json /rest3/v3/clusters/bench/topics/bench-apis-v3/records)
read -r ce_eps ce_cpu < <(run ce "$work/ce.json" application/cloudevents-batch+json /v1/ce/bench-apis-ce)

# One long v3 stream: all N records in one chunked request, reports read as they come.
before=$(cpu_of_pid "$sluice_pid")
start=$(date +%s.%N)
curl -s -X POST -T "$work/v3-stream.json" -H "content-type: application/json" -H "transfer-encoding: chunked" \
    "http://127.0.0.1:$SLUICE_PORT/rest3/v3/clusters/bench/topics/bench-apis-v3-stream/records" >"$work/last-v3.out"
end=$(date +%s.%N)
check_v3
ok=$(grep -o '"error_code":200' "$work/last-v3.out" | wc -l)
[[ "$ok" -eq "$N" ]] || { echo "v3 stream: $ok of $N records reported 200" >&2; exit 1; }
s_eps=$(python3 -c "print(round($N / ($end - $start)))")
s_cpu=$(per_event_us "$before" "$(cpu_of_pid "$sluice_pid")" "$N")

ratio() { python3 -c "print(f'{$1 / $n_eps:.2f}')"; }
echo "events: $N x 200 bytes; $PER per request over $CONNECTIONS connections (HTTP/1.1), ack: sink"
printf '%-44s %10s %14s %8s\n' "" "events/s" "CPU µs/event" "vs (n)"
printf '%-44s %10s %14s %8s\n' "(n) NDJSON" "$n_eps" "$n_cpu" "1.00"
printf '%-44s %10s %14s %8s\n' "(v2) REST Proxy v2, JSON format" "$v2_eps" "$v2_cpu" "$(ratio "$v2_eps")"
printf '%-44s %10s %14s %8s\n' "(v3) REST Proxy v3 records, $PER per request" "$v3_eps" "$v3_cpu" "$(ratio "$v3_eps")"
printf '%-44s %10s %14s %8s\n' "(v3 stream) one v3 stream of all N records" "$s_eps" "$s_cpu" "$(ratio "$s_eps")"
printf '%-44s %10s %14s %8s\n' "(ce) CloudEvents batches" "$ce_eps" "$ce_cpu" "$(ratio "$ce_eps")"
