"""The MQTT source comes back after the broker drops it, however the drops fall, and loses nothing.

gmqtt reconnects by itself, but not always: a CONNACK refusal it deems permanent ends its reconnect
loop for good (gmqtt/mqtt/handler.py:414-425, 319-322), even once the broker is fixed. MqttSource
then replaces the client with a fresh one on the same persistent session.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from firewatch.broker import Mosquitto
from firewatch.service import Service
from ingest.mqtt import BrokerAddress, MqttSource, encode_pubacks
from ingest.queue import BoundedQueue
from tests.mqtt_helpers import Publisher
from tests.test_service_mqtt import make_service
from tests.waiting import eventually


@dataclass
class GatedMosquitto(Mosquitto):
    """A private mosquitto that, while `only` is set, refuses every client whose id does not start
    with it (CONNACK 0x87, not authorised): what a broker restarted with a wrong ACL looks like."""

    only: str | None = None

    def _write_config(self) -> Path:
        conf = super()._write_config()
        if self.only is not None:
            # Deprecated in mosquitto 2.0 but still there; it refuses with "not authorised".
            conf.write_text(conf.read_text() + f"clientid_prefixes {self.only}\n", encoding="utf-8")
        return conf


def readings(device: str, seqs: range, base: float) -> list[tuple[str, bytes]]:
    return [
        (f"fw/v1/s1/{device}/telemetry", f'{{"ts": {base + s}, "seq": {s}, "v": {{"smoke": 0.01}}}}'.encode())
        for s in seqs
    ]


def publish(broker: Mosquitto, items: list[tuple[str, bytes]]) -> None:
    pub = Publisher(broker.host, broker.port)
    try:
        pub.send_many(items)
    finally:
        pub.close()


async def restart_and_wait_for_reconnect(broker: Mosquitto, source: MqttSource) -> None:
    connects = source.connects
    await asyncio.to_thread(broker.restart)
    await eventually(lambda: source.connects > connects, timeout=60)


def stored(service: Service, device: str, base: float, n: int) -> int:
    return len(service.telemetry.history(device, "smoke", base, base + n + 1).ts)


@pytest.mark.integration
async def test_drops_right_after_each_reconnect_lose_nothing(tmp_path: Path) -> None:
    """The broker restarts, and restarts again the moment the source is back, twice: the source
    reconnects each time, and every reading published around the drops is stored exactly once
    (what was in flight unacknowledged is redelivered, and the duplicates are dropped)."""
    with Mosquitto(data_dir=tmp_path / "broker") as broker:
        service = make_service(broker, tmp_path / "fw", f"fw-drops-{uuid.uuid4().hex[:8]}")
        await service.start()
        try:
            await asyncio.wait_for(service.source.connected.wait(), 10)
            base = time.time()
            publish(broker, readings("smk-2-2", range(1, 51), base))
            for _ in range(2):
                await restart_and_wait_for_reconnect(broker, service.source)
            await asyncio.to_thread(broker.restart)  # and once more, right after the last reconnect
            publish(broker, readings("smk-2-2", range(51, 101), base))

            await eventually(lambda: stored(service, "smk-2-2", base, 100) == 100, timeout=60)
            await eventually(service.source.connected.is_set, timeout=60)
            assert service.source.rebuilds == 0  # gmqtt's own reconnect loop did all of it
        finally:
            await service.stop()


@pytest.mark.integration
async def test_a_client_that_stopped_reconnecting_is_replaced_and_its_session_loses_nothing(
    tmp_path: Path,
) -> None:
    """The broker comes back refusing the service (not authorised), so gmqtt stops reconnecting for
    good. The watchdog replaces the client; once the broker accepts the service again, the fresh
    client resumes the persistent session and gets everything published meanwhile."""
    broker = GatedMosquitto(data_dir=tmp_path / "broker")
    with broker:
        service = make_service(broker, tmp_path / "fw", f"fw-rebuild-{uuid.uuid4().hex[:8]}")
        service.source.connect_timeout_s = 2.0  # the watchdog's grace after the backoff delay
        service.source.watchdog_every_s = 0.2
        await service.start()
        try:
            await asyncio.wait_for(service.source.connected.wait(), 10)
            connects = service.source.connects

            broker.only = "test-pub-"  # the publishers only: the service is refused
            await asyncio.to_thread(broker.restart)
            base = time.time()
            publish(broker, readings("smk-2-1", range(1, 101), base))  # queued for the session
            await eventually(lambda: service.source.rebuilds == 1, timeout=60)
            assert not service.source.connected.is_set()

            broker.only = None
            await asyncio.to_thread(broker.restart)
            await eventually(lambda: stored(service, "smk-2-1", base, 100) == 100, timeout=60)
            assert service.source.connected.is_set()
            assert service.source.connects == connects + 1  # the fresh client, once
            assert service.source.rebuilds == 1
        finally:
            await service.stop()


async def test_a_discarded_client_neither_feeds_the_queue_nor_acknowledges_nor_connects() -> None:
    """Whatever a replaced client still receives is dropped unacknowledged (the broker redelivers it
    to the session's next connection), messages it delivered earlier are never acknowledged on the
    new connection, and its own reconnect loop cannot connect it again."""
    queue = BoundedQueue(100)
    source = MqttSource(
        BrokerAddress("127.0.0.1", 1), client_id="fw-x", topics=[], queue=queue, clock=time.time
    )
    old = source._client = source._make_client()
    old._package_handler._handle_qos_1_publish_packet(7, b"{}", "fw/v1/s1/smk-1-1/telemetry", {})
    (early,) = await queue.get_batch(10, 0)

    new = source._client = source._make_client()
    old._package_handler._handle_qos_1_publish_packet(8, b"{}", "fw/v1/s1/smk-1-1/telemetry", {})
    assert len(queue) == 0
    with pytest.raises(OSError, match="discarded"):
        await old._create_connection("127.0.0.1", 1, ssl=False, clean_session=False, keepalive=30)

    written: list[bytes] = []
    new._connection = RecordingConnection(written)  # stands in for the new client's connection
    source._on_connect(new, 0, 0, {})  # what gmqtt calls on the new connection's CONNACK
    assert source.ack([early]) == 0
    assert written == []

    new._package_handler._handle_qos_1_publish_packet(9, b"{}", "fw/v1/s1/smk-1-1/telemetry", {})
    (fresh,) = await queue.get_batch(10, 0)
    assert source.ack([early, fresh]) == 1
    assert written == [encode_pubacks([9])]


@dataclass
class RecordingConnection:
    """The two methods of a gmqtt connection that acknowledging uses, writing into a list."""

    written: list[bytes]

    def is_closing(self) -> bool:
        return False

    def send_package(self, data: bytes) -> None:
        self.written.append(bytes(data))
