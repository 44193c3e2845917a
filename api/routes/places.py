"""Places (site > building > floor > zone > room), each with the worst active alarm below it.

The status is computed per request from the active alarms (few, even in a bad hour) by
`alarms.propagation.propagate`; gas alarms are reported apart from fire-side alarms.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from alarms.propagation import AlarmRecord, PlaceStatus, propagate
from api.auth import READING
from api.deps import MIRRORED, DbSession, PageParams
from api.place_schemas import PlaceDetailOut, PlaceOut, PlaceStatusOut
from api.problems import responses
from api.schemas import Page
from core.domain import ACTIVE_STATES, AlarmCategory, AlarmState, Severity
from core.registry import ID_RE, PlaceKind
from storage.models import AlarmRow, PlaceRow

router = APIRouter(
    prefix="/places", tags=["places"], dependencies=[READING, MIRRORED], responses=responses(401, 403, 503)
)

_SEGMENT = ID_RE.removeprefix("^").removesuffix("$")
PLACE_PATH_RE = rf"^{_SEGMENT}(/{_SEGMENT}){{0,4}}$"  # site[/building[/floor[/zone[/room]]]]


def _active_alarms(db: Session, where: ColumnElement[bool]) -> list[AlarmRecord]:
    rows = db.execute(
        select(
            AlarmRow.id,
            AlarmRow.device_id,
            AlarmRow.alarm_type,
            AlarmRow.category,
            AlarmRow.severity,
            AlarmRow.system,
            AlarmRow.place,
            AlarmRow.state,
            AlarmRow.first_ts,
        ).where(AlarmRow.state.in_(ACTIVE_STATES), where)
    ).all()
    return [
        AlarmRecord(
            id=r.id,
            device_id=r.device_id,
            alarm_type=r.alarm_type,
            category=AlarmCategory(r.category),
            severity=Severity(r.severity),
            system=r.system,
            place=r.place,
            state=AlarmState(r.state),
            first_ts=r.first_ts,
        )
        for r in rows
    ]


def _out(row: PlaceRow, status: PlaceStatus) -> PlaceOut:
    return PlaceOut(
        path=row.path,
        kind=PlaceKind(row.kind),
        site=row.site,
        name=row.name,
        parent=row.parent,
        department=row.department,
        status=PlaceStatusOut.of(status),
    )


def _statuses(db: Session, rows: Iterable[PlaceRow], where: ColumnElement[bool]) -> dict[str, PlaceStatus]:
    return propagate((r.path for r in rows), _active_alarms(db, where))


@router.get("", operation_id="list_places")
def list_places(
    db: DbSession,
    page: PageParams,
    site: Annotated[str | None, Query(pattern=ID_RE, description="site id")] = None,
    kind: Annotated[PlaceKind | None, Query(description="site, building, floor, zone or room")] = None,
) -> Page[PlaceOut]:
    """Places in tree order (by path), each with the worst active alarm at or below it, the worst
    gas alarm apart, and active alarm counts by category."""
    q = select(PlaceRow)
    if site is not None:
        q = q.where(PlaceRow.site == site)
    if kind is not None:
        q = q.where(PlaceRow.kind == kind.value)
    total = db.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = db.scalars(q.order_by(PlaceRow.path).limit(page.limit).offset(page.offset)).all()
    sites = sorted({r.site for r in rows})
    statuses = _statuses(db, rows, AlarmRow.site.in_(sites)) if rows else {}
    return Page(
        items=[_out(r, statuses[r.path]) for r in rows], total=total, limit=page.limit, offset=page.offset
    )


@router.get("/{path:path}", operation_id="get_place", responses=responses(404))
def get_place(
    db: DbSession,
    path: Annotated[
        str,
        Path(
            max_length=400,
            pattern=PLACE_PATH_RE,
            description="place path, e.g. sxzyy/b1/f3/z2 (slashes unescaped)",
        ),
    ],
) -> PlaceDetailOut:
    """One place with its status and the status of each place one level down."""
    row = db.get(PlaceRow, path)
    if row is None:
        raise HTTPException(404, f"place {path!r} is not in the place tree")
    children = db.scalars(select(PlaceRow).where(PlaceRow.parent == path).order_by(PlaceRow.path)).all()
    below = or_(AlarmRow.place == path, AlarmRow.place.startswith(f"{path}/", autoescape=True))
    statuses = _statuses(db, [row, *children], (AlarmRow.site == row.site) & below)
    place = _out(row, statuses[row.path])
    return PlaceDetailOut(**place.model_dump(), children=[_out(c, statuses[c.path]) for c in children])
