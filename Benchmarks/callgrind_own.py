#!/usr/bin/env python3
"""Instructions a callgrind profile spent in one object's own code, per unit of work.

Usage: callgrind_own.py PROFILE OBJECT_BASENAME UNITS

Sums the self cost (not the cost of calls out of it) of every function in the object named
OBJECT_BASENAME (e.g. `sluice`: the static-stdlib binary, so Sluice's code, SwiftNIO, the Swift
runtime and BoringSSL) and divides by UNITS (events or requests). Shared libraries (librdkafka,
liblz4, libc) are left out: how much librdkafka spends per event moves with how it happens to
batch in a run (fewer, larger message sets when the load arrives faster), which hides a change
of a few percent in Sluice's own code; this figure does not move with it.
"""
import re
import sys


def own_instructions(path: str, object_name: str) -> int:
    names: dict[str, str] = {}
    current = ""
    total = 0
    skip_next = False  # the line after `calls=` is the inclusive cost of that call
    with open(path, errors="replace") as profile:
        for line in profile:
            first = line[:1]
            if first.isdigit() or first in "+-*":
                if skip_next:
                    skip_next = False
                elif current == object_name:
                    fields = line.split()
                    if len(fields) >= 2:
                        total += int(fields[1])
                continue
            if line.startswith("calls="):
                skip_next = True
                continue
            match = re.match(r"(c?ob)=(?:\((\d+)\))?\s*(.*)", line.rstrip("\n"))
            if not match:
                continue
            kind, ident, name = match.groups()
            if ident and name:
                names[ident] = name
            if kind == "ob":
                resolved = names.get(ident, name) if ident else name
                current = resolved.rsplit("/", 1)[-1]
    return total


if __name__ == "__main__":
    path, object_name, units = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(round(own_instructions(path, object_name) / units))
