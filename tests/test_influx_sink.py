"""The InfluxDB sink (storage/influx.py, docs/influx.md): line protocol as specified, and the sink
writing through influxdb-client to a private VictoriaMetrics (`/api/v2/write`), read back with
`/api/v1/export`, where a point's measurement and field become the metric `measurement_field`."""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from multiprocessing.sharedctypes import SynchronizedString
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from api.app import create_app
from core.domain import AlarmCategory, DetectorEventKind
from core.registry import BuildingSpec, Device, FloorSpec, Registry, RoomSpec, SiteSpec, ZoneSpec
from core.settings import InfluxSettings, IngestSettings, MqttSettings, Settings
from firewatch.broker import Mosquitto, free_port
from firewatch.service import Service
from storage import influx_worker
from storage.influx import InfluxSink, SinkStatus, Tables
from storage.influx_alarm import ALARM_KEY, ALARM_TYPE, SinkAlarm
from storage.influx_worker import WORKER_NICENESS, PointBuffer, outcome_of
from storage.influx_worker import WorkerConfig as SinkConfig
from storage.line_protocol import (
    ReadingEncoder,
    alarm_line,
    escape_key,
    escape_measurement,
    field_value,
    line,
    string_field,
)
from storage.models import AlarmRow, TicketRow
from tests.conftest import PROFILES, make_accounts, sign_in
from tests.mqtt_helpers import Publisher
from tests.victoria import VictoriaMetrics
from tests.waiting import eventually, wait_until

# --- the encoder (pure) -------------------------------------------------------------------------------


def test_tag_keys_values_and_field_keys_escape_commas_equals_spaces_and_backslashes() -> None:
    assert escape_key("ward 3,east=1") == "ward\\ 3\\,east\\=1"
    assert escape_key("C:\\") == "C:\\\\"  # a trailing backslash must not escape the next separator
    assert escape_key("two\nlines") == "two lines"  # newlines cannot be escaped at all
    assert escape_measurement("a b,c=d") == "a\\ b\\,c=d"  # '=' is literal in a measurement


def test_string_fields_escape_quotes_and_backslashes_and_stay_on_one_line() -> None:
    assert string_field('he said "fire" \\ 着火') == '"he said \\"fire\\" \\\\ 着火"'
    assert string_field("a\r\nb") == '"a  b"'


def test_floats_integers_and_strings_are_typed_and_non_finite_floats_are_not_written() -> None:
    assert field_value(0.1) == "0.1"
    assert field_value(24.0) == "24.0"  # a float stays a float (no 'i')
    assert field_value(1e-7) == "1e-07"
    assert field_value(12) == "12i"
    assert field_value("x") == '"x"'
    for bad in (math.nan, math.inf, -math.inf):
        assert field_value(bad) is None
    with pytest.raises(TypeError, match="boolean"):
        field_value(True)


def test_a_line_sorts_its_tags_leaves_out_empty_ones_and_skips_unwritable_fields() -> None:
    assert (
        line("alarm_event", {"zone": "z 1", "site": "s1", "floor": ""}, {"v": 1.5, "n": 2}, 1000)
        == "alarm_event,site=s1,zone=z\\ 1 v=1.5,n=2i 1000"
    )
    assert line("m", {}, {"v": math.nan, "w": math.inf}, 1) is None  # no field left: no point


SERIES = [("d1", "smoke"), ("d1", "temp"), ("d2", "pressure")]
TAGS = {
    "d1": {"site": "s1", "building": "b1", "floor": "f1", "zone": "z1", "kind": "smoke"},
    "d2": {"site": "s1", "building": "b1", "floor": "f1", "zone": "", "kind": "water_pressure"},
}


def test_readings_become_one_line_per_device_and_millisecond_whatever_the_channel_order() -> None:
    enc = ReadingEncoder(SERIES, TAGS)
    out = enc.encode(
        np.array([1, 0, 2], dtype=np.int32),  # the payload listed temp before smoke
        np.array([1.0004, 1.0004, 2.0006]),
        np.array([24.5, 0.031, 0.35]),
    )
    assert out.data.decode().splitlines() == [
        "reading,building=b1,device=d1,floor=f1,kind=smoke,site=s1,zone=z1 smoke=0.031,temp=24.5 1000",
        "reading,building=b1,device=d2,floor=f1,kind=water_pressure,site=s1 pressure=0.35 2001",
    ]
    assert (out.points, out.skipped) == (2, 0)


def test_non_finite_samples_are_skipped_and_counted_and_a_repeated_channel_starts_a_new_line() -> None:
    enc = ReadingEncoder(SERIES, TAGS)
    out = enc.encode(
        np.array([0, 1, 0, 1], dtype=np.int32),  # two messages of d1 stamped in the same millisecond
        np.array([5.0, 5.0, 5.0, 5.0]),
        np.array([0.02, math.nan, 0.03, 21.0]),
    )
    assert out.data.decode().splitlines() == [
        "reading,building=b1,device=d1,floor=f1,kind=smoke,site=s1,zone=z1 smoke=0.02 5000",
        "reading,building=b1,device=d1,floor=f1,kind=smoke,site=s1,zone=z1 smoke=0.03,temp=21.0 5000",
    ]
    assert (out.points, out.skipped) == (2, 1)
    with pytest.raises(IndexError, match="series table"):
        enc.encode(np.array([3]), np.array([1.0]), np.array([1.0]))


def test_an_alarm_event_carries_its_device_s_tags_or_for_another_key_only_where_it_belongs() -> None:
    def row(alarm_id: int, device: str, alarm_type: str, category: str, severity: str, place: str,
            value: float | None, detail: str) -> tuple[Any, ...]:  # fmt: skip
        return (alarm_id / 4, "raised", alarm_id, device, alarm_type, category, severity,
                "active_unacknowledged", "s1", place, value, detail)  # fmt: skip

    fire = row(6, "d1", "smoke.alarm", "fire", "critical", "s1/b1/f1/z1/r101", 0.31, 'smoke "0.31" ≥ 0.15')
    assert alarm_line(fire, TAGS) == (
        "alarm_event,action=raised,alarm_type=smoke.alarm,building=b1,category=fire,device=d1,"
        "floor=f1,kind=smoke,severity=critical,site=s1,zone=z1 alarm_id=6i,"
        'state="active_unacknowledged",text="fire raised: smoke.alarm d1 @ s1/b1/f1/z1/r101 — '
        'smoke \\"0.31\\" ≥ 0.15",value=0.31 1500'
    )
    sink = row(8, ALARM_KEY, ALARM_TYPE, "fault", "minor", "s1", None, "")
    assert alarm_line(sink, TAGS) == (
        "alarm_event,action=raised,alarm_type=influx.write_failing,category=fault,severity=minor,"
        'site=s1 alarm_id=8i,state="active_unacknowledged",text="fault raised: influx.write_failing '
        'service:influx @ s1" 2000'
    )


def test_the_buffer_hands_out_the_oldest_lines_first_and_drops_the_oldest_past_its_bound() -> None:
    buf = PointBuffer()
    buf.add(b"a\nb\nc\n", at=1.0)
    buf.add(b"d\ne\n", at=2.0)
    data, n, at = buf.take(2)
    assert (data, n, at, buf.points) == (b"a\nb\n", 2, 1.0, 3)
    buf.put_back(data, at)  # a failed batch is first again
    assert buf.trim(3) == 2  # ... and first to go when the bound is hit
    assert buf.take(10) == (b"c\nd\ne\n", 3, 1.0)
    assert buf.points == 0


def _config(**kw: Any) -> SinkConfig:
    return SinkConfig.of(InfluxSettings(url="http://influx:8086", org="hospital", bucket="fw", **kw))


def test_a_failed_batch_is_retried_first_and_past_the_bound_dropped_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker's sending loop with a scripted server: down once, then up."""
    monkeypatch.setattr(influx_worker, "RETRY_FIRST_S", 60.0)  # the pause after the failure lasts until stop
    sent: list[list[int]] = []

    def server(body: bytes, points: int, timeout_s: float) -> influx_worker.Outcome:
        sent.append([int(x.rsplit(b" ", 1)[1]) for x in gzip.decompress(body).splitlines()])
        return influx_worker.Outcome("retry", "down") if len(sent) == 1 else influx_worker.Outcome("ok")

    shared = [0.0] * len(influx_worker.Stat)
    error: SynchronizedString = multiprocessing.get_context("spawn").Array("c", 64)  # type: ignore[assignment]
    worker = influx_worker._Worker(_config(buffer_points=1000, batch_points=100), shared, error, server)
    worker.take(("tables", 0, SERIES, TAGS))

    def readings(first: int) -> tuple[Any, ...]:  # 100 readings of d1's smoke, stamped first.. ms
        ts = np.arange(first, first + 100, dtype=np.float64) / 1000
        return ("readings", np.zeros(100, dtype=np.int32), ts, np.full(100, 0.1))

    for first in range(0, 1000, 100):
        worker.take(readings(first))
    sender = threading.Thread(target=worker.send)
    sender.start()
    wait_until(lambda: shared[influx_worker.Stat.FAILURES] == 1, what="the first write failed")
    assert shared[influx_worker.Stat.BUFFERED] == 1000  # the failed batch is back in the buffer
    worker.take(readings(1000))  # one batch too many: the oldest batch goes, the one that failed
    worker._begin_stop(time.time() + 10)
    sender.join(10)
    assert [batch[0] for batch in sent] == [0, *range(100, 1100, 100)]
    assert (shared[influx_worker.Stat.WRITTEN], shared[influx_worker.Stat.DROPPED_BUFFER]) == (1000, 100)
    assert error.value.decode() == "down"


def test_write_errors_are_told_apart_each_with_what_to_do() -> None:
    cfg = _config()
    unauthorized = outcome_of(401, "unauthorized access", None, cfg, 10)
    assert unauthorized.kind == "refused"
    assert "influx.token (FIREWATCH_INFLUX__TOKEN)" in unauthorized.message
    assert "bucket 'fw' in org 'hospital'" in unauthorized.message
    assert outcome_of(403, "", None, cfg, 10).kind == "refused"
    assert "bucket 'fw' exist" in outcome_of(404, "bucket not found", None, cfg, 10).message
    bad = outcome_of(400, "unable to parse 'x': missing fields", None, cfg, 10)
    assert bad.kind == "rejected"
    assert "10 points" in bad.message
    assert "missing fields" in bad.message
    assert "influx.batch_points" in outcome_of(413, "", None, cfg, 10).message
    busy = outcome_of(503, "overloaded", "7", cfg, 10)
    assert (busy.kind, busy.retry_after) == ("retry", 7.0)


def _status(failing_since: float | None, **kw: Any) -> SinkStatus:
    values: dict[str, Any] = {
        "offered": 0,
        "written": 0,
        "dropped": {},
        "buffered": 0,
        "skipped": 0,
        "failures": 0,
        "refused": False,
        "last_error": "cannot reach http://influx:8086",
        "alive": True,
        "restarts": 0,
    }
    values.update(kw)
    return SinkStatus(failing_since=failing_since, **values)


def test_the_fault_alarm_waits_for_alarm_after_s_and_clears_when_writes_succeed() -> None:
    alarm = SinkAlarm(after_s=120, url="http://influx:8086", site="s1", place="s1", active=False)
    assert alarm.decide(_status(1000.0), wall_now=1119.0, ts=5.0) is None
    raised = alarm.decide(_status(1000.0, buffered=42), wall_now=1121.0, ts=5.0)
    assert raised is not None
    assert (raised.device_id, raised.alarm_type) == (ALARM_KEY, ALARM_TYPE)
    assert raised.kind is DetectorEventKind.RAISE
    assert raised.category is AlarmCategory.FAULT
    assert raised.extra == {"site": "s1", "place": "s1"}
    assert "cannot reach http://influx:8086" in raised.detail
    assert "42 points buffered" in raised.detail
    alarm.applied(raised)
    assert alarm.decide(_status(1000.0), wall_now=2000.0, ts=6.0) is None  # raised once
    cleared = alarm.decide(_status(None), wall_now=2001.0, ts=7.0)
    assert cleared is not None
    assert cleared.kind is DetectorEventKind.CLEAR
    alarm.applied(cleared)
    assert alarm.decide(_status(None), wall_now=2002.0, ts=8.0) is None


# --- against VictoriaMetrics ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def victoria() -> Iterator[VictoriaMetrics]:
    """One private VictoriaMetrics for the module; each test writes under a site of its own."""
    with VictoriaMetrics() as vm:
        yield vm


def hospital(site: str) -> Registry:
    """A small hospital under `site`: three smoke detectors in each of two zones, a pressure sensor."""
    zones = [
        ZoneSpec(id=f"z{z}", name=f"{z}区", rooms=[RoomSpec(id=f"r{z}01", name=f"{z}01")]) for z in (1, 2)
    ]
    floor = FloorSpec(id="f1", name="1F", zones=zones)
    spec = SiteSpec(id=site, name=site, buildings=[BuildingSpec(id="b1", name="住院楼", floors=[floor])])
    devices = [
        Device(id=f"smk-{z}-{i}", profile="t-smoke", place=f"{site}/b1/f1/z{z}/r{z}01")
        for z in (1, 2)
        for i in (1, 2, 3)
    ]
    devices.append(Device(id="prs-1", profile="t-pressure", place=f"{site}/b1/f1/z1"))
    return Registry([spec], devices)


def make_service(broker: Mosquitto, data: Path, url: str, site: str, **influx: Any) -> Service:
    options: dict[str, Any] = {"flush_interval_s": 0.05, "stats_every_s": 3600.0, **influx}
    settings = Settings(
        data_dir=data,
        mqtt=MqttSettings(url=broker.url, client_id=f"fw-influx-{uuid.uuid4().hex[:8]}"),
        ingest=IngestSettings(liveness_check_s=0.1, batch_wait_ms=2),
        influx=InfluxSettings(url=url, **options),
    )
    return Service(settings, registry=hospital(site), profiles=PROFILES)


@pytest.fixture
def site() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def publisher(mosquitto: Mosquitto) -> Iterator[Publisher]:
    pub = Publisher(mosquitto.host, mosquitto.port)
    yield pub
    pub.close()


@pytest.fixture
async def service(
    mosquitto: Mosquitto, tmp_path: Path, victoria: VictoriaMetrics, site: str
) -> AsyncIterator[Service]:
    svc = make_service(mosquitto, tmp_path, victoria.url, site)
    await svc.start()
    await asyncio.wait_for(svc.source.connected.wait(), 10)
    yield svc
    await svc.stop()


def ms(ts: float) -> int:
    return round(ts * 1000)


def device_labels(site: str, device: str, zone: str, kind: str) -> tuple[tuple[str, str], ...]:
    labels = {"site": site, "building": "b1", "floor": "f1", "zone": zone, "device": device, "kind": kind}
    return tuple(sorted(labels.items()))


@pytest.mark.integration
async def test_readings_are_read_back_with_their_values_timestamps_and_tags(
    service: Service, victoria: VictoriaMetrics, publisher: Publisher, site: str
) -> None:
    t0 = time.time() - 60
    smk, prs = f"fw/v1/{site}/smk-1-1/telemetry", f"fw/v1/{site}/prs-1/telemetry"
    publisher.send(smk, {"ts": t0 + 0.1234, "seq": 1, "v": {"temp": 21.5, "smoke": 0.021}})
    publisher.send(smk, {"ts": t0 + 10, "seq": 2, "v": {"smoke": 0.034, "temp": 22.0}})
    publisher.send(prs, {"ts": t0 + 20, "seq": 1, "v": {"pressure": 0.5}})
    smoke = device_labels(site, "smk-1-1", "z1", "smoke")
    pressure = device_labels(site, "prs-1", "z1", "water_pressure")
    expected = {
        ("reading_smoke", smoke): {ms(t0 + 0.1234): 0.021, ms(t0 + 10): 0.034},
        ("reading_temp", smoke): {ms(t0 + 0.1234): 21.5, ms(t0 + 10): 22.0},
        ("reading_pressure", pressure): {ms(t0 + 20): 0.5},
    }
    selector = f'{{__name__=~"reading_.*",site="{site}"}}'
    await eventually(lambda: victoria.samples(selector) == expected, what="the readings in VictoriaMetrics")
    sink = service.sink
    assert sink is not None
    # Three messages, three points: each message's channels travel as one line (plus the one
    # `pipeline` point written at start).
    await eventually(lambda: sink.status().written == 4, what="four points written")
    await asyncio.sleep(0.2)
    assert sink.status().written == 4


@pytest.mark.integration
async def test_alarm_transitions_become_alarm_event_points_with_the_device_s_tags(
    service: Service, victoria: VictoriaMetrics, publisher: Publisher, site: str
) -> None:
    publisher.send(f"fw/v1/{site}/smk-2-1/telemetry", {"seq": 1, "v": {"smoke": 0.31}})
    fire = f'site="{site}",alarm_type="smoke.alarm"'  # the pre-alarm is raised too

    def raised() -> list[Any]:
        return victoria.export(f'{{__name__="alarm_event_alarm_id",{fire},action="raised"}}')

    (series,) = await eventually(raised, what="the raised alarm_event")
    with service.sessions() as s:
        alarm_id = s.scalars(
            select(AlarmRow.id).where(AlarmRow.device_id == "smk-2-1", AlarmRow.alarm_type == "smoke.alarm")
        ).one()
    assert series["values"] == [alarm_id]
    labels = series["metric"]
    assert labels == {
        "__name__": "alarm_event_alarm_id",
        "action": "raised",
        "alarm_type": "smoke.alarm",
        "category": "fire",
        "severity": "critical",
        "site": site,
        "building": "b1",
        "floor": "f1",
        "zone": "z2",
        "device": "smk-2-1",
        "kind": "smoke",
    }
    value = victoria.export(f'{{__name__="alarm_event_value",{fire},action="raised"}}')
    assert value[0]["values"] == [0.31]
    t = service.alarms.acknowledge(alarm_id, actor="值班员", note="现场确认")
    service.on_human_transition(t)

    def acknowledged() -> list[Any]:
        return victoria.export(f'{{__name__="alarm_event_alarm_id",{fire},action="acknowledged"}}')

    (ack,) = await eventually(acknowledged, what="the acknowledged alarm_event")
    assert ack["values"] == [alarm_id]
    assert ack["timestamps"] == [ms(t.ts)]


@pytest.mark.integration
async def test_the_pipeline_writes_its_own_health_every_stats_every_s(
    mosquitto: Mosquitto, tmp_path: Path, victoria: VictoriaMetrics, publisher: Publisher, site: str
) -> None:
    svc = make_service(mosquitto, tmp_path, victoria.url, site, stats_every_s=0.2)
    await svc.start()
    try:
        await asyncio.wait_for(svc.source.connected.wait(), 10)
        publisher.send(f"fw/v1/{site}/smk-1-1/telemetry", {"seq": 1, "v": {"smoke": 0.02}})
        publisher.send(f"fw/v1/{site}/smk-1-1/telemetry", {"seq": 2, "v": {"smoke": 0.4}})  # a fire
        publisher.send(f"fw/v1/{site}/smk-1-1/telemetry", b"not json")
        instance = svc.settings.mqtt.client_id

        def latest() -> dict[str, float]:
            out = {}
            for s in victoria.export(f'{{__name__=~"pipeline_.*",instance="{instance}"}}'):
                out[s["metric"]["__name__"].removeprefix("pipeline_")] = s["values"][-1]
            return out

        def counted() -> dict[str, float] | None:
            now = latest()
            return now if now.get("rejects") == 1 and now.get("sink_written", 0) > 0 else None

        fields = await eventually(counted, what="a pipeline point counting the messages")
        assert set(fields) == {
            "messages", "readings", "samples", "rejects", "duplicates", "queue_dropped", "sink_written",
            "sink_dropped", "alarm_transitions", "queue_depth", "telemetry_pending", "sink_buffered",
            "mqtt_connected", "alarm_latency_max_s",
        }  # fmt: skip
        assert (fields["readings"], fields["samples"], fields["rejects"]) == (2, 2, 1)
        assert fields["messages"] >= 3  # and the service's own alarm-topic publications, skipped
        assert (
            fields["alarm_transitions"] >= 1
        )  # a fire raised (its pre-alarm in the same reading superseded)
        assert fields["mqtt_connected"] == 1
        latency = victoria.export(f'{{__name__="pipeline_alarm_latency_max_s",instance="{instance}"}}')
        assert max(latency[0]["values"]) > 0  # the interval with the fire saw its latency
    finally:
        await svc.stop()


@pytest.mark.integration
async def test_a_registry_change_flows_to_the_sink_with_the_new_and_changed_devices_tags(
    service: Service, victoria: VictoriaMetrics, publisher: Publisher, site: str
) -> None:
    def change(current: Registry) -> Registry:
        added = current.with_device(Device(id="smk-0-1", profile="t-smoke", place=f"{site}/b1/f1/z2"))
        moved = current.specs["smk-1-2"].model_copy(update={"place": f"{site}/b1/f1/z2"})
        return added.replacing_device(moved)

    # "smk-0-1" sorts first: every index slot moves, so the sink must follow the series remap too.
    await asyncio.to_thread(service.apply_registry, change)
    t0 = time.time() - 30
    for dev, seq in (("smk-0-1", 1), ("smk-1-2", 1), ("smk-1-1", 1)):
        publisher.send(f"fw/v1/{site}/{dev}/telemetry", {"ts": t0 + seq, "seq": seq, "v": {"smoke": 0.011}})
    expected = {
        ("reading_smoke", device_labels(site, "smk-0-1", "z2", "smoke")): {ms(t0 + 1): 0.011},
        ("reading_smoke", device_labels(site, "smk-1-2", "z2", "smoke")): {ms(t0 + 1): 0.011},
        ("reading_smoke", device_labels(site, "smk-1-1", "z1", "smoke")): {ms(t0 + 1): 0.011},
    }
    await eventually(
        lambda: victoria.samples(f'{{__name__="reading_smoke",site="{site}"}}') == expected,
        what="readings tagged by the new registry",
    )


@pytest.mark.integration
async def test_while_influxdb_is_down_points_are_buffered_and_delivered_once_it_is_up(
    mosquitto: Mosquitto, tmp_path: Path, publisher: Publisher, site: str
) -> None:
    port = free_port()
    svc = make_service(mosquitto, tmp_path / "fw", f"http://127.0.0.1:{port}", site, retry_max_s=0.5)
    await svc.start()
    vm = VictoriaMetrics(port=port, data_dir=tmp_path / "vm")
    try:
        await asyncio.wait_for(svc.source.connected.wait(), 10)
        sink = svc.sink
        assert sink is not None
        t0 = time.time() - 100
        n = 60
        publisher.send_many(
            (
                f"fw/v1/{site}/smk-1-3/telemetry",
                json.dumps({"ts": t0 + i, "seq": i + 1, "v": {"smoke": i / 1000}}).encode(),
            )
            for i in range(n)
        )
        await eventually(
            lambda: sink.status().buffered >= n and sink.status().failures >= 2, what="points buffered"
        )
        assert svc.readiness()["influx"].startswith("failing for ")
        assert "cannot reach" in svc.readiness()["influx"]
        (await asyncio.to_thread(vm.start)).flush()
        labels = device_labels(site, "smk-1-3", "z1", "smoke")
        expected = {("reading_smoke", labels): {ms(t0 + i): i / 1000 for i in range(n)}}
        await eventually(
            lambda: vm.samples(f'{{__name__="reading_smoke",site="{site}"}}') == expected,
            what="every buffered reading delivered",
        )
        status = sink.status()
        assert status.dropped_total == 0
        assert status.failing_since is None
        assert svc.readiness()["influx"] == "ok"
    finally:
        await svc.stop()
        vm.close()


def reading_batch(first: int, n: int, t0: float) -> tuple[Any, Any, Any]:
    """`n` one-channel readings of series 0, one a second from t0 + first."""
    ts = t0 + np.arange(first, first + n, dtype=np.float64)
    return np.zeros(n, dtype=np.int32), ts, np.full(n, 0.5)


def standalone_sink(url: str, handoff: int = 64, **kw: Any) -> InfluxSink:
    """The sink without a service: tables and data are handed to it directly."""
    options: dict[str, Any] = {"flush_interval_s": 0.05, "retry_max_s": 0.5, **kw}
    return InfluxSink(InfluxSettings(url=url, **options), instance="test", handoff_items=handoff)


SOLO_SERIES = [("solo-1", "smoke")]


def solo_tags(site: str) -> dict[str, dict[str, str]]:
    return {"solo-1": {"site": site, "building": "b1", "floor": "f1", "zone": "z1", "kind": "smoke"}}


@pytest.mark.integration
def test_past_buffer_points_the_oldest_points_are_dropped_and_counted(tmp_path: Path, site: str) -> None:
    port = free_port()
    sink = standalone_sink(f"http://127.0.0.1:{port}", buffer_points=1000, batch_points=100)
    sink.start(Tables(0, SOLO_SERIES, solo_tags(site)))
    vm = VictoriaMetrics(port=port, data_dir=tmp_path / "vm")
    try:
        t0 = 1_700_000_000.0
        for k in range(30):
            sink.put_readings(*reading_batch(k * 100, 100, t0), points=100)
        wait_until(lambda: (s := sink.status()).buffered + s.dropped["buffer"] == 3000, what="all taken")
        status = sink.status()
        assert (status.buffered, status.dropped["buffer"], status.written) == (1000, 2000, 0)
        vm.start()
        wait_until(lambda: sink.status().written == 1000, what="the buffer written")
        (series,) = vm.export(f'{{__name__="reading_smoke",site="{site}"}}')
        delivered = {round(t / 1000 - t0) for t in series["timestamps"]}
        assert len(delivered) == 1000
        assert set(range(2100, 3000)) <= delivered  # the newest are kept; only a batch on the wire
        assert delivered <= set(range(3000))  # being retried escapes the drop
        assert sink.status().dropped_total == 2000
    finally:
        sink.stop()
        vm.close()


@pytest.mark.integration
def test_the_worker_runs_at_a_lower_cpu_priority_than_the_service(
    victoria: VictoriaMetrics, site: str
) -> None:
    sink = standalone_sink(victoria.url)
    sink.start(Tables(0, SOLO_SERIES, solo_tags(site)))
    try:
        assert sink._process is not None
        pid = sink._process.pid
        assert pid is not None
        # The worker lowers its own priority as it starts: wait for the first point to be written.
        sink.put_readings(*reading_batch(0, 1, 1_700_000_000.0), points=1)
        wait_until(lambda: sink.status().written == 1, what="a point written")
        service = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(service + WORKER_NICENESS, 19)
    finally:
        sink.stop()


@pytest.mark.integration
def test_a_full_hand_off_drops_and_counts_without_blocking_and_never_drops_a_table_change(
    victoria: VictoriaMetrics, site: str
) -> None:
    sink = standalone_sink(victoria.url, handoff=4)
    sink.start(Tables(0, SOLO_SERIES, solo_tags(site)))
    wait_until(sink.alive)
    assert sink._process is not None
    pid = sink._process.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # a worker that takes nothing: the hand-off fills
    try:
        t0 = 1_700_000_000.0

        def flood() -> None:
            for k in range(200):
                sink.put_readings(*reading_batch(k * 1000, 1000, t0), points=1000)

        putter = threading.Thread(target=flood)
        putter.start()
        putter.join(30)
        assert not putter.is_alive(), "a put blocked"
        assert sink.status().dropped["handoff"] > 0
        # A new device while the hand-off is full: its table change waits, and a batch naming it
        # is dropped rather than overtaking it.
        tags = {**solo_tags(site), "solo-2": {**solo_tags(site)["solo-1"], "zone": "z2"}}
        sink.send_tables(Tables(1, [("solo-2", "smoke")], {"solo-2": tags["solo-2"]}))
        before = sink.status().dropped["handoff"]
        sink.put_readings(np.array([1], dtype=np.int32), np.array([t0 - 1]), np.array([0.7]), points=1)
        assert sink.status().dropped["handoff"] == before + 1
    finally:
        os.kill(pid, signal.SIGCONT)
    try:
        wait_until(lambda: sink.status().buffered == 0 and sink.status().written > 0, what="drained")
        sink.put_readings(np.array([1], dtype=np.int32), np.array([t0 - 2]), np.array([0.8]), points=1)
        wait_until(lambda: victoria.export(f'{{__name__="reading_smoke",device="solo-2",site="{site}"}}'))
        (series,) = victoria.export(f'{{__name__="reading_smoke",device="solo-2",site="{site}"}}')
        assert series["metric"]["zone"] == "z2"
        assert (series["values"], series["timestamps"]) == ([0.8], [ms(t0 - 2)])
        status = sink.status()
        assert status.offered == 200 * 1000 + 2
        assert status.written + status.dropped_total == status.offered
    finally:
        sink.stop()


@pytest.mark.integration
def test_a_worker_that_dies_is_reported_and_restarted_with_its_tables(
    victoria: VictoriaMetrics, site: str
) -> None:
    sink = standalone_sink(victoria.url, retry_max_s=0.5)
    sink.start(Tables(0, SOLO_SERIES, solo_tags(site)))
    try:
        sink.put_stats(time.time(), {"messages": 1})
        wait_until(lambda: sink.status().written == 1, what="the first point written")
        process = sink._process
        assert process is not None
        assert process.pid is not None
        os.kill(process.pid, signal.SIGKILL)  # an out-of-memory kill, say
        process.join(10)
        status = sink.status()
        assert not status.alive
        assert status.failing_since is not None  # the fault alarm's clock runs
        assert "worker process is not running" in sink.readiness()
        wait_until(lambda: sink.supervise().restarts == 1 and sink.alive(), what="a restarted worker")
        t0 = 1_700_000_000.0
        sink.put_readings(*reading_batch(0, 3, t0), points=3)
        wait_until(lambda: sink.status().written == 4, what="readings through the new worker")
        (series,) = victoria.export(f'{{__name__="reading_smoke",device="solo-1",site="{site}"}}')
        assert series["timestamps"] == [ms(t0), ms(t0 + 1), ms(t0 + 2)]
        assert sink.status().failing_since is None
    finally:
        sink.stop()


@pytest.mark.integration
def test_a_refused_token_is_reported_with_what_to_do_and_not_retried_in_a_loop(
    tmp_path: Path, site: str
) -> None:
    with VictoriaMetrics(data_dir=tmp_path / "vm", username="firewatch", password="right") as vm:
        sink = standalone_sink(vm.url, token="wrong-token", retry_max_s=5.0)
        sink.start(Tables(0, SOLO_SERIES, solo_tags(site)))
        try:
            sink.put_stats(time.time(), {"messages": 1})
            status = wait_until(lambda: (s := sink.status()).failures and s, what="a refused write")
            assert status.refused
            assert "HTTP 401" in status.last_error
            assert "FIREWATCH_INFLUX__TOKEN" in status.last_error
            assert sink.readiness().startswith("failing for ")
            time.sleep(2.0)  # what matters here is what does not happen: a retry loop
            status = sink.status()
            # Probed again only after retry_max_s (5 s); a retryable error would have been retried
            # after 0.25, 0.5 and 1 s by now.
            assert status.failures == 1
            assert status.buffered == 1  # kept: the token may be granted write access meanwhile
            assert status.written == 0
        finally:
            sink.stop()
        assert sink.status().dropped["stopped"] == 1  # counted, not silently lost


@pytest.mark.integration
async def test_sustained_failure_raises_a_fault_alarm_the_api_shows_and_recovery_clears_it(
    mosquitto: Mosquitto, tmp_path: Path, site: str
) -> None:
    port = free_port()
    svc = make_service(
        mosquitto, tmp_path / "fw", f"http://127.0.0.1:{port}", site, alarm_after_s=0.5, retry_max_s=0.5,
        stats_every_s=0.2,
    )  # fmt: skip
    await svc.start()
    vm = VictoriaMetrics(port=port, data_dir=tmp_path / "vm")
    ctx = svc.app_context()
    ctx.start = ctx.stop = None
    ctx.accounts = make_accounts(svc.sessions)
    headers = sign_in(ctx.accounts, "duty-admin", "admin")
    transport = httpx.ASGITransport(app=create_app(ctx))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://fw", headers=headers) as api:

            async def sink_alarm() -> dict[str, Any] | None:
                page = (await api.get("/api/v1/alarms", params={"device_id": ALARM_KEY})).json()
                items: list[dict[str, Any]] = page["items"]
                return items[0] if items else None

            alarm = await eventually(sink_alarm, what="the fault alarm")
            assert alarm["alarm_type"] == ALARM_TYPE
            assert alarm["category"] == "fault"
            assert alarm["state"] == "active_unacknowledged"
            assert (alarm["site"], alarm["place"]) == (site, site)
            assert f"127.0.0.1:{port}" in alarm["detail"]
            assert "Check that InfluxDB is running" in alarm["detail"]
            # The console's views list it like any other alarm.
            for url in ("/api/v1/alarms", f"/api/v1/alarms/{alarm['id']}", "/api/v1/places", "/"):
                assert (await api.get(url)).status_code == 200, url
            ready = await api.get("/readyz")
            assert ready.status_code == 200  # InfluxDB down does not make the service unready
            assert ready.json()["checks"]["influx"].startswith("failing for ")
            with svc.sessions() as s:  # firewatch's own fault is not a fire-safety hazard ticket
                assert s.scalars(select(TicketRow).where(TicketRow.device_id == ALARM_KEY)).all() == []

            await asyncio.to_thread(vm.start)

            async def cleared() -> bool:
                state = (await api.get(f"/api/v1/alarms/{alarm['id']}")).json()["state"]
                return bool(state == "cleared_unacknowledged")

            await eventually(cleared, what="the fault alarm cleared")
            assert (await api.get("/readyz")).json()["checks"]["influx"] == "ok"
            # Its own transitions reach InfluxDB too, once it is back.
            own = f'{{__name__="alarm_event_alarm_id",alarm_type="{ALARM_TYPE}",site="{site}"}}'
            await eventually(
                lambda: len(vm.export(own)) == 2, what="raised and cleared as alarm_event points"
            )
    finally:
        await svc.stop()
        vm.close()


@pytest.mark.integration
async def test_a_fault_alarm_left_by_an_earlier_run_is_cleared_when_the_sink_is_switched_off(
    mosquitto: Mosquitto, tmp_path: Path, site: str
) -> None:
    earlier = make_service(mosquitto, tmp_path, "http://127.0.0.1:9", site)  # never started
    alarm = SinkAlarm(after_s=1, url="http://127.0.0.1:9", site=site, place=site, active=False)
    event = alarm.decide(_status(0.0), wall_now=10.0, ts=time.time())
    assert event is not None
    earlier.pipeline.raise_alarms([event])
    assert (ALARM_KEY, ALARM_TYPE) in earlier.alarms.active_keys()
    earlier.db.dispose()

    settings = earlier.settings.model_copy(update={"influx": InfluxSettings()})  # url unset: off
    svc = Service(settings, registry=hospital(site), profiles=PROFILES)
    await svc.start()
    try:
        await eventually(lambda: (ALARM_KEY, ALARM_TYPE) not in svc.alarms.active_keys(), what="cleared")
        assert "influx" not in svc.readiness()
    finally:
        await svc.stop()


def test_with_influx_url_unset_the_sink_costs_nothing(tmp_path: Path) -> None:
    """No worker process, no influxdb-client import, no hand-off in the pipeline, no readiness entry."""
    probe = f"""
import multiprocessing, sys
from core.settings import MqttSettings, Settings
from firewatch.service import Service
from tests.conftest import PROFILES, small_registry
svc = Service(Settings(data_dir={str(tmp_path)!r}, mqtt=MqttSettings(url="mqtt://127.0.0.1:1")),
              registry=small_registry(), profiles=PROFILES)
print(svc.sink is None, svc.pipeline.sink is None, "influxdb_client" in sys.modules,
      len(svc.pipeline.listeners), "influx" in svc.readiness(), multiprocessing.active_children())
"""
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=120, check=True
    ).stdout.split()
    assert out == ["True", "True", "False", "1", "False", "[]"]
