"""Telemetry-backed re-inspection (DESIGN §5): a ticket opened by a device condition is marked ready
for verification once every alarm linked to it has stayed inactive for `tickets.normal_for_s`, with
the device's readings over that time attached as evidence. A person still signs it off: readiness
only tells the safety office that the data supports verifying it.

No readings at all over the quiet period is not evidence of normality (a silent device raises no
alarm of its own until it is declared offline), so such a ticket is not marked ready.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from alarms.tickets import AUTO_INSPECTOR, log_event
from alarms.type_names import channel_unit, channel_zh
from core.domain import ACTIVE_STATES, TicketAction, TicketSource, TicketStatus
from storage.models import AlarmRow, TicketAlarmRow, TicketEvidenceRow, TicketRow
from storage.telemetry_api import Telemetry

if TYPE_CHECKING:
    from tickets.service import TicketService

# Tickets still waiting for someone to finish the loop; verified ones need no more evidence.
WAITING = (
    TicketStatus.OPEN.value,
    TicketStatus.ASSIGNED.value,
    TicketStatus.RECTIFYING.value,
    TicketStatus.RECTIFIED.value,
)
BUCKETS = 96  # the evidence table's rows per channel: e.g. 15-minute buckets over 24 h
BATCH = 200  # tickets examined per tick, oldest first: the tick stays short on a large ledger


@dataclass(frozen=True)
class Candidate:
    ticket_id: int
    device_id: str
    normal_since: float  # the last linked alarm's clear (or its last occurrence)


def candidates(s: Session, now: float, normal_for_s: float) -> list[Candidate]:
    """Device tickets from alarms, not yet ready, whose linked alarms are all inactive and have been
    for long enough."""
    linked = (
        select(
            TicketAlarmRow.ticket_id,
            func.max(func.coalesce(AlarmRow.cleared_ts, AlarmRow.last_ts)).label("since"),
            func.sum(case((AlarmRow.state.in_(ACTIVE_STATES), 1), else_=0)).label("active"),
        )
        .join(AlarmRow, AlarmRow.id == TicketAlarmRow.alarm_id)
        .group_by(TicketAlarmRow.ticket_id)
        .subquery()
    )
    rows = s.execute(
        select(TicketRow.id, TicketRow.device_id, linked.c.since)
        .join(linked, linked.c.ticket_id == TicketRow.id)
        .where(
            TicketRow.source == TicketSource.ALARM.value,
            TicketRow.device_id.is_not(None),
            TicketRow.status.in_(WAITING),
            TicketRow.ready_at.is_(None),
            linked.c.active == 0,
            linked.c.since <= now - normal_for_s,
        )
        .order_by(TicketRow.id)
        .limit(BATCH)
    ).all()
    return [Candidate(int(i), str(d), float(since)) for i, d, since in rows]


def evidence_csv(
    telemetry: Telemetry, device_id: str, channels: list[str], start: float, end: float
) -> tuple[bytes, list[str]]:
    """The readings of [start, end) as min/max/mean per bucket and channel (UTF-8 CSV with BOM, so a
    spreadsheet on Chinese Windows opens it), and one summary line per channel with data."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["通道 channel", "时间 time", "最小 min", "最大 max", "平均 mean", "读数 readings"])
    summary: list[str] = []
    for channel in channels:
        h = telemetry.history(device_id, channel, start, end, buckets=BUCKETS)
        if len(h.ts) == 0 or h.min is None or h.max is None or h.count is None:
            continue
        for ts, b_lo, b_hi, mean, b_n in zip(h.ts, h.min, h.max, h.value, h.count, strict=True):
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(ts)))
            writer.writerow([channel, when, f"{b_lo:.4g}", f"{b_hi:.4g}", f"{mean:.4g}", int(b_n)])
        lo, hi, n = float(np.min(h.min)), float(np.max(h.max)), int(np.sum(h.count))
        unit = f" {channel_unit(channel)}" if channel_unit(channel) else ""
        summary.append(f"{channel_zh(channel) or channel} {lo:.4g}–{hi:.4g}{unit}（{n} 个读数）")
    return ("\ufeff" + out.getvalue()).encode("utf-8"), summary


def mark_ready(service: TicketService, telemetry: Telemetry, now: float) -> int:
    """One pass: mark the tickets whose condition stayed normal; returns how many were marked."""
    normal_for = service.policy.normal_for_s
    with service.sessions() as s:
        found = candidates(s, now, normal_for)
    marked = 0
    for c in found:
        dev = service.index.dev_of.get(c.device_id)
        if dev is None:
            continue
        channels = list(service.index.channel_offsets[dev])
        start = max(c.normal_since, now - normal_for)
        data, summary = evidence_csv(telemetry, c.device_id, channels, start, now)
        if not summary:
            continue  # no readings: nothing shows the device is normal
        marked += service.write(
            functools.partial(_mark, c=c, data=data, summary=summary, start=start, now=now)
        )
    return marked


def _mark(s: Session, c: Candidate, data: bytes, summary: list[str], start: float, now: float) -> int:
    t = s.scalars(select(TicketRow).where(TicketRow.id == c.ticket_id).with_for_update()).first()
    if t is None or t.ready_at is not None or t.status not in WAITING:
        return 0  # a person got there first
    hours = (now - start) / 3600.0
    note = f"报警已恢复并持续正常 {hours:.1f} 小时，具备复检条件（需人工签字确认）：" + "；".join(summary)
    s.add(
        TicketEvidenceRow(
            ticket_id=t.id,
            ts=now,
            uploaded_by=AUTO_INSPECTOR,
            filename=f"{t.number}-readings.csv",
            content_type="text/csv; charset=utf-8",
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            note=note,
            data=data,
        )
    )
    t.ready_at = now
    log_event(s, t, TicketAction.READY, now, note)
    return 1
