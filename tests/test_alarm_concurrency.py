"""Race-free upserts: raises for one key from writers that share nothing but the database never
make two alarms, and every occurrence is counted. Run on SQLite and on a private PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from alarms.service import AlarmService
from alarms.tickets import TicketOpener
from core.domain import AlarmCategory, DetectorEvent, DetectorEventKind
from core.settings import TicketPolicy
from ingest.index import DeviceIndex
from storage.db import open_store
from storage.models import AlarmEventRow, AlarmRow, TicketRow
from tests.conftest import PROFILES, small_registry

T0 = 1_800_000_000.0
WRITERS = 6  # two processes' worth of services, three threads each
RAISES_EACH = 15


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def raise_event(alarm_type: str, category: AlarmCategory, n: int) -> DetectorEvent:
    return DetectorEvent(
        "smk-1-1", alarm_type, DetectorEventKind.RAISE, category, T0 + n * 0.001, 0.2 + n * 0.001
    )


def hammer(store_url: str, alarm_type: str, category: AlarmCategory) -> list[AlarmService]:
    """Each writer has its own engine and its own service (so no in-process lock is shared) and
    raises the same key as fast as it can, all starting at once."""
    index = DeviceIndex.build(small_registry(), PROFILES)
    services = []
    for _ in range(WRITERS):
        _, sessions = open_store(store_url)
        services.append(AlarmService(sessions, index, TicketOpener(index, TicketPolicy()), lambda: T0))
    start = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def writer(service: AlarmService, w: int) -> None:
        try:
            start.wait()
            for i in range(RAISES_EACH):
                service.apply([raise_event(alarm_type, category, w * RAISES_EACH + i)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s, w)) for w, s in enumerate(services)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return services


def test_concurrent_raises_of_one_key_make_one_alarm_counting_every_occurrence(store_url: str) -> None:
    services = hammer(store_url, "smoke.alarm", AlarmCategory.FIRE)
    with services[0].sessions() as s:
        alarms = s.scalars(select(AlarmRow)).all()
        actions = s.execute(select(AlarmEventRow.action, func.count()).group_by(AlarmEventRow.action)).all()
    assert len(alarms) == 1
    assert alarms[0].occurrences == WRITERS * RAISES_EACH
    assert dict(actions) == {"raised": 1, "repeated": WRITERS * RAISES_EACH - 1}
    assert alarms[0].peak == pytest.approx(0.2 + (WRITERS * RAISES_EACH - 1) * 0.001)


def test_concurrent_fault_raises_open_one_ticket(store_url: str) -> None:
    services = hammer(store_url, "device.fault", AlarmCategory.FAULT)
    with services[0].sessions() as s:
        assert s.scalar(select(func.count()).select_from(AlarmRow)) == 1
        assert s.scalar(select(func.count()).select_from(TicketRow)) == 1
