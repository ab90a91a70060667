#!/usr/bin/env bash
# Plain reverse proxying: Sluice against nginx, both in front of the same upstream, same load
# generator, same run.
#
#   upstream:  nginx answering GET /item with a 1 KiB body (keep-alive)
#   (n) nginx  proxy_pass to it, upstream keepalive 64 (a common production setup)
#   (s) Sluice proxy route to it (round robin over the one endpoint, default limits)
#   (d) the upstream directly, for reference
#
# Prints requests/s, mean/max latency and proxy CPU per request for each, and the ratio (s)/(n).
# h2load over HTTP/1.1 with $CONNECTIONS connections, bounded by $REQUESTS; everything on
# 127.0.0.1. On a 2-core machine the load generator, the proxy and the upstream share the cores,
# so the ratio is the figure to read, not the absolute rates.
# Usage: Benchmarks/proxy.sh  (env: REQUESTS, CONNECTIONS)
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib.sh

REQUESTS="${REQUESTS:-200000}"
CONNECTIONS="${CONNECTIONS:-32}"
UPSTREAM_PORT="${UPSTREAM_PORT:-18090}"
NGINX_PORT="${NGINX_PORT:-18091}"
SLUICE_PORT="${SLUICE_PORT:-18092}"
ADMIN_PORT="${ADMIN_PORT:-18093}"
work="$(pwd)/.testbed/bench-proxy"
mkdir -p "$work"

scripts/setup.sh
swift build -c release --product sluice >/dev/null
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

body=$(head -c 1024 /dev/zero | tr '\0' 'x')
start_nginx upstream "server { listen 127.0.0.1:$UPSTREAM_PORT; keepalive_requests 1000000; location /item { return 200 '$body'; } }"
upstream_pid=$nginx_pid
start_nginx front "upstream app { server 127.0.0.1:$UPSTREAM_PORT; keepalive 64; keepalive_requests 1000000; }
    server { listen 127.0.0.1:$NGINX_PORT; keepalive_requests 1000000;
        location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
front_pid=$nginx_pid

cat >"$work/sluice.yaml" <<YAML
listeners: [{ name: bench, address: "127.0.0.1:$SLUICE_PORT", max_connections: 4096 }]
admin: { address: "127.0.0.1:$ADMIN_PORT" }
upstreams:
  - name: app
    endpoints: ["127.0.0.1:$UPSTREAM_PORT"]
routes:
  - name: proxied
    match: { path_prefix: / }
    proxy: { upstream: app }
YAML
start_sluice "$work/sluice.yaml" "$work/sluice.log" "$ADMIN_PORT"
pids+=("$sluice_pid")
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$UPSTREAM_PORT/item" >/dev/null && curl -fs "http://127.0.0.1:$NGINX_PORT/item" >/dev/null && break; sleep 0.1; done

run() {  # port -> requests/s (every request must be answered 2xx)
    h2load --h1 -c "$CONNECTIONS" -n "$REQUESTS" "http://127.0.0.1:$1/item" >"$work/load.out" 2>&1
    if ! grep -q "status codes: $REQUESTS 2xx" "$work/load.out"; then
        echo "not every request was answered 2xx:" >&2
        cat "$work/load.out" >&2
        exit 1
    fi
    awk '/finished in/ {print $4}' "$work/load.out"
}
# nginx's worker is the child of its master: its CPU is what proxying costs.
worker_of() { pgrep -P "$1" | head -1; }
front_worker=$(worker_of "$front_pid")

REQUESTS=20000 run "$SLUICE_PORT" >/dev/null   # warm-up: pooled connections on both
REQUESTS=20000 run "$NGINX_PORT" >/dev/null
direct_rps=$(run "$UPSTREAM_PORT"); direct_lat=$(latency)
n0=$(cpu_of_pid "$front_worker"); nginx_rps=$(run "$NGINX_PORT"); n1=$(cpu_of_pid "$front_worker"); nginx_lat=$(latency)
s0=$(cpu_of_pid "$sluice_pid"); sluice_rps=$(run "$SLUICE_PORT"); s1=$(cpu_of_pid "$sluice_pid"); sluice_lat=$(latency)
# Second round in reverse order, so neither proxy always runs on a warmer machine.
s2=$(cpu_of_pid "$sluice_pid"); sluice_rps2=$(run "$SLUICE_PORT"); s3=$(cpu_of_pid "$sluice_pid")
n2=$(cpu_of_pid "$front_worker"); nginx_rps2=$(run "$NGINX_PORT"); n3=$(cpu_of_pid "$front_worker")

cat <<OUT
date:                     $(date -u +%Y-%m-%d)
requests:                 $REQUESTS x GET /item (1 KiB answer), HTTP/1.1 x$CONNECTIONS, two rounds
(d) upstream directly:    $direct_rps req/s  (request time $direct_lat)
(n) nginx proxy_pass:     $nginx_rps / $nginx_rps2 req/s  (request time $nginx_lat; $(per_event_us "$n0" "$n1" "$REQUESTS") us CPU/request in nginx)
(s) Sluice proxy:         $sluice_rps / $sluice_rps2 req/s  (request time $sluice_lat; $(per_event_us "$s0" "$s1" "$REQUESTS") us CPU/request in Sluice)
ratio (s)/(n):            $(python3 -c "print(f'{$sluice_rps / $nginx_rps:.2f} / {$sluice_rps2 / $nginx_rps2:.2f}')")
OUT
