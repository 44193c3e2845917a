"""Acknowledgement: the PUBACKs of a stored batch reach the broker in one write, on the connection
that received the messages, in receipt order, and the broker then stops redelivering them; what is
not acknowledged comes back on the next connection of the persistent session.

Ordering makes these tests deterministic without waiting a guessed time: the broker reads one
connection's packets in order (so PUBACKs written before a DISCONNECT are processed before it), and
on reconnection it resends unacknowledged messages before the ones queued meanwhile (MQTT 3.1.1
§4.4 and §4.6, MQTT 5 §4.4 and §4.6), so once a message published later arrives, any redelivery
would already have arrived.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

import pytest

from firewatch.broker import Mosquitto
from ingest.envelope import Message
from ingest.mqtt import BrokerAddress, MqttSource, encode_pubacks
from ingest.queue import BoundedQueue
from tests.mqtt_helpers import Publisher
from tests.waiting import eventually

TOPIC = "fw/v1/s1/smk-1-1/telemetry"


def test_pubacks_are_the_specs_bytes_back_to_back_in_order() -> None:
    """Fixed header 0x40 (PUBACK), remaining length 2, the packet id big-endian (MQTT 3.1.1 §3.4;
    valid in MQTT 5 too, where a Success PUBACK without properties omits the rest, §3.4.2.1)."""
    assert encode_pubacks([1, 0x1234, 0xFFFF]) == bytes(
        [0x40, 0x02, 0x00, 0x01, 0x40, 0x02, 0x12, 0x34, 0x40, 0x02, 0xFF, 0xFF]
    )
    assert encode_pubacks([]) == b""


@pytest.mark.parametrize("mid", [0, 0x10000, -1])
def test_a_packet_id_outside_1_to_65535_is_refused_rather_than_encoded(mid: int) -> None:
    with pytest.raises(ValueError, match=re.escape("1..65535")):
        encode_pubacks([5, mid])


class Session:
    """One MqttSource on a persistent session, connected and disconnected on demand, recording the
    bytes each acknowledgement writes to its current connection."""

    def __init__(self, broker: Mosquitto, protocol: int) -> None:
        self.queue = BoundedQueue(1000)
        self.source = MqttSource(
            BrokerAddress(broker.host, broker.port),
            client_id=f"fw-puback-{uuid.uuid4().hex[:8]}",
            topics=[TOPIC],
            queue=self.queue,
            clock=time.time,
            protocol=protocol,
        )
        self.writes: list[bytes] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.source.run(self._stop))
        await asyncio.wait_for(self.source.connected.wait(), 10)
        connection: Any = self.source._client._connection  # the live gmqtt connection
        send = connection.send_package
        self.writes = []

        def recording(data: bytes) -> None:
            self.writes.append(bytes(data))
            send(data)

        connection.send_package = recording

    async def settle(self) -> None:
        """Make sure the broker has processed what was written on this connection so far, before
        reconnecting at once. Without this, acknowledged messages came back in about one run in
        three here (mosquitto 2.0.11), with one write per PUBACK just as with one write per batch;
        presumably the new connection takes the session over before the broker has read the old
        connection's last packets. A SUBACK proves they were read, since the broker handles one
        connection's packets in order; subscribing to the same filter again only replaces the
        subscription (MQTT 3.1.1 §3.8.4, MQTT 5 §3.8.4)."""
        client: Any = self.source._client
        subacked = asyncio.Event()
        client.on_subscribe = lambda *_args: subacked.set()
        client.subscribe(TOPIC, qos=1)
        await asyncio.wait_for(subacked.wait(), 10)

    async def disconnect(self) -> None:
        if self._task is not None:
            self._stop.set()
            await self._task
            self._task = None

    async def receive(self, n: int) -> list[Message]:
        await eventually(lambda: len(self.queue) >= n, timeout=30, what=f"{n} messages")
        return await self.queue.get_batch(n, 0)


def publish(broker: Mosquitto, payloads: list[bytes]) -> None:
    pub = Publisher(broker.host, broker.port)
    try:
        pub.send_many((TOPIC, p) for p in payloads)
    finally:
        pub.close()


@pytest.mark.integration
@pytest.mark.parametrize("protocol", [4, 5], ids=["mqtt-3.1.1", "mqtt-5"])
async def test_an_acknowledged_batch_is_not_redelivered_and_the_rest_is(
    mosquitto: Mosquitto, protocol: int
) -> None:
    session = Session(mosquitto, protocol)
    try:
        await acknowledged_not_redelivered_rest_redelivered(mosquitto, session)
    finally:
        await session.disconnect()


async def acknowledged_not_redelivered_rest_redelivered(mosquitto: Mosquitto, session: Session) -> None:
    await session.connect()  # the subscription is made on connect, before this disconnect
    await session.disconnect()

    await asyncio.to_thread(publish, mosquitto, [f"r{i}".encode() for i in range(1, 21)])
    await session.connect()
    received = await session.receive(20)
    assert [m.payload for m in received] == [f"r{i}".encode() for i in range(1, 21)]
    stored, not_stored = received[:12], received[12:]

    assert session.source.ack(stored) == 12
    # one write holding the twelve PUBACKs, in receipt order
    assert session.writes == [encode_pubacks([m.mid for m in stored if m.mid is not None])]
    await session.settle()
    await session.disconnect()

    await asyncio.to_thread(publish, mosquitto, [b"later"])
    await session.connect()
    assert session.source.ack(not_stored) == 0  # their packet ids belong to the closed connection
    assert session.writes == []
    redelivered = await session.receive(9)
    assert [m.payload for m in redelivered] == [f"r{i}".encode() for i in range(13, 21)] + [b"later"]
    assert [m.dup for m in redelivered] == [True] * 8 + [False]

    assert session.source.ack(redelivered) == 9
    await session.settle()
    await session.disconnect()
    await asyncio.to_thread(publish, mosquitto, [b"last"])
    await session.connect()
    (only,) = await session.receive(1)
    assert only.payload == b"last"
    await session.disconnect()
    assert len(session.queue) == 0
