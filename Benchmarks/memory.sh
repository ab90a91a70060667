#!/usr/bin/env bash
# Memory under backpressure: a 1 GiB NDJSON upload into a throttled Kafka sink.
#
# The broker is paused and resumed (SIGSTOP/SIGCONT, PAUSE_S on / RUN_S off) for as long as the
# upload runs, so the sink is slower than the client. Reports the upload's duration and Sluice's
# peak RSS (VmHWM), which should stay near the sink's in-flight budget, not the body size.
# Everything on 127.0.0.1; bounded by the upload (and a 10-minute cap).
# Usage: Benchmarks/memory.sh   (env: SIZE_MIB, EVENT_BYTES, BUDGET, PAUSE_S, RUN_S)
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib.sh

SIZE_MIB="${SIZE_MIB:-1024}"
EVENT_BYTES="${EVENT_BYTES:-100000}"
BUDGET="${BUDGET:-8MiB}"
PAUSE_S="${PAUSE_S:-2}"
RUN_S="${RUN_S:-0.5}"
export KAFKA_PORT="${KAFKA_PORT:-19094}"
SLUICE_PORT="${SLUICE_PORT:-18090}"
ADMIN_PORT="${ADMIN_PORT:-18091}"
work=".testbed/bench-memory"
mkdir -p "$work"

scripts/setup.sh
build_sluice

throttle_pid=""
cleanup() {
    [[ -n "$throttle_pid" ]] && kill "$throttle_pid" 2>/dev/null || true
    [[ -f ".testbed/kafka-$KAFKA_PORT/pid" ]] && kill -CONT -- "-$(cat ".testbed/kafka-$KAFKA_PORT/pid")" 2>/dev/null || true
    stop_started
    rm -f "$work/upload.ndjson"
}
trap cleanup EXIT
start_kafka_broker
broker_group=$(cat ".testbed/kafka-$KAFKA_PORT/pid")

python3 - "$SIZE_MIB" "$EVENT_BYTES" "$work/upload.ndjson" <<'PY'
import sys
size, event_bytes, path = int(sys.argv[1]) << 20, int(sys.argv[2]), sys.argv[3]
with open(path, "w") as f:
    written, i = 0, 0
    while written < size:
        head = '{"seq":%d,"fill":"' % i
        line = head + "f" * (event_bytes - len(head) - 3) + '"}\n'
        f.write(line)
        written += len(line)
        i += 1
PY
body_bytes=$(stat -c %s "$work/upload.ndjson")
events=$(wc -l < "$work/upload.ndjson")

cat >"$work/sluice.yaml" <<YAML
listeners: [{ name: bench, address: "127.0.0.1:$SLUICE_PORT" }]
admin: { address: "127.0.0.1:$ADMIN_PORT" }
sinks:
  - name: events
    max_in_flight_bytes: $BUDGET
    kafka: { bootstrap_servers: ["127.0.0.1:$KAFKA_PORT"], delivery_timeout: 120s }
routes:
  - name: ingest
    match: { path: "/v1/events/{topic}", methods: [POST] }
    ingest: { sink: events, topic: "{topic}", max_body_bytes: 2GiB, max_events: 10000000, max_wait: 120s }
YAML
start_sluice "$work/sluice.yaml" "$work/sluice.log" "$ADMIN_PORT"
rss_before=$(awk '/VmRSS/ {print $2}' "/proc/$sluice_pid/status")

# Throttle the sink: pause the broker, let it run, repeat.
( while true; do kill -STOP -- "-$broker_group"; sleep "$PAUSE_S"; kill -CONT -- "-$broker_group"; sleep "$RUN_S"; done ) &
throttle_pid=$!

start=$(date +%s.%N)
status=$(curl -sS -m 600 -o "$work/response.json" -w '%{http_code}' -H 'content-type: application/x-ndjson' \
    -X POST -T "$work/upload.ndjson" "http://127.0.0.1:$SLUICE_PORT/v1/events/bench-memory")
end=$(date +%s.%N)
kill "$throttle_pid"; throttle_pid=""
kill -CONT -- "-$broker_group"
peak=$(awk '/VmHWM/ {print $2}' "/proc/$sluice_pid/status")
accepted=$(python3 -c "import json; print(json.load(open('$work/response.json')).get('accepted'))")

python3 - <<PY
body, events, peak_kb, before_kb = $body_bytes, $events, $peak, $rss_before
secs = $end - $start
print(f"date:            $(date -u +%Y-%m-%d)")
print(f"upload:          {body / 2**20:.0f} MiB, {events} events of ~$EVENT_BYTES B, status $status, accepted $accepted")
print(f"throttle:        broker paused ${PAUSE_S}s / running ${RUN_S}s; sink budget $BUDGET")
print(f"duration:        {secs:.1f} s ({body / 2**20 / secs:.0f} MiB/s through the throttled sink)")
print(f"Sluice RSS:      {before_kb / 1024:.0f} MiB idle, peak {peak_kb / 1024:.0f} MiB "
      f"({peak_kb * 1024 / body * 100:.1f}% of the body)")
PY
[[ "$status" == 200 && "$accepted" == "$events" ]] || { echo "upload not fully accepted" >&2; exit 1; }
