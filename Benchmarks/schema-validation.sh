#!/usr/bin/env bash
# What validating every event against a route's JSON Schema costs, same broker, same events, same
# run: one route without a schema (the reference) and the same route with a realistic order
# schema (nested object, array of line items, patterns, enums, formats annotated,
# additionalProperties: false, a $ref'd definition).
#
#   (p) NDJSON, PER events per request, no schema          (the reference of this script)
#   (s) the same, ingest.schema.json_schema_file set; every event valid
#
# Events are ~330 bytes of JSON. Prints events/s and Sluice CPU per event for each, the
# ratio of (s) to (p), and the CPU each event's validation adds. Everything on 127.0.0.1,
# bounded by request counts. Usage: Benchmarks/schema-validation.sh (env: N, PER, CONNECTIONS,
# KAFKA_PORT, SLUICE_PORT, ADMIN_PORT, SLUICE_BIN)
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib.sh

N="${N:-200000}"
PER="${PER:-100}"
CONNECTIONS="${CONNECTIONS:-16}"
export KAFKA_PORT="${KAFKA_PORT:-19093}"
SLUICE_PORT="${SLUICE_PORT:-18080}"
ADMIN_PORT="${ADMIN_PORT:-18081}"
work=".testbed/bench-schema"
mkdir -p "$work"

scripts/setup.sh
build_sluice

trap stop_started EXIT
start_kafka_broker

cat >"$work/order.json" <<'JSON'
{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["order_id", "customer", "items", "total", "currency", "created_at"],
  "additionalProperties": false,
  "properties": {
    "order_id": {"type": "string", "pattern": "^ord_[0-9a-z]{12}$"},
    "customer": {
      "type": "object", "required": ["id"], "additionalProperties": false,
      "properties": {"id": {"type": "integer", "minimum": 1}, "email": {"type": "string", "format": "email", "maxLength": 254}}
    },
    "items": {"type": "array", "minItems": 1, "maxItems": 100, "items": {"$ref": "#/$defs/item"}},
    "total": {"type": "number", "minimum": 0},
    "currency": {"enum": ["EUR", "USD", "GBP", "CHF"]},
    "channel": {"type": "string", "enum": ["web", "app", "store"]},
    "created_at": {"type": "string", "format": "date-time"}
  },
  "$defs": {
    "item": {
      "type": "object", "required": ["sku", "quantity", "price"], "additionalProperties": false,
      "properties": {
        "sku": {"type": "string", "minLength": 3, "maxLength": 32},
        "quantity": {"type": "integer", "minimum": 1},
        "price": {"type": "number", "exclusiveMinimum": 0}
      }
    }
  }
}
JSON

python3 - "$PER" "$work" <<'PY'
import json, sys
per, work = int(sys.argv[1]), sys.argv[2]
def event(i):
    return json.dumps({
        "order_id": "ord_%012d" % i, "customer": {"id": 1000 + i, "email": "buyer%d@example.com" % i},
        "items": [{"sku": "SKU-%05d" % (i % 997), "quantity": 1 + i % 3, "price": 19.99},
                  {"sku": "SKU-%05d" % (i % 991), "quantity": 2, "price": 5.5}],
        "total": 30.99 + i % 7, "currency": "EUR", "channel": "web", "created_at": "2026-12-03T10:15:30Z"},
        separators=(",", ":"))
open(f"{work}/orders.ndjson", "w").write("\n".join(event(i) for i in range(per)) + "\n")
PY

cat >"$work/sluice.yaml" <<YAML
listeners: [{ name: main, address: "127.0.0.1:$SLUICE_PORT" }]
admin: { address: "127.0.0.1:$ADMIN_PORT" }
sinks:
  - name: events
    kafka:
      bootstrap_servers: ["127.0.0.1:$KAFKA_PORT"]
      properties: { compression.type: lz4, linger.ms: "5" }
routes:
  - name: plain
    match: { path: "/v1/plain/{topic}", methods: [POST] }
    ingest: { sink: events, topic: "{topic}" }
  - name: checked
    match: { path: "/v1/checked/{topic}", methods: [POST] }
    ingest: { sink: events, topic: "{topic}", schema: { json_schema_file: "$PWD/$work/order.json" } }
YAML
start_sluice "$work/sluice.yaml" "$work/sluice.log" "$ADMIN_PORT"

requests=$((N / PER))
# run NAME PATH: h2load, every request 200; prints "events/s cpu-µs/event".
run() {
    local before
    before=$(cpu_of_pid "$sluice_pid")
    h2load --h1 -c "$CONNECTIONS" -n "$requests" -d "$work/orders.ndjson" -H "content-type: application/x-ndjson" \
        "http://127.0.0.1:$SLUICE_PORT$2" >"$work/load-$1.out" 2>&1
    expect_all_2xx "$requests" "$work/load-$1.out" "$1"
    local rps
    rps=$(awk '/finished in/ {print $4}' "$work/load-$1.out")
    echo "$(python3 -c "print(round($rps * $PER))") $(per_event_us "$before" "$(cpu_of_pid "$sluice_pid")" "$N")"
}

# Warm both routes (topics created, producers connected), then measure each twice, alternating.
curl -sf -o /dev/null -H "content-type: application/x-ndjson" --data-binary "@$work/orders.ndjson" "http://127.0.0.1:$SLUICE_PORT/v1/plain/bench-schema-p"
curl -sf -o /dev/null -H "content-type: application/x-ndjson" --data-binary "@$work/orders.ndjson" "http://127.0.0.1:$SLUICE_PORT/v1/checked/bench-schema-s"
read -r p1_eps p1_cpu < <(run p /v1/plain/bench-schema-p)
read -r s1_eps s1_cpu < <(run s /v1/checked/bench-schema-s)
read -r p2_eps p2_cpu < <(run p /v1/plain/bench-schema-p)
read -r s2_eps s2_cpu < <(run s /v1/checked/bench-schema-s)

best() { python3 -c "print(max($1, $2))"; }
least() { python3 -c "print(min($1, $2))"; }
p_eps=$(best "$p1_eps" "$p2_eps"); s_eps=$(best "$s1_eps" "$s2_eps")
p_cpu=$(least "$p1_cpu" "$p2_cpu"); s_cpu=$(least "$s1_cpu" "$s2_cpu")
echo "events: $N x ~330 bytes; $PER per request over $CONNECTIONS connections (HTTP/1.1), ack: sink; best of two runs each"
printf '%-36s %10s %14s %8s\n' "" "events/s" "CPU µs/event" "vs (p)"
printf '%-36s %10s %14s %8s\n' "(p) no schema" "$p_eps" "$p_cpu" "1.00"
printf '%-36s %10s %14s %8s\n' "(s) order schema, every event valid" "$s_eps" "$s_cpu" "$(python3 -c "print(f'{$s_eps / $p_eps:.2f}')")"
echo "validation adds $(python3 -c "print(f'{$s_cpu - $p_cpu:.2f}')") µs of Sluice CPU per event ($(python3 -c "print(f'{$s_cpu / $p_cpu:.2f}')") x the route without a schema)"
