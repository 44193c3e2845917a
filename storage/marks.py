"""How far a local journal has been recorded in the state store (storage/models.JournalMarkRow)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, sessionmaker

from storage.cluster_models import PartitionMarkRow
from storage.models import JournalMarkRow


class TransactionMark(Protocol):
    """Something written in the transaction that records alarm events: how far they are recorded."""

    def write(self, s: Session, now: float) -> None: ...


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


@dataclass(frozen=True)
class PartitionMark:
    """Clustered (docs/scale.md): per engine partition, the last stream sequence among the messages
    whose alarm events this transaction records. A worker taking the partition over replays what
    follows its snapshot and raises no event of a message up to the mark again. Only rises."""

    seqs: Mapping[int, int]

    def write(self, s: Session, now: float) -> None:
        if not self.seqs:
            return
        rows = [{"partition": p, "alarm_seq": q} for p, q in sorted(self.seqs.items())]
        stmt = pg_insert(PartitionMarkRow).values(rows)
        s.execute(
            stmt.on_conflict_do_update(
                index_elements=[PartitionMarkRow.partition],
                set_={"alarm_seq": func.greatest(PartitionMarkRow.alarm_seq, stmt.excluded.alarm_seq)},
            )
        )
