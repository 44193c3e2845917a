"""The registry mirror in the state store: written in bulk, as a diff against what it holds.

Specified on SQLite and on PostgreSQL: the rows each device gets, that a restart with the same
registry writes nothing, and that a changed registry writes only the devices that changed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

import storage.registry_sync
from core.registry import Device, Registry
from storage.db import open_store
from storage.models import DeviceRow, DiscoveredDeviceRow, PlaceRow
from storage.registry_sync import fingerprint, stored_fingerprint, sync_registry
from tests.conftest import PROFILES, small_registry


@pytest.fixture
def sessions(store_url: str) -> Iterator[sessionmaker[Session]]:
    db, sessions = open_store(store_url)
    try:
        yield sessions
    finally:
        db.dispose()


class Writes:
    """The INSERT and DELETE statements sent to the store, with how many rows each carried."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.statements: list[tuple[str, int]] = []
        engine = sessions.kw["bind"]
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, params: Any, _ctx: Any, many: bool) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb in ("INSERT", "DELETE", "UPDATE"):
            self.statements.append((statement, len(params) if many else 1))

    def rows_inserted(self, table: str) -> int:
        return sum(
            n for s, n in self.statements if s.lstrip().upper().startswith(f"INSERT INTO {table.upper()}")
        )

    def deletes(self, table: str) -> int:
        return sum(
            1 for s, _ in self.statements if s.lstrip().upper().startswith(f"DELETE FROM {table.upper()}")
        )


def devices(sessions: sessionmaker[Session]) -> dict[str, dict[str, Any]]:
    with sessions() as s:
        rows = s.execute(select(DeviceRow)).scalars().all()
        return {
            r.id: {c: getattr(r, c) for c in DeviceRow.__table__.columns.keys()}  # noqa: SIM118
            for r in rows
        }


def test_each_device_gets_its_row_with_profile_location_and_inherited_department(
    sessions: sessionmaker[Session],
) -> None:
    registry = small_registry().with_device(
        Device(
            id="heat-9",
            profile="t-smoke",
            place="s1/b1/f1/z2",
            name="走廊",
            department="急诊科",
            installed=date(2024, 5, 1),
            tags=["corridor", "night"],
        )
    )
    sync_registry(sessions, registry, PROFILES)
    rows = devices(sessions)
    assert sorted(rows) == sorted(registry.devices)
    assert rows["smk-1-1"] == {
        "id": "smk-1-1",
        "profile": "t-smoke",
        "kind": "smoke",
        "system": "fire_alarm",
        "site": "s1",
        "building": "b1",
        "floor": "f1",
        "zone": "z1",
        "room": "r101",
        "place": "s1/b1/f1/z1/r101",
        "name": "",
        "department": "心内科",  # the zone's
        "responsible": "张三",
        "installed": None,
        "tags": [],
    }
    assert rows["heat-9"]["department"] == "急诊科"
    assert rows["heat-9"]["room"] == ""
    assert rows["heat-9"]["installed"] == "2024-05-01"
    assert rows["heat-9"]["tags"] == ["corridor", "night"]
    with sessions() as s:
        places = {p.path: (p.kind, p.parent, p.department) for p in s.execute(select(PlaceRow)).scalars()}
    assert places["s1/b1/f1/z1/r101"] == ("room", "s1/b1/f1/z1", "心内科")
    assert set(places) == set(registry.places)


def test_a_restart_with_the_same_registry_writes_nothing(sessions: sessionmaker[Session]) -> None:
    registry = small_registry(zones=3, smoke_per_zone=4)
    sync_registry(sessions, registry, PROFILES)
    before = devices(sessions)
    writes = Writes(sessions)
    sync_registry(sessions, small_registry(zones=3, smoke_per_zone=4), PROFILES)
    assert writes.statements == []
    assert devices(sessions) == before


def test_a_changed_registry_rewrites_only_the_devices_that_changed(sessions: sessionmaker[Session]) -> None:
    registry = small_registry(zones=3, smoke_per_zone=4)
    sync_registry(sessions, registry, PROFILES)
    before = devices(sessions)
    renamed = registry.devices["smk-2-2"].model_copy(update={"name": "护士站"})
    changed = (
        registry.replacing_device(renamed)
        .without_device("smk-3-1")
        .with_device(Device(id="smk-new", profile="t-smoke", place="s1/b1/f1/z1"))
    )
    writes = Writes(sessions)
    sync_registry(sessions, changed, PROFILES)  # as at a restart: against what the mirror holds
    assert writes.rows_inserted("devices") == 2  # the renamed one and the new one
    assert writes.rows_inserted("places") == 0
    after = devices(sessions)
    assert sorted(after) == sorted(changed.devices)
    assert after["smk-2-2"]["name"] == "护士站"
    assert after["smk-new"]["zone"] == "z1"
    assert {d: r for d, r in after.items() if d not in ("smk-2-2", "smk-new")} == {
        d: r for d, r in before.items() if d not in ("smk-2-2", "smk-3-1")
    }


def test_while_running_only_the_difference_to_the_previous_registry_is_written(
    sessions: sessionmaker[Session],
) -> None:
    registry = small_registry(zones=3, smoke_per_zone=4)
    sync_registry(sessions, registry, PROFILES)
    changed = registry.without_device("smk-1-1").with_device(
        Device(id="smk-new", profile="t-smoke", place="s1/b1/f1/z3/r301")
    )
    writes = Writes(sessions)
    sync_registry(sessions, changed, PROFILES, previous=registry)
    assert writes.rows_inserted("devices") == 1
    assert sorted(devices(sessions)) == sorted(changed.devices)
    # ...and the same result as a full sync of the new registry from scratch would give
    full = devices(sessions)
    sync_registry(sessions, changed, PROFILES)
    assert devices(sessions) == full


def test_registered_devices_leave_the_discovered_list(sessions: sessionmaker[Session]) -> None:
    registry: Registry = small_registry()
    with sessions.begin() as s:
        for d in ("smk-1-1", "stranger"):
            s.add(DiscoveredDeviceRow(device_id=d, site="s1", first_seen=1.0, last_seen=2.0, messages=3))
    sync_registry(sessions, registry, PROFILES)
    with sessions() as s:
        assert s.execute(select(DiscoveredDeviceRow.device_id)).scalars().all() == ["stranger"]


class Reads:
    """The SELECT statements sent to the store that read the mirror's rows."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.statements: list[str] = []
        event.listen(sessions.kw["bind"], "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        text = " ".join(statement.split()).upper()
        if text.startswith("SELECT") and (" FROM DEVICES" in text or " FROM PLACES" in text):
            self.statements.append(statement)


def test_a_restart_with_the_same_registry_reads_no_row_back(sessions: sessionmaker[Session]) -> None:
    registry = small_registry(zones=3, smoke_per_zone=4)
    assert sync_registry(sessions, registry, PROFILES).skipped is False
    assert stored_fingerprint(sessions) == fingerprint(registry, PROFILES)
    reads = Reads(sessions)
    synced = sync_registry(sessions, small_registry(zones=3, smoke_per_zone=4), PROFILES)
    assert synced.skipped
    assert reads.statements == []


def test_a_sync_stopped_half_way_leaves_no_fingerprint_and_the_next_one_completes_the_mirror(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage.registry_sync, "_CHUNK", 2)  # several transactions for a small registry
    registry = small_registry(zones=3, smoke_per_zone=4)
    stop = threading.Event()

    def stop_after_first_devices(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO DEVICES"):
            stop.set()

    event.listen(sessions.kw["bind"], "after_cursor_execute", stop_after_first_devices)
    stopped = sync_registry(sessions, registry, PROFILES, stop=stop)
    event.remove(sessions.kw["bind"], "after_cursor_execute", stop_after_first_devices)
    assert not stopped.complete
    assert stopped.written == len(registry.places) + 2  # every place, then one chunk of devices
    assert stored_fingerprint(sessions) is None
    assert len(devices(sessions)) == 2

    resumed = sync_registry(sessions, registry, PROFILES)
    assert resumed.complete
    assert not resumed.skipped
    assert resumed.written == len(registry.devices) - 2  # compared row by row: the rest written
    assert sorted(devices(sessions)) == sorted(registry.devices)
    assert stored_fingerprint(sessions) == fingerprint(registry, PROFILES)


def test_a_change_while_running_stores_the_new_registry_s_fingerprint(
    sessions: sessionmaker[Session],
) -> None:
    registry = small_registry(zones=3, smoke_per_zone=4)
    sync_registry(sessions, registry, PROFILES)
    before = devices(sessions)
    renamed = registry.replacing_device(registry.devices["smk-2-2"].model_copy(update={"name": "护士站"}))
    sync_registry(sessions, renamed, PROFILES, previous=registry)
    assert stored_fingerprint(sessions) == fingerprint(renamed, PROFILES) != fingerprint(registry, PROFILES)
    assert sync_registry(sessions, renamed, PROFILES).skipped
    # A restart with the registry of before (a change kept in memory only) writes it back.
    back = sync_registry(sessions, registry, PROFILES)
    assert not back.skipped
    assert (back.written, back.deleted) == (1, 1)
    assert devices(sessions) == before
