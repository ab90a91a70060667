#!/usr/bin/env python3
"""Checks deploy/kubernetes beyond the API schemas (kubernetes-validate --strict does those):
what the manifests promise about Sluice.

    k8s_manifest_check.py DIR CONFIG_OUT

- the Deployment's readiness probe is GET /ready and its liveness GET /health, on the port the
  ConfigMap's config gives the admin listener, which binds beyond loopback so the kubelet reaches it;
- terminationGracePeriodSeconds exceeds preStop + shutdown.drain_timeout + shutdown.flush_timeout;
- a preStop hook delays SIGTERM; rolling updates never go below the desired replicas;
- the Prometheus scrape annotations point at /metrics on the admin port;
- the Service, PodDisruptionBudget, HorizontalPodAutoscaler and NetworkPolicy select the
  Deployment's pods; the PDB allows a disruption, the HPA's floor matches the replicas;
- the config is written to CONFIG_OUT for `sluice validate`.

Prints a JSON summary; exits 1 with every problem found.
"""
import json
import pathlib
import re
import sys

import yaml


def seconds(text):
    match = re.fullmatch(r"(\d+)(ms|s|m|h)", str(text))
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    value, unit = int(match.group(1)), match.group(2)
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def main():
    directory, config_out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    objects = []
    for path in sorted(directory.glob("*.yaml")):
        objects += [(path.name, o) for o in yaml.safe_load_all(path.read_text()) if o]
    problems = []

    def one(kind, name=None):
        found = [o for _, o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
        if len(found) != 1:
            problems.append(f"expected one {kind} {name or ''}, found {len(found)}")
            return {}
        return found[0]

    deployment = one("Deployment", "sluice")
    config_map = one("ConfigMap")
    config_text = config_map.get("data", {}).get("sluice.yaml", "")
    config_out.write_text(config_text)
    config = yaml.safe_load(config_text) or {}
    admin = str(config.get("admin", {}).get("address", "127.0.0.1:9901"))
    admin_host, admin_port = admin.rsplit(":", 1)
    if admin_host in ("127.0.0.1", "localhost", "[::1]"):
        problems.append(f"admin binds {admin}: the kubelet's probes cannot reach loopback")

    pod = deployment.get("spec", {}).get("template", {})
    spec = pod.get("spec", {})
    containers = spec.get("containers", [])
    container = containers[0] if containers else {}
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports", [])}

    def probe(name, path):
        get = container.get(name, {}).get("httpGet", {})
        port = get.get("port")
        port = ports.get(port, port)
        if get.get("path") != path or str(port) != admin_port:
            problems.append(f"{name} should be GET {path} on the admin port {admin_port}, is {get}")

    probe("readinessProbe", "/ready")
    probe("livenessProbe", "/health")

    pre_stop = container.get("lifecycle", {}).get("preStop", {})
    delay = pre_stop.get("sleep", {}).get("seconds", 0)
    if delay <= 0:
        problems.append("no preStop delay: SIGTERM would drain before the endpoints drop the pod")
    shutdown = config.get("shutdown", {})
    drain = seconds(shutdown.get("drain_timeout", "10s"))
    flush = seconds(shutdown.get("flush_timeout", "10s"))
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if grace <= delay + drain + flush:
        problems.append(f"terminationGracePeriodSeconds {grace} is not above preStop {delay} + drain {drain} + flush {flush}")

    rolling = deployment.get("spec", {}).get("strategy", {}).get("rollingUpdate", {})
    if rolling.get("maxUnavailable") not in (0, "0%"):
        problems.append("rolling updates may take a replica away before its replacement is ready")

    annotations = pod.get("metadata", {}).get("annotations", {})
    if annotations.get("prometheus.io/scrape") != "true" or annotations.get("prometheus.io/port") != admin_port or annotations.get("prometheus.io/path") != "/metrics":
        problems.append(f"scrape annotations do not point at /metrics on {admin_port}: {annotations}")

    labels = pod.get("metadata", {}).get("labels", {})

    def selects(selector, what):
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            problems.append(f"{what} does not select the Deployment's pods ({selector} vs {labels})")

    selects(deployment.get("spec", {}).get("selector", {}).get("matchLabels"), "the Deployment's selector")
    selects(one("Service", "sluice").get("spec", {}).get("selector"), "the Service")
    pdb = one("PodDisruptionBudget")
    selects(pdb.get("spec", {}).get("selector", {}).get("matchLabels"), "the PodDisruptionBudget")
    if pdb.get("spec", {}).get("maxUnavailable", 0) < 1 and "minAvailable" not in pdb.get("spec", {}):
        problems.append("the PodDisruptionBudget allows no disruption: node drains would hang")
    selects(one("NetworkPolicy").get("spec", {}).get("podSelector", {}).get("matchLabels"), "the NetworkPolicy")
    hpa = one("HorizontalPodAutoscaler")
    target = hpa.get("spec", {}).get("scaleTargetRef", {})
    if target.get("kind") != "Deployment" or target.get("name") != "sluice":
        problems.append(f"the HPA scales {target}, not the Deployment")
    if hpa.get("spec", {}).get("minReplicas") != deployment.get("spec", {}).get("replicas"):
        problems.append("the HPA's minReplicas differs from the Deployment's replicas")

    print(json.dumps({"objects": len(objects), "grace": grace, "preStop": delay, "drain": drain, "flush": flush, "problems": problems}))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
