"""The bounded store of rejected messages, their totals by reason, and unregistered devices seen."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from storage.db import IMMEDIATE
from storage.marks import Mark
from storage.models import DiscoveredDeviceRow, RejectRow, RejectTotalRow


@dataclass(frozen=True, slots=True)
class RejectRecord:
    received: float
    topic: str
    payload: bytes
    reason: str
    detail: str
    device_id: str | None


class RejectStore:
    def __init__(self, sessions: sessionmaker[Session], capacity: int) -> None:
        self.sessions = sessions
        self.capacity = capacity

    def add(
        self,
        rejects: Sequence[RejectRecord],
        unknown: Sequence[tuple[str, str, float]],
        *,
        mark: Mark | None = None,
        now: float = 0.0,
    ) -> None:
        """Keep the raw rejects (oldest beyond capacity dropped), count them, list unknown devices;
        with `mark`, the journal entry they came from is marked recorded in the same transaction."""
        if not rejects and not unknown and mark is None:
            return
        with self.sessions.begin() as s:
            s.connection(execution_options=IMMEDIATE)  # read-modify-write: take the write lock at BEGIN
            s.add_all(
                RejectRow(
                    received=r.received,
                    topic=_text(r.topic, 1024),
                    payload=r.payload,
                    reason=r.reason,
                    detail=_text(r.detail, 1024),
                    device_id=_text(r.device_id, 64) if r.device_id is not None else None,
                )
                for r in rejects
            )
            for reason, n in Counter(r.reason for r in rejects).items():
                row = s.get(RejectTotalRow, reason, with_for_update=True)
                if row is None:
                    s.add(RejectTotalRow(reason=reason, count=n))
                else:
                    row.count += n
            s.flush()
            newest = s.scalar(select(func.max(RejectRow.id)))
            if newest is not None and newest > self.capacity:
                s.execute(delete(RejectRow).where(RejectRow.id <= newest - self.capacity))
            added = False
            for site, device_id, seen in unknown:
                key = _text(device_id, 200)
                d = s.get(DiscoveredDeviceRow, key)
                if d is None:
                    added = True
                    s.add(
                        DiscoveredDeviceRow(
                            device_id=key, site=_text(site, 200), first_seen=seen, last_seen=seen, messages=1
                        )
                    )
                else:
                    d.last_seen = max(d.last_seen, seen)
                    d.messages += 1
            if added:  # bounded like the rejects: a flood of made-up device ids keeps the newest
                s.flush()
                excess = (
                    s.scalar(select(func.count()).select_from(DiscoveredDeviceRow)) or 0
                ) - self.capacity
                if excess > 0:
                    oldest = (
                        select(DiscoveredDeviceRow.device_id)
                        .order_by(DiscoveredDeviceRow.last_seen)
                        .limit(excess)
                    )
                    s.execute(delete(DiscoveredDeviceRow).where(DiscoveredDeviceRow.device_id.in_(oldest)))
            if mark is not None:
                mark.write(s, now)


def _text(value: str, limit: int) -> str:
    """What a column of the state store can hold: PostgreSQL refuses NUL in text and a string over
    its column's length, and a reject must never fail its batch (the raw bytes keep the original)."""
    return value.replace("\x00", "\ufffd")[:limit]
