#!/usr/bin/env python3
"""A TLS client that half-closes: sends its requests, then its close_notify (TLS 1.3: "I am done
sending"), and reads on until the server closes. Prints what it read (the answers) to stdout.

    tls_half_close.py --port P --ca CA.pem --request-file F [--timeout 15]
    tls_half_close.py --port P --ca CA.pem --ragged [--timeout 15]

--ragged: a TLS 1.2 handshake (no server bytes follow it), then the TCP sending side closes
without a close_notify; prints how many bytes the server sent before its end, and "eof" (or
"timeout"). A server that closes at once sends none; one that starts a TLS shutdown sends its
close_notify first, then waits for the client's.

Python's ssl module has no call that sends close_notify and keeps reading on a socket; on a
memory BIO, SSLObject.unwrap() writes close_notify and then wants to read the peer's, which this
client reads as application data first.
"""
import argparse
import socket
import ssl
import sys
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--request-file")
    parser.add_argument("--ragged", action="store_true")
    parser.add_argument("--timeout", type=float, default=15)
    args = parser.parse_args()
    if args.ragged:
        return ragged(args)

    context = ssl.create_default_context(cafile=args.ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    sock = socket.create_connection(("127.0.0.1", args.port), timeout=args.timeout)
    deadline = time.monotonic() + args.timeout

    def flush():
        data = outgoing.read()
        if data:
            sock.sendall(data)

    def receive():
        if time.monotonic() > deadline:
            raise TimeoutError("no end from the server")
        data = sock.recv(65536)
        if data:
            incoming.write(data)
        else:
            incoming.write_eof()
        return bool(data)

    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            flush()
            receive()
    flush()
    tls.write(open(args.request_file, "rb").read())
    flush()
    try:
        tls.unwrap()
    except ssl.SSLWantReadError:
        pass
    flush()  # the close_notify
    answers = bytearray()
    while True:
        try:
            chunk = tls.read(65536)
            if not chunk:
                break
            answers += chunk
        except ssl.SSLWantReadError:
            if not receive():
                break
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            break
    sys.stdout.buffer.write(bytes(answers))


def ragged(args):
    context = ssl.create_default_context(cafile=args.ca)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    raw = socket.create_connection(("127.0.0.1", args.port), timeout=args.timeout)
    tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
    raw = socket.socket(fileno=tls.detach())  # the TCP socket, with no TLS shutdown
    raw.settimeout(args.timeout)
    raw.shutdown(socket.SHUT_WR)
    received = 0
    try:
        while True:
            data = raw.recv(65536)
            if not data:
                print(received, "eof")
                return
            received += len(data)
    except (TimeoutError, socket.timeout):
        print(received, "timeout")


if __name__ == "__main__":
    main()
