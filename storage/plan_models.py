"""The floor plans (平面图) table: one image per floor place, kept in the state store.

In the state store rather than the data directory: it survives restarts, is backed up with the
alarms and tickets it explains, and is the same for SQLite and PostgreSQL (decision 0014).
"""

from __future__ import annotations

from sqlalchemy import Float, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base


class FloorPlanRow(Base):
    __tablename__ = "floor_plans"
    place: Mapped[str] = mapped_column(String(400), primary_key=True)  # the floor's path
    source: Mapped[str] = mapped_column(String(8))  # what was uploaded: png, svg or pdf
    page: Mapped[int] = mapped_column(Integer)  # the PDF's page (1 for a PNG or SVG)
    media_type: Mapped[str] = mapped_column(String(32))  # what is stored: image/png or image/svg+xml
    width: Mapped[float] = mapped_column(Float)
    height: Mapped[float] = mapped_column(Float)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    uploaded_by: Mapped[str] = mapped_column(String(200))
    uploaded_at: Mapped[float] = mapped_column(Float)
    data: Mapped[bytes] = mapped_column(LargeBinary)
