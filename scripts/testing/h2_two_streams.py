#!/usr/bin/env python3
"""Two streams on one HTTP/2 connection, driven by python-hyper's h2 (a client nobody here wrote).

Stream 1 uploads SLOW_BYTES of NDJSON to SLOW_PATH, sending only what flow control allows.
Stream 3 posts one small JSON event to FAST_PATH. Prints "fast STATUS" as soon as stream 3 is
answered (stream 1 still unfinished: "slow pending" is printed with it), then keeps feeding
stream 1 as the server opens its window, and prints "slow STATUS" when it is answered.

usage: h2_two_streams.py PORT SLOW_PATH FAST_PATH SLOW_BYTES
"""
import socket
import sys

import h2.config
import h2.connection
import h2.events

port, slow_path, fast_path, slow_bytes = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
line = b'{"pad":"' + b"s" * 200 + b'"}\n'
body = line * (slow_bytes // len(line))

sock = socket.create_connection(("127.0.0.1", port))
sock.settimeout(120)
conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
conn.initiate_connection()
sock.sendall(conn.data_to_send())


def headers(path, content_type, length):
    return [(":method", "POST"), (":path", path), (":scheme", "http"), (":authority", f"127.0.0.1:{port}"),
            ("content-type", content_type), ("content-length", str(length))]


conn.send_headers(1, headers(slow_path, "application/x-ndjson", len(body)))
sock.sendall(conn.data_to_send())
fast = b'{"fast":true}'
fast_sent = False
sent = 0


def feed_slow():
    """Sends as much of stream 1's body as flow control allows, keeping room for stream 3."""
    global sent
    while sent < len(body):
        reserve = 0 if fast_sent else len(fast)
        window = min(conn.local_flow_control_window(1), conn.outbound_flow_control_window - reserve, conn.max_outbound_frame_size)
        if window <= 0:
            break
        chunk = body[sent:sent + window]
        sent += len(chunk)
        conn.send_data(1, chunk, end_stream=sent == len(body))


def send_fast_once_slow_is_stalled():
    """Stream 3 goes out once stream 1 has used up its own window (the server stopped opening it)."""
    global fast_sent
    if fast_sent or conn.local_flow_control_window(1) > 0 or conn.outbound_flow_control_window < len(fast):
        return
    conn.send_headers(3, headers(fast_path, "application/json", len(fast)))
    conn.send_data(3, fast, end_stream=True)
    fast_sent = True


status = {}
done = set()
feed_slow()
sock.sendall(conn.data_to_send())
while len(done) < 2:
    data = sock.recv(65536)
    if not data:
        print("connection closed", flush=True)
        sys.exit(1)
    for event in conn.receive_data(data):
        if isinstance(event, h2.events.ResponseReceived):
            status[event.stream_id] = dict(event.headers).get(b":status", b"?").decode()
        elif isinstance(event, h2.events.DataReceived):
            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            done.add(event.stream_id)
            if event.stream_id == 3:
                print(f"fast {status.get(3)}", flush=True)
                print("slow pending" if 1 not in done else "slow done", flush=True)
            else:
                print(f"slow {status.get(1)} (sent {sent} of {len(body)} bytes)", flush=True)
        elif isinstance(event, h2.events.StreamReset):
            print(f"stream {event.stream_id} reset ({event.error_code}) after status {status.get(event.stream_id)}, "
                  f"{sent} of {len(body)} bytes sent", flush=True)
            sys.exit(1)
    feed_slow()
    send_fast_once_slow_is_stalled()
    sock.sendall(conn.data_to_send())
