"""The incident search: the filters `GET /api/v1/incidents` takes (the board's and the history
search's), shared with the search's spreadsheet export (api/routes/incident_exports.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query
from sqlalchemy import Select, case, select

from api.history_filters import Order, PlacePath, Text, TimeOrder, in_subtree, mentions
from core.domain import (
    CATEGORY_RANK,
    AlarmCategory,
    FalseAlarmCause,
    IncidentKind,
    IncidentState,
    Verification,
)
from storage.models import AlarmRow, IncidentRow

_rank = case({c.value: r for c, r in CATEGORY_RANK.items()}, value=IncidentRow.category, else_=9)
_closed = case((IncidentRow.state == IncidentState.CLOSED.value, 1), else_=0)
_acked = case((IncidentRow.acked_ts.is_(None), 0), else_=1)


class IncidentSearch:
    def __init__(
        self,
        site: Annotated[str | None, Query(max_length=64)] = None,
        kind: IncidentKind | None = None,
        state: IncidentState | None = None,
        open: Annotated[bool | None, Query(description="true: not closed; false: closed")] = None,
        since: Annotated[float | None, Query(ge=0, le=1e11, description="last alarm at or after")] = None,
        until: Annotated[float | None, Query(ge=0, le=1e11, description="first alarm before")] = None,
        category: Annotated[AlarmCategory | None, Query(description="its worst alarm's category")] = None,
        verification: Verification | None = None,
        cause: Annotated[FalseAlarmCause | None, Query(description="a false alarm's cause")] = None,
        place: PlacePath = None,
        device_id: Annotated[
            str | None, Query(min_length=1, max_length=64, description="one of its alarms is this device's")
        ] = None,
        q: Text = None,
        order: Order = None,
    ) -> None:
        self.site, self.kind, self.state, self.open = site, kind, state, open
        self.since, self.until, self.category = since, until, category
        self.verification, self.cause, self.place, self.device_id = verification, cause, place, device_id
        self.q, self.order = q, order

    def query(self) -> Select[Any]:
        """The matching incidents, in the order asked for (the board's order by default)."""
        rows = select(IncidentRow)
        for column, value in (
            (IncidentRow.site, self.site),
            (IncidentRow.kind, self.kind),
            (IncidentRow.state, self.state),
            (IncidentRow.category, self.category),
            (IncidentRow.verification, self.verification),
            (IncidentRow.cause, self.cause),
        ):
            if value is not None:
                rows = rows.where(column == str(value))
        if self.open is not None:
            closed = IncidentRow.state == IncidentState.CLOSED.value
            rows = rows.where(~closed if self.open else closed)
        if self.since is not None:
            rows = rows.where(IncidentRow.last_ts >= self.since)
        if self.until is not None:
            rows = rows.where(IncidentRow.first_ts < self.until)
        if self.place is not None:
            below = select(AlarmRow.incident_id).where(in_subtree(AlarmRow.place, self.place))
            rows = rows.where(in_subtree(IncidentRow.place, self.place) | IncidentRow.id.in_(below))
        if self.device_id is not None:
            of_device = select(AlarmRow.incident_id).where(AlarmRow.device_id == self.device_id)
            rows = rows.where(IncidentRow.id.in_(of_device))
        if self.q is not None:
            noted = select(AlarmRow.incident_id).where(mentions(self.q, AlarmRow.detail, AlarmRow.ack_note))
            rows = rows.where(
                mentions(self.q, IncidentRow.ack_note, IncidentRow.verdict_note, IncidentRow.call_119_note)
                | IncidentRow.id.in_(noted)
            )
        if self.order is TimeOrder.NEWEST:
            return rows.order_by(IncidentRow.first_ts.desc(), IncidentRow.id.desc())
        if self.order is TimeOrder.OLDEST:
            return rows.order_by(IncidentRow.first_ts, IncidentRow.id)
        age = case(
            (IncidentRow.state == IncidentState.CLOSED.value, -IncidentRow.first_ts),
            else_=IncidentRow.first_ts,
        )
        return rows.order_by(_closed, _acked, _rank, age, IncidentRow.id)


Search = Annotated[IncidentSearch, Depends()]
