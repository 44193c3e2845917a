"""Several firewatch workers writing one PostgreSQL at once (docs/scale.md "Several workers, one
database"): each worker has its own AlarmService (its own engine, connections and in-memory state),
devices are split between them, and the database is all they share.

- A fire across zones owned by two workers is one incident.
- The same detector event applied by two workers (a takeover's overlap or replay) is one alarm.
- The policy and ticket clocks run by two workers at once do each step once.
- Two push dispatchers on one outbox deliver each push once.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from alarms.drill_service import DrillService
from alarms.model import Transition
from alarms.service import AlarmService
from alarms.tickets import TicketOpener
from core.domain import AlarmCategory, DetectorEvent, DetectorEventKind
from core.registry import BuildingSpec, Device, FloorSpec, Registry, RoomSpec, SiteSpec, ZoneSpec
from core.settings import MaintenancePlan, PushRoute, TicketPolicy
from detectors.engine import Engine
from detectors.samples import Samples
from firewatch.dispatch import AppriseChannel, Dispatcher
from firewatch.faults import Condition, FaultAlarms, Finding, fault_key
from firewatch.forget import forget_after
from ingest.index import DeviceIndex
from storage.db import open_store
from storage.models import (
    AlarmEventRow,
    AlarmRow,
    DeliveryRow,
    IncidentEventRow,
    IncidentRow,
    OutboxRow,
    TicketRow,
)
from tests.conftest import PROFILES, FakeClock
from tests.test_pushes import Receiver, until
from tests.test_pushes import receiver as receiver  # a fixture, used by name
from tickets.service import TicketService

T0 = 1_800_000_000.0
ROUNDS = 24  # buildings: each round's fire is in a building of its own


def campus(buildings: int) -> Registry:
    """Site s1 with `buildings` buildings b1.., each one floor of two zones, one smoke detector per
    zone: `smk-<b>-1` in zone 1 and `smk-<b>-2` in zone 2 (devices a partitioner may put on two
    workers)."""
    zones = [
        ZoneSpec(id=f"z{z}", name=f"{z}区", department="心内科", rooms=[RoomSpec(id=f"r{z}01", name="病房")])
        for z in (1, 2)
    ]
    site = SiteSpec(
        id="s1",
        name="测试医院",
        buildings=[
            BuildingSpec(id=f"b{b}", name=f"{b}号楼", floors=[FloorSpec(id="f1", name="1F", zones=zones)])
            for b in range(1, buildings + 1)
        ],
    )
    devices = [
        Device(id=f"smk-{b}-{z}", profile="t-smoke", place=f"s1/b{b}/f1/z{z}/r{z}01", responsible="张三")
        for b in range(1, buildings + 1)
        for z in (1, 2)
    ]
    return Registry([site], devices)


@dataclass(eq=False)
class Worker:
    """What one firewatch worker has of the alarm path: its own engine and sessions, its own
    service (and so its own in-process lock and caches)."""

    sessions: sessionmaker[Session]
    alarms: AlarmService


def worker(url: str, index: DeviceIndex, clock: Callable[[], float], routes: list[PushRoute]) -> Worker:
    _, sessions = open_store(url)
    opener = TicketOpener(index, TicketPolicy())
    return Worker(sessions, AlarmService(sessions, index, opener, clock, routes))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def two_workers(postgres_url: str, clock: FakeClock) -> Iterator[tuple[Worker, Worker]]:
    index = DeviceIndex.build(campus(ROUNDS), PROFILES)
    a, b = worker(postgres_url, index, clock, []), worker(postgres_url, index, clock, [])
    yield a, b
    for w in (a, b):
        w.sessions.kw["bind"].dispose()


def fire(device_id: str, n: int = 0, kind: DetectorEventKind = DetectorEventKind.RAISE) -> DetectorEvent:
    return DetectorEvent(device_id, "smoke.alarm", kind, AlarmCategory.FIRE, T0 + n, 0.3)


def raising(w: Worker, *devices: str, n: int = 0) -> Callable[[], object]:
    return lambda: w.alarms.apply([fire(d, n) for d in devices])


def at_once(*jobs: Callable[[], object]) -> None:
    """Run the jobs in threads of their own, released together by a barrier; re-raise a failure."""
    start = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def run(job: Callable[[], object]) -> None:
        try:
            start.wait()
            job()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


# --- incidents that span partitions ---------------------------------------------------------------
def test_a_fire_across_zones_of_two_workers_is_one_incident(two_workers: tuple[Worker, Worker]) -> None:
    """Round after round, two workers raise fire alarms of the two zones of one building at the same
    moment: each building has one fire incident holding both alarms."""
    a, b = two_workers
    for r in range(1, ROUNDS + 1):
        at_once(raising(a, f"smk-{r}-1"), raising(b, f"smk-{r}-2"))
    with a.sessions() as s:
        per_building = dict(
            s.execute(select(IncidentRow.group_key, func.count()).group_by(IncidentRow.group_key)).all()
        )
        counts = {i.group_key: i.alarm_count for i in s.scalars(select(IncidentRow))}
        alarms = s.scalar(select(func.count()).select_from(AlarmRow))
    assert alarms == 2 * ROUNDS
    assert per_building == {f"s1/b{r}": 1 for r in range(1, ROUNDS + 1)}
    assert counts == {f"s1/b{r}": 2 for r in range(1, ROUNDS + 1)}


# --- an alarm raised once -------------------------------------------------------------------------
def actions(w: Worker, device_id: str) -> list[str]:
    with w.sessions() as s:
        q = (
            select(AlarmEventRow.action)
            .join(AlarmRow, AlarmRow.id == AlarmEventRow.alarm_id)
            .where(AlarmRow.device_id == device_id)
            .order_by(AlarmEventRow.id)
        )
        return list(s.scalars(q))


def test_the_same_events_applied_by_two_workers_at_once_raise_each_alarm_once(
    two_workers: tuple[Worker, Worker],
) -> None:
    """A takeover's overlap: the old owner and the new one apply the same batch at the same moment.
    Each alarm is raised once (the other's apply is a repeat, counted), each fire one incident."""
    a, b = two_workers
    for r in range(1, ROUNDS + 1):
        devices = (f"smk-{r}-1", f"smk-{r}-2")
        at_once(raising(a, *devices), raising(b, *devices))
    with a.sessions() as s:
        alarms = s.scalars(select(AlarmRow)).all()
        incidents = s.scalars(select(IncidentRow)).all()
    assert len(alarms) == 2 * ROUNDS
    assert {r.occurrences for r in alarms} == {2}
    for r in range(1, ROUNDS + 1):
        assert actions(a, f"smk-{r}-1") == ["raised", "repeated"]
    assert sorted((i.group_key, i.alarm_count) for i in incidents) == sorted(
        (f"s1/b{r}", 2) for r in range(1, ROUNDS + 1)
    )


def test_a_replay_after_a_takeover_repeats_and_a_raise_after_a_reset_elsewhere_raises_again(
    two_workers: tuple[Worker, Worker],
) -> None:
    """The new owner replays what the old one already applied: a repeat, not a second raise. A
    person resets the alarm through the other worker's API; the owner's next raise is a raise again
    (nothing of the old alarm is cached between batches to hide it)."""
    a, b = two_workers
    a.alarms.apply([fire("smk-1-1", 0)])
    b.alarms.apply([fire("smk-1-1", 0)])  # the replay
    assert actions(a, "smk-1-1") == ["raised", "repeated"]
    with a.sessions() as s:
        alarm_id = s.scalars(select(AlarmRow.id)).one()
    b.alarms.reset(alarm_id, actor="值班员")
    a.alarms.apply([fire("smk-1-1", 5)])
    assert actions(a, "smk-1-1") == ["raised", "repeated", "reset", "raised"]
    with a.sessions() as s:
        row = s.get(AlarmRow, alarm_id)
        assert row is not None
        assert row.state == "active_unacknowledged"


def test_a_raise_racing_a_reset_on_another_worker_never_loses_either(
    two_workers: tuple[Worker, Worker],
) -> None:
    """Round after round (a device each), the owner raises a latched fire again while a person
    resets it on another worker: whichever commits first, the other applies to what it left (no
    write is lost), so the alarm is active exactly when the raise came last."""
    a, b = two_workers
    for r in range(1, ROUNDS + 1):
        device = f"smk-{r}-1"
        a.alarms.apply([fire(device, 0)])
        with a.sessions() as s:
            alarm_id = s.scalars(select(AlarmRow.id).where(AlarmRow.device_id == device)).one()
        at_once(raising(a, device, n=1), functools.partial(b.alarms.reset, alarm_id, actor="值班员"))
        log = actions(a, device)
        with a.sessions() as s:
            row = s.get(AlarmRow, alarm_id)
            assert row is not None
        assert row.occurrences == 2
        if log == ["raised", "repeated", "reset"]:  # the raise first (a repeat), then the reset
            assert row.state == "cleared_unacknowledged"
        else:  # the reset first, then the raise made the alarm active again
            assert log == ["raised", "reset", "raised"]
            assert row.state == "active_unacknowledged"


# --- clocks -----------------------------------------------------------------------------------------
def test_two_workers_ticking_at_once_escalate_each_step_once(
    two_workers: tuple[Worker, Worker], clock: FakeClock
) -> None:
    """The policy clock run by two workers at once (a takeover's overlap): the fire's escalation
    steps and reminders are each logged once, as with one worker."""
    a, b = two_workers
    a.alarms.apply([fire("smk-1-1")])
    for second in range(0, 900, 10):
        clock.now = T0 + second
        at_once(a.alarms.tick, b.alarms.tick)
    with a.sessions() as s:
        steps = s.execute(
            select(IncidentEventRow.action, IncidentEventRow.ts).order_by(IncidentEventRow.id)
        ).all()
    escalated = [ts - T0 for action, ts in steps if action == "escalated"]
    reminded = [ts - T0 for action, ts in steps if action == "reminded"]
    overdue = [ts - T0 for action, ts in steps if action == "verify_overdue"]
    assert escalated == [60, 180]  # alarms/policy.py's default fire chain: 60 s, then 120 s more
    assert len(overdue) == 1
    assert len(reminded) == len(set(reminded))  # never the same reminder twice


def test_two_workers_ticking_tickets_at_once_open_one_maintenance_ticket(
    postgres_url: str, clock: FakeClock
) -> None:
    """The ticket clock run by two workers at once: a maintenance plan falls due and one ticket
    opens; the second worker's tick neither fails nor opens another."""
    plan = MaintenancePlan(name="detector-test", title_zh="火灾探测器功能测试", every_days=30)
    policy = TicketPolicy(plans=[plan], patrols=[])
    index = DeviceIndex.build(campus(2), PROFILES)
    services = []
    for _ in range(2):
        w = worker(postgres_url, index, clock, [])
        services.append(TicketService(w.sessions, index, policy, alarms=w.alarms, clock=clock))
    for day in range(0, 65, 5):
        clock.now = T0 + day * 86_400
        at_once(*(t.tick for t in services))
    with services[0].sessions() as s:
        tickets = s.scalars(select(TicketRow).where(TicketRow.source == "maintenance")).all()
    # Due at once, then every 30 days once the last is closed: never closed here, so one.
    assert len(tickets) == 1


# --- pushes ---------------------------------------------------------------------------------------
async def test_two_dispatchers_on_one_outbox_deliver_each_push_once(
    postgres_url: str, clock: FakeClock, receiver: Receiver
) -> None:
    """Each worker runs a push dispatcher on the one outbox, polling and woken at every commit: each
    alarm's push reaches the receiver once, and the delivery log holds one attempt per push."""
    receiver.start()
    duty = PushRoute(
        name="duty", url=f"json://127.0.0.1:{receiver.port}/hook", per_alarm=True, incident_actions=[]
    )
    index = DeviceIndex.build(campus(ROUNDS), PROFILES)
    a, b = worker(postgres_url, index, clock, [duty]), worker(postgres_url, index, clock, [duty])
    dispatchers = [
        Dispatcher(w.sessions, {"duty": AppriseChannel(duty, timeout_s=5.0)}, clock=clock, poll_s=0.01)
        for w in (a, b)
    ]

    def wake_all(_: object) -> None:  # as a worker wakes its own dispatcher after each commit
        for d in dispatchers:
            d.wake()

    for w in (a, b):
        w.alarms.on_commit.append(wake_all)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(d.run(stop)) for d in dispatchers]
    devices = [f"smk-{r}-{z}" for r in range(1, ROUNDS + 1) for z in (1, 2)]
    try:
        for i in range(0, len(devices), 4):  # both workers raise, a few alarms a batch
            w = (a, b)[i // 4 % 2]
            await asyncio.to_thread(w.alarms.apply, [fire(d) for d in devices[i : i + 4]])
        await until(lambda: dispatchers[0].pending() == 0, timeout=30.0)
    finally:
        stop.set()
        await asyncio.gather(*tasks)  # batches in flight are recorded before `run` returns
    for d in dispatchers:
        d.close()
    pushed = sorted(body["message"].split("设备: ")[1].split("\n")[0] for body in receiver.bodies)
    assert pushed == sorted(devices)
    with a.sessions() as s:
        assert s.scalar(select(func.count()).select_from(DeliveryRow)) == len(devices)
    assert sum(d.delivered for d in dispatchers) == len(devices)


# --- the service's own fault alarms ---------------------------------------------------------------
def test_each_workers_fault_alarm_is_its_own(two_workers: tuple[Worker, Worker]) -> None:
    """Both workers find the state store failing, then only one recovers: the other's fault alarm
    stays active (one shared key would have let the first clear end it)."""
    a, b = two_workers
    faults = {
        w: FaultAlarms(site="s1", place="s1", key=fault_key(name)) for w, name in ((a, "w1"), (b, "w2"))
    }
    failing = [Finding(Condition.STORAGE_FAILING, "connection refused")]
    for w, findings in ((a, failing), (b, failing), (a, [])):
        events = faults[w].decide(findings, T0)
        w.alarms.apply(events)
        faults[w].applied(events)
    with a.sessions() as s:
        states = dict(s.execute(select(AlarmRow.device_id, AlarmRow.state)).all())
    assert states == {
        "service:ingest:w1": "cleared_unacknowledged",
        "service:ingest:w2": "active_unacknowledged",
    }


# --- drills ---------------------------------------------------------------------------------------
def test_a_drill_declared_and_ended_on_one_worker_holds_for_the_others_alarms(
    two_workers: tuple[Worker, Worker], clock: FakeClock
) -> None:
    """A drill declared through worker A's API tags the fire alarm worker B raises in its places;
    once ended through A, B's next fire alarm there is real (never a real fire taken for a drill's)."""
    a, b = two_workers
    drills_a = DrillService(a.sessions, a.alarms, [])
    DrillService(b.sessions, b.alarms, [])  # B's own, refreshed at its start only
    drill = drills_a.declare(
        name="住院楼演练", places=["s1/b1"], start=None, end=T0 + 3600, routes=[], urls=[], note="", actor="a"
    )
    b.alarms.apply([fire("smk-1-1")])
    drills_a.end(drill.id, actor="a")
    clock.now = T0 + 60
    b.alarms.apply([fire("smk-1-2", 60)])
    with b.sessions() as s:
        tagged = dict(s.execute(select(AlarmRow.device_id, AlarmRow.drill_id)).all())
    assert tagged == {"smk-1-1": drill.id, "smk-1-2": None}


def test_a_drill_declared_on_one_worker_is_told_to_its_recipients_by_the_worker_raising_its_fire(
    two_workers: tuple[Worker, Worker],
) -> None:
    """Worker B learnt of no drill at its start; a drill declared through A's API since has its own
    recipients (a route and an Apprise URL). B's fire alarm in its places opens the drill's incident,
    and B tells the drill's recipients of it, not the alarm topic alone."""
    a, b = two_workers
    routes = [PushRoute(name="drill-team", url="json://127.0.0.1:9/team")]
    drills_a = DrillService(a.sessions, a.alarms, routes)
    learnt: list[str] = []
    DrillService(b.sessions, b.alarms, routes, lambda rs: learnt.extend(r.name for r in rs))
    drill = drills_a.declare(
        name="住院楼演练",
        places=["s1/b1"],
        start=None,
        end=T0 + 3600,
        routes=["drill-team"],
        urls=["json://127.0.0.1:9/drill"],
        note="",
        actor="a",
    )
    b.alarms.apply([fire("smk-1-1")])
    with b.sessions() as s:
        told = set(s.scalars(select(OutboxRow.route).where(OutboxRow.incident_id.is_not(None))))
    assert told == {"drill-team", f"drill-{drill.id}-0"}
    assert learnt == [f"drill-{drill.id}-0"]  # B's dispatcher gets a channel for the drill's URL


# --- a person's reset on another worker -----------------------------------------------------------
def test_a_reset_made_on_another_worker_lets_the_owners_detector_raise_a_persisting_fire_again(
    two_workers: tuple[Worker, Worker], clock: FakeClock
) -> None:
    """Worker A owns the detector and raises its fire alarm; a person resets it through worker B's
    API. A hears of the reset on the live feed (as the bus carries it: `to_json`, `from_json`) and
    its detector forgets, so the smoke that is still there raises the fire again."""
    a, b = two_workers
    engine = Engine(a.alarms.index, start=T0)

    def smoke(at: float) -> list[DetectorEvent]:
        slot = np.array([engine.index.slot("smk-1-1", "smoke")], dtype=np.int32)
        return engine.process_samples(Samples(slot, np.array([T0 + at]), np.array([0.3])))

    a.alarms.apply(smoke(0))
    with a.sessions() as s:
        fire_id = s.scalars(select(AlarmRow.id).where(AlarmRow.category == "fire")).one()
    clock.now = T0 + 30
    reset = b.alarms.reset(fire_id, actor="值班员")
    assert smoke(40) == []  # still latched in A's detector: the reading alone raises nothing
    assert forget_after(engine, Transition.from_json(reset.to_json()))
    a.alarms.apply(smoke(50))
    with a.sessions() as s:
        row = s.get(AlarmRow, fire_id)
        assert row is not None
        assert row.state == "active_unacknowledged"
