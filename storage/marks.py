"""How far a local journal has been recorded in the state store (storage/models.JournalMarkRow)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from storage.models import JournalMarkRow


@dataclass(frozen=True)
class Mark:
    """Record `last_id` of journal `source` in the transaction that records the entry itself."""

    source: str
    last_id: int

    def write(self, s: Session, now: float) -> None:
        row = s.get(JournalMarkRow, self.source, with_for_update=True)
        if row is None:
            s.add(JournalMarkRow(source=self.source, last_id=self.last_id, updated=now))
        elif self.last_id > row.last_id:
            row.last_id, row.updated = self.last_id, now


def recorded_up_to(sessions: sessionmaker[Session], source: str) -> int:
    """The newest entry of `source` already recorded (0: none)."""
    with sessions() as s:
        row = s.get(JournalMarkRow, source)
        return row.last_id if row is not None else 0
