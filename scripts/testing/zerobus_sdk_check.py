#!/usr/bin/env python3
"""Proves the project's Zerobus test server speaks the protocol: drives it with the official
Python SDK (databricks-zerobus-ingest-sdk 1.10.0, a client nobody here wrote; run with the
interpreter of the venv scripts/setup.sh makes, .testbed/zerobus-sdk) through OAuth, ingest,
acks, recovery after UNAVAILABLE and a close_stream_signal. Exits non-zero, saying why, if any
record the SDK flushed is not committed by the server.

usage: zerobus_sdk_check.py GRPC_PORT HTTP_PORT CLIENT_ID CLIENT_SECRET TABLE
"""
import json
import sys
import time
import urllib.request

from zerobus.sdk.sync import StreamConfigurationOptions, TableProperties, ZerobusSdk

grpc_port, http_port, client_id, client_secret, table = sys.argv[1:6]
control = f"http://127.0.0.1:{http_port}"


def post(path, document):
    request = urllib.request.Request(control + path, data=json.dumps(document).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request).read()


def stats():
    return json.loads(urllib.request.urlopen(control + "/_stats").read())


sdk = ZerobusSdk(f"http://127.0.0.1:{grpc_port}", control)
sdk._inner.set_use_tls(False)
options = StreamConfigurationOptions(recovery=True, recovery_backoff_ms=200, recovery_retries=10,
                                     server_lack_of_ack_timeout_ms=10000, flush_timeout_ms=60000)
stream = sdk.create_stream(client_id, client_secret, TableProperties(table), options)
sent = []


def ingest(label, count):
    for i in range(count):
        record = json.dumps({"phase": label, "i": i})
        stream.ingest_record_offset(record)
        sent.append(record)
    stream.flush()


ingest("plain", 50)
post("/_faults", {"unavailable_after_records": 20})
ingest("unavailable", 50)
post("/_faults", {"close_stream_after_records": 10, "close_stream_duration_ms": 500})
ingest("close-signal", 50)
stream.close()

# The server sees each half-close a moment after the SDK returns from close().
for _ in range(100):
    report = stats()
    if all(s["end"] for s in report["streams"]):
        break
    time.sleep(0.05)
committed = [c["record"] for c in report["committed"] if c["table"] == table]
missing = [r for r in sent if r not in set(committed)]
summary = {"sent": len(sent), "committed": len(committed), "unique_committed": len(set(committed)),
           "missing": len(missing), "streams": len(report["streams"]),
           "stream_ends": [s["end"] for s in report["streams"]], "close_signals_sent": report["close_signals_sent"],
           "records_after_close_signal": report["records_after_close_signal"], "token_requests": report["token_requests"]}
print(json.dumps(summary))
if missing:
    sys.exit(f"{len(missing)} flushed records were never committed, e.g. {missing[:3]}")
ends = summary["stream_ends"]
if len(ends) < 2 or ends[0] != "UNAVAILABLE (injected)":
    sys.exit("expected the SDK to open a new stream after UNAVAILABLE")
signalled = [s for s in report["streams"] if "close_signal_after_offset" in s]
if report["close_signals_sent"] != 1 or len(signalled) != 1 or signalled[0]["end"] != "OK (client half-closed)":
    sys.exit("expected the SDK to drain and half-close its stream after close_stream_signal")
if not report["token_requests"] or not all(t["basic_auth"] and t.get("tables") == [table] for t in report["token_requests"]):
    sys.exit("expected OAuth client-credentials token requests granting the table")
