"""A small synchronous publisher for tests: paho, QoS 1, waits until the broker has each message."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class Publisher:
    def __init__(self, host: str, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-pub-{uuid.uuid4().hex[:8]}")
        self.client.max_inflight_messages_set(1000)
        self.client.connect(host, port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes | str | dict[str, object], qos: int = 1) -> None:
        raw = json.dumps(payload).encode() if isinstance(payload, dict) else payload
        self.client.publish(topic, raw, qos=qos).wait_for_publish(5)

    def send_many(self, items: Iterable[tuple[str, bytes]], qos: int = 1) -> int:
        infos = [self.client.publish(t, p, qos=qos) for t, p in items]
        for info in infos:
            info.wait_for_publish(10)
        return len(infos)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def reading(seq: int, smoke: float, ts: float | None = None) -> dict[str, object]:
    return {"ts": ts if ts is not None else time.time(), "seq": seq, "v": {"smoke": smoke, "temp": 24.0}}
