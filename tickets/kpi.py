"""KPIs of the hazard-rectification loop (隐患整改): how many hazards were found, how many were
rectified and how fast, how fast alarms were acknowledged, which devices raise false alarms.

Definitions (times are epoch seconds; a ticket is "found" when it is created):

Scope and time
  - Tickets in scope: created_at in [since, until) (an open bound when None), of the given site
    and department when those are given.
  - Alarms in scope: first raised (first_ts) in [since, until), with the same site and department
    filter (AlarmRow.site, AlarmRow.department).
  - as_of = min(until, now), or now when until is None. The report describes the state of the
    tickets and alarms in scope as of then: a ticket rectified after as_of counts as not rectified,
    so a report on a past month does not change as late rectifications trickle in. (False-alarm
    acknowledgements are the exception: alarms keep only their current count, not when each was
    recorded.)

Ticket figures (the same for the totals and for each department and category row)
  - found: tickets in scope.
  - rectified: rectified_at (the first rectification feedback, 整改) is set and <= as_of.
  - rectification_rate (整改率) = rectified / found; None when found == 0. The seed hospital's
    rule is 100 %: every hazard found is rectified.
  - on_time: rectified, with rectified_at <= deadline (整改时限).
  - on_time_rate (按时整改率) = on_time / rectified; None when rectified == 0.
  - rectified_late = rectified - on_time.
  - overdue (超期): not rectified as of as_of, and deadline < as_of: outstanding past its deadline.
    Computed from the deadline, not the ticket's `overdue` flag, so it holds for past periods too.
  - outstanding = found - rectified (overdue ones included).
  - closed: closed_at is set and <= as_of.
  - assigned: assigned_at is set and <= as_of.
  - mean_time_to_assign_s: mean of (assigned_at - created_at) over the assigned tickets.
  - mean_time_to_rectify_s: mean of (rectified_at - created_at) over the rectified tickets.
  Every mean is None when there is nothing to average.

Alarm figures (a drill's alarms are never in scope: docs/drills.md)
  - alarms: alarms in scope; false_alarms: the sum of their false-alarm acknowledgements
    (AlarmRow.false_alarms: one alarm acknowledged as false more than once counts each time).
  - alarms_acknowledged: acked_ts is set and <= as_of.
  - mean_time_to_acknowledge_s: mean of (acked_ts - first_ts) over the acknowledged alarms.

False alarms per device
  - Over the alarms in scope, per device_id: alarms, false_alarms (as above) and
    false_alarm_rate = false_alarms / alarms; most false alarms first, then most alarms, then device
    id; the first `top` devices (devices without false alarms are listed after those with some).

Breakdowns
  - by_department and by_category: the ticket figures per TicketRow.department (sorted by
    department name, "" for tickets without one) and per TicketRow.category (sorted by category).

Everything is counted by SQL aggregates (COUNT, SUM(CASE ...), AVG) grouped in the database, so a
report reads a handful of grouped rows, never the ledger itself; the statements are portable
(SQLite and PostgreSQL).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import ColumnElement, RowMapping, and_, case, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from storage.models import AlarmRow, TicketRow

DEFAULT_TOP = 20


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class TicketKpis(_Frozen):
    found: int
    rectified: int
    rectification_rate: float | None
    on_time: int
    on_time_rate: float | None
    rectified_late: int
    overdue: int
    outstanding: int
    closed: int
    assigned: int
    mean_time_to_assign_s: float | None
    mean_time_to_rectify_s: float | None


class DepartmentKpis(TicketKpis):
    department: str


class CategoryKpis(TicketKpis):
    category: str


class AlarmKpis(_Frozen):
    alarms: int
    false_alarms: int
    alarms_acknowledged: int
    mean_time_to_acknowledge_s: float | None


class DeviceFalseAlarms(_Frozen):
    device_id: str
    alarms: int
    false_alarms: int
    false_alarm_rate: float


class KpiReport(_Frozen):
    since: float | None
    until: float | None
    as_of: float
    site: str | None
    department: str | None
    tickets: TicketKpis
    alarms: AlarmKpis
    false_alarms_by_device: tuple[DeviceFalseAlarms, ...]
    by_department: tuple[DepartmentKpis, ...]
    by_category: tuple[CategoryKpis, ...]


def compute_kpis(
    session: Session,
    since: float | None,
    until: float | None,
    site: str | None,
    department: str | None,
    now: float,
    top: int = DEFAULT_TOP,
) -> KpiReport:
    """The KPIs of the tickets and alarms in scope, as of min(until, now) (definitions above)."""
    if since is not None and until is not None and since >= until:
        raise ValueError(f"since ({since}) must be before until ({until})")
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    as_of = now if until is None else min(until, now)

    tickets = _scope(
        TicketRow.created_at, TicketRow.site, TicketRow.department, since, until, site, department
    )
    columns = _ticket_columns(as_of)
    totals = session.execute(select(*columns).where(*tickets)).one()
    by_department = [
        DepartmentKpis(department=row.department, **_ticket_kpis(row._mapping))
        for row in session.execute(
            select(TicketRow.department, *columns).where(*tickets).group_by(TicketRow.department)
        )
    ]
    by_category = [
        CategoryKpis(category=row.category, **_ticket_kpis(row._mapping))
        for row in session.execute(
            select(TicketRow.category, *columns).where(*tickets).group_by(TicketRow.category)
        )
    ]

    alarms = _scope(AlarmRow.first_ts, AlarmRow.site, AlarmRow.department, since, until, site, department)
    alarms.append(AlarmRow.drill_id.is_(None))  # a drill's alarms are exercises (docs/drills.md)
    acknowledged = and_(AlarmRow.acked_ts.is_not(None), AlarmRow.acked_ts <= as_of)
    alarm_row = session.execute(
        select(
            func.count().label("alarms"),
            func.coalesce(func.sum(AlarmRow.false_alarms), 0).label("false_alarms"),
            _count_if(acknowledged).label("acknowledged"),
            func.avg(case((acknowledged, AlarmRow.acked_ts - AlarmRow.first_ts))).label("mtta"),
        ).where(*alarms)
    ).one()

    n_alarms = func.count().label("n_alarms")
    n_false = func.coalesce(func.sum(AlarmRow.false_alarms), 0).label("n_false")
    league = session.execute(
        select(AlarmRow.device_id, n_alarms, n_false)
        .where(*alarms)
        .group_by(AlarmRow.device_id)
        # Ties at the `top`-th place are cut in the database's collation of device ids; the rows
        # returned are re-sorted below so that their order is the same on every database.
        .order_by(n_false.desc(), n_alarms.desc(), AlarmRow.device_id)
        .limit(top)
    ).all()
    devices = sorted(
        (
            DeviceFalseAlarms(
                device_id=device_id,
                alarms=int(n),
                false_alarms=int(f),
                false_alarm_rate=int(f) / int(n),
            )
            for device_id, n, f in league
        ),
        key=lambda d: (-d.false_alarms, -d.alarms, d.device_id),
    )

    return KpiReport(
        since=since,
        until=until,
        as_of=as_of,
        site=site,
        department=department,
        tickets=TicketKpis(**_ticket_kpis(totals._mapping)),
        alarms=AlarmKpis(
            alarms=int(alarm_row.alarms),
            false_alarms=int(alarm_row.false_alarms),
            alarms_acknowledged=int(alarm_row.acknowledged),
            mean_time_to_acknowledge_s=_float_or_none(alarm_row.mtta),
        ),
        false_alarms_by_device=tuple(devices),
        # Sorted here, not in SQL: database collations order Chinese names differently
        # (PostgreSQL's locale vs SQLite's code points); Python's order is the same everywhere.
        by_department=tuple(sorted(by_department, key=lambda d: d.department)),
        by_category=tuple(sorted(by_category, key=lambda c: c.category)),
    )


def _scope(
    found: InstrumentedAttribute[float],
    site_col: InstrumentedAttribute[str],
    department_col: InstrumentedAttribute[str],
    since: float | None,
    until: float | None,
    site: str | None,
    department: str | None,
) -> list[ColumnElement[bool]]:
    """The period [since, until) on when a row was found, and the site and department filters."""
    where: list[ColumnElement[bool]] = []
    if since is not None:
        where.append(found >= since)
    if until is not None:
        where.append(found < until)
    if site is not None:
        where.append(site_col == site)
    if department is not None:
        where.append(department_col == department)
    return where


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    # SUM over no rows is NULL, hence the COALESCE.
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _ticket_columns(as_of: float) -> list[ColumnElement[Any]]:
    """The aggregate columns of the ticket figures; rates are derived from them in Python."""
    rectified = and_(TicketRow.rectified_at.is_not(None), TicketRow.rectified_at <= as_of)
    on_time = and_(rectified, TicketRow.rectified_at <= TicketRow.deadline)
    overdue = and_(
        or_(TicketRow.rectified_at.is_(None), TicketRow.rectified_at > as_of), TicketRow.deadline < as_of
    )
    closed = and_(TicketRow.closed_at.is_not(None), TicketRow.closed_at <= as_of)
    assigned = and_(TicketRow.assigned_at.is_not(None), TicketRow.assigned_at <= as_of)
    return [
        func.count().label("found"),
        _count_if(rectified).label("rectified"),
        _count_if(on_time).label("on_time"),
        _count_if(overdue).label("overdue"),
        _count_if(closed).label("closed"),
        _count_if(assigned).label("assigned"),
        # AVG skips NULLs: CASE without ELSE leaves the tickets that do not qualify out of the mean.
        func.avg(case((assigned, TicketRow.assigned_at - TicketRow.created_at))).label("mtta"),
        func.avg(case((rectified, TicketRow.rectified_at - TicketRow.created_at))).label("mttr"),
    ]


def _ticket_kpis(row: RowMapping) -> dict[str, Any]:
    found, rectified, on_time = int(row["found"]), int(row["rectified"]), int(row["on_time"])
    return {
        "found": found,
        "rectified": rectified,
        "rectification_rate": _ratio(rectified, found),
        "on_time": on_time,
        "on_time_rate": _ratio(on_time, rectified),
        "rectified_late": rectified - on_time,
        "overdue": int(row["overdue"]),
        "outstanding": found - rectified,
        "closed": int(row["closed"]),
        "assigned": int(row["assigned"]),
        "mean_time_to_assign_s": _float_or_none(row["mtta"]),
        "mean_time_to_rectify_s": _float_or_none(row["mttr"]),
    }


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _float_or_none(value: Any) -> float | None:
    # PostgreSQL may answer AVG with a Decimal; the report speaks floats.
    return None if value is None else float(value)
