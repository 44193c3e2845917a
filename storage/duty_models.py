"""Tables of the control room's duty records (GB 25506-2010 asks for duty and handover records):
the duty log (值班记录) and the handovers (交接班) with the snapshot each took. Times are epoch
seconds on the service's clock, as in storage/models.py."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base


class DutyLogRow(Base):
    """One entry of the duty log: written by a person on duty, or by the service at a handover."""

    __tablename__ = "duty_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[float] = mapped_column(Float, index=True)  # the service's clock when written
    kind: Mapped[str] = mapped_column(String(16), index=True)  # alarms.duty_log.DutyLogKind
    text: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(100), index=True)  # the user name
    author_name: Mapped[str] = mapped_column(String(100), default="")  # their signature (display name)
    handover_id: Mapped[int | None] = mapped_column(Integer, index=True)  # written at this handover


class HandoverRow(Base):
    """One handover (交接班): the outgoing person's start with the snapshot of what was open then,
    and the incoming person's countersignature. Once countersigned it never changes."""

    __tablename__ = "handovers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    shift_start: Mapped[float] = mapped_column(Float)  # the window of the shift handed over
    started_ts: Mapped[float] = mapped_column(Float, index=True)  # the outgoing person signed then
    outgoing: Mapped[str] = mapped_column(String(100))
    outgoing_name: Mapped[str] = mapped_column(String(100), default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    incoming_expected: Mapped[str | None] = mapped_column(String(100))  # named at the start, if any
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)  # as taken at the start, never recomputed
    incoming: Mapped[str | None] = mapped_column(String(100))
    incoming_name: Mapped[str | None] = mapped_column(String(100))
    countersigned_ts: Mapped[float | None] = mapped_column(Float, index=True)
    countersigned_via: Mapped[str | None] = mapped_column(String(16))  # password or session
    incoming_note: Mapped[str] = mapped_column(Text, default="")
