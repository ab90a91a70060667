#!/usr/bin/env bash
# Starts and stops the Kafka-protocol broker the tests and benchmarks use: noida-db 0.2.3,
# bound to 127.0.0.1 only, in its own process group so that `stop` ends exactly what `start` began.
#
#   scripts/kafka-broker.sh start     # KAFKA_PORT (default 19092), data in .testbed/kafka
#   scripts/kafka-broker.sh stop
#   scripts/kafka-broker.sh status
set -euo pipefail
cd "$(dirname "$0")/.."

port="${KAFKA_PORT:-19092}"
dir=".testbed/kafka-$port"
pidfile="$dir/pid"

running() { [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case "${1:-}" in
start)
    if running; then
        echo "kafka-broker: already running (pid $(cat "$pidfile")) on 127.0.0.1:$port"
        exit 0
    fi
    mkdir -p "$dir"
    rm -rf "$dir/data"
    # setsid: a new process group, so stop can signal the broker and nothing else.
    setsid noida-db start --only kafka --host 127.0.0.1 --kafka-port "$port" --data-dir "$dir/data" \
        >"$dir/broker.log" 2>&1 < /dev/null &
    echo $! >"$pidfile"
    for _ in $(seq 1 150); do
        if kcat -L -b "127.0.0.1:$port" -m 2 >/dev/null 2>&1; then
            echo "kafka-broker: ready on 127.0.0.1:$port (pid $(cat "$pidfile"))"
            exit 0
        fi
        if ! running; then
            echo "kafka-broker: exited during start; log:" >&2
            cat "$dir/broker.log" >&2
            exit 1
        fi
        sleep 0.2
    done
    echo "kafka-broker: not ready after 30 s; log:" >&2
    cat "$dir/broker.log" >&2
    exit 1
    ;;
stop)
    if ! running; then
        rm -f "$pidfile"
        exit 0
    fi
    pid=$(cat "$pidfile")
    # noida-db stops cleanly on SIGINT (its Ctrl-C); SIGTERM is not enough.
    kill -INT -- "-$pid" 2>/dev/null || kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "kafka-broker: did not stop in 30 s; killing" >&2
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    echo "kafka-broker: stopped"
    ;;
status)
    if running; then echo "running (pid $(cat "$pidfile")) on 127.0.0.1:$port"; else echo "stopped"; exit 1; fi
    ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
