#!/usr/bin/env python3
"""A Sluice fleet on one machine: N instances behind nginx, sharing one Redis (global rate
limits) and one Kafka-protocol broker, under continuous load from keep-alive clients.

    fleet.py rolling    --sluice BIN --bootstrap HOST:PORT [--instances 3] [--clients 4]
    fleet.py throughput --sluice BIN --bootstrap HOST:PORT --instances N [--seconds 10] [--clients 8]

rolling: restarts each instance in turn under load (SIGTERM, drain, exit 0, start again, ready),
then checks that no client request failed, that every event acknowledged with 200 is in the
topic, and that a global rate limit held across the instances (requests sent to each instance
in turn: the passes add up to the limit's burst, the rest are 429).

throughput: load through nginx for --seconds; reports requests/s and events/s (Benchmarks/fleet.sh).

nginx balances round-robin over the instances with upstream keep-alive; a connection refused by a
stopped instance, or a kept connection it closed when its drain began (before reading another
request from it: Sluice answers every request it read), is tried on the next instance
(`proxy_next_upstream error timeout non_idempotent`). Everything binds 127.0.0.1; every process
started here is stopped by its PID. Prints one JSON summary; exits 1 if a check failed.
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid


def free_port():
    return free_ports(1)[0]


def free_ports(count):
    """Distinct free ports: the sockets are held until all are chosen."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Instance:
    def __init__(self, index, binary, directory, bootstrap, redis_port, topic, burst):
        self.index = index
        self.binary = binary
        self.bootstrap, self.redis_port, self.topic, self.burst = bootstrap, redis_port, topic, burst
        self.directory = os.path.join(directory, f"sluice-{index}")
        os.makedirs(self.directory, exist_ok=True)
        self.config = os.path.join(self.directory, "sluice.yaml")
        self.process = None
        self.starts = 0
        self.choose_ports()

    def choose_ports(self):
        """Fresh ports and the config that listens on them."""
        self.port, self.admin = free_ports(2)
        bootstrap, redis_port, topic, burst = self.bootstrap, self.redis_port, self.topic, self.burst
        with open(self.config, "w") as f:
            f.write(f"""
listeners: [{{ name: main, address: "127.0.0.1:{self.port}" }}]
admin: {{ address: "127.0.0.1:{self.admin}" }}
policies:
  - name: shared
    rate_limit:
      key: header:X-Tenant
      rate: 1/h
      burst: {burst}
      scope: global
      redis: {{ address: "127.0.0.1:{redis_port}", timeout: 500ms, failure_mode: closed }}
sinks:
  - name: events
    kafka: {{ bootstrap_servers: ["{bootstrap}"], delivery_timeout: 20s }}
  - name: archive
    file: {{ directory: ./archive }}
routes:
  - name: ingest
    match: {{ path: "/v1/events/{{topic}}", methods: [POST] }}
    ingest: {{ sink: events, topic: "{{topic}}", topics_allowed: ["{topic}"] }}
  - name: limited
    match: {{ path: /v1/limited, methods: [POST] }}
    policies: [shared]
    ingest: {{ sink: archive, topic: limited }}
shutdown: {{ drain_timeout: 10s, flush_timeout: 10s }}
""")

    def start(self):
        self.log = open(os.path.join(self.directory, f"sluice-{self.starts}.log"), "w")
        self.starts += 1
        self.process = subprocess.Popen(
            [self.binary, "run", "--config", self.config], cwd=self.directory, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def start_first(self, attempts=3):
        """The first start, before nginx knows the ports: a port that another process took between
        free_port() and Sluice's bind (any concurrent test's outgoing connection may) is not this
        instance's failure, so it starts again on fresh ports. Returns whether it became ready."""
        for _ in range(attempts):
            self.start()
            if self.ready():
                return True
            if self.process.poll() is None or "Address already in use" not in self.log_tail():
                return False
            self.choose_ports()
        return False

    def log_tail(self, characters=1500):
        self.log.flush()
        with open(self.log.name, errors="replace") as f:
            return f.read()[-characters:]

    def ready(self, timeout=90):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/ready", timeout=2) as response:
                    if response.status == 200:
                        return True
            except Exception:
                pass
            time.sleep(0.1)
        return False

    def stop(self, timeout=60):
        """SIGTERM: drain and flush; returns the exit status (None if it had to be killed)."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None


class Nginx:
    def __init__(self, directory, instances):
        self.directory = os.path.join(directory, "nginx")
        os.makedirs(os.path.join(self.directory, "tmp"), exist_ok=True)
        self.port = free_port()
        servers = "\n".join(f"    server 127.0.0.1:{i.port} max_fails=0;" for i in instances)
        conf = os.path.join(self.directory, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""
daemon off;
worker_processes 1;
pid {self.directory}/nginx.pid;
error_log {self.directory}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {self.directory}/tmp;
  proxy_temp_path {self.directory}/tmp;
  fastcgi_temp_path {self.directory}/tmp;
  uwsgi_temp_path {self.directory}/tmp;
  scgi_temp_path {self.directory}/tmp;
  upstream sluice {{
{servers}
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{self.port};
    location / {{
      proxy_pass http://sluice;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_next_upstream error timeout non_idempotent;
      proxy_next_upstream_tries 3;
      proxy_connect_timeout 2s;
      proxy_read_timeout 60s;
    }}
  }}
}}
""")
        binary = "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else shutil.which("nginx")
        self.process = subprocess.Popen([binary, "-p", self.directory, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        if not wait_port(self.port):
            raise RuntimeError("nginx did not start")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Load:
    """Keep-alive clients POSTing NDJSON batches with unique event ids until stopped."""

    def __init__(self, port, topic, clients, events_per_request):
        self.port = port
        self.topic = topic
        self.events_per_request = events_per_request
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.acked = []
        self.requests = 0
        self.failures = []
        self.threads = [threading.Thread(target=self.client, args=(n,), daemon=True) for n in range(clients)]

    def start(self):
        for thread in self.threads:
            thread.start()

    def stop(self):
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=90)

    def client(self, number):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        sequence = 0
        while not self.stopping.is_set():
            ids = [f"c{number}-{sequence}-{j}" for j in range(self.events_per_request)]
            sequence += 1
            body = "".join(json.dumps({"id": i, "pad": "x" * 100}) + "\n" for i in ids).encode()
            try:
                connection.request("POST", f"/v1/events/{self.topic}", body=body, headers={"content-type": "application/x-ndjson"})
                response = connection.getresponse()
                answer = response.read()
                with self.lock:
                    self.requests += 1
                    if response.status == 200:
                        self.acked.extend(ids)
                    else:
                        self.failures.append(f"{response.status} {answer[:300]!r}")
            except Exception as error:  # a failed request, as the client sees it
                with self.lock:
                    self.requests += 1
                    self.failures.append(f"{type(error).__name__}: {error}")
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        connection.close()


def consume(bootstrap, topic, expected, timeout=120):
    """The ids of the events in the topic (kcat reads to the end of each partition)."""
    deadline = time.time() + timeout
    seen = set()
    while time.time() < deadline:
        result = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", topic, "-e", "-q", "-f", "%s\n"], capture_output=True, text=True, timeout=timeout)
        seen = set()
        for line in result.stdout.splitlines():
            try:
                seen.add(json.loads(line)["id"])
            except (ValueError, KeyError, TypeError):
                pass
        if expected <= seen:
            break
        time.sleep(1)
    return seen


def rate_limit_check(instances, burst):
    """Requests for one tenant sent to each instance in turn: passes == burst across all of them."""
    statuses = []
    for n in range(burst * 3):
        instance = instances[n % len(instances)]
        request = urllib.request.Request(
            f"http://127.0.0.1:{instance.port}/v1/limited", data=b'{"n":1}\n', method="POST",
            headers={"content-type": "application/x-ndjson", "X-Tenant": "fleet"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                statuses.append(response.status)
        except urllib.error.HTTPError as error:
            statuses.append(error.code)
    passes_by_instance = [sum(1 for n, s in enumerate(statuses) if s == 200 and n % len(instances) == i) for i in range(len(instances))]
    return {"sent": len(statuses), "passed": statuses.count(200), "limited": statuses.count(429),
            "other": [s for s in statuses if s not in (200, 429)], "passed_by_instance": passes_by_instance}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["rolling", "throughput"])
    parser.add_argument("--sluice", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--events-per-request", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--burst", type=int, default=30)
    parser.add_argument("--settle", type=float, default=2, help="load seconds before and after the restarts")
    args = parser.parse_args()

    directory = tempfile.mkdtemp(prefix="sluice-fleet-")
    topic = f"fleet-{uuid.uuid4().hex[:8]}"
    started = []
    instances = []
    nginx = None
    summary = {"mode": args.mode, "instances": args.instances, "topic": topic}
    problems = []
    try:
        redis_port = free_port()
        redis = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        started.append(redis)
        if not wait_port(redis_port):
            raise RuntimeError("redis-server did not start")
        # Each started before the next chooses its ports, so no two choose the same.
        for n in range(args.instances):
            instance = Instance(n, args.sluice, directory, args.bootstrap, redis_port, topic, args.burst)
            instances.append(instance)
            if not instance.start_first():
                raise RuntimeError(f"instance {instance.index} did not become ready: {instance.log_tail()}")
        nginx = Nginx(directory, instances)

        load = Load(nginx.port, topic, args.clients, args.events_per_request)
        began = time.time()
        load.start()
        if args.mode == "throughput":
            time.sleep(args.seconds)
        else:
            time.sleep(args.settle)
            restarts = []
            for instance in instances:
                t0 = time.time()
                status = instance.stop()
                stopped = time.time()
                instance.start()
                ready = instance.ready()
                restarts.append({"instance": instance.index, "exit": status, "stop_s": round(stopped - t0, 2), "ready": ready,
                                 "down_s": round(time.time() - t0, 2)})
                if status != 0:
                    problems.append(f"instance {instance.index} exited {status} on SIGTERM")
                if not ready:
                    problems.append(f"instance {instance.index} did not become ready again: {instance.log_tail()}")
            summary["restarts"] = restarts
            time.sleep(args.settle)
        load.stop()
        elapsed = time.time() - began
        summary.update({
            "seconds": round(elapsed, 2), "requests": load.requests, "failed": len(load.failures), "failures": load.failures[:10],
            "events_acked": len(load.acked), "requests_per_s": round(load.requests / elapsed, 1),
            "events_per_s": round(len(load.acked) / elapsed, 1)})
        if args.mode == "rolling":
            if load.failures:
                problems.append(f"{len(load.failures)} client requests failed")
            if len(load.acked) == 0:
                problems.append("no event was acknowledged")
            expected = set(load.acked)
            seen = consume(args.bootstrap, topic, expected)
            missing = expected - seen
            summary["events_in_topic"] = len(seen)
            summary["acked_missing"] = len(missing)
            if missing:
                problems.append(f"{len(missing)} acknowledged events are not in the topic, e.g. {sorted(missing)[:3]}")
            limit = rate_limit_check(instances, args.burst)
            summary["rate_limit"] = limit
            if limit["passed"] != args.burst or limit["limited"] != limit["sent"] - args.burst or limit["other"]:
                problems.append(f"the global limit of {args.burst} did not hold: {limit}")
            if sum(1 for n in limit["passed_by_instance"] if n > 0) < 2:
                problems.append(f"the passes did not spread over the instances: {limit['passed_by_instance']}")
        nginx.stop()
        # What nginx tried on another instance: connections refused by a stopped instance, kept
        # connections closed by one that began draining.
        with open(os.path.join(nginx.directory, "error.log")) as log:
            text = log.read()
        summary["lb_retried"] = {"connect_refused": text.count("connect() failed"), "closed_while_draining": text.count("prematurely closed")}
        for instance in instances:
            status = instance.stop()
            if status != 0:
                problems.append(f"instance {instance.index} exited {status} at the end")
    except Exception as error:
        problems.append(f"{type(error).__name__}: {error}")
    finally:
        # Whatever is still running after a failure: stopped by PID.
        for instance in instances:
            if instance.process is not None and instance.process.poll() is None:
                instance.process.kill()
                instance.process.wait()
        if nginx is not None:
            nginx.stop()
        for process in started:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    summary["problems"] = problems
    if problems:
        summary["logs"] = directory
    else:
        shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps(summary))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
