#!/usr/bin/env bash
# Instructions per event under callgrind: the stable figure beside kafka-ingest.sh's noisy ones.
#
# callgrind counts instructions, not seconds, so the figure barely moves with what else the
# machine is doing: a change of a few percent shows. Both sides run under valgrind, so
# librdkafka batches alike on both:
#
#   (a) kcat producing the events straight to the broker, marginal instructions per event
#       (a run of 3*N events minus a run of N, divided by 2*N: startup and metadata excluded)
#   (b) Sluice, HTTP/1.1 NDJSON, 100 events per request, ack: sink
#   (b') the same over HTTP/2
#   (c) one event per request, ack: sink
#   (d) gRPC PublishStream, 100 events per message
#   (d') gRPC unary Publish, 100 events per call, 4 calls in flight
#   (k) as (b), into a Kinesis sink (the project's SigV4-checking PutRecords server, --no-store)
#   (z) as (b), into a Zerobus sink (the project's Zerobus test server, --no-store)
#
# (k) and (z) are set against (b), the same requests into Kafka: issue 17 wants a Kinesis or
# Zerobus event to cost at most 1.5x a Kafka event. Their servers are Python processes outside
# the count.
#
# Sluice's counts cover every thread of the process (event loops, the Swift pool, librdkafka's
# threads: compression, delivery reports) from a reset of the counters just before a scenario's
# load to a dump just after it. Each scenario runs ROUNDS times; the script prints each, and
# then the part spent in the sluice binary alone (Sluice's code, SwiftNIO, the Swift runtime:
# librdkafka's share moves by a few percent between runs with how it batched).
# Usage: Benchmarks/instructions.sh   (env: N, ROUNDS, SINGLE_REQUESTS, KAFKA_PORT, KINESIS_PORT,
# ZEROBUS_PORT, ZEROBUS_HTTP_PORT; SLUICE_STATIC_BIN:
# a static-stdlib build to measure instead of this tree's, e.g. an earlier commit's for before/after)
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib.sh

N="${N:-20000}"
ROUNDS="${ROUNDS:-2}"
SINGLE_REQUESTS="${SINGLE_REQUESTS:-2000}"
export KAFKA_PORT="${KAFKA_PORT:-19093}"
SLUICE_PORT="${SLUICE_PORT:-18480}"
ADMIN_PORT="${ADMIN_PORT:-18481}"
GRPC_PORT="${GRPC_PORT:-18482}"
KINESIS_PORT="${KINESIS_PORT:-18483}"
ZEROBUS_PORT="${ZEROBUS_PORT:-18484}"
ZEROBUS_HTTP_PORT="${ZEROBUS_HTTP_PORT:-18485}"
BROKER="127.0.0.1:$KAFKA_PORT"
work=".testbed/bench-instructions"
mkdir -p "$work"
rm -f "$work"/sluice.out*

command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
scripts/setup.sh
# The static-stdlib build (what scripts/build-release.sh and the container ship): under valgrind
# 3.19 a binary using the shared libdispatch dies at start (valgrind itself takes a SIGSEGV
# while the main thread waits in libdispatch's sigsuspend); the static one runs.
SLUICE_BIN="${SLUICE_STATIC_BIN:-$(swift build -c release --static-swift-stdlib --show-bin-path)/sluice}"
if [[ -z "${SLUICE_STATIC_BIN:-}" ]]; then
    swift build -c release --static-swift-stdlib --product sluice >/dev/null
fi
swift build -c release --static-swift-stdlib --product sluice-loadgen >/dev/null
loadgen="$(swift build -c release --static-swift-stdlib --show-bin-path)/sluice-loadgen"
# valgrind 3.19 cannot read the DWARF 5 debug info swiftc writes (form 0x25): run a copy
# without it (the symbol table stays, so callgrind_annotate still names functions).
objcopy --strip-debug "$SLUICE_BIN" "$work/sluice"

trap stop_started EXIT
start_kafka_broker

python3 - "$N" "$work" <<'PY'
import sys
n, work = int(sys.argv[1]), sys.argv[2]
def event(i):
    head = '{"id":%d,"kind":"bench","pad":"' % i
    return head + "x" * (200 - len(head) - 2) + '"}'
for name, count in (("events", n), ("events3", 3 * n), ("request", 100)):
    with open(f"{work}/{name}.ndjson", "w") as f:
        f.write("".join(event(i) + "\n" for i in range(count)))
with open(f"{work}/single.json", "w") as f:
    f.write(event(0))
PY

# Total instructions of a command run whole under callgrind.
instructions_of() {  # out-file command...
    local out="$1"; shift
    valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >/dev/null 2>"$out.log"
    awk '/^summary:/ {print $2}' "$out"
}
per_event() { python3 -c "print(round(($2 - $1) / $3))"; }

# (a) kcat: the same producer settings as the benchmark's Sluice sink.
kcat_run() { instructions_of "$work/kcat.$1.out" kcat -P -b "$BROKER" -t bench-direct -X acks=all \
    -X enable.idempotence=true -X compression.type=lz4 -X linger.ms=5 -l "$work/$1.ndjson"; }
kcat_small=$(kcat_run events)
kcat_large=$(kcat_run events3)
kcat=$(per_event "$kcat_small" "$kcat_large" $((2 * N)))

# The Kinesis and Zerobus peers (not counted; stopped with the broker by stop_started).
start_kinesis_endpoint "$work/kinesis.log"
start_zerobus_server "$work/zerobus.log"
pids+=("$zerobus_pid")

cat >"$work/sluice.yaml" <<YAML
listeners: [{ name: bench, address: "127.0.0.1:$SLUICE_PORT" }]
admin: { address: "127.0.0.1:$ADMIN_PORT" }
grpc: { address: "127.0.0.1:$GRPC_PORT" }
sinks:
  - name: events
    kafka: { bootstrap_servers: ["$BROKER"] }
$(kinesis_sink_yaml kinesis)
$(zerobus_sink_yaml zerobus)
routes:
  - name: ingest
    match: { path: "/v1/events/{topic}", methods: [POST] }
    ingest: { sink: events, topic: "{topic}", ack: sink }
$(kinesis_zerobus_routes_yaml)
  - name: grpc
    match: { grpc_service: sluice.v1.Ingest }
    ingest: { sink: events, topic: "{topic}" }
YAML
BENCH_KINESIS_SECRET=bench-secret BENCH_ZEROBUS_SECRET=bench-secret \
    valgrind --tool=callgrind --callgrind-out-file="$work/sluice.out" "$work/sluice" run \
    --config "$work/sluice.yaml" --log-level warning >"$work/sluice.log" 2>&1 &
sluice_pid=$!
for _ in $(seq 1 600); do curl -fs "http://127.0.0.1:$ADMIN_PORT/ready" >/dev/null && break; sleep 0.2; done
curl -fs "http://127.0.0.1:$ADMIN_PORT/ready" >/dev/null || { echo "sluice not ready under valgrind:" >&2; cat "$work/sluice.log" >&2; exit 1; }

h2load_ok() {  # requests body content-type path [h2]
    local proto=(--h1 -c 4)
    [[ "${5:-}" == h2 ]] && proto=(-c 2 -m 4)
    h2load "${proto[@]}" -n "$1" -d "$2" -H "content-type: $3" "http://127.0.0.1:$SLUICE_PORT$4" >"$work/load.out" 2>&1
    expect_all_2xx "$1"
}
# Warm-up: connections to the broker, metadata, first allocations of every path.
h2load_ok 20 "$work/request.ndjson" application/x-ndjson /v1/events/bench-warm
h2load_ok 20 "$work/request.ndjson" application/x-ndjson /v1/events/bench-warm h2
h2load_ok 20 "$work/single.json" application/json /v1/events/bench-warm
h2load_ok 20 "$work/request.ndjson" application/x-ndjson /kinesis
h2load_ok 20 "$work/request.ndjson" application/x-ndjson /zerobus
"$loadgen" "$GRPC_PORT" bench-warm 2000 100 2 1 >/dev/null
"$loadgen" --unary "$GRPC_PORT" bench-warm 2000 100 2 1 >/dev/null

dumps=0
# Instructions per event of one scenario: zero the counters, run it, dump, read the dump.
# Sets `last` (not printed: a $(…) subshell would lose the dump count), and `own`: the part
# spent in the sluice binary itself (see Benchmarks/callgrind_own.py), which does not move with
# how librdkafka happened to batch in the run.
measure() {  # events command...
    local events="$1"; shift
    callgrind_control -z "$sluice_pid" >/dev/null 2>&1
    "$@"
    dumps=$((dumps + 1))
    callgrind_control -d "round$dumps" "$sluice_pid" >/dev/null 2>&1
    local file="$work/sluice.out.$dumps"
    for _ in $(seq 1 100); do [[ -s "$file" ]] && grep -q '^totals:' "$file" && break; sleep 0.1; done
    last=$(python3 -c "print(round($(awk '/^summary:/ {print $2}' "$file") / $events))")
    own=$(python3 Benchmarks/callgrind_own.py "$file" sluice "$events")
}
grpc_ok() {  # [--unary]
    local out
    out=$("$loadgen" "$@" "$GRPC_PORT" bench-grpc "$N" 100 4 1)
    [[ "$out" == *durable=true* ]] || { echo "gRPC run not fully durable: $out" >&2; exit 1; }
}
b=(); b2=(); c=(); d=(); k=(); z=(); du=(); own_b=(); own_b2=(); own_c=(); own_d=(); own_k=(); own_z=(); own_du=()
for _ in $(seq 1 "$ROUNDS"); do
    measure "$N" h2load_ok $((N / 100)) "$work/request.ndjson" application/x-ndjson /v1/events/bench-ndjson; b+=("$last"); own_b+=("$own")
    measure "$N" h2load_ok $((N / 100)) "$work/request.ndjson" application/x-ndjson /v1/events/bench-ndjson-h2 h2; b2+=("$last"); own_b2+=("$own")
    measure "$SINGLE_REQUESTS" h2load_ok "$SINGLE_REQUESTS" "$work/single.json" application/json /v1/events/bench-single; c+=("$last"); own_c+=("$own")
    measure "$N" grpc_ok; d+=("$last"); own_d+=("$own")
    measure "$N" h2load_ok $((N / 100)) "$work/request.ndjson" application/x-ndjson /kinesis; k+=("$last"); own_k+=("$own")
    measure "$N" h2load_ok $((N / 100)) "$work/request.ndjson" application/x-ndjson /zerobus; z+=("$last"); own_z+=("$own")
    measure "$N" grpc_ok --unary; du+=("$last"); own_du+=("$own")
done
ratio() { python3 -c "print(f'{$1 / $kcat:.2f}')"; }
of_kafka() { python3 -c "print(f'{$1 / ${b[0]}:.2f}')"; }
cat <<OUT
date:                               $(date -u +%Y-%m-%d)
binary:                             ${SLUICE_STATIC_BIN:-$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- Sources connectors || echo ' (with uncommitted changes)')}
events:                             $N x 200 B per scenario (c: $SINGLE_REQUESTS), $ROUNDS rounds, under callgrind
(a) kcat, marginal instructions/event:    $kcat
(b) h1 NDJSON x100, instructions/event:   ${b[*]}   (x kcat: $(ratio "${b[0]}"))
(b') h2 NDJSON x100, instructions/event:  ${b2[*]}   (x kcat: $(ratio "${b2[0]}"))
(c) 1 event/request, instructions/event:  ${c[*]}   (x kcat: $(ratio "${c[0]}"))
(d) gRPC stream x100, instructions/event: ${d[*]}   (x kcat: $(ratio "${d[0]}"))
(d') gRPC unary x100, instructions/event: ${du[*]}   (x kcat: $(ratio "${du[0]}"))
(k) Kinesis h1 x100, instructions/event:  ${k[*]}   (x (b): $(of_kafka "${k[0]}"), goal <= 1.5)
(z) Zerobus h1 x100, instructions/event:  ${z[*]}   (x (b): $(of_kafka "${z[0]}"), goal <= 1.5)
in the sluice binary alone (b b' c d k z d'): ${own_b[*]} / ${own_b2[*]} / ${own_c[*]} / ${own_d[*]} / ${own_k[*]} / ${own_z[*]} / ${own_du[*]}
profiles:                           $work/sluice.out.N (callgrind_annotate), one per scenario and round
OUT
