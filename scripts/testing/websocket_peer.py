#!/usr/bin/env python3
"""A real WebSocket server and client (PyPI `websockets`) for Sluice's upgrade-proxy tests.

    websocket_peer.py serve --port P
        /headers   sends the handshake's request headers as one JSON text message, then echoes
        /deny      refuses the handshake: 403 with the body "denied by upstream"
        anything   echoes every message back
        Counts open connections: GET http://127.0.0.1:P/_open (plain HTTP) answers {"open": N}.

    websocket_peer.py client --url URL [--big BYTES] [--count N] [--hold SECONDS] [--header K:V]
        Connects, (for /headers) reads the first message, sends "hello", BYTES random bytes
        and N small text messages, checks each echo, then waits up to --hold seconds for the
        server side to close. Prints one JSON object: {"status", "headers", "echoed", "closed_by_peer", "error", "body"}.
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
    args = parser.parse_args()
    if args.mode == "serve":
        asyncio.run(serve(args.port))
    else:
        asyncio.run(client(args))


if __name__ == "__main__":
    sys.exit(main())
