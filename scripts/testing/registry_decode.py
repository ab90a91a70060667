#!/usr/bin/env python3
"""Confluent's own Schema Registry client and Avro deserializer (confluent-kafka, in the venv
.testbed/confluent-kafka) against a topic Sluice wrote and the registry it looked ids up in.

  registry_decode.py register --registry URL --subject S --schema F [--type AVRO|PROTOBUF]
      registers F under S with SchemaRegistryClient.register_schema; prints the id
  registry_decode.py avro --registry URL --bootstrap HOST:PORT --topic T [--count N]
      reads the topic's values (kcat) and decodes each with AvroDeserializer, which takes the
      schema id from Confluent's wire format and fetches that schema from the registry; prints
      one JSON line per record: {"schema_id": N, "value": …} or {"error": "..."}
"""
import argparse
import json
import sys

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

import kafka_raw


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["register", "avro"])
    parser.add_argument("--registry", required=True)
    parser.add_argument("--subject")
    parser.add_argument("--schema")
    parser.add_argument("--type", default="AVRO")
    parser.add_argument("--bootstrap")
    parser.add_argument("--topic")
    parser.add_argument("--count", type=int, default=100)
    args = parser.parse_args()
    client = SchemaRegistryClient({"url": args.registry})
    if args.command == "register":
        print(client.register_schema(args.subject, Schema(open(args.schema).read(), args.type)))
        return 0
    deserializer = AvroDeserializer(client)
    context = SerializationContext(args.topic, MessageField.VALUE)
    for value in kafka_raw.record_values(args.bootstrap, args.topic, args.count):
        record = {}
        try:
            record["schema_id"] = int.from_bytes(value[1:5], "big")
            record["value"] = deserializer(value, context)
        except Exception as error:  # a value that does not decode is reported, not fatal
            record = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(record, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
