#!/usr/bin/env bash
# Kafka ingest throughput: Sluice against the same broker as a direct librdkafka producer.
#
#   (a) reference: kcat produces N 200-byte events straight to the broker
#   (b) the same N events POSTed to Sluice as NDJSON, EVENTS_PER_REQUEST per request,
#       CONNECTIONS concurrent connections (ack: sink: every response waits for the broker)
#   (c) one event per request, SINGLE_REQUESTS requests
#
# Prints events/s for each and the ratio (b)/(a). Everything runs on 127.0.0.1, bounded by
# request counts. Both producers use the same librdkafka settings (acks=all, idempotence, lz4,
# linger.ms=5). Usage: Benchmarks/kafka-ingest.sh   (env: N, EVENTS_PER_REQUEST, CONNECTIONS,
# SINGLE_REQUESTS, KAFKA_PORT, SLUICE_PORT)
set -euo pipefail
cd "$(dirname "$0")/.."

N="${N:-500000}"
EVENTS_PER_REQUEST="${EVENTS_PER_REQUEST:-100}"
CONNECTIONS="${CONNECTIONS:-32}"
SINGLE_REQUESTS="${SINGLE_REQUESTS:-20000}"
export KAFKA_PORT="${KAFKA_PORT:-19093}"
SLUICE_PORT="${SLUICE_PORT:-18080}"
ADMIN_PORT="${ADMIN_PORT:-18081}"
BROKER="127.0.0.1:$KAFKA_PORT"
work=".testbed/bench"
mkdir -p "$work"

scripts/setup.sh bench
swift build -c release --product sluice >/dev/null

sluice_pid=""
cleanup() {
    [[ -n "$sluice_pid" ]] && kill -TERM "$sluice_pid" 2>/dev/null && wait "$sluice_pid" 2>/dev/null || true
    scripts/kafka-broker.sh stop >/dev/null
}
trap cleanup EXIT
scripts/kafka-broker.sh start >/dev/null

# N events of exactly 200 bytes each (one JSON object per line).
python3 - "$N" "$EVENTS_PER_REQUEST" "$work" <<'PY'
import sys
n, per, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def event(i):
    head = '{"id":%d,"kind":"bench","pad":"' % i
    return head + "x" * (200 - len(head) - 2) + '"}'
with open(f"{work}/events.ndjson", "w") as f:
    for i in range(n):
        f.write(event(i) + "\n")
with open(f"{work}/request.ndjson", "w") as f:
    for i in range(per):
        f.write(event(i) + "\n")
with open(f"{work}/single.json", "w") as f:
    f.write(event(0))
PY

rate() { python3 -c "print(round($1 / ($3 - $2)))"; }

# (a) Reference: librdkafka via kcat, same producer settings as Sluice's defaults.
# Runs a command; prints its wall-clock seconds and CPU seconds (children's rusage).
wall_and_cpu_of() { python3 -c 'import resource, subprocess, sys, time
start = time.monotonic()
subprocess.run(sys.argv[1:], check=True)
wall = time.monotonic() - start
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(wall, r.ru_utime + r.ru_stime)' "$@"; }
# CPU seconds a running process has used so far.
cpu_of_pid() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
per_event_us() { python3 -c "print(f'{($2 - $1) * 1e6 / $3:.2f}')"; }

read -r kcat_wall kcat_cpu < <(wall_and_cpu_of kcat -P -b "$BROKER" -t bench-direct -X acks=all -X enable.idempotence=true \
    -X compression.type=lz4 -X linger.ms=5 -l "$work/events.ndjson")
direct=$(rate "$N" 0 "$kcat_wall")
kcat_us=$(per_event_us 0 "$kcat_cpu" "$N")

cat >"$work/sluice.yaml" <<YAML
listeners: [{ name: bench, address: "127.0.0.1:$SLUICE_PORT" }]
admin: { address: "127.0.0.1:$ADMIN_PORT" }
sinks:
  - name: events
    kafka: { bootstrap_servers: ["$BROKER"] }
routes:
  - name: ingest
    match: { path: "/v1/events/{topic}", methods: [POST] }
    ingest: { sink: events, topic: "{topic}", ack: sink }
YAML
.build/release/sluice run --config "$work/sluice.yaml" --log-level warning >"$work/sluice.log" 2>&1 &
sluice_pid=$!
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$ADMIN_PORT/ready" >/dev/null && break
    sleep 0.1
done
curl -fs "http://127.0.0.1:$ADMIN_PORT/ready" >/dev/null || { echo "sluice not ready"; cat "$work/sluice.log"; exit 1; }

# hey sends exactly -n requests (a multiple of -c); every one must be answered 200 for the run to count.
run_hey() {  # requests body content-type topic
    hey -n "$1" -c "$CONNECTIONS" -m POST -T "$3" -D "$2" "http://127.0.0.1:$SLUICE_PORT/v1/events/$4" >"$work/hey.out"
    if ! grep -q "\[200\]	$1 responses" "$work/hey.out"; then
        echo "not every request was answered 200:" >&2
        cat "$work/hey.out" >&2
        exit 1
    fi
    awk '/Requests\/sec/ {print $2}' "$work/hey.out"
}

# (b) NDJSON, EVENTS_PER_REQUEST events per request.
requests=$((N / EVENTS_PER_REQUEST / CONNECTIONS * CONNECTIONS))
cpu_before=$(cpu_of_pid "$sluice_pid")
rps=$(run_hey "$requests" "$work/request.ndjson" application/x-ndjson bench-ndjson)
sluice_us=$(per_event_us "$cpu_before" "$(cpu_of_pid "$sluice_pid")" "$((requests * EVENTS_PER_REQUEST))")
batched=$(python3 -c "print(round($rps * $EVENTS_PER_REQUEST))")
p99b=$(awk '/99% in/ {print $3 * 1000 " ms"}' "$work/hey.out")

# (c) One event per request.
single=$(run_hey "$((SINGLE_REQUESTS / CONNECTIONS * CONNECTIONS))" "$work/single.json" application/json bench-single)
single=$(python3 -c "print(round($single))")
p99s=$(awk '/99% in/ {print $3 * 1000 " ms"}' "$work/hey.out")

ratio=$(python3 -c "print(f'{$batched / $direct:.2f}')")
cat <<OUT
date:                          $(date -u +%Y-%m-%d)
events:                        $N x 200 B, $CONNECTIONS connections
(a) kcat direct produce:       $direct events/s  ($kcat_us us CPU per event)
(b) Sluice NDJSON x$EVENTS_PER_REQUEST:        $batched events/s  (p99 $p99b per request; $sluice_us us CPU per event in Sluice)
(c) Sluice 1 event/request:    $single events/s  (p99 $p99s)
ratio (b)/(a):                 $ratio
OUT
