#!/usr/bin/env python3
"""A minimal OTLP trace receiver for Sluice's tests (no collector binary installs here).

Decodes ExportTraceServiceRequest with the official opentelemetry-proto package - posted to
/v1/traces over HTTP (protobuf, optionally gzip), or sent to TraceService/Export over gRPC -
keeps every span, and serves them as JSON at GET /spans on the HTTP port:
[{trace_id, span_id, parent_span_id, name, kind, status, attributes, service, via}], ids in hex.

    otlp_receiver.py PORT [GRPC_PORT]     binds 127.0.0.1:PORT (HTTP) and 127.0.0.1:GRPC_PORT
"""
import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

spans = []
lock = threading.Lock()


def value(any_value):
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind in ("array_value", "kvlist_value"):
        return str(getattr(any_value, kind))
    if kind == "bytes_value":
        return any_value.bytes_value.hex()
    return getattr(any_value, kind)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        if "json" in (self.headers.get("content-type") or ""):
            self.send_error(415, "this receiver takes application/x-protobuf")
            return
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        keep(request, "http")
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def do_GET(self):
        if self.path != "/spans":
            self.send_error(404)
            return
        with lock:
            reply = json.dumps(spans).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


def keep(request, via):
    received = []
    for resource_spans in request.resource_spans:
        resource = {a.key: value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                received.append(
                    {
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "name": span.name,
                        "kind": Span.SpanKind.Name(span.kind),
                        "status": span.status.code,
                        "attributes": {a.key: value(a.value) for a in span.attributes},
                        "service": resource.get("service.name"),
                        "via": via,
                    }
                )
    with lock:
        spans.extend(received)


def serve_grpc(port):
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            keep(request, "grpc")
            return ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server


if __name__ == "__main__":
    grpc_server = serve_grpc(int(sys.argv[2])) if len(sys.argv) > 2 else None
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
