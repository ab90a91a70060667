#!/usr/bin/env python3
"""Reads a topic's records with kcat (raw bytes, length-prefixed) and decodes each value with
fastavro against an .avsc file: Confluent's wire format (magic byte 0, 4-byte schema id) when
--framed, else the bare Avro binary. Prints one JSON line per record: {"schema_id": N, "value": …}
or {"error": "..."} when a value does not decode.

Usage: avro_decode.py --bootstrap HOST:PORT --topic T --schema F.avsc [--framed] [--count N]
"""
import argparse, io, json, sys

import fastavro

import kafka_raw


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--framed", action="store_true")
    parser.add_argument("--count", type=int, default=100)
    args = parser.parse_args()
    schema = fastavro.parse_schema(json.load(open(args.schema)))
    for value in kafka_raw.record_values(args.bootstrap, args.topic, args.count):
        record = {}
        try:
            stream = io.BytesIO(value)
            if args.framed:
                record["schema_id"] = kafka_raw.confluent_schema_id(stream)
            record["value"] = fastavro.schemaless_reader(stream, schema)
            if stream.read(1):
                raise ValueError("bytes left after the record")
        except Exception as error:  # a value that does not decode is reported, not fatal
            record = {"error": str(error)}
        print(json.dumps(record, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
