#!/usr/bin/env python3
"""Reads a topic's records with kcat (raw bytes, length-prefixed) and decodes each value with the
official protobuf library as message MESSAGE of a descriptor set: Confluent's wire format (magic
byte 0, 4-byte schema id, message indexes) when --framed, else the bare message. Prints one JSON
line per record: {"schema_id": N, "indexes": [...], "value": <MessageToDict>} or {"error": "..."}.

Usage: protobuf_decode.py --bootstrap HOST:PORT --topic T --descriptor-set F --message pkg.Msg [--framed] [--count N]
"""
import argparse, io, json, sys

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

import kafka_raw


def varint(stream):
    shift = result = 0
    while True:
        byte = stream.read(1)[0]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result
        shift += 7


def zigzag(value):
    return (value >> 1) ^ -(value & 1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--descriptor-set", required=True)
    parser.add_argument("--message", required=True)
    parser.add_argument("--framed", action="store_true")
    parser.add_argument("--count", type=int, default=100)
    args = parser.parse_args()
    files = descriptor_pb2.FileDescriptorSet.FromString(open(args.descriptor_set, "rb").read())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    message_class = message_factory.GetMessageClass(pool.FindMessageTypeByName(args.message))
    for value in kafka_raw.record_values(args.bootstrap, args.topic, args.count):
        record = {}
        try:
            stream = io.BytesIO(value)
            if args.framed:
                record["schema_id"] = kafka_raw.confluent_schema_id(stream)
                first = varint(stream)
                record["indexes"] = [0] if first == 0 else [zigzag(varint(stream)) for _ in range(zigzag(first))]
            message = message_class.FromString(stream.read())
            record["value"] = json_format.MessageToDict(message, preserving_proto_field_name=True)
        except Exception as error:  # a value that does not decode is reported, not fatal
            record = {"error": str(error)}
        print(json.dumps(record, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
