#!/usr/bin/env python3
"""An HTTP/1.1 upstream for Sluice's reverse-proxy tests, with faults on demand.

    proxy_upstream.py --port P --name NAME

Every request is answered by path (any method):
  /status/<code>        that status, JSON body
  /delay/<ms>           200 after <ms> milliseconds
  /held                 200 once a test releases it (POST /_control/release; at most 120 s)
  /stream/<bytes>       <bytes> of a repeating pattern, chunked, in 64 KiB parts
  /reset                closes the connection without an answer
  /quiet-close          200 (no `Connection: close`), then the connection's next request is
                        dropped unanswered: as a server whose keep-alive timeout ran out just
                        as that request came
  /echo-stream          200 at once, then echoes each chunk of a chunked request as it comes,
                        and the request's trailers as the answer's (full duplex)
  /garbage              answers bytes that are not HTTP, then closes
  /overlong             200 with content-length 5 and 10 bytes of body (5 too many)
  /short                200 with content-length 100, 5 bytes, then closes
  /early/<code>         answers <code> at once without reading the request body, then closes
  /healthz              200, or 503 while the health is set down
  ?read_rate=<bytes/s>  (any path) read the request body no faster than that
  anything else         JSON echo: name, method, path (with query), headers, body_bytes, body_sha256
Every answer carries `x-upstream: NAME`.

Control (never proxied; tests call it directly):
  POST /_control/health/up|down    the /healthz answer
  POST /_control/fail/<code>       answer every non-control request with <code> (0: stop)
  GET  /_control/stats             {"requests", "by_path", "max_concurrent", "health_checks",
                                   "connections" (accepted, control ones included), "open" (now),
                                   "dropped" (requests dropped after /quiet-close)}
  POST /_control/release           answer every held request (and those held after it)
  POST /_control/reset             zero the counters, hold /held again
"""
import argparse
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATTERN = bytes(range(256)) * 256  # 64 KiB


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.healthy = True
        self.fail_status = 0
        self.reset()

    def reset(self):
        self.requests = 0
        self.by_path = {}
        self.concurrent = 0
        self.max_concurrent = 0
        self.health_checks = 0
        self.connections = 0
        self.open = 0
        self.dropped = 0
        self.released = threading.Event()


STATE = State()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "proxy-upstream"

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        super().setup()
        with STATE.lock:
            STATE.connections += 1
            STATE.open += 1

    def finish(self):
        try:
            super().finish()
        finally:
            with STATE.lock:
                STATE.open -= 1

    def reply(self, status, body=b"", content_type="application/json", extra=None):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.send_header("x-upstream", self.server.name)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self):
        digest = hashlib.sha256()
        total = 0
        # ?read_rate=<bytes/s>: a slow reader (the body waits in Sluice or, better, in the client).
        rate = 0
        if "read_rate=" in self.path:
            rate = int(self.path.split("read_rate=", 1)[1].split("&", 1)[0])
        started = time.monotonic()

        def pace():
            if rate:
                ahead = total / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)

        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                remaining = size
                while remaining:
                    part = self.rfile.read(min(remaining, 1 << 16))
                    digest.update(part)
                    total += len(part)
                    remaining -= len(part)
                    pace()
                self.rfile.readline()
        else:
            remaining = int(self.headers.get("content-length") or 0)
            while remaining:
                part = self.rfile.read(min(remaining, 1 << 16))
                if not part:
                    break
                digest.update(part)
                total += len(part)
                remaining -= len(part)
                pace()
        return total, digest.hexdigest()

    def control(self, path):
        self.read_body()
        if path == "/_control/stats":
            with STATE.lock:
                stats = {
                    "requests": STATE.requests,
                    "by_path": STATE.by_path,
                    "max_concurrent": STATE.max_concurrent,
                    "health_checks": STATE.health_checks,
                    "connections": STATE.connections,
                    "open": STATE.open,
                    "dropped": STATE.dropped,
                }
            return self.reply(200, json.dumps(stats).encode())
        if path == "/_control/reset":
            with STATE.lock:
                open_now = STATE.open
                STATE.reset()
                STATE.open = open_now
        elif path == "/_control/release":
            STATE.released.set()
        elif path.startswith("/_control/health/"):
            STATE.healthy = path.endswith("/up")
        elif path.startswith("/_control/fail/"):
            STATE.fail_status = int(path.rsplit("/", 1)[1])
        else:
            return self.reply(404, b'{"error":"unknown control"}')
        self.reply(200, b'{"ok":true}')

    def handle_any(self):
        path = self.path.split("?", 1)[0]
        if getattr(self, "drop_next", False):
            with STATE.lock:
                STATE.dropped += 1
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if path.startswith("/_control/"):
            return self.control(path)
        if path == "/healthz":
            self.read_body()
            with STATE.lock:
                STATE.health_checks += 1
            return self.reply(200 if STATE.healthy else 503, b'{"healthy":%s}' % (b"true" if STATE.healthy else b"false"))
        with STATE.lock:
            STATE.requests += 1
            STATE.by_path[path] = STATE.by_path.get(path, 0) + 1
            STATE.concurrent += 1
            STATE.max_concurrent = max(STATE.max_concurrent, STATE.concurrent)
        try:
            self.serve(path)
        finally:
            with STATE.lock:
                STATE.concurrent -= 1

    def serve(self, path):
        if path == "/reset":
            self.read_body()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if path == "/echo-stream":
            # Full duplex: the head at once, then each chunk of the (chunked) request echoed as
            # it comes, then the request's trailers as the answer's.
            self.send_response(200)
            self.send_header("content-type", "application/octet-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            trailers = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while True:
                        line = self.rfile.readline()
                        if line in (b"\r\n", b"\n", b""):
                            break
                        trailers.append(line.strip())
                    break
                part = self.rfile.read(size)
                self.rfile.readline()
                self.wfile.write(b"%x\r\n" % len(part) + part + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n" + b"".join(t + b"\r\n" for t in trailers) + b"\r\n")
            return
        if path == "/garbage":
            # Not HTTP at all, then the connection closes.
            self.read_body()
            self.close_connection = True
            self.wfile.write(b"SMTP ready\r\n\r\n")
            self.wfile.flush()
            return
        if path == "/overlong":
            # content-length 5, and 10 bytes: the 5 extra arrive on a connection that then looks
            # idle (and would corrupt the next answer on it if it were reused).
            self.read_body()
            self.send_response(200)
            self.send_header("content-length", "5")
            self.end_headers()
            self.wfile.write(b"helloworld")
            self.wfile.flush()
            return
        if path == "/short":
            # content-length 100, 5 bytes, then the connection closes: a cut answer.
            self.read_body()
            self.close_connection = True
            self.send_response(200)
            self.send_header("content-length", "100")
            self.end_headers()
            self.wfile.write(b"hello")
            self.wfile.flush()
            return
        if path.startswith("/early/"):
            code = int(path.rsplit("/", 1)[1])
            self.close_connection = True
            return self.reply(code, json.dumps({"status": code, "early": True}).encode())
        total, sha = self.read_body()
        if path == "/quiet-close":
            self.drop_next = True
            return self.reply(200, b'{"closing":true}')
        if STATE.fail_status:
            return self.reply(STATE.fail_status, b'{"error":"failing on purpose"}')
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            return self.reply(code, json.dumps({"status": code}).encode())
        if path == "/held":
            STATE.released.wait(120)
            return self.reply(200, b'{"held":true}')
        if path.startswith("/delay/"):
            time.sleep(int(path.rsplit("/", 1)[1]) / 1000)
            return self.reply(200, b'{"delayed":true}')
        if path.startswith("/parts/"):
            # A content-length answer whose body leaves in four writes with pauses between, so
            # that the proxy reads it in several parts.
            size = int(path.rsplit("/", 1)[1])
            self.send_response(200)
            self.send_header("content-type", "application/octet-stream")
            self.send_header("content-length", str(size))
            self.send_header("x-upstream", self.server.name)
            self.end_headers()
            step = max(1, (size + 3) // 4)
            for start in range(0, size, step):
                self.wfile.write(PATTERN[start:min(size, start + step)])
                self.wfile.flush()
                time.sleep(0.03)
            return
        if path.startswith("/stream/"):
            size = int(path.rsplit("/", 1)[1])
            self.send_response(200)
            self.send_header("content-type", "application/octet-stream")
            self.send_header("transfer-encoding", "chunked")
            self.send_header("x-upstream", self.server.name)
            self.end_headers()
            sent = 0
            while sent < size:
                part = PATTERN[: min(len(PATTERN), size - sent)]
                self.wfile.write(b"%x\r\n" % len(part) + part + b"\r\n")
                sent += len(part)
            self.wfile.write(b"0\r\n\r\n")
            return
        echo = {
            "name": self.server.name,
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "header_list": [[k.lower(), v] for k, v in self.headers.items()],
            "body_bytes": total,
            "body_sha256": sha,
        }
        self.reply(200, json.dumps(echo).encode())

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = handle_any


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="upstream")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.name = args.name
    server.request_queue_size = 256
    server.serve_forever()


if __name__ == "__main__":
    main()
