"""Outage grouping: many devices of one place silent together are one outage alarm and one ticket;
a device silent alone is offline on its own as before; nobody is offline during a grace period."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from core.domain import AlarmCategory, DetectorEvent, DetectorEventKind
from core.registry import BuildingSpec, Device, FloorSpec, Registry, SiteSpec, ZoneSpec
from detectors.engine import Engine
from detectors.liveness import OFFLINE, OUTAGE, OUTAGE_LISTED, LivenessWatch, OutagePolicy
from ingest.decode import Decoder
from ingest.envelope import Message
from ingest.index import DeviceIndex
from storage.models import TicketRow
from tests.conftest import PROFILES, alarm_service

T0 = 1_800_000_000.0
HEARTBEAT = 10.0  # t-smoke: offline after 3 heartbeats without a message (30 s)


def hospital(per_zone: int = 120) -> Registry:
    """Site s1: building b1 (floors of six and four zones) and building b2 (one floor of eleven)."""

    def floor(fid: str, zones: int) -> FloorSpec:
        return FloorSpec(id=fid, name=fid, zones=[ZoneSpec(id=f"z{z}", name=f"z{z}") for z in range(zones)])

    site = SiteSpec(
        id="s1",
        name="测试医院",
        buildings=[
            BuildingSpec(id="b1", name="住院楼", floors=[floor("f1", 6), floor("f2", 4)]),
            BuildingSpec(id="b2", name="门诊楼", floors=[floor("f1", 11)]),
        ],
    )
    places = [f"s1/b1/f1/z{z}" for z in range(6)] + [f"s1/b1/f2/z{z}" for z in range(4)]
    places += [f"s1/b2/f1/z{z}" for z in range(11)]
    devices = [
        Device(id=f"smk-{p.replace('/', '-')}-{i}", profile="t-smoke", place=p)
        for p in places
        for i in range(per_zone)
    ]
    return Registry([site], devices)


@pytest.fixture(scope="module")
def index() -> DeviceIndex:
    return DeviceIndex.build(hospital(), PROFILES)


def under(index: DeviceIndex, prefix: str) -> np.ndarray:
    return np.array(
        [d for d, dev in enumerate(index.devices) if dev.place.startswith(prefix)], dtype=np.int32
    )


def hear(watch: LivenessWatch, devs: np.ndarray, at: float) -> list[DetectorEvent]:
    return watch.seen(devs.astype(np.int32), np.full(devs.size, at))


def everyone_but(index: DeviceIndex, silent: np.ndarray) -> np.ndarray:
    return np.setdiff1d(np.arange(index.n_devices, dtype=np.int32), silent)


def run(watch: LivenessWatch, index: DeviceIndex, silent: np.ndarray, until: float) -> list[DetectorEvent]:
    """Everyone outside `silent` reports every heartbeat; liveness is checked every second."""
    events: list[DetectorEvent] = []
    talking = everyone_but(index, silent)
    for t in np.arange(T0 + 1, until + 0.5, 1.0):
        if t % HEARTBEAT == 0:
            events += hear(watch, talking, t)
        events += watch.check(float(t))
    return events


def by_type(events: list[DetectorEvent], alarm_type: str, kind: DetectorEventKind) -> list[DetectorEvent]:
    return [e for e in events if e.alarm_type == alarm_type and e.kind is kind]


def test_a_building_gone_silent_at_once_is_one_outage_alarm_not_one_per_device(index: DeviceIndex) -> None:
    watch = LivenessWatch(index, start=T0)
    b1 = under(index, "s1/b1/")
    assert b1.size == 1200
    events = run(watch, index, b1, T0 + 120)
    assert by_type(events, OFFLINE, DetectorEventKind.RAISE) == []
    raised = by_type(events, OUTAGE, DetectorEventKind.RAISE)
    assert {e.device_id for e in raised} == {"outage:s1/b1"}
    first, last = raised[0], raised[-1]
    assert first.category is AlarmCategory.FAULT
    assert first.extra["place"] == "s1/b1"
    assert first.extra["site"] == "s1"
    # Its count follows the devices as they pass their own offline limit; all of them in the end.
    assert last.value == 1200
    assert last.extra["devices"] == 1200
    assert last.extra["registered"] == 1200
    assert "1200 of 1200 devices" in last.detail
    assert f"and {1200 - OUTAGE_LISTED} more" in last.detail  # the detail lists a bounded few
    assert sorted(watch.outage_members()["outage:s1/b1"]) == sorted(index.device_ids[d] for d in b1)


def test_an_outage_rolls_up_to_the_highest_place_that_is_mostly_silent(index: DeviceIndex) -> None:
    # One floor of b1 (480 of its 1200): the floor is out, the building is not mostly silent.
    watch = LivenessWatch(index, start=T0)
    events = run(watch, index, under(index, "s1/b1/f2/"), T0 + 120)
    assert {e.device_id for e in by_type(events, OUTAGE, DetectorEventKind.RAISE)} == {"outage:s1/b1/f2"}
    # Everything silent: the site is one outage.
    watch = LivenessWatch(index, start=T0)
    events = run(watch, index, np.arange(index.n_devices), T0 + 120)
    assert {e.device_id for e in by_type(events, OUTAGE, DetectorEventKind.RAISE)} == {"outage:s1"}
    assert by_type(events, OFFLINE, DetectorEventKind.RAISE) == []


def test_a_device_silent_alone_raises_its_own_offline_alarm_as_before(index: DeviceIndex) -> None:
    watch = LivenessWatch(index, start=T0)
    one = under(index, "s1/b2/f1/z1")[:1]
    events = run(watch, index, one, T0 + 60)
    assert [(e.device_id, e.kind) for e in events] == [(index.device_ids[one[0]], DetectorEventKind.RAISE)]
    assert events[0].alarm_type == OFFLINE
    assert events[0].ts == T0 + 31  # as soon as it passes its limit (3 x 10 s): no wait when alone


def test_a_few_devices_silent_together_are_below_the_outage_threshold(index: DeviceIndex) -> None:
    watch = LivenessWatch(index, start=T0)
    few = under(index, "s1/b2/f1/z1")[:9]  # fewer than min_devices (10)
    events = run(watch, index, few, T0 + 80)
    assert len(by_type(events, OFFLINE, DetectorEventKind.RAISE)) == 9
    assert by_type(events, OUTAGE, DetectorEventKind.RAISE) == []


def test_devices_coming_back_shrink_the_outage_and_clear_it_when_most_are_back(index: DeviceIndex) -> None:
    policy = OutagePolicy(update_s=1.0)
    watch = LivenessWatch(index, start=T0, policy=policy)
    zone = under(index, "s1/b2/f1/z0")  # 120 devices: a zone outage
    run(watch, index, zone, T0 + 60)
    assert len(watch.outage_members()["outage:s1/b2/f1/z0"]) == 120
    # 100 come back: the outage holds the 20 still silent.
    hear(watch, zone[:100], T0 + 61)
    events = watch.check(T0 + 62)
    assert [e.value for e in by_type(events, OUTAGE, DetectorEventKind.RAISE)] == [20.0]
    assert len(watch.outage_members()["outage:s1/b2/f1/z0"]) == 20
    # All but 3 back: fewer than min_devices silent, so the outage clears and those 3 are each
    # offline on their own (they are still silent; their alarms say so).
    back = hear(watch, zone[100:117], T0 + 63)
    assert back == []  # members returning raise no per-device clears: they had no per-device alarm
    events = watch.check(T0 + 64)
    assert [e.kind for e in by_type(events, OUTAGE, DetectorEventKind.CLEAR)] == [DetectorEventKind.CLEAR]
    assert sorted(e.device_id for e in by_type(events, OFFLINE, DetectorEventKind.RAISE)) == sorted(
        index.device_ids[d] for d in zone[117:]
    )
    assert watch.outage_members() == {}


def test_nobody_is_called_offline_during_the_grace_period_after_a_start(index: DeviceIndex) -> None:
    watch = LivenessWatch(index, start=T0, policy=OutagePolicy(grace_s=300.0))
    watch.grace(T0 + 1000)  # the service starts listening; nobody has reported yet
    assert watch.check(T0 + 1031) == []  # past every device's own window, inside the grace period
    assert watch.check(T0 + 1299) == []
    events = watch.check(T0 + 1300)
    # Then everyone at once, silent since start-up: one outage for the site, no per-device alarms.
    assert [(e.device_id, e.alarm_type) for e in events] == [("outage:s1", OUTAGE)]
    assert events[0].value == index.n_devices


def test_by_default_the_grace_period_is_each_devices_own_offline_window(index: DeviceIndex) -> None:
    watch = LivenessWatch(index, start=T0)
    watch.grace(T0 + 1000)
    assert watch.check(T0 + 1030) == []  # 3 x 10 s heartbeat, counted from the start
    assert [e.device_id for e in watch.check(T0 + 1031)] == ["outage:s1"]


def test_a_fire_from_a_device_inside_an_outage_still_raises_its_fire_alarm(index: DeviceIndex) -> None:
    engine = Engine(index, start=T0)
    zone = under(index, "s1/b2/f1/z0")
    talking = everyone_but(index, zone)
    for t in np.arange(T0 + 1, T0 + 61, 1.0):
        if t % HEARTBEAT == 0:
            engine.liveness.seen(talking, np.full(talking.size, t))
        engine.check(float(t))
    assert "outage:s1/b2/f1/z0" in engine.liveness.outage_members()
    device_id = index.device_ids[zone[0]]
    batch = Decoder(index).decode(
        [Message(f"fw/v1/s1/{device_id}/telemetry", b'{"seq": 1, "v": {"smoke": 0.5}}', T0 + 61)], T0 + 61
    )
    events = engine.process(batch)
    assert events[0].category is AlarmCategory.FIRE
    assert events[0].device_id == device_id
    assert "smoke.alarm" in {e.alarm_type for e in events}
    assert device_id not in engine.liveness.outage_members()["outage:s1/b2/f1/z0"]  # it is heard again


def test_an_outage_opens_one_ticket_and_its_updates_open_no_more(index: DeviceIndex, tmp_path: Path) -> None:
    service = alarm_service(tmp_path / "state.sqlite", T0, hospital(), PROFILES)
    watch = LivenessWatch(index, start=T0, policy=OutagePolicy(update_s=1.0))
    b1 = under(index, "s1/b1/")
    hear(watch, b1[:600], T0 + 5)  # half of them last spoke a little later: they pass their limit later
    events = run(watch, index, b1, T0 + 120)
    assert len(by_type(events, OUTAGE, DetectorEventKind.RAISE)) > 1  # raised, then counts updated
    _transitions, tickets = service.apply(events)
    assert [(t.action, t.device_id) for t in tickets] == [("opened", "outage:s1/b1")]
    with service.sessions() as s:
        assert s.scalar(select(func.count()).select_from(TicketRow)) == 1
        ticket = s.scalars(select(TicketRow)).one()
    assert ticket.hazard_type == OUTAGE
    assert ticket.place == "s1/b1"
    assert ticket.site == "s1"
    active = service.active_keys()
    assert active == {("outage:s1/b1", OUTAGE)}


def test_an_open_outage_resumes_after_a_restart_and_its_silent_devices_rejoin_it(index: DeviceIndex) -> None:
    engine = Engine(index, start=T0)
    engine.resume({("outage:s1/b2/f1/z0", OUTAGE)})
    engine.grace(T0)
    zone = under(index, "s1/b2/f1/z0")
    talking = everyone_but(index, zone)
    events: list[DetectorEvent] = []
    for t in np.arange(T0 + 1, T0 + 61, 1.0):
        if t % HEARTBEAT == 0:
            engine.liveness.seen(talking, np.full(talking.size, t))
        events += engine.check(float(t))
    assert (
        by_type(events, OUTAGE, DetectorEventKind.CLEAR) == []
    )  # not cleared while its devices were unheard
    assert by_type(events, OFFLINE, DetectorEventKind.RAISE) == []
    assert len(engine.liveness.outage_members()["outage:s1/b2/f1/z0"]) == 120


def test_devices_lost_with_their_gateway_are_one_outage_though_no_place_is_out() -> None:
    """A floor gateway serving 12 devices in each of two zones of 120 fails: no zone is half silent,
    the gateway's devices are one outage, shown where they are (the floor), naming the gateway."""
    base = hospital()
    served = {d for z in (0, 1) for d in [f"smk-s1-b1-f2-z{z}-{i}" for i in range(12)]}
    devices = [
        d.model_copy(update={"gateway": "gw-b1f2-east"}) if d.id in served else d for d in base.specs.values()
    ]
    index = DeviceIndex.build(base.with_devices(devices), PROFILES)
    silent = np.array(sorted(index.dev_of[d] for d in served), dtype=np.int32)
    watch = LivenessWatch(index, start=T0)
    events = run(watch, index, silent, T0 + 120)
    assert by_type(events, OFFLINE, DetectorEventKind.RAISE) == []
    (last, *_) = reversed(by_type(events, OUTAGE, DetectorEventKind.RAISE))
    assert last.device_id == "outage:s1/@gw-b1f2-east"
    assert (last.extra["place"], last.extra["devices"], last.extra["registered"]) == ("s1/b1/f2", 24, 24)
    assert "网关 gw-b1f2-east" in last.detail
    assert sorted(last.members) == sorted(served)


def test_devices_with_no_gateway_known_are_never_one_gateway_outage(index: DeviceIndex) -> None:
    """24 devices of two zones (none with a gateway) silent: too few of each zone, so each is
    offline on its own, not an outage of 'no gateway'."""
    zones = ("s1/b1/f2/z0", "s1/b1/f2/z1")
    silent = np.array([d for d, dev in enumerate(index.devices) if dev.place in zones], dtype=np.int32)[::10]
    watch = LivenessWatch(index, start=T0)
    events = run(watch, index, silent, T0 + 120)
    assert by_type(events, OUTAGE, DetectorEventKind.RAISE) == []
    assert len(by_type(events, OFFLINE, DetectorEventKind.RAISE)) == silent.size


def taken_over(index: DeviceIndex, devices: np.ndarray, active: set[tuple[str, str]]) -> Engine:
    """A clustered worker's engine that watched nobody, taking over the partition of `devices` at T0
    with the alarms `active` open in the store (as ClusterWorker._take does)."""
    engine = Engine(index, start=T0)
    nobody = np.zeros(index.n_devices, dtype=bool)
    engine.own(nobody, nobody, T0)
    gained = np.zeros(index.n_devices, dtype=bool)
    gained[devices] = True
    engine.own(gained, gained, T0)
    engine.resume_devices(gained, active, T0)
    return engine


def run_engine(engine: Engine, index: DeviceIndex, silent: np.ndarray, until: float) -> list[DetectorEvent]:
    events: list[DetectorEvent] = []
    talking = everyone_but(index, silent)
    for t in np.arange(T0 + 1, until + 0.5, 1.0):
        if t % HEARTBEAT == 0:
            events += engine.liveness.seen(talking, np.full(talking.size, t))
        events += engine.check(float(t))
    return events


def test_a_dead_workers_open_outage_is_cleared_by_the_new_owner_when_its_place_is_back(
    index: DeviceIndex,
) -> None:
    everyone = np.arange(index.n_devices)
    engine = taken_over(index, everyone, {("outage:s1/b1", OUTAGE)})
    events = run_engine(engine, index, np.array([], dtype=np.int32), T0 + 120)
    cleared = by_type(events, OUTAGE, DetectorEventKind.CLEAR)
    assert [e.device_id for e in cleared] == ["outage:s1/b1"]
    # Not before its devices could have been heard again (their offline window from the takeover).
    assert cleared[0].ts >= T0 + 30
    assert by_type(events, OFFLINE, DetectorEventKind.RAISE) == []


def test_a_dead_workers_outage_still_silent_is_kept_and_its_devices_rejoin_it_not_one_alarm_each(
    index: DeviceIndex,
) -> None:
    b1 = under(index, "s1/b1/")
    engine = taken_over(index, np.arange(index.n_devices), {("outage:s1/b1", OUTAGE)})
    events = run_engine(engine, index, b1, T0 + 120)
    assert by_type(events, OFFLINE, DetectorEventKind.RAISE) == []
    assert by_type(events, OUTAGE, DetectorEventKind.CLEAR) == []
    assert {e.device_id for e in by_type(events, OUTAGE, DetectorEventKind.RAISE)} <= {"outage:s1/b1"}
    assert len(engine.liveness.outage_members()["outage:s1/b1"]) == b1.size


def test_an_outage_of_a_place_outside_the_partition_taken_over_is_left_to_its_owner(
    index: DeviceIndex,
) -> None:
    engine = taken_over(index, under(index, "s1/b2/"), {("outage:s1/b1", OUTAGE)})
    assert engine.liveness.outage_members() == {}
    events = run_engine(engine, index, np.array([], dtype=np.int32), T0 + 120)
    assert by_type(events, OUTAGE, DetectorEventKind.CLEAR) == []
