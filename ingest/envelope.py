"""The immutable envelope every inbound MQTT message travels in, stamped once on receipt."""

from __future__ import annotations

from typing import NamedTuple


# A NamedTuple rather than a frozen dataclass: just as immutable, and built about 4.5 times faster
# (a frozen dataclass's generated __init__ sets every field through object.__setattr__), which counts
# because one is built per received message (docs/benchmarks.md#receive-path-the-envelope).
class Message(NamedTuple):
    topic: str
    payload: bytes
    received: float  # epoch seconds, the service's clock at receipt
    qos: int = 0
    mid: int | None = None  # packet id to acknowledge once the batch is durable (QoS 1)
    epoch: int = 0  # connection generation: an ack is only valid on the connection that received it
    dup: bool = False  # the broker's DUP flag: a QoS 1 redelivery of a message it sent before
    # Clustered (docs/scale.md): the engine partition it was read from, and `mid` is its stream
    # sequence there. -1: not from a partition. (ingest/mqtt.read_packets builds envelopes with
    # tuple.__new__, every field given: a field added here is added there too.)
    partition: int = -1
