#!/usr/bin/env bash
# Instructions per proxied request under callgrind: the stable figure beside proxy.sh's noisy ones.
#
#   upstream:  nginx answering GET /item with a 1 KiB body (keep-alive), not counted
#   (n) nginx  proxy_pass to it, upstream keepalive 64, one process (master_process off), under callgrind
#   (s) Sluice proxy route to it (the static-stdlib build, debug info stripped), under callgrind
#   (r) sluice-reference-proxy (Benchmarks/ReferenceProxy): a handler-only SwiftNIO proxy with no
#       gateway in it, built the same way, one event loop — the least any proxy on NIO's channels
#       and HTTP/1.1 codecs costs, so (r)/(n) is the floor under (s)/(n) while Sluice stays on them
#
# Each proxy's count runs from a reset of its counters just before the load (N requests, h2load
# over HTTP/1.1 with CONNECTIONS connections, every request answered 2xx) to a dump just after it,
# over every thread of the process. The ratio (s)/(n) is the instruction side of issue 18's goal
# "CPU per request <= 2 x nginx's"; callgrind counts instructions, not cycles or waits, so the
# kernel's share (socket calls, wake-ups) is not in it.
# Usage: Benchmarks/proxy-instructions.sh  (env: N, CONNECTIONS, ROUNDS; SLUICE_STATIC_BIN: a
# static-stdlib build to measure instead of this tree's)
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib.sh

N="${N:-20000}"
CONNECTIONS="${CONNECTIONS:-8}"
ROUNDS="${ROUNDS:-2}"
UPSTREAM_PORT="${UPSTREAM_PORT:-18490}"
NGINX_PORT="${NGINX_PORT:-18491}"
SLUICE_PORT="${SLUICE_PORT:-18492}"
ADMIN_PORT="${ADMIN_PORT:-18493}"
REFERENCE_PORT="${REFERENCE_PORT:-18494}"
work="$(pwd)/.testbed/bench-proxy-instructions"
mkdir -p "$work"
rm -f "$work"/*.out*

command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
scripts/setup.sh
# The static-stdlib build: valgrind 3.19 dies on a binary using the shared libdispatch (see
# instructions.sh), and cannot read swiftc's DWARF 5, so a copy without debug info runs.
if [[ -z "${SLUICE_STATIC_BIN:-}" ]]; then
    swift build -c release --static-swift-stdlib --product sluice >/dev/null
fi
swift build -c release --static-swift-stdlib --product sluice-reference-proxy >/dev/null
static_bin_path="$(swift build -c release --static-swift-stdlib --show-bin-path)"
objcopy --strip-debug "${SLUICE_STATIC_BIN:-$static_bin_path/sluice}" "$work/sluice"
objcopy --strip-debug "$static_bin_path/sluice-reference-proxy" "$work/reference"
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

trap stop_started EXIT

start_nginx upstream "$(nginx_upstream_block "$UPSTREAM_PORT")"
# (n): proxy.sh's front, but one process, so callgrind sees the worker.
write_nginx_conf front "$(nginx_front_block "$NGINX_PORT" "$UPSTREAM_PORT")" "master_process off;"
valgrind --tool=callgrind --callgrind-out-file="$work/nginx.out" "$nginx_bin" -p "$work/front" -c "$work/front/nginx.conf" \
    >"$work/nginx-valgrind.log" 2>&1 &
nginx_front_pid=$!
pids+=("$nginx_front_pid")

write_sluice_proxy_config "$work/sluice.yaml" "$SLUICE_PORT" "$ADMIN_PORT" "$UPSTREAM_PORT"
valgrind --tool=callgrind --callgrind-out-file="$work/sluice.out" "$work/sluice" run --config "$work/sluice.yaml" \
    --log-level warning >"$work/sluice.log" 2>&1 &
sluice_pid=$!
# One event loop, as nginx runs one worker here.
valgrind --tool=callgrind --callgrind-out-file="$work/reference.out" "$work/reference" "$REFERENCE_PORT" "$UPSTREAM_PORT" 1 \
    >"$work/reference.log" 2>&1 &
reference_pid=$!
pids+=("$reference_pid")

for port in "$UPSTREAM_PORT" "$NGINX_PORT" "$SLUICE_PORT" "$REFERENCE_PORT"; do
    for _ in $(seq 1 600); do curl -fs "http://127.0.0.1:$port/item" >/dev/null && break; sleep 0.2; done
    curl -fs "http://127.0.0.1:$port/item" >/dev/null || {
        echo "port $port does not answer" >&2; cat "$work/sluice.log" "$work/nginx-valgrind.log" >&2; exit 1; }
done

load() {  # port requests: every request answered 2xx
    h2load --h1 -c "$CONNECTIONS" -n "$2" "http://127.0.0.1:$1/item" >"$work/load.out" 2>&1
    expect_all_2xx "$2"
}
# Warm-up: pooled upstream connections, first allocations.
load "$NGINX_PORT" 2000
load "$SLUICE_PORT" 2000
load "$REFERENCE_PORT" 2000

# Instructions per request of one proxy for one round: zero its counters, load, dump, read the
# dump (callgrind numbers each process's dumps <out-file>.1, .2, …).
declare -A dumps=([nginx]=0 [sluice]=0 [reference]=0)
measure() {  # name pid port -> sets last
    callgrind_control -z "$2" >/dev/null 2>&1
    load "$3" "$N"
    dumps[$1]=$((dumps[$1] + 1))
    callgrind_control -d "round${dumps[$1]}" "$2" >/dev/null 2>&1
    local file="$work/$1.out.${dumps[$1]}"
    for _ in $(seq 1 100); do [[ -s "$file" ]] && grep -q '^totals:' "$file" && break; sleep 0.1; done
    last=$(python3 -c "print(round($(awk '/^summary:/ {print $2}' "$file") / $N))")
}
n=(); s=(); r=()
for round in $(seq 1 "$ROUNDS"); do
    # Alternate the order, so neither proxy always runs on a warmer machine.
    if (( round % 2 )); then
        measure nginx "$nginx_front_pid" "$NGINX_PORT"; n+=("$last")
        measure sluice "$sluice_pid" "$SLUICE_PORT"; s+=("$last")
        measure reference "$reference_pid" "$REFERENCE_PORT"; r+=("$last")
    else
        measure reference "$reference_pid" "$REFERENCE_PORT"; r+=("$last")
        measure sluice "$sluice_pid" "$SLUICE_PORT"; s+=("$last")
        measure nginx "$nginx_front_pid" "$NGINX_PORT"; n+=("$last")
    fi
done
cat <<OUT
date:                                 $(date -u +%Y-%m-%d)
binary:                               ${SLUICE_STATIC_BIN:-$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- Sources connectors || echo ' (with uncommitted changes)')}
requests:                             $N x GET /item (1 KiB answer), HTTP/1.1 x$CONNECTIONS, $ROUNDS rounds, under callgrind
(n) nginx, instructions/request:      ${n[*]}
(s) Sluice, instructions/request:     ${s[*]}
(r) NIO reference, instructions/req:  ${r[*]}
ratio (s)/(n):                        $(python3 -c "print(f'{${s[0]} / ${n[0]}:.2f}')")   (issue 18: CPU per request <= 2 x nginx's)
ratio (r)/(n):                        $(python3 -c "print(f'{${r[0]} / ${n[0]}:.2f}')")   (the floor for a proxy on NIO's channels and HTTP/1.1 codecs)
ratio (s)/(r):                        $(python3 -c "print(f'{${s[0]} / ${r[0]}:.2f}')")   (what Sluice adds over that floor)
profiles:                             $work/{nginx,sluice,reference}.out.N (callgrind_annotate)
OUT
