"""The benchmark's second reference: mq-bridge (PyPI `mq-bridge`, a Rust HTTP->Kafka bridge)
serving POST /events on 127.0.0.1:PORT into TOPIC on BROKER. It answers 202 once the event is
taken, before the broker acknowledges it. Prints "ready" once serving; stops on SIGTERM.

    python mq_bridge_route.py PORT BROKER TOPIC
"""
import signal
import sys
import threading

from mq_bridge import Route

port, broker, topic = sys.argv[1], sys.argv[2], sys.argv[3]
config = {
    "routes": {
        "bench": {
            "input": {"http": {"url": f"127.0.0.1:{port}", "path": "/events"}},
            "output": {"kafka": {"url": broker, "topic": topic}},
        }
    }
}
route = Route.from_config(config, "bench")
route.start()
print("ready", flush=True)
stopped = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stopped.set())
stopped.wait()
route.stop()
route.join()
