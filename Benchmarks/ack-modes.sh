#!/usr/bin/env bash
# What each ack mode costs, in one run against one broker: the same load on three routes of one
# Sluice — ack: sink (answer after the broker), ack: accepted (answer once queued in memory) and
# ack: spooled (answer once fsynced in the route's spool, forwarded afterwards).
#
#   (a) NDJSON, EVENTS_PER_REQUEST 200-byte events per request, CONNECTIONS connections
#   (b) one event per request, SINGLE_REQUESTS requests (where group commit earns its keep)
#
# For each: requests/s, events/s, p50/p99 request latency (h2load's per-request log), Sluice CPU
# per event; for spooled, also how long the forwarder took to drain the spool after the load.
# Runs are interleaved (sink, accepted, spooled, then again) ROUNDS times; the best of each is
# printed. Everything on 127.0.0.1, bounded by request counts.
# Usage: Benchmarks/ack-modes.sh   (env: N, EVENTS_PER_REQUEST, CONNECTIONS, SINGLE_REQUESTS, ROUNDS)
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib.sh

N="${N:-200000}"
EVENTS_PER_REQUEST="${EVENTS_PER_REQUEST:-100}"
CONNECTIONS="${CONNECTIONS:-64}"
SINGLE_REQUESTS="${SINGLE_REQUESTS:-20000}"
ROUNDS="${ROUNDS:-2}"
export KAFKA_PORT="${KAFKA_PORT:-19093}"
SLUICE_PORT="${SLUICE_PORT:-18080}"
ADMIN_PORT="${ADMIN_PORT:-18081}"
BROKER="127.0.0.1:$KAFKA_PORT"
work=".testbed/bench-ack"
rm -rf "$work/spool"
mkdir -p "$work"

scripts/setup.sh
build_sluice

trap stop_started EXIT
start_kafka_broker

write_ndjson_request "$EVENTS_PER_REQUEST"
python3 -c 'import sys; sys.stdout.write("{\"id\":1,\"user\":\"u1\",\"pad\":\"" + "x" * 170 + "\"}")' >"$work/single.json"

cat >"$work/sluice.yaml" <<YAML
listeners: [{ name: bench, address: "127.0.0.1:$SLUICE_PORT" }]
admin: { address: "127.0.0.1:$ADMIN_PORT" }
sinks:
  - name: events
    kafka: { bootstrap_servers: ["$BROKER"] }
routes:
  - name: sink
    match: { path: "/sink/{topic}", methods: [POST] }
    ingest: { sink: events, topic: "{topic}", ack: sink }
  - name: accepted
    match: { path: "/accepted/{topic}", methods: [POST] }
    ingest: { sink: events, topic: "{topic}", ack: accepted }
  - name: spooled
    match: { path: "/spooled/{topic}", methods: [POST] }
    ingest: { sink: events, topic: "{topic}", ack: spooled, spool: { directory: "$work/spool", max_bytes: 4GiB, segment_bytes: 64MiB } }
YAML
start_sluice "$work/sluice.yaml" "$work/sluice.log" "$ADMIN_PORT"

spool_events() {
    curl -fs "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^sluice_spool_events\{route="spooled"\}/ {print $2}'
}

# One load: prints "requests/s p50_ms p99_ms cpu_us_per_event [drain_s]".
run() {  # mode requests body content-type events_per_request
    local mode=$1 requests=$2 body=$3 type=$4 per=$5
    rm -f "$work/requests.log"
    local cpu_before
    cpu_before=$(cpu_of_pid "$sluice_pid")
    h2load --h1 -c "$CONNECTIONS" -n "$requests" -d "$body" -H "content-type: $type" --log-file="$work/requests.log" \
        "http://127.0.0.1:$SLUICE_PORT/$mode/bench-$mode" >"$work/load.out" 2>&1
    expect_all_2xx "$requests" "$work/load.out" "$mode"
    local rps
    rps=$(awk '/finished in/ {print $4}' "$work/load.out")
    local drain="-"
    if [[ "$mode" == spooled ]]; then
        local start
        start=$(date +%s.%N)
        until python3 -c "import sys; sys.exit(0 if float('$(spool_events)' or 1) == 0 else 1)"; do sleep 0.05; done
        drain=$(python3 -c "print(f'{$(date +%s.%N) - $start:.2f}')")
    fi
    local cpu
    cpu=$(per_event_us "$cpu_before" "$(cpu_of_pid "$sluice_pid")" $((requests * per)))
    # h2load's log: start time, status, duration (µs) per request, tab-separated.
    python3 - "$work/requests.log" "$rps" "$cpu" "$drain" <<'PY'
import sys
times = sorted(int(line.split("\t")[2]) for line in open(sys.argv[1]) if line[0].isdigit())
p = lambda q: times[min(len(times) - 1, int(q * len(times)))] / 1000
print(sys.argv[2], f"{p(0.50):.2f}", f"{p(0.99):.2f}", sys.argv[3], sys.argv[4])
PY
}

declare -A best
for round in $(seq 1 "$ROUNDS"); do
    for mode in sink accepted spooled; do
        for shape in batch single; do
            if [[ $shape == batch ]]; then
                line=$(run "$mode" $((N / EVENTS_PER_REQUEST)) "$work/request.ndjson" application/x-ndjson "$EVENTS_PER_REQUEST")
            else
                line=$(run "$mode" "$SINGLE_REQUESTS" "$work/single.json" application/json 1)
            fi
            key="$mode-$shape"
            previous=${best[$key]:-}
            if [[ -z "$previous" ]] || python3 -c "import sys; sys.exit(0 if float('${line%% *}') > float('${previous%% *}') else 1)"; then
                best[$key]=$line
            fi
        done
    done
done

echo "ack modes, one Sluice, one broker (best of $ROUNDS interleaved rounds)"
printf '%-10s %-7s %12s %12s %9s %9s %12s %9s\n' mode shape requests/s events/s p50_ms p99_ms cpu_us/event drain_s
for mode in sink accepted spooled; do
    for shape in batch single; do
        read -r rps p50 p99 cpu drain <<<"${best[$mode-$shape]}"
        per=$([[ $shape == batch ]] && echo "$EVENTS_PER_REQUEST" || echo 1)
        events=$(python3 -c "print(round($rps * $per))")
        printf '%-10s %-7s %12.0f %12s %9s %9s %12s %9s\n' "$mode" "$shape" "$rps" "$events" "$p50" "$p99" "$cpu" "$drain"
    done
done
