"""A batch's alarm write overlaps the next batch's detection (firewatch/pipeline.py), against a real
mosquitto and SQLite state store: nothing is acknowledged before its alarms are recorded (or
journaled), and alarms reach the store in the order they happened, also when a write fails."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from core.settings import IngestSettings, MqttSettings, Settings
from firewatch.broker import Mosquitto
from firewatch.service import Service
from ingest.envelope import Message
from storage.models import AlarmEventRow, AlarmRow
from tests.conftest import PROFILES, small_registry
from tests.mqtt_helpers import Publisher, reading
from tests.waiting import eventually

pytestmark = pytest.mark.integration


def make_service(broker: Mosquitto, data: Path, alarm_write_timeout_s: float) -> Service:
    settings = Settings(
        data_dir=data,
        mqtt=MqttSettings(url=broker.url, client_id=f"fw-overlap-{uuid.uuid4().hex[:8]}"),
        ingest=IngestSettings(batch_wait_ms=2, alarm_write_timeout_s=alarm_write_timeout_s),
    )
    return Service(settings, registry=small_registry(), profiles=PROFILES)


def count_acks(svc: Service) -> list[str]:
    """The telemetry topics the service acknowledges, in order (bound before start); it also
    receives, and acknowledges, its own alarm topic."""
    acked: list[str] = []
    ack = svc.source.ack

    def counting(messages: Iterable[Message]) -> int:
        batch = list(messages)
        acked.extend(m.topic for m in batch if m.topic.endswith("/telemetry"))
        return ack(batch)

    svc.source.ack = counting  # type: ignore[method-assign]
    return acked


def raised_in_order(svc: Service) -> list[str]:
    """Devices whose fire alarm was raised, in the order the state store recorded the raises."""
    with svc.sessions() as s:
        rows = s.execute(
            select(AlarmRow.device_id)
            .join(AlarmEventRow, AlarmEventRow.alarm_id == AlarmRow.id)
            .where(AlarmRow.alarm_type == "smoke.alarm", AlarmEventRow.action == "raised")
            .order_by(AlarmEventRow.id)
        )
        return [d for (d,) in rows]


def fire(publisher: Publisher, device: str, ts: float) -> None:
    publisher.send(f"fw/v1/s1/{device}/telemetry", reading(1, 0.31, ts))


def hold_first_write(svc: Service, *, then_fail: bool) -> tuple[threading.Event, threading.Event]:
    """The service's first alarm write waits (`writing` set) until `release` is set, then is
    written, or fails as a state store that went away; later writes go through."""
    writing, release = threading.Event(), threading.Event()
    apply = svc.alarms.apply
    calls = 0

    def held(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            writing.set()
            release.wait(20)
            if then_fail:
                raise ConnectionError("the state store went away")
        return apply(*args, **kwargs)

    svc.alarms.apply = held  # type: ignore[method-assign]
    return writing, release


async def test_the_next_batch_is_detected_while_an_alarm_write_runs_and_nothing_is_acked_before_it(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    svc = make_service(mosquitto, tmp_path, alarm_write_timeout_s=30)
    acked = count_acks(svc)
    writing, release = hold_first_write(svc, then_fail=False)
    publisher = Publisher(mosquitto.host, mosquitto.port)
    await svc.start()
    try:
        await asyncio.wait_for(svc.source.connected.wait(), 10)
        base = time.time()
        fire(publisher, "smk-1-1", base)
        await eventually(writing.is_set)
        publisher.send_many(
            [(f"fw/v1/s1/smk-2-{i}/telemetry", orjson.dumps(reading(1, 0.02, base + 1))) for i in (1, 2)]
            + [
                ("fw/v1/s1/smk-1-2/telemetry", orjson.dumps(reading(1, 0.31, base + 2))),
            ]
        )
        # The next batch is detected while the first batch's alarms are still being written ...
        await eventually(lambda: svc.pipeline.accepted >= 2)
        await asyncio.sleep(0.2)
        # ... and none of them acknowledged or stored: the first batch's alarms are not recorded.
        assert acked == []
        assert svc.telemetry.count() == 0
        assert svc.pipeline.backlog() == 4
        assert svc.pipeline.oldest_unacknowledged() is not None
    finally:
        release.set()
    try:
        await eventually(lambda: len(acked) == 4)
        assert acked[0] == "fw/v1/s1/smk-1-1/telemetry"  # acknowledged in the order received
        assert raised_in_order(svc) == ["smk-1-1", "smk-1-2"]
        assert len(svc.pipeline.unrecorded) == 0  # all recorded directly, none journaled
        await eventually(lambda: svc.pipeline.backlog() == 0)
    finally:
        await svc.stop()
        publisher.close()


async def test_a_write_behind_a_failed_one_goes_to_the_journal_after_it_not_to_the_store_before_it(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    svc = make_service(mosquitto, tmp_path, alarm_write_timeout_s=30)
    acked = count_acks(svc)
    # The first write hangs until the second is queued behind it, then fails.
    writing, release = hold_first_write(svc, then_fail=True)
    publisher = Publisher(mosquitto.host, mosquitto.port)
    await svc.start()
    try:
        await asyncio.wait_for(svc.source.connected.wait(), 10)
        base = time.time()
        fire(publisher, "smk-1-1", base)
        await eventually(writing.is_set)
        fire(publisher, "smk-1-2", base + 1)
        await eventually(lambda: svc.pipeline.accepted == 2)
        await asyncio.sleep(0.2)
        assert acked == []
    finally:
        release.set()
    try:
        # Both shown at once as unrecorded, both journaled with their batches and acknowledged; the
        # journal recorder then records them in the order they happened.
        await eventually(lambda: len(acked) == 2)
        await eventually(lambda: raised_in_order(svc) == ["smk-1-1", "smk-1-2"], timeout=30)
        await eventually(lambda: len(svc.pipeline.unrecorded) == 0)
    finally:
        await svc.stop()
        publisher.close()
