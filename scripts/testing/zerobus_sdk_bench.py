#!/usr/bin/env python3
"""Reference for Benchmarks/zerobus-ingest.sh: the official Python SDK
(databricks-zerobus-ingest-sdk, run with .testbed/zerobus-sdk/bin/python) ingesting N JSON
records straight into a Zerobus server in batches of BATCH (ingest_records_offset, sent as
ingest_record_batch), timed from the first record to the flush that has them all acknowledged.
Prints {"records": N, "seconds": S, "cpu_seconds": C}.

usage: zerobus_sdk_bench.py GRPC_PORT HTTP_PORT CLIENT_ID CLIENT_SECRET TABLE RECORDS_FILE N BATCH
"""
import json
import sys
import time

from zerobus.sdk.sync import StreamConfigurationOptions, TableProperties, ZerobusSdk

grpc_port, http_port, client_id, client_secret, table, records_file, n, batch = sys.argv[1:9]
n, batch = int(n), int(batch)
records = [line.rstrip("\n") for line in open(records_file) if line.strip()]

sdk = ZerobusSdk(f"http://127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}")
sdk._inner.set_use_tls(False)
stream = sdk.create_stream(client_id, client_secret, TableProperties(table),
                           StreamConfigurationOptions(max_inflight_records=50000, flush_timeout_ms=120000))
start, cpu = time.perf_counter(), time.process_time()
sent = 0
while sent < n:
    count = min(batch, n - sent)
    stream.ingest_records_offset([records[(sent + i) % len(records)] for i in range(count)])
    sent += count
stream.flush()
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
stream.close()
print(json.dumps({"records": n, "seconds": seconds, "cpu_seconds": cpu}))
