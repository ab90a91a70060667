#!/usr/bin/env bash
# Fleet throughput: 1, 2 and 3 Sluice instances (release build) behind nginx, sharing one Redis
# and one Kafka-protocol broker, NDJSON (5 events of ~110 bytes per request, ack: sink) from
# keep-alive clients for SECONDS each; then the rolling-restart check of the fleet test.
# The same scenario as Tests/EndToEndTests/FleetTests.swift (scripts/testing/fleet.py).
# Everything on 127.0.0.1; bounded by time. On a 2-core machine the instances share the cores
# with nginx, the broker and the clients, so more instances cannot add throughput here: the
# figures show what a fleet costs, not how it scales on separate machines.
# Usage: Benchmarks/fleet.sh   (env: SECONDS_EACH=10, CLIENTS=8, SLUICE_BIN, KAFKA_PORT=19292)
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH="${SECONDS_EACH:-10}"
CLIENTS="${CLIENTS:-8}"
KAFKA_PORT="${KAFKA_PORT:-19292}"

scripts/setup.sh
if [[ -z "${SLUICE_BIN:-}" ]]; then
    swift build -c release --product sluice >/dev/null
    SLUICE_BIN="$(swift build -c release --show-bin-path)/sluice"
fi
trap 'KAFKA_PORT="$KAFKA_PORT" scripts/kafka-broker.sh stop >/dev/null 2>&1 || true' EXIT
KAFKA_PORT="$KAFKA_PORT" scripts/kafka-broker.sh start >/dev/null
bootstrap="127.0.0.1:$KAFKA_PORT"

printf '%-10s %12s %12s %8s\n' instances requests/s events/s failed
for n in 1 2 3; do
    python3 scripts/testing/fleet.py throughput --sluice "$SLUICE_BIN" --bootstrap "$bootstrap" --instances "$n" \
        --seconds "$SECONDS_EACH" --clients "$CLIENTS" | python3 -c "$(cat <<'PY'
import json, sys
d = json.load(sys.stdin)
if d["problems"]:
    sys.exit(f"instances {sys.argv[1]}: {d['problems']}")
print(f"{sys.argv[1]:<10} {d['requests_per_s']:>12} {d['events_per_s']:>12} {d['failed']:>8}")
PY
)" "$n"
done
echo
echo "rolling restart of 3 under load:"
python3 scripts/testing/fleet.py rolling --sluice "$SLUICE_BIN" --bootstrap "$bootstrap" --clients "$CLIENTS" | python3 -c "$(cat <<'PY'
import json, sys
d = json.load(sys.stdin)
limit = d.get("rate_limit", {})
print(f"  {d.get('requests')} requests, {d.get('failed')} failed, {d.get('events_acked')} events acked, {d.get('acked_missing')} missing;",
      f"rate limit {limit.get('passed')} of {limit.get('sent')} passed; nginx retried {d.get('lb_retried')};",
      f"seconds down per restart {[r['down_s'] for r in d.get('restarts', [])]}; problems: {d['problems']}")
sys.exit(1 if d["problems"] else 0)
PY
)"
