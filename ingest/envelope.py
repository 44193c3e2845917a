"""The immutable envelope every inbound MQTT message travels in, stamped once on receipt."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    received: float  # epoch seconds, the service's clock at receipt
    qos: int = 0
    mid: int | None = None  # packet id to acknowledge once the batch is durable (QoS 1)
    epoch: int = 0  # connection generation: an ack is only valid on the connection that received it
    dup: bool = False  # the broker's DUP flag: a QoS 1 redelivery of a message it sent before
