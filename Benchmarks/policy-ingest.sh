#!/usr/bin/env bash
# The cost of route policies on the ingest path, measured against the same route without them in
# the same run: one small JSON event per request (so per-request work shows), HTTP/1.1, into Kafka
# with `ack: accepted` (answered once queued, so the broker's latency does not hide Sluice's CPU).
#
#   (o) POST /open     - no policies
#   (p) POST /guarded  - jwt (RS256, a 2048-bit key, JWKS file) + rate_limit (per client, high
#                        enough that nothing is refused)
#
# Prints requests/s, latency and Sluice CPU per request for each, and the ratio (p)/(o).
# Everything on 127.0.0.1, bounded by request counts. Usage: Benchmarks/policy-ingest.sh
# (env: REQUESTS, CONNECTIONS, KAFKA_PORT, SLUICE_PORT)
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib.sh

REQUESTS="${REQUESTS:-100000}"
CONNECTIONS="${CONNECTIONS:-32}"
export KAFKA_PORT="${KAFKA_PORT:-19093}"
SLUICE_PORT="${SLUICE_PORT:-18080}"
ADMIN_PORT="${ADMIN_PORT:-18081}"
BROKER="127.0.0.1:$KAFKA_PORT"
work=".testbed/bench-policy"
mkdir -p "$work"

scripts/setup.sh
build_sluice

trap stop_started EXIT
start_kafka_broker

# An RS256 key pair: the public half as a JWKS for Sluice, a token signed with the private half.
token=$(python3 - "$work" <<'PY'
import base64, json, sys, time
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
work = sys.argv[1]
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
numbers = key.public_key().public_numbers()
b64 = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=").decode()
as_bytes = lambda n: n.to_bytes((n.bit_length() + 7) // 8, "big")
with open(f"{work}/jwks.json", "w") as f:
    json.dump({"keys": [{"kty": "RSA", "kid": "bench", "alg": "RS256", "n": b64(as_bytes(numbers.n)), "e": b64(as_bytes(numbers.e))}]}, f)
header = b64(json.dumps({"alg": "RS256", "kid": "bench", "typ": "JWT"}).encode())
claims = b64(json.dumps({"iss": "https://issuer.bench", "aud": "sluice", "sub": "client-1", "exp": int(time.time()) + 3600}).encode())
signature = key.sign(f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
print(f"{header}.{claims}.{b64(signature)}")
PY
)
echo "$token" >"$work/token"
printf '{"id":1,"user":"u1","pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}' >"$work/event.json"

cat >"$work/sluice.yaml" <<YAML
listeners: [{ name: bench, address: "127.0.0.1:$SLUICE_PORT" }]
admin: { address: "127.0.0.1:$ADMIN_PORT" }
policies:
  - name: tokens
    jwt: { issuer: https://issuer.bench, audiences: [sluice], algorithms: [RS256], jwks_file: $work/jwks.json }
  - name: per-client
    rate_limit: { key: client, rate: 1000000/s, burst: 1000000 }
sinks:
  - name: kafka
    kafka: { bootstrap_servers: ["$BROKER"] }
routes:
  - name: open
    match: { path: /open, methods: [POST] }
    ingest: { sink: kafka, topic: bench-policy, ack: accepted }
  - name: guarded
    match: { path: /guarded, methods: [POST] }
    policies: [tokens, per-client]
    ingest: { sink: kafka, topic: bench-policy, ack: accepted }
YAML
start_sluice "$work/sluice.yaml" "$work/sluice.log" "$ADMIN_PORT"

run() {  # path -> requests/s (every request must be answered 2xx)
    h2load --h1 -c "$CONNECTIONS" -n "$REQUESTS" -d "$work/event.json" -H "content-type: application/json" \
        -H "authorization: Bearer $token" "http://127.0.0.1:$SLUICE_PORT/$1" >"$work/load.out" 2>&1
    expect_all_2xx "$REQUESTS"
    awk '/finished in/ {print $4}' "$work/load.out"
}
run open >/dev/null  # warm-up: connections, topic metadata
c0=$(cpu_of_pid "$sluice_pid")
open_rps=$(run open)
c1=$(cpu_of_pid "$sluice_pid")
open_lat=$(latency)
guarded_rps=$(run guarded)
c2=$(cpu_of_pid "$sluice_pid")
guarded_lat=$(latency)
cat <<OUT
date:                          $(date -u +%Y-%m-%d)
requests:                      $REQUESTS x 1 event (~80 B JSON), HTTP/1.1 x$CONNECTIONS, into Kafka
(o) no policies:               $open_rps req/s  (request time $open_lat; $(per_event_us "$c0" "$c1" "$REQUESTS") us CPU/request in Sluice)
(p) jwt RS256 + rate_limit:    $guarded_rps req/s  (request time $guarded_lat; $(per_event_us "$c1" "$c2" "$REQUESTS") us CPU/request in Sluice)
ratio (p)/(o):                 $(python3 -c "print(f'{$guarded_rps / $open_rps:.2f}')")
OUT
