"""Staff hazard reports (随手拍 / 有奖举报): anyone who scans a place's or a device's QR code reports a
hazard there, with a description, optionally a photo, a name and a phone number, and no account.

The code is a stored random token (storage/report_models.py): not guessable, revocable one by one,
and it says where the report is about, so the reporter never has to. A report opens a hazard ticket
(source `staff_report`) at that place or device, with the photo as its evidence, in one
transaction; a device's second report while its ticket is open is counted on that ticket (one open
ticket per device and hazard type, as for inspections)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.domain import AlarmCategory, TicketSource
from storage.models import DeviceRow, PlaceRow
from storage.report_models import ReportCodeRow
from tickets.service import HazardReport, TicketService

HAZARD_TYPE = "staff_report"
REPORTER = "随手拍"  # who the ticket's history says opened it, when the reporter gave no name
SHEET_MAX_CODES = 2000  # one printable sheet at most: a whole hospital's devices is narrowed first


class ReportCodeUnknownError(LookupError):
    """No such code, or it was revoked."""


class TooManyCodesError(ValueError):
    """The place holds more places and devices than one sheet prints."""


@dataclass(frozen=True)
class Photo:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class StaffReport:
    description: str
    name: str = ""
    phone: str = ""


@dataclass(frozen=True)
class Receipt:
    ticket_id: int
    number: str
    recurred: bool  # counted on the device's open staff-report ticket


@dataclass(frozen=True)
class Code:
    """A code as the sheet prints it and the API lists it."""

    id: int
    token: str
    site: str
    place: str
    device_id: str | None
    device_name: str
    reports: int
    created_at: float


def new_token() -> str:
    return secrets.token_urlsafe(18)  # 144 random bits, 24 URL-safe characters


def active_code(s: Session, token: str) -> ReportCodeRow:
    row = s.scalars(
        select(ReportCodeRow).where(ReportCodeRow.token == token, ReportCodeRow.revoked_at.is_(None))
    ).first()
    if row is None:
        raise ReportCodeUnknownError("this QR code is unknown or no longer in use")
    return row


def device_name(s: Session, device_id: str | None) -> str:
    if device_id is None:
        return ""
    row = s.get(DeviceRow, device_id)
    return row.name if row is not None else ""


def submit(service: TicketService, token: str, report: StaffReport, photo: Photo | None) -> Receipt:
    """Open (or count) the ticket the code's place or device gets, with the photo as its evidence."""
    now = service.clock()
    reporter = report.name or REPORTER
    contact = "、".join(x for x in (report.name, report.phone) if x)
    problem = report.description + (f"\n（举报人：{contact}）" if contact else "")

    def work(s: Session) -> Receipt:
        code = active_code(s, token)
        hazard = HazardReport(
            site=code.site,
            problem=problem,
            inspectors=f"{REPORTER}：{reporter}" if report.name else REPORTER,
            inspection_time=now,
            source=TicketSource.STAFF_REPORT,
            category=AlarmCategory.HAZARD,
            hazard_type=HAZARD_TYPE,
            place=code.place,
            device_id=code.device_id,
        )
        change = service.report_in(s, hazard, REPORTER, "", now)
        if photo is not None:
            s.add(
                service.evidence_row(
                    change.ticket_id,
                    REPORTER,
                    photo.filename,
                    photo.content_type,
                    photo.data,
                    "随手拍照片",
                    now,
                )
            )
        code.reports += 1
        return Receipt(change.ticket_id, change.number, change.action == "recurred")

    return service.write(work)


def ensure_codes(sessions: sessionmaker[Session], place: str, actor: str, now: float) -> list[Code]:
    """The active codes of `place`, every place below it and every device at or below it, creating
    the missing ones (a revoked code is replaced by a new token here). Places first, then devices,
    each in path order."""
    path = place.strip("/")
    under = path + "/"
    with sessions.begin() as s:
        places = s.scalars(
            select(PlaceRow).where((PlaceRow.path == path) | PlaceRow.path.startswith(under, autoescape=True))
        ).all()
        if not places:
            raise ReportCodeUnknownError(f"place {path!r} is not registered")
        devices = s.scalars(
            select(DeviceRow).where(
                (DeviceRow.place == path) | DeviceRow.place.startswith(under, autoescape=True)
            )
        ).all()
        if len(places) + len(devices) > SHEET_MAX_CODES:
            raise TooManyCodesError(
                f"{len(places)} places and {len(devices)} devices are more than one sheet of "
                f"{SHEET_MAX_CODES} codes: choose a building or a floor"
            )
        active = s.scalars(
            select(ReportCodeRow).where(
                ReportCodeRow.revoked_at.is_(None),
                (ReportCodeRow.place == path) | ReportCodeRow.place.startswith(under, autoescape=True),
            )
        ).all()
        by_key = {(c.place if c.device_id is None else None, c.device_id): c for c in active}
        wanted = [(p.site, p.path, None, "") for p in sorted(places, key=lambda p: p.path)] + [
            (d.site, d.place, d.id, d.name) for d in sorted(devices, key=lambda d: (d.place, d.id))
        ]
        codes: list[Code] = []
        for site, at, device_id, name in wanted:
            key = (at if device_id is None else None, device_id)
            row = by_key.get(key)
            if row is None:
                row = ReportCodeRow(
                    token=new_token(), site=site, place=at, device_id=device_id, created_at=now,
                    created_by=actor, reports=0,
                )  # fmt: skip
                s.add(row)
                s.flush()
            codes.append(Code(row.id, row.token, site, at, device_id, name, row.reports, row.created_at))
        return codes


def revoke(sessions: sessionmaker[Session], code_id: int, actor: str, now: float) -> None:
    """Stop a code: its QR answers 'no longer in use'; the next sheet prints a new one."""
    with sessions.begin() as s:
        row = s.get(ReportCodeRow, code_id)
        if row is None or row.revoked_at is not None:
            raise ReportCodeUnknownError(f"report code {code_id} does not exist or is already revoked")
        row.revoked_at = now
        row.revoked_by = actor
