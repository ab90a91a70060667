#!/usr/bin/env python3
"""A Confluent REST Proxy v3 streaming-mode producer, full duplex, over a raw HTTP/1.1 socket.

Opens one chunked POST to .../records, then sends one record per chunk and waits for that
record's delivery report before sending the next: it only finishes if the gateway answers each
record while the request body is still open. Prints a JSON summary (reports, offsets, errors).

    confluent_v3_stream.py --port PORT --path /kafka/v3/clusters/C/topics/T/records --count N
"""
import argparse
import base64
import json
import socket
import sys


class ChunkedReader:
    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""
        self.body = b""
        self.done = False

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buffer += data

    def head(self):
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        return head.decode()

    def more(self):
        """Reads at least one more chunk of the body into self.body."""
        while True:
            if b"\r\n" in self.buffer:
                size_line, rest = self.buffer.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                if len(rest) >= size + 2:
                    if size == 0:
                        self.done = True
                        return
                    self.body += rest[:size]
                    self.buffer = rest[size + 2:]
                    return
            self._fill()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--api-key", help="sent as X-Api-Key")
    args = parser.parse_args()
    sock = socket.create_connection(("127.0.0.1", args.port), timeout=30)
    key = f"X-Api-Key: {args.api_key}\r\n" if args.api_key else ""
    sock.sendall((f"POST {args.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{key}"
                  "Transfer-Encoding: chunked\r\n\r\n").encode())
    reader = ChunkedReader(sock)
    decoder = json.JSONDecoder()
    reports = []
    head = None

    def send_chunk(data):
        sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def next_report():
        nonlocal head
        if head is None:
            head = reader.head()
        while True:
            text = reader.body.decode().lstrip()
            if text:
                try:
                    value, end = decoder.raw_decode(text)
                    reader.body = text[end:].encode()
                    return value
                except json.JSONDecodeError:
                    pass
            if reader.done:
                return None
            reader.more()

    for i in range(args.count):
        record = {"key": {"type": "STRING", "data": f"k{i % 3}"}, "value": {"type": "JSON", "data": {"seq": i}},
                  "headers": [{"name": "seq", "value": base64.b64encode(str(i).encode()).decode()}]}
        if i == args.count // 2:
            record["value"] = {"type": "PROTOBUF", "data": {"seq": i}}  # refused alone, the stream goes on
        send_chunk(json.dumps(record).encode())
        report = next_report()  # before the next record is sent: only a full-duplex gateway answers
        if report is None:
            break
        reports.append(report)
    sock.sendall(b"0\r\n\r\n")  # the last chunk: the body ends
    rest = next_report()
    status = head.split("\r\n", 1)[0] if head else ""
    print(json.dumps({"status": status, "reports": reports, "after_end": rest}))
    ok = len(reports) == args.count and rest is None and " 200 " in status + " "
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
