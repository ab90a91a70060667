#!/usr/bin/env python3
"""A real WebSocket server and client (PyPI `websockets`) for Sluice's upgrade-proxy tests.

    websocket_peer.py serve --port P
        /headers   sends the handshake's request headers as one JSON text message, then echoes
        /deny      refuses the handshake: 403 with the body "denied by upstream"
        /slow      reads nothing from its socket for 3 seconds, then echoes
        anything   echoes every message back
        Counts open connections: GET http://127.0.0.1:P/_open (plain HTTP) answers {"open": N}.

    websocket_peer.py client --url URL [--big BYTES] [--count N] [--hold SECONDS] [--header K:V] [--flood N --size BYTES]
        Connects, (for /headers) reads the first message, sends "hello", BYTES random bytes
        and N small text messages, checks each echo, then waits up to --hold seconds for the
        server side to close. With --flood, instead writes N binary messages of BYTES over a raw
        socket as fast as TCP takes them (a thread reads the echoes and counts the intact ones). Prints one JSON object: {"status", "headers", "echoed", "closed_by_peer", "error", "body"}.
"""
import argparse
import asyncio
import json
import os
import sys

import websockets
from websockets.datastructures import Headers
from websockets.http11 import Response

OPEN = 0


async def serve(port):
    def process_request(connection, request):
        if request.path == "/_open":
            return Response(200, "OK", Headers({"content-type": "application/json"}), json.dumps({"open": OPEN}).encode())
        if request.path.endswith("/deny"):
            return Response(403, "Forbidden", Headers({"content-type": "text/plain", "x-denied": "yes"}), b"denied by upstream")
        return None

    async def handler(ws):
        global OPEN
        OPEN += 1
        try:
            if ws.request.path.endswith("/slow"):
                # Not a byte read from the socket: what the client sends backs up in the kernel
                # buffers and, unless Sluice stops reading the client, in Sluice.
                ws.transport.pause_reading()
                await asyncio.sleep(3)
                ws.transport.resume_reading()
            if ws.request.path.endswith("/headers"):
                await ws.send(json.dumps({k.lower(): v for k, v in ws.request.headers.raw_items()}))
            async for message in ws:
                await ws.send(message)
        except websockets.ConnectionClosed:
            pass
        finally:
            OPEN -= 1

    async with websockets.serve(handler, "127.0.0.1", port, max_size=None, process_request=process_request, ping_interval=None):
        await asyncio.Future()


async def client(args):
    out = {"status": None, "headers": None, "echoed": 0, "closed_by_peer": False, "error": None, "body": None}
    extra = [tuple(h.split(":", 1)) for h in args.header]
    try:
        async with websockets.connect(args.url, max_size=None, additional_headers=extra, ping_interval=None, open_timeout=10) as ws:
            out["status"] = 101
            if args.url.endswith("/headers"):
                out["headers"] = json.loads(await asyncio.wait_for(ws.recv(), 10))
            messages = ["hello", os.urandom(args.big)] + [f"message {i}" for i in range(args.count)]
            for message in messages:
                await ws.send(message)
                if await asyncio.wait_for(ws.recv(), 20) != message:
                    out["error"] = "an echo differs"
                    break
                out["echoed"] += 1
            if args.hold > 0:
                try:
                    await asyncio.wait_for(ws.recv(), args.hold)
                except websockets.ConnectionClosed:
                    out["closed_by_peer"] = True
                except asyncio.TimeoutError:
                    pass
    except websockets.InvalidStatus as error:
        out["status"] = error.response.status_code
        out["body"] = error.response.body.decode("utf-8", "replace")
        out["headers"] = {k.lower(): v for k, v in error.response.headers.raw_items()}
    except Exception as error:  # noqa: BLE001
        out["error"] = repr(error)
    print(json.dumps(out))


def flood(args):
    """Raw-socket flood: the websockets client waits for its peer to read before it writes
    more, so it cannot show what a gateway does with a client that keeps writing. This one
    writes N masked binary frames of BYTES with blocking sendall (only TCP stops it) while a
    thread reads the echoes and counts the intact ones."""
    import socket
    import threading
    from urllib.parse import urlparse

    out = {"status": None, "headers": None, "echoed": 0, "closed_by_peer": False, "error": None, "body": None}
    url = urlparse(args.url)
    sock = socket.create_connection((url.hostname, url.port), timeout=60)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    sock.sendall((f"GET {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            out["error"] = "closed during the handshake"
            print(json.dumps(out))
            return
        buffer += chunk
    head, buffer = buffer.split(b"\r\n\r\n", 1)
    out["status"] = int(head.split(b" ", 2)[1])
    if out["status"] != 101:
        print(json.dumps(out))
        return
    payloads = [os.urandom(16) + bytes([i % 256]) * (args.size - 16) for i in range(args.flood)]

    def read_exactly(n):
        nonlocal buffer
        while len(buffer) < n:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise EOFError("closed")
            buffer += chunk
        data, buffer = buffer[:n], buffer[n:]
        return data

    def reader():
        try:
            for payload in payloads:
                first = read_exactly(2)
                length = first[1] & 0x7F
                if length == 126:
                    length = int.from_bytes(read_exactly(2), "big")
                elif length == 127:
                    length = int.from_bytes(read_exactly(8), "big")
                if read_exactly(length) == payload:
                    out["echoed"] += 1
        except Exception as error:  # noqa: BLE001
            out["error"] = repr(error)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for payload in payloads:
            # FIN + binary, mask bit + 64-bit length, an all-zero mask key (the payload as is).
            sock.sendall(bytes([0x82, 0xFF]) + len(payload).to_bytes(8, "big") + b"\0\0\0\0" + payload)
    except Exception as error:  # noqa: BLE001
        out["error"] = repr(error)
    thread.join()
    sock.close()
    print(json.dumps(out))


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    c = sub.add_parser("client")
    c.add_argument("--url", required=True)
    c.add_argument("--big", type=int, default=0)
    c.add_argument("--count", type=int, default=0)
    c.add_argument("--hold", type=float, default=0)
    c.add_argument("--header", action="append", default=[])
    c.add_argument("--flood", type=int, default=0)
    c.add_argument("--size", type=int, default=1 << 20)
    args = parser.parse_args()
    if args.mode == "serve":
        asyncio.run(serve(args.port))
    elif args.flood:
        flood(args)
    else:
        asyncio.run(client(args))


if __name__ == "__main__":
    sys.exit(main())
