#!/usr/bin/env python3
"""A cleartext HTTP/2 (prior knowledge) upstream on python-hyper's `h2`, and an HTTP/1.1 client
that sends and reads trailers, for Sluice's h2c proxy tests.

    h2c_upstream.py serve --port P
        /_stats      {"connections": N, "streams": N, "open": N}: connections accepted (and open
                     now), streams served
        /goaway      answers 200, then sends GOAWAY on its connection (a server shutting down);
                     later streams on it are refused (REFUSED_STREAM, counted as "refused")
        /refuse-next echoes, and the next stream on its connection is refused (REFUSED_STREAM)
        /cut         answers 200 and "partial", then resets the stream (INTERNAL_ERROR)
        /duplex      answers 200 at once, then echoes each DATA frame as it arrives; ends with
                     trailers x-echoed-bytes: N
        anything     reads the whole request, then answers 200 JSON {"method", "path",
                     "headers", "trailers", "body_bytes"} with trailers x-upstream-trailer: done

    h2c_upstream.py client --port P --path PATH [--repeat N]
        Over one HTTP/1.1 connection, N times: POST PATH with a chunked body ("hello", "world")
        and the trailer x-checksum: 1234, then reads the chunked answer with its trailers.
        Prints {"answers": [{"status", "body", "trailers"}], "reused": bool}.

    h2c_upstream.py interactive --port P --path PATH [--turns N]
        Over HTTP/1.1, a chunked POST sent one chunk at a time, each echo read before the next
        chunk goes (a half-duplex proxy never answers the first), then the end with the trailer
        x-done: yes. Prints {"echoes": [...], "trailers": {...}, "error"}.
"""
import argparse
import asyncio
import json
import socket

import h2.config
import h2.connection
import h2.events

STATS = {"connections": 0, "streams": 0, "open": 0}


class Upstream(asyncio.Protocol):
    def __init__(self):
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.streams = {}
        self.going_away = False
        self.refuse_next = False

    def connection_made(self, transport):
        STATS["connections"] += 1
        STATS["open"] += 1
        self.transport = transport
        self.conn.initiate_connection()
        self.transport.write(self.conn.data_to_send())

    def connection_lost(self, exc):
        STATS["open"] -= 1

    def data_received(self, data):
        try:
            events = self.conn.receive_data(data)
        except Exception:
            self.transport.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                if self.going_away or self.refuse_next:
                    self.refuse_next = False
                    # After GOAWAY a new stream is refused, unprocessed (RFC 9113 6.8).
                    STATS["refused"] = STATS.get("refused", 0) + 1
                    self.conn.reset_stream(event.stream_id, error_code=7)
                    continue
                STATS["streams"] += 1
                headers = dict(event.headers)
                self.streams[event.stream_id] = {"headers": headers, "body": 0, "trailers": {}}
                if headers.get(":path") == "/duplex":
                    self.conn.send_headers(event.stream_id, [(":status", "200"), ("content-type", "application/octet-stream")])
                if event.stream_ended:
                    self.finish(event.stream_id)
            elif isinstance(event, h2.events.DataReceived):
                stream = self.streams.get(event.stream_id)
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if stream is None:
                    continue
                stream["body"] += len(event.data)
                if stream["headers"].get(":path") == "/duplex" and event.data:
                    self.conn.send_data(event.stream_id, event.data)
                if event.stream_ended:
                    self.finish(event.stream_id)
            elif isinstance(event, h2.events.TrailersReceived):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream["trailers"] = dict(event.headers)
                if event.stream_ended:
                    self.finish(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self.streams.pop(event.stream_id, None)
        self.transport.write(self.conn.data_to_send())

    def finish(self, stream_id):
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return
        headers = stream["headers"]
        path = headers.get(":path")
        if path == "/duplex":
            self.conn.send_headers(stream_id, [("x-echoed-bytes", str(stream["body"]))], end_stream=True)
            return
        if path == "/cut":
            # Half an answer, then the stream is reset: the client must not get a whole-looking one.
            self.conn.send_headers(stream_id, [(":status", "200"), ("content-type", "text/plain")])
            self.conn.send_data(stream_id, b"partial")
            self.conn.reset_stream(stream_id, error_code=2)
            return
        if path == "/refuse-next":
            self.refuse_next = True
        if path == "/goaway":
            # Answers, then GOAWAY (as a server that is shutting down): streams already open
            # finish, new ones must go to another connection.
            body = b"going away"
            self.conn.send_headers(stream_id, [(":status", "200"), ("content-length", str(len(body)))])
            self.conn.send_data(stream_id, body, end_stream=True)
            self.conn.close_connection(last_stream_id=stream_id)
            self.going_away = True
            return
        if path == "/_stats":
            body = json.dumps(STATS).encode()
            self.conn.send_headers(stream_id, [(":status", "200"), ("content-length", str(len(body)))])
            self.conn.send_data(stream_id, body, end_stream=True)
            return
        body = json.dumps({
            "method": headers.get(":method"), "path": path, "authority": headers.get(":authority"),
            "headers": {k: v for k, v in headers.items() if not k.startswith(":")},
            "trailers": stream["trailers"], "body_bytes": stream["body"],
        }).encode()
        self.conn.send_headers(stream_id, [(":status", "200"), ("content-type", "application/json")])
        self.conn.send_data(stream_id, body)
        self.conn.send_headers(stream_id, [("x-upstream-trailer", "done")], end_stream=True)


async def serve(port):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def read_line(sock_file):
    line = sock_file.readline()
    if not line:
        raise EOFError("connection closed")
    return line.decode("latin-1").rstrip("\r\n")


def read_answer(sock_file):
    status_line = read_line(sock_file)
    status = int(status_line.split(" ")[1])
    headers = {}
    while True:
        line = read_line(sock_file)
        if not line:
            break
        name, value = line.split(":", 1)
        headers[name.strip().lower()] = value.strip()
    body = b""
    trailers = {}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int(read_line(sock_file).split(";")[0], 16)
            if size == 0:
                break
            body += sock_file.read(size)
            read_line(sock_file)
        while True:
            line = read_line(sock_file)
            if not line:
                break
            name, value = line.split(":", 1)
            trailers[name.strip().lower()] = value.strip()
    elif "content-length" in headers:
        body = sock_file.read(int(headers["content-length"]))
    return {"status": status, "headers": headers, "body": body.decode("utf-8", "replace"), "trailers": trailers}


def client(port, path, repeat):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock_file = sock.makefile("rb")
    answers = []
    reused = True
    for i in range(repeat):
        request = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n"
            "Trailer: x-checksum\r\n\r\n5\r\nhello\r\n5\r\nworld\r\n0\r\nx-checksum: 1234\r\n\r\n"
        )
        try:
            sock.sendall(request.encode())
            answers.append(read_answer(sock_file))
        except (EOFError, OSError) as error:
            reused = False
            answers.append({"error": str(error)})
            break
    print(json.dumps({"answers": answers, "reused": reused}))


def interactive(port, path, turns):
    # One chunk out, its echo back, then the next: only a full-duplex path answers the first
    # before the request has ended. Prints {"echoes": [...], "trailers": {...}, "error"}.
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock_file = sock.makefile("rb")
    result = {"echoes": [], "trailers": {}, "error": None}
    try:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\r\n".encode())
        status = None
        for turn in range(turns):
            message = f"turn {turn}".encode()
            sock.sendall(b"%x\r\n" % len(message) + message + b"\r\n")
            if status is None:
                status = int(read_line(sock_file).split(" ")[1])
                while read_line(sock_file):
                    pass
            size = int(read_line(sock_file).split(";")[0], 16)
            result["echoes"].append(sock_file.read(size).decode())
            read_line(sock_file)
        sock.sendall(b"0\r\nx-done: yes\r\n\r\n")
        if int(read_line(sock_file).split(";")[0], 16) == 0:
            while True:
                line = read_line(sock_file)
                if not line:
                    break
                name, value = line.split(":", 1)
                result["trailers"][name.strip().lower()] = value.strip()
    except (EOFError, OSError, ValueError) as error:
        result["error"] = repr(error)
    print(json.dumps(result))


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    c = sub.add_parser("client")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--path", required=True)
    c.add_argument("--repeat", type=int, default=1)
    i = sub.add_parser("interactive")
    i.add_argument("--port", type=int, required=True)
    i.add_argument("--path", required=True)
    i.add_argument("--turns", type=int, default=5)
    args = parser.parse_args()
    if args.command == "serve":
        asyncio.run(serve(args.port))
    elif args.command == "interactive":
        interactive(args.port, args.path, args.turns)
    else:
        client(args.port, args.path, args.repeat)


if __name__ == "__main__":
    main()
