#!/usr/bin/env python3
"""Hostile-input suite: raw bytes an attacker would send, against a running Sluice.

    hostile_input.py --pid PID --port HTTP --admin ADMIN --grpc GRPC --upstream-control URL
                     --events-dir DIR --jwt-secret S --rsa-public-pem FILE --rsa-private-pem FILE

Sluice must run the config of Tests/EndToEndTests/HostileInputTests.swift (routes, policies and
limits named below). Every case sends its bytes, reads the answer and checks the exact status
(and error code) expected, then checks that the process is alive. At the end the RSS and the open
descriptors of the process must be back near their baseline. Prints one line per case and a
closing 'N passed, N failed'; exits non-zero on any failure.
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import socket
import struct
import sys
import time
import urllib.request

ARGS = None
RESULTS = []


# ---------------------------------------------------------------------------------------------
# plumbing

def connect(port, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_all(s, timeout=5.0):
    """Reads until the peer closes or `timeout` passes without data."""
    s.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            return data, False
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk


def responses(data):
    """Splits HTTP/1.x responses off a byte stream: [(status, headers, body)]."""
    out = []
    rest = data
    while rest.startswith(b"HTTP/"):
        head_end = rest.find(b"\r\n\r\n")
        if head_end < 0:
            break
        head = rest[:head_end].decode("latin-1")
        lines = head.split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        body_start = head_end + 4
        if status == 100:
            rest = rest[body_start:]
            continue
        if "content-length" in headers:
            n = int(headers["content-length"][0])
            body = rest[body_start:body_start + n]
            rest = rest[body_start + n:]
        elif "chunked" in ",".join(headers.get("transfer-encoding", [])):
            body = b""
            i = body_start
            while True:
                line_end = rest.find(b"\r\n", i)
                size = int(rest[i:line_end].split(b";")[0], 16)
                i = line_end + 2
                if size == 0:
                    i = rest.find(b"\r\n", i) + 2
                    break
                body += rest[i:i + size]
                i += size + 2
            rest = rest[i:]
        else:
            body = rest[body_start:]
            rest = b""
        out.append((status, headers, body))
    return out


def exchange(raw, port=None, timeout=5.0, pause_after=None):
    """Sends `raw` (bytes, or a list of parts sent with a pause between), returns (responses, closed)."""
    s = connect(port or ARGS.port)
    try:
        parts = raw if isinstance(raw, list) else [raw]
        for index, part in enumerate(parts):
            try:
                s.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break
            if index + 1 < len(parts):
                time.sleep(pause_after or 0.2)
        data, closed = read_all(s, timeout)
    finally:
        s.close()
    return responses(data), closed, data


def error_code(body):
    try:
        return json.loads(body)["error"]["code"]
    except Exception:
        return None


def alive():
    try:
        os.kill(ARGS.pid, 0)
    except OSError:
        return False
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ARGS.admin}/health", timeout=5) as r:
            return r.status == 200
    except Exception:
        return False


def record(name, ok, detail=""):
    ok = ok and alive()
    RESULTS.append((name, ok))
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f"  -- {detail}"), flush=True)


def expect_one(name, raw, status, code=None, closed=None, **kwargs):
    """Exactly one response with `status` (and JSON error `code`); optionally the connection closed."""
    try:
        got, was_closed, data = exchange(raw, **kwargs)
    except Exception as error:  # noqa: BLE001
        record(name, False, f"exchange failed: {error!r}")
        return None
    ok = len(got) == 1 and got[0][0] == status
    if ok and code is not None:
        ok = error_code(got[0][2]) == code
    if ok and closed is not None:
        ok = was_closed == closed
    record(name, ok, f"want one {status} {code or ''} closed={closed}; got {[(g[0], error_code(g[2])) for g in got]} "
                     f"closed={was_closed} raw={data[:300]!r}")
    return got[0] if got else None


def http(method, path, body=b"", headers=None, version="HTTP/1.1", host="x"):
    head = f"{method} {path} {version}\r\n"
    if host is not None:
        head += f"Host: {host}\r\n"
    for name, value in (headers or {}).items():
        head += f"{name}: {value}\r\n"
    if body and not any(k.lower() in ("content-length", "transfer-encoding") for k in (headers or {})):
        head += f"Content-Length: {len(body)}\r\n"
    head += "Connection: close\r\n\r\n"
    return head.encode() + body


NDJSON = {"Content-Type": "application/x-ndjson"}


def upstream_stats():
    with urllib.request.urlopen(ARGS.upstream_control + "/_control/stats", timeout=5) as r:
        return json.loads(r.read())


def upstream_reset():
    urllib.request.urlopen(urllib.request.Request(ARGS.upstream_control + "/_control/reset", method="POST"), timeout=5).read()


# ---------------------------------------------------------------------------------------------
# HTTP/1.1 framing and smuggling

def chunked_cases():
    head = b"POST /v1/events/hostile HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
    bad = {
        "chunk size overflowing 64 bits": b"FFFFFFFFFFFFFFFFFFFFFF\r\n{}\r\n0\r\n\r\n",
        "negative chunk size": b"-1\r\n{}\r\n0\r\n\r\n",
        "0x-prefixed chunk size": b"0x2\r\n{}\r\n0\r\n\r\n",
        "non-hex chunk size": b"zz\r\n{}\r\n0\r\n\r\n",
        "bare ';' chunk extension": b"2;\r\n{}\r\n0\r\n\r\n",
        "LF-only chunk lines": b"2\n{}\n0\n\n",
        "chunk data longer than its size": b"2\r\n{}XXXX\r\n0\r\n\r\n",
        "chunk size with trailing space": b"2 \r\n{}\r\n0\r\n\r\n",
        "chunk size with leading space": b" 2\r\n{}\r\n0\r\n\r\n",
    }
    for name, body in bad.items():
        expect_one("chunked: " + name, head + body, 400, "malformed_request", closed=True)
    # The same after a first valid chunk: the handler is already reading the body.
    # Chunk extensions are ignored, and Sluice re-frames what it forwards, so a lenient reading of
    # an empty extension value cannot smuggle anything: one answer, the body taken as sent.
    expect_one("chunked: empty chunk extension value is ignored", head + b"3;a=\r\n{}\n\r\n0\r\n\r\n", 200)
    expect_one("chunked: bad size after a valid chunk", head + b"3\r\n{}\n\r\nzz\r\n{}\r\n0\r\n\r\n", 400, closed=True)
    expect_one("chunked: data overrun after a valid chunk", head + b"3\r\n{}\n\r\n2\r\n{}XX\r\n0\r\n\r\n", 400, closed=True)
    te = {
        "Transfer-Encoding: xchunked": "xchunked",
        "Transfer-Encoding: chunked, identity": "chunked, identity",
        "Transfer-Encoding: identity": "identity",
    }
    for name, value in te.items():
        raw = (f"POST /v1/events/hostile HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
               f"Transfer-Encoding: {value}\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n").encode()
        expect_one("te: " + name, raw, 400, closed=True)
    # A valid chunked body still works (positive control).
    expect_one("chunked: valid body", head + b"3\r\n{}\n\r\n0\r\n\r\n", 200)


def smuggling_cases():
    base = "POST /v1/events/hostile HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
    expect_one("smuggling: Content-Length with Transfer-Encoding (CL.TE)",
               (base + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG").encode(), 400, closed=True)
    expect_one("smuggling: two different Content-Lengths",
               (base + "Content-Length: 3\r\nContent-Length: 4\r\n\r\n{}\n\n").encode(), 400, closed=True)
    expect_one("smuggling: Content-Length with a sign", (base + "Content-Length: +3\r\n\r\n{}\n").encode(), 400, closed=True)
    expect_one("smuggling: non-numeric Content-Length", (base + "Content-Length: 3a\r\n\r\n{}\n").encode(), 400, closed=True)
    expect_one("smuggling: obs-fold header continuation",
               (base + "Content-Length: 3\r\nX-A: b\r\n folded\r\n\r\n{}\n").encode(), 400, closed=True)
    expect_one("smuggling: space before the colon",
               (base + "Content-Length : 3\r\n\r\n{}\n").encode(), 400, closed=True)
    expect_one("smuggling: NUL in a header value",
               (base + "Content-Length: 3\r\nX-A: a\x00b\r\n\r\n{}\n").encode(), 400, closed=True)
    expect_one("smuggling: header name with a separator",
               (base + "Content-Length: 3\r\nX(A): b\r\n\r\n{}\n").encode(), 400, closed=True)
    expect_one("framing: bare LF line endings in the head",
               b"POST /v1/events/hostile HTTP/1.1\nHost: x\nContent-Length: 3\n\n{}\n", 400, closed=True)
    expect_one("framing: unknown HTTP version", b"GET /static/a HTTP/9.9\r\nHost: x\r\n\r\n", 400, "malformed_request", closed=True)
    expect_one("framing: request head over max_header_bytes",
               (base + "X-Big: " + "a" * 9000 + "\r\nContent-Length: 3\r\n\r\n{}\n").encode(), 431, "headers_too_large", closed=True)
    expect_one("host: missing on HTTP/1.1", b"GET /static/a HTTP/1.1\r\nConnection: close\r\n\r\n", 400, "invalid_host")
    expect_one("host: two Host headers", b"GET /static/a HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n", 400, "invalid_host")
    expect_one("host: two Host headers, the second in other case", b"GET /static/a HTTP/1.1\r\nHost: a\r\nhOST: b\r\nConnection: close\r\n\r\n", 400, "invalid_host")
    expect_one("host: control character in Host", b"GET /static/a HTTP/1.1\r\nHost: a\x01b\r\nConnection: close\r\n\r\n", 400)
    # Two requests pipelined on one connection get two answers, in order (positive control).
    two = (base + "Content-Length: 3\r\n\r\n{}\n").encode() + http("POST", "/v1/events/hostile", b"{}\n", NDJSON)
    got, _, _ = exchange(two)
    record("framing: two pipelined requests, two answers", [g[0] for g in got] == [200, 200], f"{[g[0] for g in got]}")
    # A bad request after a good one: one answer each, then the connection is closed.
    bad_after = (base + "Content-Length: 3\r\n\r\n{}\n").encode() + (base + "Content-Length: x\r\n\r\n").encode()
    got, closed, _ = exchange(bad_after)
    record("framing: a bad request after a good one", [g[0] for g in got] == [200, 400] and closed, f"{[g[0] for g in got]} {closed}")


def version_cases():
    # HTTP/1.0 gets a close-delimited (never chunked) streamed answer from a proxy route.
    got, closed, data = exchange(b"GET /static/stream/200000 HTTP/1.0\r\nHost: x\r\n\r\n", timeout=10)
    ok = len(got) == 1 and got[0][0] == 200 and "transfer-encoding" not in got[0][1] and len(got[0][2]) == 200000 and closed
    record("http/1.0: streamed proxy answer without chunked coding", ok,
           f"{[(g[0], g[1].get('transfer-encoding'), len(g[2])) for g in got]} closed={closed} head={data[:200]!r}")
    got, closed, _ = exchange(b"GET /static/a HTTP/1.0\r\n\r\n")
    record("http/1.0: no Host is fine", len(got) == 1 and got[0][0] == 200, f"{[g[0] for g in got]}")
    # absolute-form targets are routed (RFC 9112 3.2.2), and their authority is the host.
    expect_one("target: absolute-form is routed", http("POST", "http://ingest.example/v1/events/hostile", b"{}\n", NDJSON), 200)
    expect_one("target: absolute-form https is routed", http("POST", "HTTPS://ingest.example:443/v1/events/hostile", b"{}\n", NDJSON), 200)
    expect_one("target: absolute-form with userinfo", http("GET", "http://user@evil/static/a"), 400, "invalid_path")
    expect_one("target: asterisk-form on GET", http("GET", "*"), 400, "invalid_path")
    expect_one("target: authority-form", http("CONNECT", "evil.example:443"), 400)
    expect_one("target: fragment in the target", http("GET", "/static/a#frag"), 400)


# ---------------------------------------------------------------------------------------------
# paths

def path_cases():
    # The authz rule denies /static/secret: no spelling may reach the upstream.
    upstream_reset()
    for spelling in ["/static/secret/x", "/static/%73ecret/x", "/static//secret/x", "/static/./secret/x",
                     "/static/x/../secret/x", "/static/%2e/secret/x", "/static/x/%2E%2E/secret/x", "/static/SECRET/../secret/x",
                     "/static/secret%2fx/../x", "/static///./secret/x"]:
        expect = 400 if "%2f" in spelling.lower() else 403
        expect_one(f"path: {spelling} is refused", http("GET", spelling), expect)
    stats = upstream_stats()
    record("path: no denied spelling reached the upstream", stats["requests"] == 0, f"{stats}")
    for spelling, code in [("/static/a%2Fb", "invalid_path"), ("/static/a%5Cb", "invalid_path"), ("/static/..;/secret", "invalid_path"),
                           ("/static/%zz", "invalid_path"), ("/static/a%00b", "invalid_path"), ("/static/a%2", "invalid_path")]:
        expect_one(f"path: {spelling} is a bad path", http("GET", spelling), 400, code)
    expect_one("path: backslash in the path", http("GET", "/static/a\\..\\secret"), 400)
    expect_one("path: raw non-ASCII in the path", http("GET", "/static/caf\xc3\xa9".encode("latin-1").decode("latin-1")), 400)
    # The upstream sees the canonical form: unreserved escapes decoded, slashes merged, dots removed.
    got = expect_one("path: canonical form forwarded", http("GET", "/static/%7Eok/./a//b/../c?q=%2F"), 200)
    if got:
        echoed = json.loads(got[2]).get("path")
        record("path: the upstream gets /~ok/a/c?q=%2F", echoed == "/~ok/a/c?q=%2F", f"{echoed}")
    # Ingest {topic}: the parameter is taken from the canonical path.
    expect_one("topic: %2e%2e climbs out of the route", http("POST", "/v1/events/%2e%2e", b"{}\n", NDJSON), 404, "no_route")
    expect_one("topic: encoded dot in a topic", http("POST", "/v1/events/my%2Etopic", b"{}\n", NDJSON), 200)
    expect_one("topic: encoded space is an invalid topic", http("POST", "/v1/events/a%20b", b"{}\n", NDJSON), 400, "invalid_topic")
    expect_one("topic: encoded slash in a topic", http("POST", "/v1/events/a%2Fb", b"{}\n", NDJSON), 400, "invalid_path")


# ---------------------------------------------------------------------------------------------
# headers reaching an upstream

def upstream_header_cases():
    upstream_reset()
    # HTTP/1.1: the parser itself refuses control characters in a field.
    for char in ["\x01", "\x0b", "\x1f", "\x7f"]:
        expect_one(f"header: control character {char!r} in an HTTP/1.1 value", http("GET", "/static/a", headers={"X-Evil": "a" + char + "b"}),
                   400, "malformed_request", closed=True)
    # HTTP/2: HPACK carries any byte; the edge refuses them before routing. Outlier detection
    # ejects after 2 failures in a row: none of these may count against the endpoint.
    for char in [b"\x01", b"\x0b", b"\x7f", b"\x00"]:
        block = h2_request_headers(path=b"/static/a", method=b"GET") + hpack_literal(b"x-evil", b"a" + char + b"b")
        status, body = h2_one_request(block)
        # NUL, CR and LF make the field malformed for HTTP/2 itself (RFC 9113 8.2.1): a stream reset.
        refused = (status == b"400" and error_code(body) == "invalid_header") or (char == b"\x00" and status is None)
        record(f"header: control character {char!r} in an HTTP/2 value is refused", refused, f"{status} {body[:200]!r}")
    for name in [b"x(evil)", b"x evil", b"X-Upper"]:
        status, body = h2_one_request(h2_request_headers(path=b"/static/a", method=b"GET") + hpack_literal(name, b"v"))
        record(f"header: HTTP/2 header name {name!r} is refused", status in (b"400", None), f"{status} {body[:200]!r}")
    expect_one("header: the endpoint still serves everyone", http("GET", "/static/a"), 200)
    stats = upstream_stats()
    record("header: refused requests never reached the upstream", stats["requests"] == 1, f"{stats}")
    # obs-text (bytes >= 0x80) in a value is allowed by RFC 9110 and passed on.
    expect_one("header: obs-text in a value is passed on", http("GET", "/static/a", headers={"X-Latin": "caf\xe9"}), 200)


# ---------------------------------------------------------------------------------------------
# JSON and NDJSON

def json_cases():
    post = lambda body, route="/v1/events/hostile", ctype="application/x-ndjson": http(  # noqa: E731
        "POST", route, body, {"Content-Type": ctype})
    got = expect_one("json: invalid UTF-8 in a string", post(b'{"a":1}\n{"b":"\xff"}\n'), 400, "invalid_json")
    if got:
        message = json.loads(got[2])["error"]["message"]
        record("json: the error names line 2, column 7", "line 2, column 7" in message, message)
    expect_one("json: overlong UTF-8 (C0 AF)", post(b'{"b":"\xc0\xaf"}\n'), 400, "invalid_json")
    expect_one("json: UTF-8 surrogate (ED A0 80)", post(b'{"b":"\xed\xa0\x80"}\n'), 400, "invalid_json")
    expect_one("json: UTF-8 above U+10FFFF (F4 90 80 80)", post(b'{"b":"\xf4\x90\x80\x80"}\n'), 400, "invalid_json")
    expect_one("json: truncated UTF-8 sequence", post(b'{"b":"\xe2\x82"}\n'), 400, "invalid_json")
    expect_one("json: invalid UTF-8 in a key", post(b'{"\xfe":1}\n'), 400, "invalid_json")
    expect_one("json: invalid UTF-8 in application/json", post(b'[{"b":"\x80"}]', ctype="application/json"), 400, "invalid_json")
    expect_one("json: valid multi-byte UTF-8", post('{"b":"héllo €𝄞"}\n'.encode()), 200)
    expect_one("json: nested 129 deep", post(b"[" * 129 + b"]" * 129 + b"\n"), 400, "invalid_json")
    expect_one("json: byte order mark", post(b'\xef\xbb\xbf{"a":1}\n'), 400, "invalid_json")
    expect_one("json: truncated document", post(b'{"a":\n'), 400, "invalid_json")
    expect_one("json: lone top-level string is fine", post(b'"x"\n'), 200)
    expect_one("json: empty body", post(b""), 400, "no_events")
    expect_one("json: only blank lines", post(b"\n\r\n\n"), 400, "no_events")
    expect_one("json: empty array", post(b"[]", ctype="application/json"), 400, "no_events")
    # max_event_bytes is 1KiB on this route: a line of exactly that size is accepted whether its
    # CRLF comes in the same segment or the next.
    line = b'{"p":"' + b"a" * (1024 - 8) + b'"}'
    assert len(line) == 1024
    head = b"POST /v1/events/hostile HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: " + \
        str(len(line) + 2).encode() + b"\r\nConnection: close\r\n\r\n"
    expect_one("ndjson: max_event_bytes line, CRLF in one segment", head + line + b"\r\n", 200)
    expect_one("ndjson: max_event_bytes line, CR and LF split", [head + line + b"\r", b"\n"], 200)
    expect_one("ndjson: max_event_bytes line, CRLF in the next segment", [head + line, b"\r\n"], 200)
    expect_one("ndjson: one byte over max_event_bytes", post(b'{"p":"' + b"a" * (1024 - 7) + b'"}\n'), 413, "event_too_large")
    got = expect_one("ndjson: key error names the right line after blank lines",
                     post(b'\n\n{"k":"a"}\n\n{"k":{}}\n', route="/v1/keyed/hostile"), 400, "invalid_key")
    if got:
        message = json.loads(got[2])["error"]["message"]
        record("ndjson: the key error says line 5", message.startswith("line 5:"), message)


def schema_and_idempotency_cases():
    """A schema route parses every event into a tree; an idempotent route hashes every body."""
    post = lambda body, route="/v1/checked/hostile", headers=None: http(  # noqa: E731
        "POST", route, body, {"Content-Type": "application/x-ndjson", **(headers or {})})
    expect_one("schema: a number past double's range is out of bounds, not a crash", post(b'{"n":1e400}\n'), 422)
    expect_one("schema: a lone surrogate escape reads as U+FFFD (one character)", post(b'{"s":"\\ud800ab"}\n'), 200)
    expect_one("schema: an escaped surrogate pair is one character", post(b'{"s":"\\ud83d\\ude00ab"}\n'), 200)
    expect_one("schema: combining marks count as characters", post('{"s":"e\u0301ab"}\n'.encode()), 422)
    expect_one("schema: 128 levels of nesting, then a violation", post(b'{"s":' + b"[" * 127 + b"]" * 127 + b'}\n'), 422)
    once = "/v1/once/hostile"
    expect_one("idempotency: two Idempotency-Key headers", post(b"{}\n", once, {"Idempotency-Key": "a", "idempotency-key": "b"}),
               400, "invalid_idempotency_key")
    expect_one("idempotency: an unterminated quoted key", post(b"{}\n", once, {"Idempotency-Key": '"open'}), 400, "invalid_idempotency_key")
    expect_one("idempotency: a 256-character key", post(b"{}\n", once, {"Idempotency-Key": "k" * 256}), 400, "invalid_idempotency_key")
    expect_one("idempotency: first use", post(b'{"a":1}\n', once, {"Idempotency-Key": "hostile-1"}), 200)
    got = expect_one("idempotency: the same request is replayed", post(b'{"a":1}\n', once, {"Idempotency-Key": "hostile-1"}), 200)
    if got:
        record("idempotency: the replay says so", got[1].get("idempotent-replayed") == ["true"], repr(got[1]))
    expect_one("idempotency: another body under the key", post(b'{"a":2}\n', once, {"Idempotency-Key": "hostile-1"}), 422,
               "idempotency_key_reused")
    expect_one("idempotency: the same body split differently is the same request",
               [post(b'{"a"', once, {"Idempotency-Key": "hostile-1", "Content-Length": "8"}), b':1}\n'], 200)


def file_sink_is_valid_utf8():
    """Everything the file sink wrote decodes as UTF-8 and parses as JSON, line by line."""
    bad = []
    for root, _, files in os.walk(ARGS.events_dir):
        for name in files:
            if name.startswith(".") or name.endswith(".lock"):
                continue
            with open(os.path.join(root, name), "rb") as f:
                for number, raw in enumerate(f, 1):
                    try:
                        json.loads(raw.decode("utf-8"))
                    except Exception as error:  # noqa: BLE001
                        bad.append(f"{name}:{number}: {error}")
    record("file sink: every written line is valid UTF-8 JSON", not bad, "; ".join(bad[:5]))


# ---------------------------------------------------------------------------------------------
# authentication

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(header, claims, key=None, alg="HS256", signature=None):
    signing = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    if signature is None:
        if alg == "HS256":
            signature = hmac.new(key, signing.encode(), hashlib.sha256).digest()
        elif alg == "RS256":
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import padding
            private = serialization.load_pem_private_key(key, password=None)
            signature = private.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        else:
            signature = b""
    return signing + "." + b64url(signature)


def auth_cases():
    now = int(time.time())
    claims = {"iss": "https://issuer.test", "aud": "sluice", "sub": "tenant-a", "exp": now + 600, "iat": now}
    secret = ARGS.jwt_secret.encode()
    private = open(ARGS.rsa_private_pem, "rb").read()
    public = open(ARGS.rsa_public_pem, "rb").read()
    route = "/v1/jwt/hostile"

    def bearer(token):
        return http("POST", route, b"{}\n", {"Content-Type": "application/x-ndjson", "Authorization": "Bearer " + token})

    expect_one("jwt: valid HS256 token (control)", bearer(jwt({"alg": "HS256", "kid": "hs", "typ": "JWT"}, claims, secret)), 200)
    expect_one("jwt: valid RS256 token (control)", bearer(jwt({"alg": "RS256", "kid": "rsa", "typ": "JWT"}, claims, private, "RS256")), 200)
    expect_one("jwt: alg none", bearer(jwt({"alg": "none", "kid": "hs"}, claims, alg="none", signature=b"")), 401, "unauthenticated")
    expect_one("jwt: alg None (case trick)", bearer(jwt({"alg": "None", "kid": "hs"}, claims, alg="none", signature=b"")), 401,
               "unauthenticated")
    expect_one("jwt: HS256 signed with the RSA public key (key confusion)",
               bearer(jwt({"alg": "HS256", "kid": "rsa"}, claims, public)), 401, "unauthenticated")
    expect_one("jwt: kid path traversal", bearer(jwt({"alg": "HS256", "kid": "../../../../dev/null"}, claims, b"")), 401,
               "unauthenticated")
    expect_one("jwt: unknown kid", bearer(jwt({"alg": "HS256", "kid": "nope"}, claims, secret)), 401, "unauthenticated")
    expect_one("jwt: expired", bearer(jwt({"alg": "HS256", "kid": "hs"}, dict(claims, exp=now - 3600), secret)), 401, "unauthenticated")
    expect_one("jwt: wrong audience", bearer(jwt({"alg": "HS256", "kid": "hs"}, dict(claims, aud="other"), secret)), 401,
               "unauthenticated")
    expect_one("jwt: signature stripped", bearer(jwt({"alg": "HS256", "kid": "hs"}, claims, secret).rsplit(".", 1)[0] + "."), 401,
               "unauthenticated")
    expect_one("jwt: garbage segments", bearer("a.b.c"), 401, "unauthenticated")
    expect_one("jwt: huge token is refused by the head limit", bearer("a" * 20000 + ".b.c"), 431, "headers_too_large", closed=True)
    expect_one("jwt: huge claims under the head limit", bearer(jwt({"alg": "HS256", "kid": "hs"}, dict(claims, pad="x" * 4000), b"k")), 401,
               "unauthenticated")

    def basic(credentials):
        return http("POST", "/v1/basic/hostile", b"{}\n", {"Content-Type": "application/x-ndjson", "Authorization": "Basic " + credentials})

    expect_one("basic: $2y$ (htpasswd -B) entry", basic(base64.b64encode(b"apache:correct horse").decode()), 200)
    expect_one("basic: wrong password", basic(base64.b64encode(b"apache:correct horsE").decode()), 401, "unauthenticated")
    expect_one("basic: no colon", basic(base64.b64encode(b"apache").decode()), 401, "unauthenticated")
    expect_one("basic: not base64", basic("!!!"), 401, "unauthenticated")
    expect_one("basic: invalid UTF-8 credentials", basic(base64.b64encode(b"apache:\xff\xfe").decode()), 401, "unauthenticated")

    def keyed(key):
        return http("POST", "/v1/key/hostile", b"{}\n", {"Content-Type": "application/x-ndjson", "X-Api-Key": key})

    expect_one("api key: valid (control)", keyed("hostile-key"), 200)
    expect_one("api key: wrong", keyed("hostile-kez"), 401, "unauthenticated")
    expect_one("api key: prefix of the key", keyed("hostile"), 401, "unauthenticated")
    expect_one("api key: empty", keyed(""), 401, "unauthenticated")


def rate_limit_cases():
    # key: source_ip, burst 3, a refill far slower than the test: X-Forwarded-For cannot buy more.
    statuses = []
    for index in range(5):
        raw = http("POST", "/v1/limited/hostile", b"{}\n",
                   {"Content-Type": "application/x-ndjson", "X-Forwarded-For": f"10.9.9.{index}", "X-Real-Ip": f"10.8.8.{index}"})
        got, _, _ = exchange(raw)
        statuses.append(got[0][0] if got else None)
    record("rate limit: spoofed X-Forwarded-For does not reset the bucket", statuses == [200, 200, 200, 429, 429], f"{statuses}")


# ---------------------------------------------------------------------------------------------
# HTTP/2 (prior knowledge), raw frames

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def hpack_literal(name, value):
    """A literal header field without indexing, new name (RFC 7541 6.2.2), no Huffman."""
    def string(data):
        assert len(data) < 127
        return bytes([len(data)]) + data
    return b"\x00" + string(name) + string(value)


def h2_request_headers(path=b"/v1/events/hostile", method=b"POST"):
    return (hpack_literal(b":method", method) + hpack_literal(b":scheme", b"http") + hpack_literal(b":path", path)
            + hpack_literal(b":authority", b"x") + hpack_literal(b"content-type", b"application/x-ndjson"))


def h2_frames(data):
    frames = []
    i = 0
    while i + 9 <= len(data):
        length = int.from_bytes(data[i:i + 3], "big")
        frames.append((data[i + 3], data[i + 4], int.from_bytes(data[i + 5:i + 9], "big") & 0x7FFFFFFF, data[i + 9:i + 9 + length]))
        i += 9 + length
    return frames


def h2_session(payload, timeout=5.0):
    """Sends the preface, an empty SETTINGS, then `payload`; returns (frames received, closed)."""
    s = connect(ARGS.port)
    try:
        s.sendall(PREFACE + frame(4, 0, 0) + frame(4, 1, 0))
        try:
            s.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data, closed = read_all(s, timeout)
    finally:
        s.close()
    return h2_frames(data), closed


def h2_reuse_closed_stream():
    """A request on stream 1, its whole answer, then HEADERS on stream 1 again; returns
    (frames received, closed). Waits past the listener's idle_timeout (3 s) for the close."""
    s = connect(ARGS.port)
    try:
        s.sendall(PREFACE + frame(4, 0, 0) + frame(4, 1, 0) + frame(1, 0x5, 1, h2_request_headers()))
        data = b""
        deadline = time.time() + 5
        s.settimeout(0.5)
        # Until a HEADERS or DATA frame on stream 1 carries END_STREAM: stream 1 is closed.
        while time.time() < deadline and not any(kind in (0, 1) and stream == 1 and flags & 0x1
                                                  for kind, flags, stream, _ in h2_frames(data)):
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                return h2_frames(data), True
            data += chunk
        try:
            s.sendall(frame(1, 0x5, 1, h2_request_headers()))
        except (BrokenPipeError, ConnectionResetError):
            pass
        more, closed = read_all(s, 4.5)
    finally:
        s.close()
    return h2_frames(data + more), closed


def h2_one_request(block, body=None, timeout=3):
    """One request on stream 1; returns (:status, body bytes), or (None, b"") if it was reset."""
    import hpack
    payload = frame(1, 0x5 if body is None else 0x4, 1, block)
    if body is not None:
        payload += frame(0, 0x1, 1, body)
    frames, _ = h2_session(payload, timeout)
    decoder = hpack.Decoder()
    status, data = None, b""
    for kind, _, stream, chunk in frames:
        if kind == 1 and stream == 1:
            for name, value in decoder.decode(chunk, raw=True):
                if name == b":status":
                    status = value
        elif kind == 1:
            decoder.decode(chunk, raw=True)
        if kind == 0 and stream == 1:
            data += chunk
    return status, data


def goaway_error(frames):
    for kind, _, _, payload in frames:
        if kind == 7:
            return int.from_bytes(payload[4:8], "big")
    return None


def h2_cases():
    # Control: one valid request on stream 1.
    frames, _ = h2_session(frame(1, 0x4, 1, h2_request_headers()) + frame(0, 0x1, 1, b"{}\n"), timeout=2)
    statuses = [f for f in frames if f[0] == 1 and f[2] == 1]
    record("h2: a valid request is answered (control)", bool(statuses), f"{[(f[0], f[2]) for f in frames]}")
    # Stream id reuse: a second HEADERS on stream 1 once it is closed (answered) -> connection
    # error (RFC 9113 5.1.1). Sent only after the answer: while stream 1 is still half-closed it
    # would be a stream error (RST_STREAM) and the connection rightly stays up.
    frames, closed = h2_reuse_closed_stream()
    record("h2: stream id reuse ends the connection", goaway_error(frames) in (None, 1, 5) and closed,
           f"goaway={goaway_error(frames)} closed={closed}")
    # Even stream id from a client.
    # After a connection error's GOAWAY the connection is closed by idle_timeout (3s) at the latest.
    frames, closed = h2_session(frame(1, 0x5, 2, h2_request_headers()), timeout=4.5)
    record("h2: an even stream id is a PROTOCOL_ERROR", goaway_error(frames) == 1 and closed, f"goaway={goaway_error(frames)} {closed}")
    # Connection window overflow.
    frames, closed = h2_session(frame(8, 0, 0, struct.pack(">I", 0x7FFFFFFF)), timeout=4.5)
    record("h2: window overflow is a FLOW_CONTROL_ERROR", goaway_error(frames) == 3 and closed, f"goaway={goaway_error(frames)} {closed}")
    # HPACK bomb: one big header inserted into the dynamic table, then referenced many times.
    big = b"x" * 4000
    insert = b"\x40" + bytes([6]) + b"x-bomb" + b"\x7f" + bytes([4000 - 127 & 0x7F | 0x80, (4000 - 127) >> 7]) + big
    block = h2_request_headers() + insert + b"\xbe" * 2000  # index 62: the entry just inserted
    frames, closed = h2_session(frame(1, 0x5, 1, block), timeout=3)
    record("h2: HPACK bomb past max_header_bytes is refused", closed or any(f[0] == 3 for f in frames) or goaway_error(frames) is not None,
           f"{[(f[0], f[2]) for f in frames][:10]} closed={closed}")
    # CONTINUATION flood: a header block that never ends.
    flood = frame(1, 0x0, 1, h2_request_headers()) + b"".join(frame(9, 0, 1, hpack_literal(b"x-c", b"v" * 100)) for _ in range(2000))
    frames, closed = h2_session(flood, timeout=3)
    record("h2: CONTINUATION flood ends the connection (GOAWAY or closed)", closed or goaway_error(frames) is not None,
           f"closed={closed} goaway={goaway_error(frames)}")
    # Rapid reset: open and cancel streams as fast as possible.
    resets = b"".join(frame(1, 0x4, sid, h2_request_headers()) + frame(3, 0, sid, struct.pack(">I", 8)) for sid in range(1, 20001, 2))
    frames, closed = h2_session(resets, timeout=5)
    record("h2: rapid reset flood is bounded (GOAWAY ENHANCE_YOUR_CALM or closed)", closed or goaway_error(frames) is not None, f"closed={closed} goaway={goaway_error(frames)}")
    # SETTINGS and PING floods.
    frames, closed = h2_session(frame(4, 0, 0, b"\x00\x03\x00\x00\x00\x64") * 20000, timeout=5)
    record("h2: SETTINGS flood is bounded", closed or goaway_error(frames) is not None, f"closed={closed} goaway={goaway_error(frames)}")
    frames, closed = h2_session(frame(6, 0, 0, b"12345678") * 20000, timeout=5)
    record("h2: PING flood is bounded", closed or goaway_error(frames) is not None, f"closed={closed} goaway={goaway_error(frames)}")
    # A control character smuggled through HPACK into a header value.
    block = h2_request_headers(path=b"/static/a", method=b"GET") + hpack_literal(b"x-evil", b"a\x01b")
    frames, closed = h2_session(frame(1, 0x5, 1, block), timeout=3)
    refused = closed or any(f[0] == 3 and f[2] == 1 for f in frames) or any(f[0] == 1 and f[2] == 1 for f in frames)
    record("h2: control character in a header value is refused", refused, f"{[(f[0], f[2]) for f in frames]}")


def h2c_cases():
    upgrade = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
    base = "POST /v1/events/hostile HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n" + upgrade
    # h2c smuggling: an upgrade request whose body holds an HTTP/2 preface is not upgraded; the
    # body is read as the body (ingested), the preface never reaches an HTTP/2 parser.
    body = PREFACE + frame(4, 0, 0)
    expect_one("h2c: an upgrade with a Content-Length body is served over HTTP/1.1",
               (base + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body, 400, "invalid_json")
    expect_one("h2c: an upgrade with a chunked body is served over HTTP/1.1",
               (base + "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\n{}\n\r\n0\r\n\r\n").encode(), 200)
    # Upgraded, then something other than the HTTP/2 preface: the connection ends.
    s = connect(ARGS.port)
    try:
        s.sendall(("GET /static/a HTTP/1.1\r\nHost: x\r\n" + upgrade + "\r\n").encode())
        s.settimeout(3)
        head = s.recv(4096)
        s.sendall(b"GET /static/a HTTP/1.1\r\nHost: x\r\n\r\n")
        rest, closed = read_all(s, 4.5)
    finally:
        s.close()
    record("h2c: upgraded, then no HTTP/2 preface: the connection ends without an answer",
           head.startswith(b"HTTP/1.1 101 ") and closed and b"HTTP/1.1 200" not in rest, f"head={head[:80]!r} closed={closed} rest={rest[:120]!r}")


# ---------------------------------------------------------------------------------------------
# gRPC

def grpc_cases():
    import hpack

    def call(message, timeout=3):
        """One unary Publish with `message` (the length-prefixed bytes); returns grpc-status."""
        block = (hpack_literal(b":method", b"POST") + hpack_literal(b":scheme", b"http")
                 + hpack_literal(b":path", b"/sluice.v1.Ingest/Publish") + hpack_literal(b":authority", b"x")
                 + hpack_literal(b"content-type", b"application/grpc") + hpack_literal(b"te", b"trailers"))
        data_frames = b""
        for start in range(0, len(message), 16384):
            end = min(start + 16384, len(message))
            data_frames += frame(0, 0x1 if end == len(message) else 0, 1, message[start:end])
        s = connect(ARGS.grpc)
        try:
            # A large window first, so a big message is not held back by flow control.
            s.sendall(PREFACE + frame(4, 0, 0) + frame(4, 1, 0) + frame(1, 0x4, 1, block))
            try:
                s.sendall(data_frames)
            except (BrokenPipeError, ConnectionResetError):
                pass
            data, _ = read_all(s, timeout)
        finally:
            s.close()
        decoder = hpack.Decoder()
        status = None
        for kind, _, stream, chunk in h2_frames(data):
            if kind == 1:
                for name, value in decoder.decode(chunk, raw=True):
                    if name == b"grpc-status" and stream == 1:
                        status = int(value)
            if kind == 3 and stream == 1 and status is None:
                status = "reset:%d" % int.from_bytes(chunk[:4], "big")
        return status

    # grpc-swift answers a message over the limit by resetting the stream with CANCEL (clients
    # see CANCELLED), as soon as the length prefix says so: nothing of it is buffered.
    status = call(b"\x00" + struct.pack(">I", 1 << 30) + b"abc")
    record("grpc: a declared 1 GiB message resets the stream (CANCEL)", status == "reset:8", f"{status}")
    status = call(b"\x00" + struct.pack(">I", 40000) + b"\x00" * 40000)
    record("grpc: a message over max_message_bytes (32KiB) resets the stream (CANCEL)", status == "reset:8", f"{status}")
    status = call(b"\x00" + struct.pack(">I", 30000) + b"\x0a\x01t" + b"\x12\x00" * 14998 + b"\x00")
    record("grpc: a message under max_message_bytes is processed", status is not None and status != "reset:8", f"{status}")
    status = call(b"\x02" + struct.pack(">I", 3) + b"abc")
    record("grpc: an unknown compression flag is refused", status in (12, 13, 3, "reset"), f"{status}")
    status = call(b"\x00" + struct.pack(">I", 5) + b"\xff\xff\xff\xff\xff")
    record("grpc: a malformed protobuf message is INTERNAL or INVALID_ARGUMENT", status in (13, 3), f"{status}")
    status = call(b"\x00" + struct.pack(">I", 10) + b"abc")
    record("grpc: a message shorter than its length prefix is refused", status is not None and status != 0, f"{status}")


def grpc_idle_flood():
    """Opens more idle connections than the gRPC listener allows: the extra ones are closed at
    once, the rest after idle_timeout, and the HTTP and admin ports answer throughout."""
    held = []
    try:
        for _ in range(300):
            try:
                held.append(connect(ARGS.grpc, timeout=2))
            except OSError:
                break
        time.sleep(0.5)
        expect_one("grpc flood: the HTTP port answers meanwhile", http("POST", "/v1/events/hostile", b"{}\n", NDJSON), 200)
        record("grpc flood: the admin port answers meanwhile", alive(), "")
        # Past max_connections (200) Sluice holds no more: the rest are closed or wait in the
        # kernel's backlog until accepted (grpc-swift accepts as it serves).
        fds = len(os.listdir(f"/proc/{ARGS.pid}/fd"))
        record("grpc flood: Sluice holds at most max_connections (200)", fds < 200 + 100, f"{fds} descriptors")
        # Every idle connection is closed after idle_timeout (3s) — the backlogged ones once
        # accepted, so allow a few timeouts.
        open_connections = list(held)
        deadline = time.time() + 25
        while open_connections and time.time() < deadline:
            time.sleep(1)
            still = []
            for s in open_connections:
                s.settimeout(0.001)
                try:
                    if s.recv(65536) != b"":
                        still.append(s)
                except socket.timeout:
                    still.append(s)
                except OSError:
                    pass
            open_connections = still
        record("grpc flood: idle connections are closed after idle_timeout", not open_connections, f"still open: {len(open_connections)}")
    finally:
        for s in held:
            s.close()


# ---------------------------------------------------------------------------------------------

def rss_and_fds():
    with open(f"/proc/{ARGS.pid}/status") as f:
        rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    fds = len(os.listdir(f"/proc/{ARGS.pid}/fd"))
    return rss, fds


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    for name in ["pid", "port", "admin", "grpc"]:
        parser.add_argument("--" + name, type=int, required=True)
    for name in ["upstream-control", "events-dir", "jwt-secret", "rsa-public-pem", "rsa-private-pem"]:
        parser.add_argument("--" + name, required=True)
    parser.add_argument("--only", default="")
    ARGS = parser.parse_args()

    # Warm up (first requests allocate pools), then take the baseline.
    for _ in range(20):
        exchange(http("POST", "/v1/events/hostile", b"{}\n", NDJSON))
        exchange(http("GET", "/static/a"))
    base_rss, base_fds = rss_and_fds()

    groups = [chunked_cases, smuggling_cases, version_cases, path_cases, upstream_header_cases, json_cases, auth_cases,
              rate_limit_cases, schema_and_idempotency_cases, h2_cases, h2c_cases, grpc_cases, grpc_idle_flood, file_sink_is_valid_utf8]
    for group in groups:
        if ARGS.only and ARGS.only not in group.__name__:
            continue
        started = time.time()
        group()
        print(f"# {group.__name__}: {time.time() - started:.1f}s", flush=True)

    # Resources back near the baseline once the connections are gone.
    deadline = time.time() + 15
    while True:
        rss, fds = rss_and_fds()
        if (fds <= base_fds + 2 and rss <= base_rss * 1.25 + 16 * 1024 * 1024) or time.time() > deadline:
            break
        time.sleep(0.5)
    record("resources: descriptors back to baseline", fds <= base_fds + 2, f"baseline {base_fds}, now {fds}")
    record("resources: RSS back near baseline", rss <= base_rss * 1.25 + 16 * 1024 * 1024,
           f"baseline {base_rss // 1024} KiB, now {rss // 1024} KiB")

    passed = sum(1 for _, ok in RESULTS if ok)
    failed = len(RESULTS) - passed
    print(f"hostile input: {passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
