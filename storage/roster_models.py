"""Tables of the duty roster (值班表, docs/duty.md): people's push addresses, shifts and who is on
them in which duty role. Kept apart from storage/models.py; imported at its end so that every user
of `Base.metadata` (migrations, the schema test) sees them."""

from __future__ import annotations

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base


class ContactRow(Base):
    """How to reach a person on duty: Apprise URLs (secrets, like a push route's url) and a phone."""

    __tablename__ = "person_contacts"
    user: Mapped[str] = mapped_column(String(64), ForeignKey("users.name"), primary_key=True)
    phone: Mapped[str] = mapped_column(String(32), default="")
    addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_ts: Mapped[float] = mapped_column(Float)
    updated_by: Mapped[str] = mapped_column(String(100), default="")


class ShiftRow(Base):
    """One shift (班次) of the roster, on the service clock: [start_ts, end_ts)."""

    __tablename__ = "roster_shifts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(32))
    start_ts: Mapped[float] = mapped_column(Float, index=True)
    end_ts: Mapped[float] = mapped_column(Float, index=True)
    note: Mapped[str] = mapped_column(String(200), default="")
    updated_ts: Mapped[float] = mapped_column(Float)
    updated_by: Mapped[str] = mapped_column(String(100), default="")


class ShiftMemberRow(Base):
    """A person on a shift in one duty role (control_room, micro_fire_station, leader_on_call or a
    site's own). A person is on a shift at most once (the unique constraint)."""

    __tablename__ = "roster_members"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    shift_id: Mapped[int] = mapped_column(ForeignKey("roster_shifts.id", ondelete="CASCADE"), index=True)
    user: Mapped[str] = mapped_column(String(64), ForeignKey("users.name"))
    role: Mapped[str] = mapped_column(String(64))

    __table_args__ = (UniqueConstraint("shift_id", "user", name="uq_roster_members_shift_user"),)
