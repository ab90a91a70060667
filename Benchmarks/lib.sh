# Shared by the benchmark scripts (sourced, not run).

# Starts the release sluice on CONFIG, logging to LOG; sets sluice_pid and waits for /ready on ADMIN_PORT.
start_sluice() {  # config log admin_port
    .build/release/sluice run --config "$1" --log-level warning >"$2" 2>&1 &
    sluice_pid=$!
    for _ in $(seq 1 100); do
        curl -fs "http://127.0.0.1:$3/ready" >/dev/null && return 0
        sleep 0.1
    done
    echo "sluice not ready:" >&2
    cat "$2" >&2
    return 1
}
