"""The duty roster (值班表, docs/duty.md): shifts, who is on duty now, people's push addresses.

Everyone signed in reads the roster; phone numbers only roles that call the people on duty
(operator, safety, leader, admin); push addresses only the safety office and admins, who edit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from accounts.model import Principal
from accounts.service import NAME_RE
from alarms.labels import duty_role_zh
from api.auth import Reader, roles
from api.body_limit import read_bounded
from api.deps import Ctx, RowId
from api.downloads import XLSX, disposition
from api.problems import problem, responses
from api.roster_schemas import (
    ContactIn,
    ContactOut,
    GapOut,
    ImportOut,
    MemberOut,
    RosterNowOut,
    RosterOut,
    ShiftIn,
    ShiftOut,
    ShiftSaved,
)
from core.domain import Role
from roster.rules import Member, ShiftDraft
from roster.service import (
    Contact,
    PersonNotFoundError,
    RosterRuleError,
    RosterService,
    Shift,
    ShiftNotFoundError,
)
from roster.xlsx import SheetError, export, template
from roster.xlsx import text as sheet_text

router = APIRouter(prefix="/roster", tags=["roster"])
T = TypeVar("T")

EDITORS = (Role.SAFETY, Role.ADMIN)
PHONE_READERS = frozenset({Role.OPERATOR, Role.SAFETY, Role.LEADER, Role.ADMIN})
RosterEditor = Annotated[Principal, roles(*EDITORS)]
UserName = Annotated[str, Path(pattern=NAME_RE, description="the sign-in name")]
DEFAULT_WINDOW_S = 7 * 86_400.0
LONGEST_WINDOW_S = 92 * 86_400.0
MAX_SHEET_BYTES = 2 * 2**20


def service(ctx: Ctx) -> RosterService:
    return RosterService(ctx.sessions, ctx.clock)


def rule_errors(exc: RosterRuleError, where: tuple[str, ...] = ("body",)) -> RequestValidationError:
    """The rules' Chinese messages as a 422 with `errors`, like any invalid field."""
    return RequestValidationError([{"loc": where, "msg": e, "type": "roster_rule"} for e in exc.errors])


async def _run(work: Callable[[], T]) -> T:
    try:
        return await asyncio.to_thread(work)
    except (ShiftNotFoundError, PersonNotFoundError) as exc:
        raise HTTPException(404, str(exc)) from None
    except RosterRuleError as exc:
        raise rule_errors(exc) from None


def shift_out(shift: Shift, who: Principal) -> ShiftOut:
    phones = bool(who.roles & PHONE_READERS)
    return ShiftOut(
        id=shift.id,
        name=shift.name,
        start_ts=shift.start_ts,
        end_ts=shift.end_ts,
        note=shift.note,
        updated_ts=shift.updated_ts,
        updated_by=shift.updated_by,
        members=[
            MemberOut(
                user=m.user,
                display_name=m.display_name,
                role=m.role,
                role_zh=duty_role_zh(m.role),
                phone=m.phone if phones else None,
            )
            for m in shift.members
        ],
    )


def draft_of(body: ShiftIn) -> ShiftDraft:
    return ShiftDraft(
        body.name, body.start_ts, body.end_ts, tuple(Member(m.user, m.role) for m in body.members), body.note
    )


def _window(ctx: Ctx, start: float | None, end: float | None) -> tuple[float, float]:
    since = ctx.clock() if start is None else start
    until = since + DEFAULT_WINDOW_S if end is None else end
    if until <= since or until - since > LONGEST_WINDOW_S:
        raise HTTPException(422, "end must be after start, and the window at most 92 days")
    return since, until


def _contact_out(c: Contact) -> ContactOut:
    return ContactOut(user=c.user, display_name=c.display_name, phone=c.phone, addresses=c.addresses)


@router.get("", operation_id="list_roster", responses=responses(401, 403, 422))
async def list_roster(
    who: Reader,
    ctx: Ctx,
    start: Annotated[float | None, Query(ge=0, le=1e11, description="default: now")] = None,
    end: Annotated[float | None, Query(ge=0, le=1e11, description="default: start + 7 days")] = None,
) -> RosterOut:
    """The shifts overlapping [start, end) in order, and the gaps in it when nobody is on duty."""
    roster = service(ctx)
    since, until = _window(ctx, start, end)
    shifts = await _run(lambda: roster.shifts(since, until))
    holes = await _run(lambda: roster.gaps(since, until))
    return RosterOut(
        start=since,
        end=until,
        shifts=[shift_out(s, who) for s in shifts],
        gaps=[GapOut(start_ts=a, end_ts=b) for a, b in holes],
    )


@router.get("/now", operation_id="roster_now", responses=responses(401, 403))
async def roster_now(who: Reader, ctx: Ctx) -> RosterNowOut:
    """Who is on duty now (service clock), or that nobody is (a gap in the roster)."""
    roster = service(ctx)
    now = ctx.clock()
    current, nxt = await _run(lambda: roster.now(now))
    if current is None:
        message = "当前无人值班：值班表在此时段没有班次"
    else:
        names = "、".join(f"{duty_role_zh(m.role)} {m.name}" for m in current.members)
        message = f"当前值班：{current.name}，{names}"
    return RosterNowOut(
        now=now,
        covered=current is not None,
        shift=shift_out(current, who) if current is not None else None,
        next_shift=shift_out(nxt, who) if nxt is not None else None,
        message=message,
    )


@router.get("/contacts", operation_id="list_duty_contacts", responses=responses(401, 403))
async def list_contacts(_who: RosterEditor, ctx: Ctx) -> list[ContactOut]:
    """Every person who may be put on duty, with their phone and push addresses (secrets)."""
    roster = service(ctx)
    return [_contact_out(c) for c in await _run(roster.contacts)]


@router.get("/contacts/{name}", operation_id="get_duty_contact", responses=responses(401, 403, 404))
async def get_contact(name: UserName, _who: RosterEditor, ctx: Ctx) -> ContactOut:
    roster = service(ctx)
    return _contact_out(await _run(lambda: roster.contact(name)))


@router.put("/contacts/{name}", operation_id="set_duty_contact", responses=responses(401, 403, 404, 422))
async def set_contact(name: UserName, body: ContactIn, who: RosterEditor, ctx: Ctx) -> ContactOut:
    """A person's phone and push addresses (Apprise URLs), replacing what was there. An address
    Apprise cannot parse is a 422 naming which."""
    roster = service(ctx)
    return _contact_out(
        await _run(lambda: roster.set_contact(name, body.phone, list(body.addresses), who.name))
    )


@router.post("", operation_id="create_shift", status_code=201, responses=responses(401, 403, 422))
async def create_shift(body: ShiftIn, who: RosterEditor, ctx: Ctx) -> ShiftSaved:
    """A shift: at least two people in the control room (GB 25506-2010), exactly one leader on
    call, a person once, no overlap with another shift. A gap to its neighbours is a warning."""
    roster = service(ctx)
    shift, warnings = await _run(lambda: roster.create(draft_of(body), who.name))
    return ShiftSaved(shift=shift_out(shift, who), warnings=warnings)


@router.get(
    "/template.xlsx",
    operation_id="roster_template_xlsx",
    response_class=Response,
    responses={200: {"content": {XLSX: {}}, "description": "the import template"}, **responses(401, 403)},
)
def roster_template(_who: Reader) -> Response:
    """An example sheet to fill in and import: 日期, 班次, 开始, 结束, 岗位, 姓名, a person a row."""
    return Response(
        template(),
        media_type=XLSX,
        headers={"Content-Disposition": disposition("attachment", "值班表模板.xlsx", "roster-template.xlsx")},
    )


@router.get(
    "/export.xlsx",
    operation_id="roster_export_xlsx",
    response_class=Response,
    responses={200: {"content": {XLSX: {}}, "description": "the roster"}, **responses(401, 403, 422)},
)
async def roster_export(
    _who: Reader,
    ctx: Ctx,
    start: Annotated[float | None, Query(ge=0, le=1e11, description="default: now")] = None,
    end: Annotated[float | None, Query(ge=0, le=1e11, description="default: start + 7 days")] = None,
) -> Response:
    """The shifts overlapping [start, end) in the import's format, so it can be edited and imported
    again. Names only: no phone numbers, no push addresses."""
    roster = service(ctx)
    since, until = _window(ctx, start, end)
    shifts = await _run(lambda: roster.shifts(since, until))
    return Response(
        export(shifts),
        media_type=XLSX,
        headers={"Content-Disposition": disposition("attachment", "值班表.xlsx", "roster.xlsx")},
    )


@router.post(
    "/import",
    operation_id="import_roster",
    status_code=201,
    response_model=ImportOut,
    responses=responses(401, 403, 413, 415, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "the XLSX sheet (columns 日期, 班次, 开始, 结束, 岗位, 姓名; GET "
            "/roster/template.xlsx gives one)",
            "content": {XLSX: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def import_roster(request: Request, who: RosterEditor, ctx: Ctx) -> ImportOut | JSONResponse:
    """Add the shifts of a sheet. Every row is read and every shift checked (the same rules as a
    shift saved alone, and against the sheet's other shifts) before anything is saved: one problem
    and nothing is, and the 422 lists each with its row and column in Chinese."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != XLSX:
        raise HTTPException(415, f"send the roster as {XLSX} (an .xlsx file), not {media or 'nothing'}")
    data = await read_bounded(request, MAX_SHEET_BYTES, "the sheet")
    roster = service(ctx)
    try:
        created = await asyncio.to_thread(roster.import_sheet, data, who.name)
    except SheetError as exc:
        return problem(
            422,
            "Invalid roster sheet",
            f"nothing was saved; {len(exc.errors)} problem(s): {exc}",
            errors=[
                {"rows": rows, "column": column, "msg": sheet_text((rows, column, message))}
                for rows, column, message in exc.errors
            ],
        )
    return ImportOut(created=[shift_out(s, who) for s in created])


@router.get("/{shift_id:int}", operation_id="get_shift", responses=responses(401, 403, 404))
async def get_shift(shift_id: RowId, who: Reader, ctx: Ctx) -> ShiftOut:
    roster = service(ctx)
    return shift_out(await _run(lambda: roster.shift(shift_id)), who)


@router.put("/{shift_id:int}", operation_id="update_shift", responses=responses(401, 403, 404, 422))
async def update_shift(shift_id: RowId, body: ShiftIn, who: RosterEditor, ctx: Ctx) -> ShiftSaved:
    """Replace a shift (its times, name and people), checked by the same rules."""
    roster = service(ctx)
    shift, warnings = await _run(lambda: roster.update(shift_id, draft_of(body), who.name))
    return ShiftSaved(shift=shift_out(shift, who), warnings=warnings)


@router.delete(
    "/{shift_id:int}", operation_id="delete_shift", status_code=204, responses=responses(401, 403, 404)
)
async def delete_shift(shift_id: RowId, _who: RosterEditor, ctx: Ctx) -> Response:
    roster = service(ctx)
    await _run(lambda: roster.delete(shift_id))
    return Response(status_code=204)
