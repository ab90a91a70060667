#!/usr/bin/env python3
"""Reads a topic's records with kcat (raw bytes, length-prefixed) and decodes each value with
fastavro against an .avsc file: Confluent's wire format (magic byte 0, 4-byte schema id) when
--framed, else the bare Avro binary. Prints one JSON line per record: {"schema_id": N, "value": …}
or {"error": "..."} when a value does not decode.

Usage: avro_decode.py --bootstrap HOST:PORT --topic T --schema F.avsc [--framed] [--count N]
"""
import argparse, io, json, struct, subprocess, sys

import fastavro


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--framed", action="store_true")
    parser.add_argument("--count", type=int, default=100)
    args = parser.parse_args()
    schema = fastavro.parse_schema(json.load(open(args.schema)))
    raw = subprocess.run(
        ["kcat", "-C", "-b", args.bootstrap, "-t", args.topic, "-o", "beginning", "-e", "-q", "-c", str(args.count), "-f", "%R%s"],
        check=True, capture_output=True, timeout=60).stdout
    position = 0
    while position + 4 <= len(raw):
        (length,) = struct.unpack(">i", raw[position:position + 4])
        position += 4
        value = raw[position:position + length]
        position += length
        record = {}
        try:
            stream = io.BytesIO(value)
            if args.framed:
                magic, schema_id = struct.unpack(">bI", stream.read(5))
                if magic != 0:
                    raise ValueError(f"magic byte {magic}")
                record["schema_id"] = schema_id
            record["value"] = fastavro.schemaless_reader(stream, schema)
            if stream.read(1):
                raise ValueError("bytes left after the record")
        except Exception as error:  # a value that does not decode is reported, not fatal
            record = {"error": str(error)}
        print(json.dumps(record, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
