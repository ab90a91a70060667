"""The raw values of a topic's records, read with kcat: shared by the decoders of the records a
schema route writes (avro_decode.py, protobuf_decode.py)."""
import struct
import subprocess


def record_values(bootstrap, topic, count):
    """Yields each record's value as bytes, in order (kcat's %R: a 4-byte big-endian length first)."""
    raw = subprocess.run(
        ["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-c", str(count), "-f", "%R%s"],
        check=True, capture_output=True, timeout=60).stdout
    position = 0
    while position + 4 <= len(raw):
        (length,) = struct.unpack(">i", raw[position:position + 4])
        position += 4
        yield raw[position:position + length]
        position += length


def confluent_schema_id(stream):
    """Reads Confluent's wire-format header (magic byte 0, 4-byte big-endian schema id) off `stream`."""
    magic, schema_id = struct.unpack(">bI", stream.read(5))
    if magic != 0:
        raise ValueError(f"magic byte {magic}")
    return schema_id
