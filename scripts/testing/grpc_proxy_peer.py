#!/usr/bin/env python3
"""A real gRPC server and client (PyPI `grpcio`) for Sluice's gRPC-proxy tests. Messages are raw
bytes (no protobuf): the service is generic, `sluice.test.Echo`.

    grpc_proxy_peer.py serve --port P [--cert PEM --key PEM]   (TLS when given)
        Unary         echoes the request; initial metadata x-initial: yes, trailing metadata
                      x-trailer: <request length>
        Metadata      answers the call's metadata as JSON, with the deadline it saw
                      ({"metadata": {...}, "time_remaining": seconds or null})
        Fail          aborts: NOT_FOUND, message "nothing here: ünïcode 100%", trailing x-why: test
        Slow          sleeps 3 s, then echoes
        ServerStream  the request is a count N: N messages "message i" (i from 0)
        ClientStream  answers the total length of the messages it got, as text
        Bidi          echoes each message as it comes (a half-duplex proxy deadlocks a client
                      that waits for each echo before sending the next)

    grpc_proxy_peer.py client --target HOST:PORT --case NAME [--timeout S] [--count N] [--service NAME]
        Runs one case through the target and prints one JSON object:
        {"code": "OK" | status name, "details", "messages": [...], "initial": {...}, "trailing": {...}}
"""
import argparse
import json
import sys
import time
from concurrent import futures

import grpc

SERVICE = "sluice.test.Echo"


def unary(request, context):
    context.send_initial_metadata((("x-initial", "yes"),))
    context.set_trailing_metadata((("x-trailer", str(len(request))),))
    return request


def metadata(request, context):
    seen = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
    return json.dumps({"metadata": seen, "time_remaining": context.time_remaining()}).encode()


def fail(request, context):
    context.set_trailing_metadata((("x-why", "test"),))
    context.abort(grpc.StatusCode.NOT_FOUND, "nothing here: ünïcode 100%")


def slow(request, context):
    time.sleep(3)
    return request


def server_stream(request, context):
    for i in range(int(request.decode())):
        yield f"message {i}".encode()


def client_stream(request_iterator, context):
    return str(sum(len(m) for m in request_iterator)).encode()


def bidi(request_iterator, context):
    for message in request_iterator:
        yield message


def serve(port, cert=None, key=None):
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Metadata": grpc.unary_unary_rpc_method_handler(metadata),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    if cert and key:
        with open(cert, "rb") as c, open(key, "rb") as k:
            credentials = grpc.ssl_server_credentials(((k.read(), c.read()),))
        server.add_secure_port(f"127.0.0.1:{port}", credentials)
    else:
        server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def client(target, case, timeout, count, service=None):
    channel = grpc.insecure_channel(target)
    prefix = "/" + (service or SERVICE)
    path = lambda m: f"{prefix}/{m}"
    result = {"code": "OK", "details": None, "messages": [], "initial": {}, "trailing": {}}

    def record(call):
        result["initial"] = {k: v for k, v in (call.initial_metadata() or ()) if isinstance(v, str)}
        result["trailing"] = {k: v for k, v in (call.trailing_metadata() or ()) if isinstance(v, str)}

    try:
        if case in ("Unary", "Metadata", "Fail", "Slow"):
            method = channel.unary_unary(path(case))
            body = b"x" * count if case == "Unary" else b"ping"
            response, call = method.with_call(body, timeout=timeout, metadata=(("x-caller", "test"),))
            result["messages"].append(response.decode("utf-8", "replace"))
            record(call)
        elif case == "ServerStream":
            call = channel.unary_stream(path(case))(str(count).encode(), timeout=timeout)
            for message in call:
                result["messages"].append(message.decode())
            record(call)
        elif case == "ClientStream":
            method = channel.stream_unary(path(case))
            response, call = method.with_call(iter([b"y" * 1000] * count), timeout=timeout)
            result["messages"].append(response.decode())
            record(call)
        elif case == "Bidi":
            # One message out, its echo back, then the next: only a full-duplex path gets through.
            import queue
            outbox = queue.Queue()

            def requests():
                while True:
                    item = outbox.get()
                    if item is None:
                        return
                    yield item

            call = channel.stream_stream(path(case))(requests(), timeout=timeout)
            for i in range(count):
                outbox.put(f"turn {i}".encode())
                result["messages"].append(next(call).decode())
            outbox.put(None)
            for extra in call:
                result["messages"].append(extra.decode())
            record(call)
        else:
            raise SystemExit(f"unknown case {case}")
    except grpc.RpcError as error:
        result["code"] = error.code().name
        result["details"] = error.details()
        try:
            record(error)
        except Exception:
            pass
    print(json.dumps(result))


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--cert", help="serve TLS with this certificate (PEM) and --key")
    s.add_argument("--key")
    c = sub.add_parser("client")
    c.add_argument("--target", required=True)
    c.add_argument("--case", required=True)
    c.add_argument("--timeout", type=float, default=None)
    c.add_argument("--count", type=int, default=3)
    c.add_argument("--service", default=None, help="the service name in the path (default sluice.test.Echo)")
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.port, args.cert, args.key)
    else:
        client(args.target, args.case, args.timeout, args.count, args.service)


if __name__ == "__main__":
    sys.exit(main())
