#!/usr/bin/env bash
# Kafka ingest throughput: Sluice against the same broker as a direct librdkafka producer.
#
#   (a) reference: kcat produces N 200-byte events straight to the broker
#   (b) the same N events POSTed to Sluice as NDJSON, EVENTS_PER_REQUEST per request,
#       CONNECTIONS concurrent connections (ack: sink: every response waits for the broker)
#   (b') the same over HTTP/2 (H2_CONNECTIONS connections x H2_STREAMS concurrent streams)
#   (c) one event per request, SINGLE_REQUESTS requests
#   (d) the same N events over gRPC PublishStream, 100 per request, GRPC_STREAMS streams on GRPC_CONNECTIONS connections
#   (d') the same N events over gRPC unary Publish, 100 per request, GRPC_UNARY_CALLS (CONNECTIONS)
#       calls in flight on GRPC_CONNECTIONS connections: the same concurrency as (b)
#   (k), (z) SINK_N NDJSON events as in (b) into a Kinesis sink (the project's SigV4-checking
#       PutRecords endpoint) and a Zerobus sink (the project's test server), for Sluice's CPU per
#       event against (b)'s
#   (e) what metrics cost: (b) again with admin.metrics on and off, alternating, METRICS_ROUNDS
#       times each (a fresh Sluice per run), best events/s and least CPU per event of each
#
# Prints events/s for each and every ratio issue 17 sets a goal for, each against its goal. Everything runs on 127.0.0.1, bounded by
# request counts. Both producers use the same librdkafka settings (acks=all, idempotence, lz4,
# linger.ms=5). Usage: Benchmarks/kafka-ingest.sh   (env: N, EVENTS_PER_REQUEST, CONNECTIONS,
# H2_CONNECTIONS, H2_STREAMS, SINGLE_REQUESTS, GRPC_UNARY_CALLS, SINK_N, KAFKA_PORT, SLUICE_PORT; SLUICE_BIN and LOADGEN_BIN
# for builds made elsewhere, e.g. before/after pairs)
set -euo pipefail
cd "$(dirname "$0")/.."
given_bin="${SLUICE_BIN:-}"
source Benchmarks/lib.sh

N="${N:-500000}"
EVENTS_PER_REQUEST="${EVENTS_PER_REQUEST:-100}"
CONNECTIONS="${CONNECTIONS:-64}"
H2_CONNECTIONS="${H2_CONNECTIONS:-8}"
H2_STREAMS="${H2_STREAMS:-8}"
GRPC_STREAMS="${GRPC_STREAMS:-8}"
GRPC_CONNECTIONS="${GRPC_CONNECTIONS:-2}"
GRPC_PORT="${GRPC_PORT:-18082}"
GRPC_UNARY_CALLS="${GRPC_UNARY_CALLS:-$CONNECTIONS}"
SINK_N="${SINK_N:-100000}"
KINESIS_PORT="${KINESIS_PORT:-18085}"
ZEROBUS_PORT="${ZEROBUS_PORT:-18086}"
ZEROBUS_HTTP_PORT="${ZEROBUS_HTTP_PORT:-18087}"
SINGLE_REQUESTS="${SINGLE_REQUESTS:-20000}"
METRICS_ROUNDS="${METRICS_ROUNDS:-3}"
export KAFKA_PORT="${KAFKA_PORT:-19093}"
SLUICE_PORT="${SLUICE_PORT:-18080}"
ADMIN_PORT="${ADMIN_PORT:-18081}"
MQB_PORT="${MQB_PORT:-18083}"
BROKER="127.0.0.1:$KAFKA_PORT"
work=".testbed/bench"
mkdir -p "$work"

scripts/setup.sh
# With SLUICE_BIN (an earlier commit's build, or the static-stdlib one) nothing is built: the gRPC
# load generator is then LOADGEN_BIN, or the one already in .build/release.
if [[ -z "$given_bin" ]]; then
    swift build -c release --product sluice >/dev/null
    swift build -c release --product sluice-loadgen >/dev/null
fi
LOADGEN_BIN="${LOADGEN_BIN:-.build/release/sluice-loadgen}"
[[ -x "$LOADGEN_BIN" ]] || { echo "no gRPC load generator at $LOADGEN_BIN (swift build -c release --product sluice-loadgen)" >&2; exit 1; }

mqb_pid=""
zerobus_pid=""
trap 'stop_pid_in mqb_pid; stop_pid_in zerobus_pid; stop_started' EXIT
start_kafka_broker
start_kinesis_endpoint "$work/kinesis.log"
start_zerobus_server "$work/zerobus.log"

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

# Runs a command; prints its output's last line with " cpu_seconds=S" (its rusage) appended: the
# gRPC load generator's own cost, which shares the two cores with Sluice (h2load's is small).
output_and_cpu_of() { python3 -c 'import resource, subprocess, sys
out = subprocess.run(sys.argv[1:], check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(out, f"cpu_seconds={r.ru_utime + r.ru_stime:.3f}")' "$@"; }

read -r kcat_wall kcat_cpu < <(wall_and_cpu_of kcat -P -b "$BROKER" -t bench-direct -X acks=all -X enable.idempotence=true \
    -X compression.type=lz4 -X linger.ms=5 -l "$work/events.ndjson")
direct=$(rate "$N" 0 "$kcat_wall")
kcat_us=$(per_event_us 0 "$kcat_cpu" "$N")

write_config() {  # file metrics(true|false) [with the Kinesis and Zerobus sinks: other]
cat >"$1" <<YAML
listeners: [{ name: bench, address: "127.0.0.1:$SLUICE_PORT" }]
admin: { address: "127.0.0.1:$ADMIN_PORT"${2:+, metrics: $2} }
grpc: { address: "127.0.0.1:$GRPC_PORT" }
sinks:
  - name: events
    kafka: { bootstrap_servers: ["$BROKER"] }
$([[ "${3:-}" == other ]] && kinesis_sink_yaml kinesis && zerobus_sink_yaml zerobus)
routes:
  - name: ingest
    match: { path: "/v1/events/{topic}", methods: [POST] }
    ingest: { sink: events, topic: "{topic}", ack: sink }
  - name: grpc
    match: { grpc_service: sluice.v1.Ingest }
    ingest: { sink: events, topic: "{topic}" }
YAML
[[ "${3:-}" == other ]] && kinesis_zerobus_routes_yaml >>"$1"
return 0
}
# With METRICS_ROUNDS=0 the config does not name admin.metrics (default: on), so a build from
# before metrics existed runs it too (SLUICE_BIN=… for before/after rows).
write_config "$work/sluice.yaml" "$( ((METRICS_ROUNDS > 0)) && echo true )" other
write_config "$work/sluice-no-metrics.yaml" false
BENCH_KINESIS_SECRET=bench-secret BENCH_ZEROBUS_SECRET=bench-secret start_sluice "$work/sluice.yaml" "$work/sluice.log" "$ADMIN_PORT"

# h2load (nghttp2, C) sends exactly -n requests and costs the shared CPU little; every request
# must be answered 2xx for the run to count. Prints requests/s; leaves the report in load.out.
run_load() {  # requests body content-type path [h2]
    local proto=(--h1 -c "$CONNECTIONS")
    [[ "${5:-}" == h2 ]] && proto=(-c "$H2_CONNECTIONS" -m "$H2_STREAMS")
    h2load "${proto[@]}" -n "$1" -d "$2" -H "content-type: $3" "http://127.0.0.1:$SLUICE_PORT/$4" >"$work/load.out" 2>&1
    expect_all_2xx "$1"
    awk '/finished in/ {print $4}' "$work/load.out"
}

# (b) NDJSON, EVENTS_PER_REQUEST events per request, HTTP/1.1.
requests=$((N / EVENTS_PER_REQUEST))
cpu_before=$(cpu_of_pid "$sluice_pid")
rps=$(run_load "$requests" "$work/request.ndjson" application/x-ndjson v1/events/bench-ndjson)
sluice_us=$(per_event_us "$cpu_before" "$(cpu_of_pid "$sluice_pid")" "$N")
batched=$(python3 -c "print(round($rps * $EVENTS_PER_REQUEST))")
latb=$(latency)

# (b') the same over HTTP/2: H2_CONNECTIONS connections x H2_STREAMS concurrent streams.
rps2=$(run_load "$requests" "$work/request.ndjson" application/x-ndjson v1/events/bench-ndjson-h2 h2)
batched2=$(python3 -c "print(round($rps2 * $EVENTS_PER_REQUEST))")

# (c) One event per request.
single=$(run_load "$SINGLE_REQUESTS" "$work/single.json" application/json v1/events/bench-single)
single=$(python3 -c "print(round($single))")
lats=$(latency)

# (f) Second reference: mq-bridge 1.2.0 (PyPI; Rust), HTTP -> Kafka on the same broker, one
# event per request over the same connections. It answers 202 before the broker acknowledges.
mqb_venv=".testbed/mq-bridge"
if ! "$mqb_venv/bin/python" -c "import mq_bridge" 2>/dev/null; then
    python3 -m venv "$mqb_venv" && "$mqb_venv/bin/pip" install -q "mq-bridge==1.2.0"
fi
"$mqb_venv/bin/python" Benchmarks/mq_bridge_route.py "$MQB_PORT" "$BROKER" bench-mqb >"$work/mq-bridge.log" 2>&1 &
mqb_pid=$!
for _ in $(seq 1 100); do grep -q ready "$work/mq-bridge.log" && break; sleep 0.1; done
h2load --h1 -c "$CONNECTIONS" -n "$SINGLE_REQUESTS" -d "$work/single.json" -H "content-type: application/json" \
    "http://127.0.0.1:$MQB_PORT/events" >"$work/load-mqb.out" 2>&1
stop_pid_in mqb_pid
expect_all_2xx "$SINGLE_REQUESTS" "$work/load-mqb.out" mq-bridge
mqb=$(awk '/finished in/ {print int($4)}' "$work/load-mqb.out")

# (d) gRPC PublishStream.
cpu_before=$(cpu_of_pid "$sluice_pid")
grpc_out=$(output_and_cpu_of "$LOADGEN_BIN" "$GRPC_PORT" bench-grpc "$N" "$EVENTS_PER_REQUEST" "$GRPC_STREAMS" "$GRPC_CONNECTIONS")
grpc_us=$(per_event_us "$cpu_before" "$(cpu_of_pid "$sluice_pid")" "$N")
[[ "$grpc_out" == *durable=true* ]] || { echo "gRPC run not fully durable: $grpc_out" >&2; exit 1; }
grpc_rate=$(sed -E 's/.*events_per_second=([0-9]+).*/\1/' <<<"$grpc_out")
grpc_client_us=$(per_event_us 0 "$(sed -E 's/.*cpu_seconds=([0-9.]+).*/\1/' <<<"$grpc_out")" "$N")

# (d') gRPC unary Publish, as many calls in flight as (b) has connections.
cpu_before=$(cpu_of_pid "$sluice_pid")
unary_out=$(output_and_cpu_of "$LOADGEN_BIN" --unary "$GRPC_PORT" bench-grpc-unary "$N" "$EVENTS_PER_REQUEST" "$GRPC_UNARY_CALLS" "$GRPC_CONNECTIONS")
unary_events=$(sed -E 's/^events=([0-9]+).*/\1/' <<<"$unary_out")
unary_us=$(per_event_us "$cpu_before" "$(cpu_of_pid "$sluice_pid")" "$unary_events")
[[ "$unary_out" == *durable=true* ]] || { echo "gRPC unary run not fully accepted: $unary_out" >&2; exit 1; }
unary_rate=$(sed -E 's/.*events_per_second=([0-9]+).*/\1/' <<<"$unary_out")
unary_client_us=$(per_event_us 0 "$(sed -E 's/.*cpu_seconds=([0-9.]+).*/\1/' <<<"$unary_out")" "$unary_events")

# (k) and (z): SINK_N events as in (b) into the Kinesis and Zerobus sinks; every request is
# answered after the endpoint acknowledged its events, and the endpoints must hold them all.
sink_requests=$((SINK_N / EVENTS_PER_REQUEST))
cpu_before=$(cpu_of_pid "$sluice_pid")
krps=$(run_load "$sink_requests" "$work/request.ndjson" application/x-ndjson kinesis)
kinesis_us=$(per_event_us "$cpu_before" "$(cpu_of_pid "$sluice_pid")" "$SINK_N")
stored=$(curl -fs "http://127.0.0.1:$KINESIS_PORT/_stats" | python3 -c "import json,sys; d=json.load(sys.stdin); print(d['records'], d['signature_failures'])")
read -r records bad <<<"$stored"
[[ "$records" -ge "$SINK_N" && "$bad" == 0 ]] || { echo "Kinesis endpoint stored $records of $SINK_N records ($bad bad signatures)" >&2; exit 1; }
cpu_before=$(cpu_of_pid "$sluice_pid")
zrps=$(run_load "$sink_requests" "$work/request.ndjson" application/x-ndjson zerobus)
zerobus_us=$(per_event_us "$cpu_before" "$(cpu_of_pid "$sluice_pid")" "$SINK_N")
committed=$(curl -fs "http://127.0.0.1:$ZEROBUS_HTTP_PORT/_stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['committed_count'])")
[[ "$committed" -ge "$SINK_N" ]] || { echo "Zerobus server committed $committed of $SINK_N records" >&2; exit 1; }

# (e) Metrics on and off, alternating, each on a fresh Sluice.
stop_sluice
on_rates=(0); off_rates=(1); on_us=(0); off_us=(0)
((METRICS_ROUNDS > 0)) && on_rates=() && off_rates=() && on_us=() && off_us=()
for round in $(seq 1 "$METRICS_ROUNDS"); do
    for mode in on off; do
        config="$work/sluice.yaml"; [[ $mode == off ]] && config="$work/sluice-no-metrics.yaml"
        start_sluice "$config" "$work/sluice-$mode.log" "$ADMIN_PORT"
        cpu_before=$(cpu_of_pid "$sluice_pid")
        rps_e=$(run_load "$requests" "$work/request.ndjson" application/x-ndjson v1/events/bench-metrics-$mode)
        us_e=$(per_event_us "$cpu_before" "$(cpu_of_pid "$sluice_pid")" "$N")
        if [[ $mode == on ]]; then
            # Read whole first: `curl | grep -q` under pipefail fails when grep stops reading early.
            scrape=$(curl -fs "http://127.0.0.1:$ADMIN_PORT/metrics")
            grep -q "sluice_sink_events_sent_total{sink=\"events\"} $N\$" <<<"$scrape" \
                || { echo "metrics on but the sent count is not $N" >&2; exit 1; }
            on_rates+=("$rps_e"); on_us+=("$us_e")
        else
            off_rates+=("$rps_e"); off_us+=("$us_e")
        fi
        stop_sluice
    done
done
best() { printf '%s\n' "$@" | sort -g | tail -1; }
least() { printf '%s\n' "$@" | sort -g | head -1; }
metrics_on=$(python3 -c "print(round($(best "${on_rates[@]}") * $EVENTS_PER_REQUEST))")
metrics_off=$(python3 -c "print(round($(best "${off_rates[@]}") * $EVENTS_PER_REQUEST))")

metrics_lines="(e) metrics on / off (b):      not run (METRICS_ROUNDS=0)"
((METRICS_ROUNDS > 0)) && metrics_lines="(e) metrics on / off (b):      $metrics_on / $metrics_off events/s (best of $METRICS_ROUNDS); CPU per event $(least "${on_us[@]}") / $(least "${off_us[@]}") us
ratio (e) on/off:              $(python3 -c "print(f'{$metrics_on / $metrics_off:.3f}')")"

# A ratio against issue 17's goal: goal NUMERATOR DENOMINATOR >=|<= TARGET.
goal() { python3 -c "import sys
r = float(sys.argv[1]) / float(sys.argv[2]); op, target = sys.argv[3], float(sys.argv[4])
met = r >= target if op == '>=' else r <= target
print(f'{r:.2f}  (goal {op} {target:.2f}: {\"met\" if met else \"not met\"})')" "$@"; }
cat <<OUT
date:                          $(date -u +%Y-%m-%d)
events:                        $N x 200 B; HTTP/1.1 $CONNECTIONS connections; HTTP/2 $H2_CONNECTIONS x $H2_STREAMS streams
(a) kcat direct produce:       $direct events/s  ($kcat_us us CPU per event)
(b) Sluice NDJSON x$EVENTS_PER_REQUEST h1:     $batched events/s  (request time $latb; $sluice_us us CPU per event in Sluice)
(b') Sluice NDJSON x$EVENTS_PER_REQUEST h2:    $batched2 events/s
(c) Sluice 1 event/request:    $single events/s  (request time $lats)
(d) Sluice gRPC stream x$EVENTS_PER_REQUEST:   $grpc_rate events/s  ($GRPC_STREAMS streams on $GRPC_CONNECTIONS connections; $grpc_us us CPU per event in Sluice, $grpc_client_us in the client)
(d') Sluice gRPC unary x$EVENTS_PER_REQUEST:   $unary_rate events/s  ($GRPC_UNARY_CALLS calls in flight on $GRPC_CONNECTIONS connections; $unary_us us CPU per event in Sluice, $unary_client_us in the client)
(f) mq-bridge 1 event/request: $mqb events/s  (202 before the broker's ack; Sluice's (c) waits for it)
(k) Sluice -> Kinesis x$EVENTS_PER_REQUEST:    $(python3 -c "print(round($krps * $EVENTS_PER_REQUEST))") events/s  ($SINK_N events; $kinesis_us us CPU per event in Sluice)
(z) Sluice -> Zerobus x$EVENTS_PER_REQUEST:    $(python3 -c "print(round($zrps * $EVENTS_PER_REQUEST))") events/s  ($SINK_N events; $zerobus_us us CPU per event in Sluice)
$metrics_lines
ratio (d)/(a):                 $(python3 -c "print(f'{$grpc_rate / $direct:.2f}')")
issue 17's goals:
  (b)/(a) events/s:            $(goal "$batched" "$direct" '>=' 0.9)
  (b')/(a) events/s:           $(goal "$batched2" "$direct" '>=' 0.9)
  CPU per event (b)/(a):       $(goal "$sluice_us" "$kcat_us" '<=' 1.5)
  (d)/(b) events/s:            $(goal "$grpc_rate" "$batched" '>=' 1)
  (d')/(b) events/s:           $(goal "$unary_rate" "$batched" '>=' 0.9)
  (for (d), (d'): Sluice's CPU per event against (b)'s: $(python3 -c "print(f'{$grpc_us / $sluice_us:.2f} and {$unary_us / $sluice_us:.2f}')"))
  (c)/(f) requests/s:          $(goal "$single" "$mqb" '>=' 2)
  CPU per event (k)/(b):       $(goal "$kinesis_us" "$sluice_us" '<=' 1.5)
  CPU per event (z)/(b):       $(goal "$zerobus_us" "$sluice_us" '<=' 1.5)
OUT
