"""The journal and its recorder: alarms the state store could not take are recorded later, in order,
exactly once, and no entry can stop the ones behind it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from sqlalchemy import select
from sqlalchemy.exc import DataError, OperationalError

from alarms.model import Transition
from alarms.service import AlarmService
from alarms.tickets import TicketChange
from alarms.unrecorded import UnrecordedAlarms
from core.domain import AlarmAction, AlarmCategory, DetectorEvent, DetectorEventKind
from firewatch.journal import EntryKind, decode_events, encode_events, encode_rejects
from firewatch.recorder import Recorder
from storage.marks import Mark
from storage.models import AlarmEventRow, AlarmRow, DiscoveredDeviceRow, RejectRow
from storage.rejects import RejectRecord, RejectStore
from storage.telemetry import TelemetryStore
from tests.conftest import alarm_service

NOW = 1_800_000_000.0


def fire(device: str, kind: DetectorEventKind = DetectorEventKind.RAISE, value: float = 0.3) -> DetectorEvent:
    return DetectorEvent(
        device, "smoke.alarm", kind, AlarmCategory.FIRE, NOW, value, "smoke", "smoke >= 0.15"
    )


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.alarms: AlarmService = alarm_service(tmp_path / "state.sqlite", NOW)
        self.journal = TelemetryStore(tmp_path / "telemetry.sqlite")
        self.rejects = RejectStore(self.alarms.sessions, 100)
        self.unrecorded = UnrecordedAlarms(lambda: self.alarms.index, self.alarms.clock)
        self.published: list[Transition] = []

    def recorder(self) -> Recorder:
        def publish(transitions: list[Transition], _tickets: list[TicketChange]) -> None:
            self.published += transitions

        return Recorder(
            self.journal,
            self.alarms,
            self.rejects,
            self.unrecorded,
            source=self.journal.journal_id,
            publish=publish,
            clock=self.alarms.clock,
        )

    def journal_events(self, *events: DetectorEvent) -> None:
        self.journal.write(
            _i32(), _f64(), _f64(), [], [(EntryKind.EVENTS.value, encode_events(list(events)))], NOW
        )

    def raises(self) -> dict[str, int]:
        with self.alarms.sessions() as s:
            rows = s.execute(
                select(AlarmRow.device_id, AlarmRow.occurrences, AlarmEventRow.action).join(
                    AlarmEventRow, AlarmEventRow.alarm_id == AlarmRow.id
                )
            ).all()
        out: dict[str, int] = {}
        for device, _occurrences, action in rows:
            if action == AlarmAction.RAISED.value:
                out[device] = out.get(device, 0) + 1
        return out

    def occurrences(self, device: str) -> int:
        with self.alarms.sessions() as s:
            return int(s.scalar(select(AlarmRow.occurrences).where(AlarmRow.device_id == device)) or 0)


def _i32() -> npt.NDArray[np.int32]:
    return np.zeros(0, dtype=np.int32)


def _f64() -> npt.NDArray[np.float64]:
    return np.zeros(0, dtype=np.float64)


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def test_journaled_alarms_are_recorded_in_order_and_the_journal_emptied(setup: Setup) -> None:
    setup.unrecorded.add([fire("smk-1-1")])
    setup.journal_events(fire("smk-1-1"), fire("smk-1-2"))
    setup.journal_events(fire("smk-1-1", DetectorEventKind.CLEAR))

    drained = setup.recorder().drain()

    assert (drained.entries, drained.event_entries) == (2, 2)
    assert setup.raises() == {"smk-1-1": 1, "smk-1-2": 1}
    assert [t.action for t in setup.published] == [
        AlarmAction.RAISED,
        AlarmAction.RAISED,
        AlarmAction.NORMAL,  # a fire alarm latches until reset (GB 4717): its reading back to normal
    ]
    assert setup.journal.journal_size()[0] == 0
    assert len(setup.unrecorded) == 0  # the provisional alarm gave way to the recorded one


def test_an_entry_recorded_just_before_a_crash_is_not_recorded_again(setup: Setup) -> None:
    setup.journal_events(fire("smk-1-1"))
    (entry,) = setup.journal.journal()
    # The recorder committed the entry with its mark, and the process died before it deleted it.
    setup.alarms.apply(encode_and_decode([fire("smk-1-1")]), mark=Mark(setup.journal.journal_id, entry.id))

    drained = setup.recorder().drain()  # the next run

    assert drained.entries == 1
    assert setup.raises() == {"smk-1-1": 1}
    assert setup.occurrences("smk-1-1") == 1  # not even a repeat
    assert setup.journal.journal_size()[0] == 0


def encode_and_decode(events: list[DetectorEvent]) -> list[DetectorEvent]:
    return decode_events(encode_events(events))


def test_a_store_that_is_down_keeps_the_entry_for_the_next_try(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup.journal_events(fire("smk-1-1"))
    recorder = setup.recorder()
    apply = setup.alarms.apply

    def down(*_args: object, **_kwargs: object) -> None:
        raise OperationalError("INSERT", {}, Exception("connection refused"))

    monkeypatch.setattr(setup.alarms, "apply", down)
    for _ in range(3):  # however often: an unreachable store is never a reason to give up an entry
        with pytest.raises(OperationalError):
            recorder.drain()
    assert setup.journal.journal_size()[0] == 1

    monkeypatch.setattr(setup.alarms, "apply", apply)
    assert recorder.drain().entries == 1
    assert setup.raises() == {"smk-1-1": 1}


def test_an_event_the_store_refuses_is_set_aside_and_the_rest_recorded(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup.journal_events(fire("smk-1-1"), fire("smk-1-2"), fire("smk-1-3"))
    setup.journal_events(fire("smk-2-1"))
    apply = setup.alarms.apply

    def refuses_one(events: list[DetectorEvent], **kwargs: object) -> object:
        if any(e.device_id == "smk-1-2" for e in events):
            raise DataError("INSERT", {}, Exception("value out of range"))
        return apply(events, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(setup.alarms, "apply", refuses_one)
    recorder = setup.recorder()
    with pytest.raises(DataError):  # the first failure may be passing: the entry is tried again
        recorder.drain()
    drained = recorder.drain()

    assert drained.entries == 2
    assert setup.raises() == {"smk-1-1": 1, "smk-1-3": 1, "smk-2-1": 1}
    assert recorder.stats.set_aside == 1
    assert setup.journal.journal_size()[0] == 0


def test_journaled_rejects_are_kept_once(setup: Setup) -> None:
    rejects = [
        RejectRecord(NOW, "fw/v1/s1/smk-1-1/telemetry", b"\x00\xff", "bad_json", "not JSON", "smk-1-1")
    ]
    setup.journal.write(
        _i32(),
        _f64(),
        _f64(),
        [],
        [(EntryKind.REJECTS.value, encode_rejects(rejects, [("s1", "ghost", NOW)]))],
        NOW,
    )
    assert setup.recorder().drain().entries == 1
    assert setup.recorder().drain().entries == 0
    with setup.alarms.sessions() as s:
        kept = s.scalars(select(RejectRow)).all()
    assert [(r.topic, r.payload, r.reason) for r in kept] == [
        ("fw/v1/s1/smk-1-1/telemetry", b"\x00\xff", "bad_json")
    ]


def test_unrecorded_alarms_behave_like_alarms_until_recorded(setup: Setup) -> None:
    seen: list[Transition] = []
    setup.unrecorded.consumers.append(seen.extend)

    setup.unrecorded.add([fire("smk-1-1", value=0.2)])
    setup.unrecorded.add([fire("smk-1-1", value=0.4)])
    setup.unrecorded.add([fire("smk-1-1", DetectorEventKind.CLEAR)])  # a fire alarm latches: stays

    assert [t.action for t in seen] == [AlarmAction.RAISED, AlarmAction.REPEATED]
    assert all(not t.recorded and t.event_id == 0 and t.to_json()["recorded"] is False for t in seen)
    (alarm,) = setup.unrecorded.snapshot()
    assert (alarm["occurrences"], alarm["peak"], alarm["state"]) == (2, 0.4, "active_unacknowledged")
    assert alarm["place"] == "s1/b1/f1/z1/r101"  # where it is, from the registry, as a recorded alarm says
    setup.unrecorded.recorded([fire("smk-1-1")])
    assert setup.unrecorded.snapshot() == []


def test_the_store_of_unregistered_devices_is_bounded_and_keeps_the_newest(setup: Setup) -> None:
    store = RejectStore(setup.alarms.sessions, 10)
    for n in range(25):  # a flood of made-up device ids
        store.add([], [("s1", f"ghost-{n}", NOW + n)])
    with setup.alarms.sessions() as s:
        kept = sorted(s.scalars(select(DiscoveredDeviceRow.device_id)).all())
    assert kept == sorted(f"ghost-{n}" for n in range(15, 25))


def test_reject_fields_are_cut_to_fit_the_store_and_keep_the_raw_bytes(setup: Setup) -> None:
    topic = "fw/v1/s1/" + "x" * 5000 + "\x00/telemetry"
    setup.rejects.add([RejectRecord(NOW, topic, b"{}", "unknown_device", "d" * 5000, "x" * 5000)], [])
    with setup.alarms.sessions() as s:
        (row,) = s.scalars(select(RejectRow)).all()
    assert (len(row.topic), len(row.detail), len(row.device_id or "")) == (1024, 1024, 64)
    assert row.payload == b"{}"
