"""Drills (演练) declared and ended by people: kept in the state store, audited, and held by the alarm
service as values (alarms/drills.py) so that tagging an alarm costs no read on the alarm path."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from alarms.drills import DRILL_AHEAD_MAX_S, DRILL_MAX_S, DrillScope, recipient_routes
from alarms.service import AlarmService, IncidentStep
from core.settings import PushRoute
from storage.db import IMMEDIATE
from storage.drill_models import DrillRow
from storage.models import AuditRow, IncidentRow


class DrillError(ValueError):
    """A drill cannot be declared or ended as asked; the message says why."""


class DrillNotFoundError(LookupError):
    pass


def effective_end(row: DrillRow) -> float:
    """When the drill's window closes: as declared, or when it was ended early."""
    return row.end_ts if row.ended_ts is None else min(row.end_ts, row.ended_ts)


class DrillService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        alarms: AlarmService,
        routes: Sequence[PushRoute],
        on_routes: Callable[[list[PushRoute]], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.alarms = alarms
        self.routes = list(routes)  # the configured push routes (and the alarm topic, when on)
        if sessions.kw["bind"].dialect.name == "postgresql":
            # Several workers may share the database (docs/scale.md): a drill declared or ended
            # through another worker's API must tag (or stop tagging) this worker's alarms at once,
            # so a batch that raises a fire-side alarm reads the drills in force (one small read)
            # instead of trusting the values refreshed here. A real fire tagged as a stale drill's
            # would reach the drill's recipients instead of the people on duty.
            # The drill's recipients come with it: one declared elsewhere since this worker's last
            # refresh has its routes learnt in that same read, so its incident reaches them too.
            alarms.drill_reader = self._read_in_force
        # Told of the routes every drill's Apprise URLs need (the dispatcher adds their channels).
        self.on_routes = on_routes

    # --- what the alarm path holds ----------------------------------------------------------------
    def refresh(self) -> None:
        """Hand the alarm service the drills not yet over (as values), and every drill's recipient
        routes (a drill's incident may outlive its window)."""
        now = self.alarms.clock()
        with self.sessions() as s:
            rows = s.scalars(select(DrillRow).order_by(DrillRow.id)).all()
        scopes = _in_force(rows, now)
        routes = self._routes_of(rows)
        self.alarms.incidents.drill_routes = routes  # one assignment each: read whole by the writer
        self.alarms.drills = scopes

    def _routes_of(self, rows: Sequence[DrillRow]) -> dict[int, list[PushRoute]]:
        """Each drill's recipient routes; the dispatcher is told of those it must add a channel for."""
        routes = {r.id: recipient_routes(r.id, r.routes, r.urls, self.routes) for r in rows}
        if self.on_routes is not None:
            configured = {r.name for r in self.routes}
            self.on_routes([r for rs in routes.values() for r in rs if r.name not in configured])
        return routes

    def _read_in_force(self, s: Session, now: float) -> tuple[DrillScope, ...]:
        """The drills in force, read in the alarm write's own transaction; the recipient routes of a
        drill not known here yet (declared through another worker's API since this one's last
        refresh) are learnt from the same rows."""
        rows = _rows_in_force(s, now)
        known = self.alarms.incidents.drill_routes
        unseen = [r for r in rows if r.id not in known]
        if unseen:
            self.alarms.incidents.drill_routes = {**known, **self._routes_of(unseen)}
        return _in_force(rows, now)

    # --- people's actions --------------------------------------------------------------------------
    def declare(
        self,
        *,
        name: str,
        places: Sequence[str],
        start: float | None,
        end: float,
        routes: Sequence[str],
        urls: Sequence[str],
        note: str,
        actor: str,
    ) -> DrillRow:
        now = self.alarms.clock()
        begin = now if start is None else start
        self._check(places, begin, end, routes, urls, now)
        with self.sessions.begin() as s:
            row = DrillRow(
                name=name,
                site=places[0].split("/")[0],
                places=list(dict.fromkeys(places)),
                start_ts=begin,
                end_ts=end,
                routes=list(dict.fromkeys(routes)),
                urls=list(dict.fromkeys(urls)),
                note=note,
                created_by=actor,
                created_ts=now,
                ended_ts=None,
                ended_by=None,
                end_note="",
            )
            s.add(row)
            s.flush()
            _audit(s, actor, "drill.declare", row, now)
        self.refresh()
        return row

    def _check(
        self,
        places: Sequence[str],
        start: float,
        end: float,
        routes: Sequence[str],
        urls: Sequence[str],
        now: float,
    ) -> None:
        if not places:
            raise DrillError("a drill needs at least one place")
        known = self.alarms.index.place_names
        unknown = [p for p in places if p not in known]
        if unknown:
            raise DrillError(f"unknown places: {', '.join(unknown[:10])}")
        sites = {p.split("/")[0] for p in places}
        if len(sites) > 1:
            raise DrillError(f"a drill's places are in one site, not {len(sites)}")
        if end <= start:
            raise DrillError("the drill must end after it starts")
        if end - start > DRILL_MAX_S:
            raise DrillError(f"a drill lasts at most {DRILL_MAX_S / 3600:g} hours")
        if end <= now:
            raise DrillError("the drill's window is already over")
        if start > now + DRILL_AHEAD_MAX_S:
            raise DrillError(f"a drill is declared at most {DRILL_AHEAD_MAX_S / 86400:g} days ahead")
        configured = {r.name for r in self.routes}
        missing = [r for r in routes if r not in configured]
        if missing:
            raise DrillError(f"unknown push routes: {', '.join(missing[:10])}")
        import apprise  # as the dispatcher does: only where a URL is checked

        for n, url in enumerate(urls):
            if not apprise.Apprise().add(url):
                raise DrillError(f"recipient URL {n + 1} is not a URL Apprise understands")

    def end(self, drill_id: int, *, actor: str, note: str = "") -> DrillRow:
        """End a drill now (before it starts: cancel it). Alarms raised from now on are real; its
        incidents still open stay its own, on the board until reset (docs/drills.md)."""
        now = self.alarms.clock()
        with self.sessions.begin() as s:
            # Read, then write: on SQLite the write lock is taken at BEGIN, so another writer
            # committing between the two cannot fail this with "database is locked".
            s.connection(execution_options=IMMEDIATE)
            row = s.get(DrillRow, drill_id, with_for_update=True)
            if row is None:
                raise DrillNotFoundError(f"drill {drill_id} does not exist")
            if row.ended_ts is not None or row.end_ts <= now:
                raise DrillError(f"drill {drill_id} is already over")
            row.ended_ts, row.ended_by, row.end_note = now, actor, note
            _audit(s, actor, "drill.end", row, now)
        self.refresh()
        return row

    def real_fire(self, incident_id: int, *, actor: str, note: str = "") -> IncidentStep:
        """这是真实火警: the incident leaves its drill (AlarmService.take_out_of_drill: told at once to
        the people on duty as a fire) and the drill ends, if it is still running: with a real fire
        in its places, every alarm from now on must be real."""
        with self.sessions() as s:
            drill_id = s.scalar(select(IncidentRow.drill_id).where(IncidentRow.id == incident_id))
        # The drill ends first: from that moment every alarm in its places is real, even if taking
        # this incident out fails (the person is told and tries again; the drill stays over).
        if drill_id is not None:
            with contextlib.suppress(DrillError, DrillNotFoundError):  # already over
                self.end(drill_id, actor=actor, note=f"事件 #{incident_id} 确认为真实火警")
        return self.alarms.take_out_of_drill(incident_id, actor=actor, note=note)


def _in_force(rows: Sequence[DrillRow], now: float) -> tuple[DrillScope, ...]:
    """The drills not yet over at `now`, as the alarm path holds them, in declaration order."""
    return tuple(
        DrillScope(r.id, tuple(r.places), r.start_ts, effective_end(r))
        for r in rows
        if effective_end(r) > now
    )


def _rows_in_force(s: Session, now: float) -> Sequence[DrillRow]:
    """The drills not yet over, read in the alarm write's own transaction (AlarmService.drill_reader)."""
    return s.scalars(
        select(DrillRow)
        .where(DrillRow.end_ts > now, (DrillRow.ended_ts.is_(None)) | (DrillRow.ended_ts > now))
        .order_by(DrillRow.id)
    ).all()


def _audit(s: Session, actor: str, action: str, row: DrillRow, now: float) -> None:
    s.add(
        AuditRow(
            ts=now,
            actor=actor,
            action=action,
            subject=f"drill:{row.id}",
            detail={
                "name": row.name,
                "places": list(row.places),
                "start_ts": row.start_ts,
                "end_ts": row.end_ts,
                "routes": list(row.routes),
                "urls": len(row.urls),  # secrets: how many, never which
                "note": row.end_note if row.ended_ts is not None else row.note,
            },
        )
    )
