"""The drills table (演练): declared fire drills and tests, whose alarms are tagged (docs/drills.md).

A table of its own module, as the duty tables are: storage/models.py keeps the alarm path's tables.
"""

from __future__ import annotations

from sqlalchemy import JSON, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base


class DrillRow(Base):
    """One drill: where (place paths, each covering everything under it), when (a window on the
    service clock), who hears its alarms instead of the duty routes, and how it ended."""

    __tablename__ = "drills"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    site: Mapped[str] = mapped_column(String(64), index=True)  # the site of its places
    places: Mapped[list[str]] = mapped_column(JSON, default=list)
    start_ts: Mapped[float] = mapped_column(Float, index=True)
    end_ts: Mapped[float] = mapped_column(Float, index=True)  # as declared
    routes: Mapped[list[str]] = mapped_column(JSON, default=list)  # push route names (settings)
    # Apprise URLs told of its alarms: secrets, like a push route's URL, never shown by the API.
    urls: Mapped[list[str]] = mapped_column(JSON, default=list)
    note: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(100))
    created_ts: Mapped[float] = mapped_column(Float)
    ended_ts: Mapped[float | None] = mapped_column(Float)  # ended early (or cancelled) by a person
    ended_by: Mapped[str | None] = mapped_column(String(100))
    end_note: Mapped[str] = mapped_column(Text, default="")
