"""The staff hazard report codes (随手拍二维码): one random token per place or device, printed as a QR
code; whoever scans it may report a hazard there without an account. Stored (not derived from a
secret) so that one code can be revoked, say after a sheet was posted somewhere public, and
replaced by a new one without touching the others."""

from __future__ import annotations

from sqlalchemy import Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base


class ReportCodeRow(Base):
    __tablename__ = "report_codes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)  # secrets.token_urlsafe: not guessable
    site: Mapped[str] = mapped_column(String(64))
    place: Mapped[str] = mapped_column(String(400), index=True)  # the place, or the device's place
    device_id: Mapped[str | None] = mapped_column(String(64), index=True)  # None: the place's own code
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(100))
    revoked_at: Mapped[float | None] = mapped_column(Float)
    revoked_by: Mapped[str | None] = mapped_column(String(100))
    reports: Mapped[int] = mapped_column(Integer, default=0)  # tickets reported through it
