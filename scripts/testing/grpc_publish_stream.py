#!/usr/bin/env python3
"""Publishes events to Sluice over one PublishStream with grpcio (a client nobody here wrote).

Generates the Python stubs from Sluice's proto into a temporary directory, sends BATCHES
requests of PER_BATCH events (value '{"py":B,"i":I}', key 'k{I%5}'), reads every ack, and
prints one JSON document: {"acks": N, "durable": bool, "delivered": [[sequence, i, partition, offset], ...]}.

usage: grpc_publish_stream.py PORT TOPIC BATCHES PER_BATCH
"""
import atexit
import json
import os
import shutil
import sys
import tempfile

import grpc
from grpc_tools import protoc

port, topic, batches, per_batch = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
protos = os.path.join(root, "Sources", "SluiceGRPC", "Protos")

out = tempfile.mkdtemp(prefix="sluice-py-stubs-")
atexit.register(shutil.rmtree, out, ignore_errors=True)
status = protoc.main(["protoc", f"--proto_path={protos}", f"--python_out={out}", f"--grpc_python_out={out}",
                      "sluice/v1/ingest.proto"])
if status != 0:
    sys.exit(f"protoc failed: {status}")
sys.path.insert(0, out)
from sluice.v1 import ingest_pb2, ingest_pb2_grpc  # noqa: E402


def requests():
    for b in range(batches):
        yield ingest_pb2.PublishRequest(
            sequence=b, topic=topic,
            events=[ingest_pb2.Event(value=json.dumps({"py": b, "i": i}, separators=(",", ":")).encode(),
                                     key=f"k{i % 5}".encode()) for i in range(per_batch)])


channel = grpc.insecure_channel(f"127.0.0.1:{port}")
stub = ingest_pb2_grpc.IngestStub(channel)
acks = 0
durable = True
delivered = []
for ack in stub.PublishStream(requests(), timeout=300):
    acks += 1
    durable = durable and ack.durable
    for i, result in enumerate(ack.results):
        if result.WhichOneof("result") == "delivered":
            delivered.append([ack.sequence, i, result.delivered.partition, result.delivered.offset])
print(json.dumps({"acks": acks, "durable": durable, "delivered": delivered}))
