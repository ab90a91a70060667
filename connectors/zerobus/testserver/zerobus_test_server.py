#!/usr/bin/env python3
"""A Zerobus Ingest server for tests and local development: the real gRPC protocol
(databricks.zerobus.Zerobus/EphemeralStream), an OAuth token endpoint, and fault injection.

  zerobus_test_server.py --grpc-port P --http-port H --client-id ID --client-secret SECRET
                         [--token-ttl SECONDS] [--ack-delay-ms MS] [--no-store] [--tls-dir DIR]

gRPC on 127.0.0.1:P (plaintext; TLS with --tls-dir DIR, a self-signed certificate written to
DIR/cert.pem). Each stream must carry `authorization: Bearer <token issued
here, not expired>` and `x-databricks-zerobus-table-name`; its first message is create_stream
for that table (record_type JSON, or PROTO with a descriptor_proto that parses), answered with
a stream_id. Records (ingest_record) and batches (ingest_record_batch) must use offsets 0, 1, 2,
... per stream; JSON records must parse and PROTO records must decode with the descriptor.
A record is durable (kept in `committed`) when its offset is acknowledged with
durability_ack_up_to_offset, after --ack-delay-ms. Status codes as the service uses them:
UNAUTHENTICATED (token), PERMISSION_DENIED (table not granted), INVALID_ARGUMENT (bad stream
or record), OUT_OF_RANGE (offset out of order).

HTTP on 127.0.0.1:H:
  POST /oidc/v1/token   OAuth client credentials: HTTP Basic ID:SECRET, form grant_type=
                        client_credentials, scope=all-apis, resource=api://databricks/
                        workspaces/<id>/zerobusDirectWriteApi, authorization_details (JSON
                        naming the table). Answers {"access_token", "token_type", "expires_in"}.
  GET  /_stats          what was received: token requests, streams, committed records (with
                        --no-store only their count, committed_count), the most records one
                        stream had received and not yet acknowledged (max_unacked_records), faults.
  POST /_faults         JSON, each a one-shot counter or a setting:
                          {"unavailable_after_records": N}  abort the next stream that gets N
                                                             more records with UNAVAILABLE
                                                             (its unacknowledged records are lost)
                          {"close_stream_after_records": N, "close_stream_duration_ms": D}
                                                             send close_stream_signal after N records
                          {"drop_acks": N}                   do not send the next N acks (the
                                                             records are durable; later acks cover them)
                          {"ack_delay_ms": D}                delay every ack by D
                          {"reject_tokens": true}            refuse every token (UNAUTHENTICATED)
                          {"denied_tables": [T, ...]}        refuse streams for T (PERMISSION_DENIED)
                          {"unknown_tables": [T, ...]}       refuse streams for T (NOT_FOUND)
                          {"reject_records_containing": S}   fail the stream (INVALID_ARGUMENT) at a
                                                             record whose text contains S, as the
                                                             service does for a record that does not
                                                             fit the table
                          {"end_streams_on_token_expiry": true}
                                                             end a stream with UNAUTHENTICATED once
                                                             the token it was opened with expires
  POST /_reset          forget everything received.
"""
import argparse
import base64
import itertools
import json
import os
import queue
import secrets
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from grpc_tools import protoc

parser = argparse.ArgumentParser()
parser.add_argument("--grpc-port", type=int, required=True)
parser.add_argument("--http-port", type=int, required=True)
parser.add_argument("--client-id", required=True)
parser.add_argument("--client-secret", required=True)
parser.add_argument("--token-ttl", type=int, default=3600)
parser.add_argument("--ack-delay-ms", type=int, default=0)
parser.add_argument("--no-store", action="store_true", help="count committed records without keeping them (benchmarks)")
parser.add_argument("--tls-dir", help="serve gRPC over TLS with a self-signed certificate for 127.0.0.1 and localhost, "
                                      "written to DIR/cert.pem (trust it as the client's CA) with DIR/key.pem")
args = parser.parse_args()

# Python stubs from the project's proto, generated at start (grpc_tools bundles duration.proto).
protos = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Protos")
out = tempfile.mkdtemp(prefix="zerobus-py-stubs-")
if protoc.main(["protoc", f"--proto_path={protos}", f"--proto_path={os.path.dirname(protoc.__file__)}/_proto",
                f"--python_out={out}", f"--grpc_python_out={out}", "databricks/zerobus/zerobus_service.proto"]) != 0:
    sys.exit("protoc failed")
sys.path.insert(0, out)
from databricks.zerobus import zerobus_service_pb2 as pb  # noqa: E402
from databricks.zerobus import zerobus_service_pb2_grpc as pb_grpc  # noqa: E402

lock = threading.Lock()
state = {}


def reset():
    with lock:
        state.clear()
        state.update(token_requests=[], tokens={}, streams=[], committed=[], committed_count=0, received_records=0, acks_sent=0,
                     acks_dropped=0, max_unacked_records=0, streams_cut_on_token_expiry=0, close_signals_sent=0, records_after_close_signal=0, rejected_streams=[],
                     faults={"unavailable_after_records": 0, "close_stream_after_records": 0,
                             "close_stream_duration_ms": 1000, "drop_acks": 0, "ack_delay_ms": args.ack_delay_ms,
                             "reject_tokens": False, "denied_tables": [], "unknown_tables": [],
                             "reject_records_containing": None, "end_streams_on_token_expiry": False})


reset()


class Rejected(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code, self.message = code, message


def check_token(metadata, table):
    authorization = metadata.get("authorization", "")
    if not authorization.startswith("Bearer "):
        raise Rejected(grpc.StatusCode.UNAUTHENTICATED, "missing bearer token")
    token = authorization[len("Bearer "):]
    with lock:
        if state["faults"]["reject_tokens"]:
            raise Rejected(grpc.StatusCode.UNAUTHENTICATED, "token rejected")
        grant = state["tokens"].get(token)
    if grant is None:
        raise Rejected(grpc.StatusCode.UNAUTHENTICATED, "unknown token")
    if grant["expires_at"] < time.time():
        raise Rejected(grpc.StatusCode.UNAUTHENTICATED, "token expired")
    if table not in grant["tables"]:
        raise Rejected(grpc.StatusCode.PERMISSION_DENIED, f"token does not grant {table}")
    with lock:
        faults = state["faults"]
        if table in faults["denied_tables"]:
            raise Rejected(grpc.StatusCode.PERMISSION_DENIED, f"no MODIFY on {table}")
        if table in faults["unknown_tables"]:
            raise Rejected(grpc.StatusCode.NOT_FOUND, f"table {table} does not exist")
    return token


def walk(message):
    yield message
    for nested in message.nested_type:
        yield from walk(nested)


def decoder_for(create):
    if create.record_type == pb.JSON:
        def decode(record):
            json.loads(record)
            return record
        return decode
    if create.record_type == pb.PROTO:
        if not create.HasField("descriptor_proto"):
            raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, "PROTO streams need descriptor_proto")
        descriptor = descriptor_pb2.DescriptorProto()
        try:
            descriptor.ParseFromString(create.descriptor_proto)
            # Nested types are referenced by full name (.package.Message.Nested): put the message
            # back in its package so they resolve.
            package = "zerobus_test"
            for field in [f for m in walk(descriptor) for f in m.field]:
                marker = f".{descriptor.name}."
                if field.type_name.startswith(".") and marker in field.type_name:
                    package = field.type_name[1:field.type_name.index(marker)] or package
                    break
            file = descriptor_pb2.FileDescriptorProto(name=f"{uuid.uuid4().hex}.proto", package=package)
            file.message_type.add().CopyFrom(descriptor)
            pool = descriptor_pool.DescriptorPool()
            pool.Add(file)
            message_class = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{descriptor.name}"))
        except Exception as error:  # noqa: BLE001
            raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, f"descriptor_proto does not parse: {error}")

        def decode(record):
            message = message_class()
            message.ParseFromString(record)
            return json_format.MessageToJson(message, indent=None, preserving_proto_field_name=True)
        return decode
    raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, "record_type must be JSON or PROTO")


class Zerobus(pb_grpc.ZerobusServicer):
    def EphemeralStream(self, request_iterator, context):
        # The official SDK waits for response headers before it sends anything.
        context.send_initial_metadata(())
        metadata = {key: value for key, value in context.invocation_metadata()}
        table = metadata.get("x-databricks-zerobus-table-name", "")
        try:
            token = check_token(metadata, table)
            first = next(request_iterator, None)
            if first is None or first.WhichOneof("payload") != "create_stream":
                raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be create_stream")
            create = first.create_stream
            if create.table_name != table:
                raise Rejected(grpc.StatusCode.INVALID_ARGUMENT,
                               f"create_stream table {create.table_name!r} differs from the metadata's {table!r}")
            decode = decoder_for(create)
        except Rejected as rejected:
            with lock:
                state["rejected_streams"].append({"table": table, "code": rejected.code.name, "message": rejected.message})
            context.abort(rejected.code, rejected.message)
            return
        stream_id = str(uuid.uuid4())
        record = {"stream_id": stream_id, "table": table, "token": token[:8], "record_type": pb.RecordType.Name(create.record_type),
                  "opened_at": time.time(), "records": 0, "end": None}
        with lock:
            state["streams"].append(record)
        yield pb.EphemeralStreamResponse(create_stream_response=pb.CreateIngestStreamResponse(stream_id=stream_id))

        inbox = queue.Queue()

        def read():
            try:
                for request in request_iterator:
                    inbox.put(("request", request))
                inbox.put(("end", None))
            except Exception as error:  # noqa: BLE001 - the client went away
                inbox.put(("error", error))

        threading.Thread(target=read, daemon=True).start()
        expected_offset = 0
        pending = []  # (due, offset, [decoded records])
        closing = False
        while True:
            now = time.time()
            timeout = max(0.0, pending[0][0] - now) if pending else 1.0
            try:
                kind, item = inbox.get(timeout=min(timeout, 0.2))
            except queue.Empty:
                kind, item = "tick", None
            with lock:
                cut = (state["faults"]["end_streams_on_token_expiry"]
                       and state["tokens"].get(token, {}).get("expires_at", float("inf")) < time.time())
                if cut:
                    state["streams_cut_on_token_expiry"] += 1
            if cut:
                record["end"] = "UNAUTHENTICATED: token expired mid-stream"
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "token expired")
                return
            if kind == "request":
                which = item.WhichOneof("payload")
                if which == "ingest_record":
                    offset, payload = item.ingest_record.offset_id, item.ingest_record
                    raw = [getattr(payload, payload.WhichOneof("record"))] if payload.WhichOneof("record") else []
                elif which == "ingest_record_batch":
                    offset, payload = item.ingest_record_batch.offset_id, item.ingest_record_batch
                    batch = payload.WhichOneof("batch")
                    raw = list(getattr(payload, batch).records) if batch else []
                else:
                    record["end"] = "INVALID_ARGUMENT: create_stream sent twice"
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "create_stream may only be the first message")
                    return
                if offset != expected_offset:
                    record["end"] = f"OUT_OF_RANGE: offset {offset}, expected {expected_offset}"
                    context.abort(grpc.StatusCode.OUT_OF_RANGE, f"offset {offset} out of order; expected {expected_offset}")
                    return
                if not raw:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"offset {offset} holds no records")
                    return
                try:
                    decoded = [decode(r) for r in raw]
                    with lock:
                        poison = state["faults"]["reject_records_containing"]
                    if poison and any(poison in (d if isinstance(d, str) else d.decode(errors="replace")) for d in decoded):
                        raise ValueError("the record does not fit the table's schema")
                except Exception as error:  # noqa: BLE001
                    record["end"] = f"INVALID_ARGUMENT at offset {offset}"
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"record at offset {offset} is invalid: {error}")
                    return
                expected_offset += 1
                with lock:
                    faults = state["faults"]
                    state["received_records"] += len(decoded)
                    record["records"] += len(decoded)
                    if closing:
                        state["records_after_close_signal"] += len(decoded)
                    unavailable = False
                    if faults["unavailable_after_records"] > 0:
                        faults["unavailable_after_records"] = max(0, faults["unavailable_after_records"] - len(decoded))
                        unavailable = faults["unavailable_after_records"] == 0
                    signal = False
                    if faults["close_stream_after_records"] > 0:
                        faults["close_stream_after_records"] = max(0, faults["close_stream_after_records"] - len(decoded))
                        signal = faults["close_stream_after_records"] == 0
                    delay = faults["ack_delay_ms"] / 1000
                    duration_ms = faults["close_stream_duration_ms"]
                if unavailable:
                    record["end"] = "UNAVAILABLE (injected)"
                    context.abort(grpc.StatusCode.UNAVAILABLE, "injected: service unavailable")
                    return
                pending.append((time.time() + delay, offset, decoded))
                unacked = sum(len(p[2]) for p in pending)
                with lock:
                    state["max_unacked_records"] = max(state["max_unacked_records"], unacked)
                if signal and not closing:
                    closing = True
                    with lock:
                        state["close_signals_sent"] += 1
                    record["close_signal_after_offset"] = offset
                    yield pb.EphemeralStreamResponse(close_stream_signal=pb.CloseStreamSignal(
                        duration={"seconds": duration_ms // 1000, "nanos": (duration_ms % 1000) * 1_000_000}))
            elif kind in ("end", "error"):
                # Half-closed (or gone): acknowledge what is pending, then finish.
                if kind == "error":
                    record["end"] = f"client went away: {item}"
                    return
                for _, offset, decoded in pending:
                    self.commit(record, offset, decoded)
                if pending:
                    yield pb.EphemeralStreamResponse(
                        ingest_record_response=pb.IngestRecordResponse(durability_ack_up_to_offset=pending[-1][1]))
                record["end"] = "OK (client half-closed)"
                return
            # The due prefix (one clock reading: an entry past one not yet due must wait for it,
            # or the ack would cover a record not yet committed).
            now = time.time()
            due = list(itertools.takewhile(lambda p: p[0] <= now, pending))
            if due:
                pending = pending[len(due):]
                for _, offset, decoded in due:
                    self.commit(record, offset, decoded)
                with lock:
                    drop = state["faults"]["drop_acks"] > 0
                    if drop:
                        state["faults"]["drop_acks"] -= 1
                        state["acks_dropped"] += 1
                    else:
                        state["acks_sent"] += 1
                if not drop:
                    yield pb.EphemeralStreamResponse(
                        ingest_record_response=pb.IngestRecordResponse(durability_ack_up_to_offset=due[-1][1]))

    @staticmethod
    def commit(stream, offset, decoded):
        with lock:
            state["committed_count"] += len(decoded)
            if args.no_store:
                return
            for index, value in enumerate(decoded):
                state["committed"].append({"table": stream["table"], "stream_id": stream["stream_id"], "offset": offset,
                                           "index": index, "record": value if isinstance(value, str) else
                                           base64.b64encode(value).decode()})


class Http(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_):
        pass

    def reply(self, status, document):
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/_stats":
            with lock:
                snapshot = json.loads(json.dumps({k: v for k, v in state.items() if k != "tokens"}))
                snapshot["tokens_issued"] = len(state["tokens"])
            return self.reply(200, snapshot)
        self.reply(404, {"error": "not_found"})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/_reset":
            reset()
            return self.reply(200, {})
        if self.path == "/_faults":
            with lock:
                state["faults"].update(json.loads(body or b"{}"))
            return self.reply(200, state["faults"])
        if self.path == "/oidc/v1/token":
            return self.token(body)
        self.reply(404, {"error": "not_found"})

    def token(self, body):
        form = dict(urllib.parse.parse_qsl(body.decode()))
        authorization = self.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{args.client_id}:{args.client_secret}".encode()).decode()
        entry = {"form_keys": sorted(form), "scope": form.get("scope"), "resource": form.get("resource"),
                 "authorization_details": form.get("authorization_details"),
                 "grant_type": form.get("grant_type"), "basic_auth": authorization == expected, "at": time.time()}
        with lock:
            state["token_requests"].append(entry)
        if authorization != expected:
            return self.reply(401, {"error": "invalid_client", "error_description": "client authentication failed"})
        if form.get("grant_type") != "client_credentials" or form.get("scope") != "all-apis":
            return self.reply(400, {"error": "invalid_request", "error_description": "grant_type/scope"})
        resource = form.get("resource", "")
        if not (resource.startswith("api://databricks/workspaces/") and resource.endswith("/zerobusDirectWriteApi")):
            return self.reply(400, {"error": "invalid_request", "error_description": "resource"})
        try:
            details = json.loads(form.get("authorization_details", ""))
        except ValueError:
            return self.reply(400, {"error": "invalid_request", "error_description": "authorization_details is not JSON"})
        # A table is granted with USE CATALOG on its catalog, USE SCHEMA on its schema, and
        # SELECT + MODIFY on itself (the Unity Catalog privileges Zerobus writes need).
        def granted(kind, path, needed):
            return any(isinstance(d, dict) and d.get("type") == "unity_catalog_privileges" and d.get("object_type") == kind
                       and d.get("object_full_path") == path and set(needed) <= set(d.get("privileges", []))
                       for d in details if isinstance(details, list))
        candidates = [d.get("object_full_path", "") for d in details if isinstance(d, dict) and d.get("object_type") == "TABLE"]
        tables = {t for t in candidates if t.count(".") == 2 and granted("TABLE", t, ["SELECT", "MODIFY"])
                  and granted("CATALOG", t.split(".")[0], ["USE CATALOG"])
                  and granted("SCHEMA", ".".join(t.split(".")[:2]), ["USE SCHEMA"])}
        entry["tables"] = sorted(tables)
        token = secrets.token_urlsafe(24)
        with lock:
            state["tokens"][token] = {"expires_at": time.time() + args.token_ttl, "tables": tables}
        self.reply(200, {"access_token": token, "token_type": "Bearer", "expires_in": args.token_ttl, "scope": "all-apis"})


# The HTTP side binds first: whoever waits for the gRPC port can then use both.
http_server = ThreadingHTTPServer(("127.0.0.1", args.http_port), Http)
http_server.daemon_threads = True
grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
pb_grpc.add_ZerobusServicer_to_server(Zerobus(), grpc_server)
if args.tls_dir:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "zerobus test server")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                               x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    os.makedirs(args.tls_dir, exist_ok=True)
    with open(os.path.join(args.tls_dir, "cert.pem"), "wb") as f:
        f.write(cert_pem)
    with open(os.path.join(args.tls_dir, "key.pem"), "wb") as f:
        f.write(key_pem)
    grpc_server.add_secure_port(f"127.0.0.1:{args.grpc_port}", grpc.ssl_server_credentials([(key_pem, cert_pem)]))
else:
    grpc_server.add_insecure_port(f"127.0.0.1:{args.grpc_port}")
grpc_server.start()
print(f"zerobus test server: gRPC{' (TLS)' if args.tls_dir else ''} 127.0.0.1:{args.grpc_port}, HTTP 127.0.0.1:{args.http_port}",
      flush=True)
http_server.serve_forever()
