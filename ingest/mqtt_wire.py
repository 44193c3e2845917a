"""MQTT's variable byte integer, shared by everything here that writes packets by hand: the alarm
topic's publisher (firewatch/mqtt_publish.py), the load generator (simulators/load.py) and the
benchmarks' own clients."""

from __future__ import annotations


def remaining_length(n: int) -> bytes:
    """A packet's remaining length as a variable byte integer (MQTT 3.1.1 §2.2.3, 5.0 §1.5.5):
    7 bits per byte, the high bit set while more bytes follow."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)
