"""Record the local journal in the state store: in order, exactly once, and never stuck on one entry.

Each entry is applied in one state-store transaction together with its mark (storage/marks.py), then
deleted from the journal. A crash between the two leaves an entry that the mark says is recorded:
it is skipped. An entry that keeps failing for a reason other than the store being unreachable (a
bug, or data the store refuses) is split: its alarm events are applied one at a time, and one that
fails alone is set aside in the log with its content, so everything behind it is still recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from alarms.model import Transition
from alarms.service import AlarmService
from alarms.tickets import TicketChange
from alarms.unrecorded import UnrecordedAlarms
from core.domain import DetectorEvent
from firewatch.faults import is_unavailable
from firewatch.journal import EntryKind, decode_events, decode_rejects
from storage.marks import Mark, recorded_up_to
from storage.rejects import RejectStore
from storage.telemetry import JournalEntry
from storage.telemetry_api import Telemetry

logger = logging.getLogger(__name__)

ATTEMPTS_BEFORE_SPLIT = 2  # an entry that fails the same way twice is taken apart


@dataclass
class Drained:
    entries: int = 0  # journal entries taken out (recorded now, or found recorded before)
    event_entries: int = 0  # of which held alarm events
    events: list[DetectorEvent] = field(default_factory=list)  # alarm events recorded now


@dataclass
class RecorderStats:
    recorded: int = 0  # entries recorded
    set_aside: int = 0  # alarm events the store refused on their own (logged with their content)


class Recorder:
    def __init__(
        self,
        journal: Telemetry,
        alarms: AlarmService,
        rejects: RejectStore,
        unrecorded: UnrecordedAlarms,
        *,
        source: str,
        publish: Callable[[list[Transition], list[TicketChange]], None],
        clock: Callable[[], float],
    ) -> None:
        self.journal = journal
        self.alarms = alarms
        self.rejects = rejects
        self.unrecorded = unrecorded
        self.source = source
        self.publish = publish
        self.clock = clock
        self.stats = RecorderStats()
        self._failures: dict[int, int] = {}  # entry id -> failures other than an unreachable store
        self._done_up_to: int | None = None  # the store's mark, read once

    def pending(self) -> int:
        return self.journal.journal_size()[0]

    def probe(self) -> None:
        """Raise if the state store does not answer (blocking)."""
        recorded_up_to(self.alarms.sessions, self.source)

    def drain(self, limit: int = 100) -> Drained:
        """Record up to `limit` entries, oldest first (blocking). Raises when the store fails (the
        caller retries later): what was recorded before that stays recorded, and is in the
        exception's `drained` attribute."""
        out = Drained()
        try:
            if self._done_up_to is None:
                self._done_up_to = recorded_up_to(self.alarms.sessions, self.source)
            for entry in self.journal.journal(limit):
                if entry.id > self._done_up_to:  # else recorded already, before a crash kept it here
                    out.events += self._record(entry)
                    self._done_up_to = entry.id
                    self.stats.recorded += 1
                self.journal.journal_done([entry.id])
                self._failures.pop(entry.id, None)
                out.entries += 1
                out.event_entries += entry.kind == EntryKind.EVENTS
        except Exception as exc:
            exc.drained = out  # type: ignore[attr-defined]
            raise
        return out

    def _record(self, entry: JournalEntry) -> list[DetectorEvent]:
        mark = Mark(self.source, entry.id)
        if entry.kind == EntryKind.REJECTS:
            rejects, unknown = decode_rejects(entry.body)
            self._attempt(entry, lambda: self.rejects.add(rejects, unknown, mark=mark, now=self.clock()))
            return []
        events = decode_events(entry.body)
        try:
            transitions, tickets = self.alarms.apply(events, mark=mark)
        except Exception as exc:
            self._fail(entry, exc)
            logger.error("journal entry %d failed again (%s): recording its events one by one", entry.id, exc)
            transitions, tickets = self._one_by_one(events, mark)
        self.unrecorded.recorded(events)
        self.publish(transitions, tickets)
        return events

    def _fail(self, entry: JournalEntry, exc: Exception) -> None:
        """Re-raise `exc` unless it is the entry's second failure other than an unavailable store:
        then it returns, and the caller takes the entry apart."""
        if is_unavailable(exc):
            raise exc
        n = self._failures[entry.id] = self._failures.get(entry.id, 0) + 1
        if n < ATTEMPTS_BEFORE_SPLIT:
            raise exc

    def _attempt(self, entry: JournalEntry, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception as exc:
            self._fail(entry, exc)
            # Rejects are a record of bad input, not an alarm: one the store refuses is logged whole.
            logger.error(
                "journal entry %d (%s) refused by the state store, set aside: %s %r",
                entry.id,
                entry.kind,
                exc,
                entry.body[:2000],
            )
            self.alarms.apply([], mark=Mark(self.source, entry.id))

    def _one_by_one(
        self, events: list[DetectorEvent], mark: Mark
    ) -> tuple[list[Transition], list[TicketChange]]:
        transitions: list[Transition] = []
        tickets: list[TicketChange] = []
        for e in events:
            try:
                t, k = self.alarms.apply([e])
            except Exception as exc:
                if is_unavailable(exc):
                    raise
                self.stats.set_aside += 1
                logger.error("alarm event refused by the state store, set aside: %s: %r", exc, e)
                continue
            transitions += t
            tickets += k
        # Partly applied events would be applied again after a crash here: counted as repeats
        # (occurrences), never as a second raise, since an open alarm's key is unique.
        self.alarms.apply([], mark=mark)
        return transitions, tickets
