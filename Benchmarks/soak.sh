#!/usr/bin/env bash
# Soak: mixed ingest (NDJSON into Kafka, ack: sink) and proxy (GET through Sluice to nginx)
# traffic at ~70% of the capacity measured first, for DURATION seconds, reporting each minute
# Sluice's RSS, open descriptors and the requests that were not answered 2xx.
#
# Passes (exit 0) when, after the first minute (warm-up), RSS stays within +-10% of the
# minute-2 reading, descriptors stay within +-16 of it, and no request failed.
# Everything on 127.0.0.1; load is bounded by time (h2load -D) and rate (--rps).
# Usage: Benchmarks/soak.sh  (env: DURATION=600, LOAD_PERCENT=70, CONNECTIONS=8)
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib.sh

DURATION="${DURATION:-600}"
LOAD_PERCENT="${LOAD_PERCENT:-70}"
CONNECTIONS="${CONNECTIONS:-8}"
KAFKA_PORT="${KAFKA_PORT:-19192}"
UPSTREAM_PORT="${UPSTREAM_PORT:-18190}"
SLUICE_PORT="${SLUICE_PORT:-18192}"
ADMIN_PORT="${ADMIN_PORT:-18193}"
work="$(pwd)/.testbed/bench-soak"
rm -rf "$work"
mkdir -p "$work"

scripts/setup.sh
build_sluice
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

trap stop_started EXIT
start_kafka_broker

body=$(head -c 1024 /dev/zero | tr '\0' 'x')
start_nginx nginx "server { listen 127.0.0.1:$UPSTREAM_PORT; keepalive_requests 1000000; location /item { return 200 '$body'; } }"

cat >"$work/sluice.yaml" <<YAML
listeners: [{ name: soak, address: "127.0.0.1:$SLUICE_PORT" }]
admin: { address: "127.0.0.1:$ADMIN_PORT" }
upstreams:
  - name: app
    endpoints: ["127.0.0.1:$UPSTREAM_PORT"]
sinks:
  - name: events
    kafka: { bootstrap_servers: ["127.0.0.1:$KAFKA_PORT"] }
routes:
  - name: ingest
    match: { path: "/v1/events/{topic}", methods: [POST] }
    ingest: { sink: events, topic: "{topic}" }
  - name: proxied
    match: { path_prefix: /item }
    proxy: { upstream: app }
YAML
start_sluice "$work/sluice.yaml" "$work/sluice.log" "$ADMIN_PORT"
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$UPSTREAM_PORT/item" >/dev/null && break; sleep 0.1; done
write_ndjson_request 10

ingest() {  # h2load arguments... -> the report in $work/ingest.out
    h2load --h1 -c "$CONNECTIONS" "$@" -d "$work/request.ndjson" -H "content-type: application/x-ndjson" \
        "http://127.0.0.1:$SLUICE_PORT/v1/events/soak" >"$work/ingest.out" 2>&1
}
proxy() {
    h2load --h1 -c "$CONNECTIONS" "$@" "http://127.0.0.1:$SLUICE_PORT/item" >"$work/proxy.out" 2>&1
}
rps_of() { awk '/finished in/ {print int($4)}' "$1"; }
done_of() { awk '/^requests:/ {print $8}' "$1"; }     # requests that got an answer
ok_of() { awk '/^status codes:/ {print $3}' "$1"; }    # 2xx answers
rss_kib() { awk '/VmRSS:/ {print $2}' "/proc/$sluice_pid/status"; }
fds() { ls "/proc/$sluice_pid/fd" | wc -l; }

# Capacity of the mix: both loads at once, flat out, for 10 s.
ingest -D 10 & i=$!
proxy -D 10 & p=$!
wait "$i" "$p"
ingest_capacity=$(rps_of "$work/ingest.out")
proxy_capacity=$(rps_of "$work/proxy.out")
# --rps is per client connection.
ingest_rps=$(( ingest_capacity * LOAD_PERCENT / 100 / CONNECTIONS ))
proxy_rps=$(( proxy_capacity * LOAD_PERCENT / 100 / CONNECTIONS ))
((ingest_rps > 0 && proxy_rps > 0)) || { echo "capacity too low to soak: ingest $ingest_capacity/s, proxy $proxy_capacity/s" >&2; exit 1; }

echo "date:        $(date -u +%Y-%m-%d)"
echo "capacity:    ingest $ingest_capacity req/s (10 x 200 B events), proxy $proxy_capacity req/s (1 KiB answers), together"
echo "load:        ${LOAD_PERCENT}%: ingest $((ingest_rps * CONNECTIONS)) req/s, proxy $((proxy_rps * CONNECTIONS)) req/s, $CONNECTIONS connections each, ${DURATION}s"
printf '%-7s %12s %12s %10s %8s %8s\n' minute ingest_ok proxy_ok failed rss_MiB fds
minutes=$(( (DURATION + 59) / 60 ))
failed_total=0
rss_ref=0; fds_ref=0; rss_lo=0; rss_hi=0; fds_lo=0; fds_hi=0
for minute in $(seq 1 "$minutes"); do
    seconds=$(( DURATION - (minute - 1) * 60 )); ((seconds > 60)) && seconds=60
    ingest -D "$seconds" --rps "$ingest_rps" & i=$!
    proxy -D "$seconds" --rps "$proxy_rps" & p=$!
    wait "$i" "$p"
    ingest_done=$(done_of "$work/ingest.out"); ingest_ok=$(ok_of "$work/ingest.out")
    proxy_done=$(done_of "$work/proxy.out"); proxy_ok=$(ok_of "$work/proxy.out")
    ingest_total=$(awk '/^requests:/ {print $2}' "$work/ingest.out"); proxy_total=$(awk '/^requests:/ {print $2}' "$work/proxy.out")
    failed=$(( ingest_total - ingest_ok + proxy_total - proxy_ok ))
    failed_total=$(( failed_total + failed ))
    rss=$(rss_kib); fd=$(fds)
    printf '%-7s %12s %12s %10s %8s %8s\n' "$minute" "$ingest_ok" "$proxy_ok" "$failed" "$((rss / 1024))" "$fd"
    if ((minute == 2)) || ((minutes == 1)); then rss_ref=$rss; fds_ref=$fd; rss_lo=$rss; rss_hi=$rss; fds_lo=$fd; fds_hi=$fd; fi
    if ((minute > 2)); then
        ((rss < rss_lo)) && rss_lo=$rss; ((rss > rss_hi)) && rss_hi=$rss
        ((fd < fds_lo)) && fds_lo=$fd; ((fd > fds_hi)) && fds_hi=$fd
    fi
done
echo "rss after warm-up: $((rss_lo / 1024))-$((rss_hi / 1024)) MiB (minute 2: $((rss_ref / 1024)) MiB); fds $fds_lo-$fds_hi (minute 2: $fds_ref); failed requests: $failed_total"
status=0
if ((rss_hi * 10 > rss_ref * 11 || rss_lo * 10 < rss_ref * 9)); then echo "soak: RSS moved more than 10% after warm-up" >&2; status=1; fi
if ((fds_hi > fds_ref + 16 || fds_lo < fds_ref - 16)); then echo "soak: descriptors were not flat" >&2; status=1; fi
if ((failed_total > 0)); then echo "soak: $failed_total requests were not answered 2xx" >&2; status=1; fi
if ! kill -0 "$sluice_pid" 2>/dev/null; then echo "soak: sluice died" >&2; status=1; fi
exit "$status"
