#!/usr/bin/env bash
# CPU per request while the only endpoint refuses connections: every request tries a new
# connection and is answered 502. Sluice against nginx (proxy_pass with max_fails=0, so that it
# too connects for every request instead of skipping a failed server for fail_timeout).
#
#   (n) nginx proxy_pass to a closed port on 127.0.0.1, one worker
#   (s) Sluice's proxy route to the same closed port (no circuit breaking or outlier detection)
#
# REQUESTS requests (after 2,000 to warm up) from h2load over HTTP/1.1 with CONNECTIONS
# connections; CPU per request from /proc for nginx's worker and for Sluice's process.
# Usage: Benchmarks/proxy-refused.sh  (env: REQUESTS, CONNECTIONS; SLUICE_BIN: a release build
# to measure instead of this tree's)
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib.sh
REQUESTS="${REQUESTS:-20000}"
CONNECTIONS="${CONNECTIONS:-8}"
CLOSED_PORT="${CLOSED_PORT:-18699}"
NGINX_PORT="${NGINX_PORT:-18691}"
SLUICE_PORT="${SLUICE_PORT:-18692}"
ADMIN_PORT="${ADMIN_PORT:-18693}"
work="$(pwd)/.testbed/bench-proxy-refused"
mkdir -p "$work"
scripts/setup.sh
command -v h2load >/dev/null || { echo "h2load is needed (apt-get install nghttp2-client)" >&2; exit 1; }
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
build_sluice
trap stop_started EXIT
# Nothing may listen on the closed port: the benchmark is about refused connections.
if (exec 3<>"/dev/tcp/127.0.0.1/$CLOSED_PORT") 2>/dev/null; then echo "port $CLOSED_PORT is in use" >&2; exit 1; fi
start_nginx front "upstream dead { server 127.0.0.1:$CLOSED_PORT max_fails=0; }
    server { listen 127.0.0.1:$NGINX_PORT;
        location / { proxy_pass http://dead; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
front_pid=$nginx_pid
write_sluice_proxy_config "$work/sluice.yaml" "$SLUICE_PORT" "$ADMIN_PORT" "$CLOSED_PORT"
start_sluice "$work/sluice.yaml" "$work/sluice.log" "$ADMIN_PORT"
for port in "$NGINX_PORT" "$SLUICE_PORT"; do
    for _ in $(seq 1 100); do
        [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/item")" == 502 ]] && break
        sleep 0.2
    done
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/item")" == 502 ]] || { echo "port $port does not answer 502" >&2; exit 1; }
done
front_worker=$(pgrep -P "$front_pid" | head -1)
measure() {  # name pid port: sets <name>_rps and <name>_cpu (us/request)
    h2load --h1 -n 2000 -c "$CONNECTIONS" "http://127.0.0.1:$3/item" >/dev/null
    local c0 c1 out
    c0=$(cpu_of_pid "$2")
    out=$(h2load --h1 -n "$REQUESTS" -c "$CONNECTIONS" "http://127.0.0.1:$3/item")
    c1=$(cpu_of_pid "$2")
    grep -q "status codes: 0 2xx, 0 3xx, 0 4xx, $REQUESTS 5xx" <<<"$out" || { echo "not every answer was a 5xx: $out" >&2; exit 1; }
    printf -v "$1_rps" '%s' "$(awk '/finished in/ {print int($4)}' <<<"$out")"
    printf -v "$1_cpu" '%s' "$(per_event_us "$c0" "$c1" "$REQUESTS")"
}
measure n "$front_worker" "$NGINX_PORT"
measure s "$sluice_pid" "$SLUICE_PORT"
cat <<OUT
date:                      $(date +%F)
requests:                  $REQUESTS x GET to a refused endpoint, HTTP/1.1 x$CONNECTIONS, each answered 502
(n) nginx proxy_pass:      $n_rps req/s  ($n_cpu us CPU/request)
(s) Sluice proxy:          $s_rps req/s  ($s_cpu us CPU/request)
CPU/request (s)/(n):       $(python3 -c "print(f'{$s_cpu / $n_cpu:.2f}')")
OUT
