"""The staff hazard report (随手拍 / 有奖举报): QR codes per place and device, and the page and API
their scan opens, without sign-in (staff, patients' escorts and visitors have no accounts).

Public, and so guarded: the token in the code is random and stored (tickets/staff_reports.py), a
revoked or unknown one is 404; the description, name and phone are bounded; the photo is at most
`PHOTO_MAX_BYTES` and must be a JPEG, PNG, WebP or HEIC image by its first bytes (what it claims is
not trusted); each client address may send `REPORTS_PER_WINDOW` reports in `WINDOW_S` (429 with
Retry-After). Every refusal says in Chinese what to do, and nothing is lost: a refused report
leaves no ticket behind, an accepted one is one ticket with its photo."""

from __future__ import annotations

import asyncio
import math
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Path, Query, Request, Response, UploadFile
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from accounts.model import Principal
from api.auth import roles
from api.context import AppContext
from api.deps import ROW_ID_MAX, Ctx
from api.downloads import disposition
from api.problems import responses
from api.rate_limit import Limit, RateLimit, SharedRateLimit
from api.routes.console import _NO_CACHE, STATIC_DIR
from api.routes.tickets import ticket_service
from core.cjk_font import FontUnavailableError
from core.domain import Role
from tickets import staff_reports
from tickets.report_sheet import Label, render_sheet_pdf
from tickets.staff_reports import Photo, ReportCodeUnknownError, StaffReport, TooManyCodesError

PHOTO_MAX_BYTES = 5 * 1024 * 1024  # the page shrinks a phone's photo well below this before sending
BODY_MAX_BYTES = PHOTO_MAX_BYTES + 64 * 1024  # the photo and the form's fields (api/body_limit.py)
REPORTS_PER_WINDOW = 5
WINDOW_S = 600.0
DESCRIPTION_MAX = 1000

# Whoever posts QR codes and answers for them: the safety office (保卫科) and admins.
CODE_KEEPERS = (Role.SAFETY, Role.ADMIN)
CodeKeeper = Annotated[Principal, roles(*CODE_KEEPERS)]

Token = Annotated[str, Path(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]

router = APIRouter(tags=["staff reports"])
page_router = APIRouter(include_in_schema=False)


def _limit(request: Request, ctx: AppContext) -> Limit:
    """One limit per app: its own counts in memory (two apps in one process, as in tests, share
    nothing), or a cluster's, shared in its PostgreSQL (api/rate_limit.py)."""
    state = request.app.state
    if getattr(state, "staff_report_limit", None) is None:
        state.staff_report_limit = (
            SharedRateLimit(ctx.sessions, "staff_report", REPORTS_PER_WINDOW, WINDOW_S)
            if ctx.clustered
            else RateLimit(REPORTS_PER_WINDOW, WINDOW_S)
        )
    limit: Limit = state.staff_report_limit
    return limit


# What an image file starts with (its magic bytes), and the type it is stored as.
_IMAGE_TYPES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (8, b"WEBP", "image/webp"),
    (4, b"ftypheic", "image/heic"),
    (4, b"ftypheix", "image/heic"),
    (4, b"ftypmif1", "image/heif"),
)


def image_type(data: bytes) -> str | None:
    for offset, magic, media_type in _IMAGE_TYPES:
        if data[offset : offset + len(magic)] == magic and (
            media_type != "image/webp" or data[:4] == b"RIFF"
        ):
            return media_type
    return None


class ReportPlaceOut(BaseModel):
    """Where a QR code's reports go, in words for the reporter."""

    place_name: str = Field(description="the place in words, e.g. 住院楼 3层 东区")
    device_name: str = Field(description="the device in words, or empty for a place's own code")
    device_id: str | None


class ReportReceiptOut(BaseModel):
    number: str = Field(description="the ticket's number (整改单编号) to quote when asking after it")
    received_at: float
    recurred: bool = Field(description="counted on the open ticket this device already has")


class ReportCodeOut(BaseModel):
    id: int
    token: str
    url: str = Field(description="what the QR code holds: the report page of this code")
    place: str
    place_name: str
    device_id: str | None
    device_name: str
    reports: int = Field(description="reports sent through this code")
    created_at: float


def _device_words(name: str, device_id: str | None) -> str:
    if device_id is None:
        return ""
    return f"{name}（{device_id}）" if name else f"设备 {device_id}"


def _place_out(ctx: AppContext, token: str) -> ReportPlaceOut:
    with ctx.sessions() as s:
        try:
            code = staff_reports.active_code(s, token)
        except ReportCodeUnknownError:
            raise HTTPException(
                404, "二维码无效或已停用，请联系消防控制室（this QR code is not in use）"
            ) from None
        name = staff_reports.device_name(s, code.device_id)
        return ReportPlaceOut(
            place_name=ctx.alarms.index.place_label(code.place),
            device_name=_device_words(name, code.device_id),
            device_id=code.device_id,
        )


@router.get(
    "/public/reports/{token}",
    operation_id="staff_report_place",
    responses=responses(404),
)
async def report_place(token: Token, ctx: Ctx) -> ReportPlaceOut:
    """Where a QR code's reports go, for its page to show; no sign-in. Unknown or revoked: 404."""
    return await asyncio.to_thread(_place_out, ctx, token)


@router.post(
    "/public/reports/{token}",
    operation_id="submit_staff_report",
    status_code=201,
    responses=responses(404, 413, 415, 422, 429, 503),
)
async def submit_report(
    token: Token,
    request: Request,
    ctx: Ctx,
    description: Annotated[str, Form(min_length=1, max_length=DESCRIPTION_MAX, description="what is wrong")],
    name: Annotated[str, Form(max_length=50, description="the reporter's name (optional)")] = "",
    phone: Annotated[
        str,
        Form(max_length=20, pattern=r"^[0-9+\- ]*$", description="a phone number to call back (optional)"),
    ] = "",
    photo: Annotated[
        UploadFile | str,
        File(description="a photo: JPEG, PNG, WebP or HEIC, at most 5 MiB; text (no file chosen): none"),
    ] = "",
) -> ReportReceiptOut:
    """Report a hazard at the code's place or device, without sign-in: it becomes a hazard ticket
    (source `staff_report`) there, the photo its evidence. Five reports per address in ten minutes
    (then 429 with Retry-After); a photo too large is 413, not an image 415."""
    service = ticket_service(ctx)
    text = description.strip()
    if not text:
        raise HTTPException(422, "请描述发现的问题（the description is empty）")
    picture: Photo | None = None
    if not isinstance(photo, str):  # a form with no file chosen may send the field as text
        data = await photo.read(PHOTO_MAX_BYTES + 1)
        if len(data) > PHOTO_MAX_BYTES:
            raise HTTPException(
                413, f"照片超过 {PHOTO_MAX_BYTES // (1024 * 1024)} MB，请重新拍摄或选择较小的照片"
            )
        if data:
            media_type = image_type(data)
            if media_type is None:
                raise HTTPException(415, "只能上传照片（JPEG、PNG、WebP 或 HEIC 格式）")
            filename = (photo.filename or "photo").replace("/", "_")[-100:] or "photo"
            picture = Photo(filename, media_type, data)
    address = request.client.host if request.client else ""
    wait = await _limit(request, ctx).check(address, service.clock())
    if wait > 0:
        raise HTTPException(
            429,
            f"提交过于频繁，请 {math.ceil(wait / 60)} 分钟后再试（too many reports from this address）",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    report = StaffReport(text, name.strip(), phone.strip())
    try:
        receipt = await asyncio.to_thread(staff_reports.submit, service, token, report, picture)
    except ReportCodeUnknownError:
        raise HTTPException(
            404, "二维码无效或已停用，请联系消防控制室（this QR code is not in use）"
        ) from None
    return ReportReceiptOut(number=receipt.number, received_at=service.clock(), recurred=receipt.recurred)


BaseUrl = Annotated[
    str | None,
    Query(
        max_length=200,
        pattern=r"^https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~\-/]*)?$",
        description="the address phones reach the service at (default: the one this request came to)",
    ),
]
PlaceQuery = Annotated[str, Query(min_length=1, max_length=400, description="a place path: it and below")]


def _base(request: Request, base_url: str | None) -> str:
    return (base_url or str(request.base_url)).rstrip("/")


def _codes(ctx: AppContext, place: str, who: Principal) -> list[staff_reports.Code]:
    try:
        return staff_reports.ensure_codes(ctx.sessions, place, who.name, ctx.clock())
    except ReportCodeUnknownError as exc:
        raise HTTPException(404, str(exc)) from None
    except TooManyCodesError as exc:
        raise HTTPException(422, str(exc)) from None


def _code_out(ctx: AppContext, base: str, c: staff_reports.Code) -> ReportCodeOut:
    return ReportCodeOut(
        id=c.id,
        token=c.token,
        url=f"{base}/report/{c.token}",
        place=c.place,
        place_name=ctx.alarms.index.place_label(c.place),
        device_id=c.device_id,
        device_name=_device_words(c.device_name, c.device_id),
        reports=c.reports,
        created_at=c.created_at,
    )


@router.get("/report-codes", operation_id="list_report_codes", responses=responses(401, 403, 404, 422))
async def list_codes(
    request: Request, ctx: Ctx, who: CodeKeeper, place: PlaceQuery, base_url: BaseUrl = None
) -> list[ReportCodeOut]:
    """The QR codes of a place, the places below it and their devices, places first; a missing
    code (new, or revoked) is made here. More than 2,000: 422, choose a building or a floor."""
    codes = await asyncio.to_thread(_codes, ctx, place, who)
    base = _base(request, base_url)
    return [_code_out(ctx, base, c) for c in codes]


@router.get(
    "/report-codes/sheet.pdf",
    operation_id="report_code_sheet_pdf",
    response_class=Response,
    responses={
        200: {"content": {"application/pdf": {}}, "description": "the QR code labels to print"},
        **responses(401, 403, 404, 422),
        503: {"description": "no CJK font to print the sheet with"},
    },
)
async def code_sheet(
    request: Request, ctx: Ctx, who: CodeKeeper, place: PlaceQuery, base_url: BaseUrl = None
) -> Response:
    """The QR codes of `list_report_codes` as A4 labels to cut out and post: each with its place
    (and device) in Chinese and 发现消防隐患？扫码上报."""
    codes = await asyncio.to_thread(_codes, ctx, place, who)
    base = _base(request, base_url)
    labels = [
        Label(
            f"{base}/report/{c.token}",
            ctx.alarms.index.place_label(c.place),
            _device_words(c.device_name, c.device_id),
        )
        for c in codes
    ]
    title = f"随手拍二维码 · {ctx.alarms.index.place_label(place.strip('/'))}"
    try:
        body = await asyncio.to_thread(render_sheet_pdf, labels, title, ctx.export_font)
    except FontUnavailableError as exc:
        raise HTTPException(503, str(exc)) from exc
    name = disposition("inline", "随手拍二维码.pdf", fallback="report-codes.pdf")
    return Response(body, media_type="application/pdf", headers={"Content-Disposition": name})


@router.post(
    "/report-codes/{code_id}/revoke",
    operation_id="revoke_report_code",
    status_code=204,
    response_class=Response,
    responses=responses(401, 403, 404),
)
async def revoke_code(
    code_id: Annotated[int, Path(ge=1, le=ROW_ID_MAX)], ctx: Ctx, who: CodeKeeper
) -> Response:
    """Stop one QR code (say, a label posted where it is misused): its page answers that it is no
    longer in use, and the next list or sheet of its place makes a new one."""
    try:
        await asyncio.to_thread(staff_reports.revoke, ctx.sessions, code_id, who.name, ctx.clock())
    except ReportCodeUnknownError as exc:
        raise HTTPException(404, str(exc)) from None
    return Response(status_code=204)


@page_router.get("/report/{token}", response_class=HTMLResponse)
def report_page(token: Token) -> HTMLResponse:
    """The phone page a QR code opens (its script reads the token from the address)."""
    return HTMLResponse(
        (STATIC_DIR / "report.html").read_text(encoding="utf-8"),
        headers={
            **_NO_CACHE,
            "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
            "base-uri 'none'; frame-ancestors 'none'",
            "Referrer-Policy": "no-referrer",  # the token stays out of other sites' logs
        },
    )
