#!/usr/bin/env python3
"""A small Confluent-compatible Schema Registry for the tests, in memory, on 127.0.0.1.

No real registry installs on the test machines (Confluent's is Java and not in Debian or PyPI;
Karapace is not on PyPI), so this one follows Confluent's documented REST API for the calls
producers and consumers make, and the official client (confluent-kafka's SchemaRegistryClient,
used by scripts/testing/registry_decode.py) talks to it as it would to the real one:

  POST /subjects/{subject}            look a schema up: 200 {subject,id,version,schema} or
                                      404 {error_code: 40401 subject not found | 40403 schema not found}
  POST /subjects/{subject}/versions   register: 200 {id} (the same id for the same schema)
  GET  /schemas/ids/{id}              200 {schema[, schemaType]} or 404 {error_code: 40403}
  GET  /subjects/{subject}/versions/latest
  GET  /calls                         (tests only) every call so far: [[method, path], ...]

Schemas compare as Confluent's do for lookups: Avro by their parsed JSON, others by their text.
--username/--password: HTTP basic auth on every call but /calls (401 {error_code: 401} otherwise).

Usage: schema_registry.py --port N [--username U --password P]
"""
import argparse
import base64
import json
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
schemas = []  # id - 1 -> (schema_type, text)
subjects = {}  # subject -> [id, ...] in version order
calls = []


def same(schema_type, a, b):
    if schema_type == "AVRO":
        try:
            return json.loads(a) == json.loads(b)
        except ValueError:
            return False
    return a.strip() == b.strip()


class Registry(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authorized(self):
        if not args.username:
            return True
        expected = "Basic " + base64.b64encode(f"{args.username}:{args.password}".encode()).decode()
        if self.headers.get("Authorization") == expected:
            return True
        self.answer(401, {"error_code": 401, "message": "Unauthorized"})
        return False

    def parts(self):
        path = urllib.parse.urlsplit(self.path).path
        return [urllib.parse.unquote(part) for part in path.strip("/").split("/")]

    def do_GET(self):
        parts = self.parts()
        if parts == ["calls"]:
            with lock:
                return self.answer(200, list(calls))
        with lock:
            calls.append(["GET", self.path])
        if not self.authorized():
            return
        with lock:
            if len(parts) == 3 and parts[:2] == ["schemas", "ids"] and parts[2].isdigit():
                index = int(parts[2]) - 1
                if 0 <= index < len(schemas):
                    schema_type, text = schemas[index]
                    body = {"schema": text}
                    if schema_type != "AVRO":
                        body["schemaType"] = schema_type
                    return self.answer(200, body)
                return self.answer(404, {"error_code": 40403, "message": "Schema not found"})
            if len(parts) == 4 and parts[0] == "subjects" and parts[2] == "versions":
                versions = subjects.get(parts[1])
                if not versions:
                    return self.answer(404, {"error_code": 40401, "message": "Subject not found"})
                version = len(versions) if parts[3] == "latest" else int(parts[3])
                schema_id = versions[version - 1]
                schema_type, text = schemas[schema_id - 1]
                return self.answer(200, {"subject": parts[1], "id": schema_id, "version": version, "schema": text, "schemaType": schema_type})
        self.answer(404, {"error_code": 404, "message": "HTTP 404 Not Found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        with lock:
            calls.append(["POST", self.path])
        if not self.authorized():
            return
        parts = self.parts()
        try:
            request = json.loads(raw)
            text = request["schema"]
            schema_type = request.get("schemaType", "AVRO")
            if schema_type == "AVRO":
                json.loads(text)
        except (ValueError, KeyError, TypeError):
            return self.answer(422, {"error_code": 42201, "message": "Invalid schema"})
        with lock:
            if len(parts) == 2 and parts[0] == "subjects":
                versions = subjects.get(parts[1])
                if not versions:
                    return self.answer(404, {"error_code": 40401, "message": f"Subject '{parts[1]}' not found."})
                for version, schema_id in enumerate(versions, start=1):
                    if schemas[schema_id - 1][0] == schema_type and same(schema_type, schemas[schema_id - 1][1], text):
                        return self.answer(200, {"subject": parts[1], "id": schema_id, "version": version, "schema": text})
                return self.answer(404, {"error_code": 40403, "message": "Schema not found"})
            if len(parts) == 3 and parts[0] == "subjects" and parts[2] == "versions":
                schema_id = next(
                    (i + 1 for i, (t, s) in enumerate(schemas) if t == schema_type and same(schema_type, s, text)), None)
                if schema_id is None:
                    schemas.append((schema_type, text))
                    schema_id = len(schemas)
                versions = subjects.setdefault(parts[1], [])
                if schema_id not in versions:
                    versions.append(schema_id)
                return self.answer(200, {"id": schema_id})
        self.answer(404, {"error_code": 404, "message": "HTTP 404 Not Found"})


parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--username")
parser.add_argument("--password")
args = parser.parse_args()
server = ThreadingHTTPServer(("127.0.0.1", args.port), Registry)
server.daemon_threads = True
try:
    server.serve_forever()
except KeyboardInterrupt:
    sys.exit(0)
