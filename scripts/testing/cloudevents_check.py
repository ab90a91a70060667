#!/usr/bin/env python3
"""CloudEvents through Sluice with the official Python SDK (PyPI cloudevents) on both ends.

Sends events in the three HTTP content modes (binary, structured, batched) to an `api: cloudevents`
route, reads the Kafka records back with kcat, decodes each with the SDK's Kafka protocol binding,
and compares it with the event sent. Prints a JSON summary; exits 1 on any difference.

    cloudevents_check.py --url http://127.0.0.1:PORT/v1/ce/TOPIC --bootstrap HOST:PORT --topic TOPIC
"""
import argparse
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

from cloudevents.core.bindings import http, kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent


def post(url, headers, body):
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def consume(bootstrap, topic, count):
    records = []
    for _ in range(40):
        out = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-J", "-m", "5"],
                             capture_output=True, text=True, timeout=60).stdout
        records = [json.loads(line) for line in out.splitlines() if line.strip()]
        if len(records) >= count:
            break
        time.sleep(0.25)
    return records


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    args = parser.parse_args()
    failures = []

    def check(condition, what):
        if not condition:
            failures.append(what)

    sent = {}
    # Binary mode: attributes in ce- headers (the SDK percent-encodes what needs it), data the body.
    binary = CloudEvent({"id": "b-1", "type": "com.example.order.created", "source": "/shop/orders", "specversion": "1.0",
                         "subject": "order 42 é%", "partitionkey": "customer-42", "datacontenttype": "application/json",
                         "tenant": "acme"}, {"order": 42, "items": ["a", "b"]})
    message = http.to_binary_event(binary)
    status, answer = post(args.url, dict(message.headers), message.body)
    check(status == 200 and answer.get("accepted") == 1, f"binary: {status} {answer}")
    sent["b-1"] = binary

    # Structured mode: the JSON event format.
    structured = CloudEvent({"id": "s-1", "type": "com.example.note", "source": "/notes", "specversion": "1.0",
                             "datacontenttype": "text/plain"}, "plain text, \"quoted\"")
    message = http.to_structured_event(structured)
    status, answer = post(args.url, dict(message.headers), message.body)
    check(status == 200 and answer.get("accepted") == 1, f"structured: {status} {answer}")
    sent["s-1"] = structured

    # Batched mode: a JSON array of structured events; one without a source fails alone.
    batch = [CloudEvent({"id": f"batch-{i}", "type": "com.example.tick", "source": "/clock", "specversion": "1.0",
                         "partitionkey": f"k{i % 2}"}, {"tick": i}) for i in range(3)]
    events = [json.loads(JSONFormat().write(event)) for event in batch]
    events.insert(1, {"specversion": "1.0", "id": "no-source", "type": "com.example.tick"})
    status, answer = post(args.url, {"content-type": "application/cloudevents-batch+json"}, json.dumps(events).encode())
    results = answer.get("results", [])
    check(status == 400 and answer.get("accepted") == 3 and answer.get("failed") == 1, f"batch: {status} {answer}")
    check(len(results) == 4 and results[1].get("error", {}).get("code") == "invalid_cloudevent"
          and "source" in results[1].get("error", {}).get("message", ""), f"batch results: {results}")
    for event in batch:
        sent[event.get_id()] = event

    # Binary mode without a required attribute: 400 naming it; nothing written.
    message = http.to_binary_event(CloudEvent({"id": "x", "type": "t", "source": "/s", "specversion": "1.0"}, {"n": 1}))
    headers = {k: v for k, v in message.headers.items() if k != "ce-source"}
    status, answer = post(args.url, headers, message.body)
    check(status == 400 and answer.get("error", {}).get("message") == "missing required attribute: source", f"missing: {status} {answer}")

    # Every event in Kafka, decoded by the SDK's Kafka binding, equal to what was sent.
    records = consume(args.bootstrap, args.topic, len(sent))
    check(len(records) == len(sent), f"{len(records)} records for {len(sent)} events")
    decoded = {}
    for record in records:
        flat = record.get("headers") or []
        headers = {flat[i]: flat[i + 1].encode() for i in range(0, len(flat) - 1, 2)}
        key = record.get("key")
        value = record.get("payload")
        event = kafka.from_binary_event(kafka.KafkaMessage(headers=headers, key=key.encode() if key is not None else None,
                                                           value=(value or "").encode()))
        decoded[event.get_id()] = event
    for event_id, original in sent.items():
        back = decoded.get(event_id)
        if back is None:
            failures.append(f"{event_id}: not in Kafka")
            continue
        want, got = original.get_attributes(), back.get_attributes()
        for name, value in want.items():
            check(got.get(name) == value, f"{event_id}: attribute {name}: sent {value!r}, read {got.get(name)!r}")
        check(back.get_data() == original.get_data(), f"{event_id}: data: sent {original.get_data()!r}, read {back.get_data()!r}")
    keys = {record.get("key") for record in records}
    check("customer-42" in keys and "k0" in keys and "k1" in keys, f"partitionkey as the record key: {keys}")

    print(json.dumps({"sent": len(sent), "records": len(records), "decoded": sorted(decoded), "failures": failures}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
