"""Floor plans (平面图): a plan image per floor, and where each device is on it.

GB 25506-2010 asks the fire control room for a graphic display of where an alarm is. A floor
place gets one plan (PNG, SVG or one page of a PDF, core/floor_plans.py), uploaded by the safety
office or an admin and kept in the state store (storage/plan_models.py). A device's position on its
floor's plan is part of its registration (`Device.plan`), so the registry's export carries it and an
import keeps it; maintenance, the safety office and admins place devices.

Mounted before the places and devices routers: `/places/{path}/plan` is not a place path.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, Response, UploadFile
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts.model import Principal
from api.auth import READING, roles
from api.context import AppContext
from api.deps import MIRRORED, Ctx, DbSession
from api.plan_schemas import PlanDeviceOut, PlanOut, PlanPositionIn, PlanPositionOut
from api.problems import responses
from api.routes.devices import _apply, _control
from api.routes.places import PLACE_PATH_RE
from core.domain import Role
from core.floor_plans import (
    MAX_PLAN_BYTES,
    PlanError,
    PlanImage,
    PlanMedia,
    PlanSource,
    PlanTooLargeError,
    read_plan,
)
from core.registry import ID_RE, PlaceKind, Registry, location_of
from storage.models import DeviceRow, PlaceRow
from storage.plan_models import FloorPlanRow

router = APIRouter(tags=["floor plans"])

PLAN_EDITING = (Role.SAFETY, Role.ADMIN)  # the plan is the safety office's drawing of the building
DEVICE_PLACING = (Role.MAINTENANCE, Role.SAFETY, Role.ADMIN)  # who installs devices knows where they are
PlanEditor = Annotated[Principal, roles(*PLAN_EDITING)]
DevicePlacer = Annotated[Principal, roles(*DEVICE_PLACING)]

FloorPath = Annotated[
    str,
    PathParam(
        max_length=400,
        pattern=PLACE_PATH_RE,
        description="the floor's path, site/building/floor, e.g. sxzyy/b1/f3 (slashes unescaped)",
    ),
]
DeviceId = Annotated[str, PathParam(pattern=ID_RE, description="device id")]
# An uploaded SVG may hold script: it is served as an image that runs nothing and fetches nothing,
# whatever opens it (the console shows it only through <img>, where no script runs anyway).
IMAGE_HEADERS = {
    "Content-Security-Policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def _floor(db: Session, path: str) -> PlaceRow:
    """The floor place at `path`: 404 if there is no such place, 422 if it is not a floor."""
    row = db.get(PlaceRow, path)
    if row is None:
        raise HTTPException(404, f"place {path!r} is not in the place tree")
    if row.kind != PlaceKind.FLOOR:
        raise HTTPException(422, f"place {path!r} is a {row.kind}: plans are kept per floor")
    return row


def _words(db: Session, path: str) -> str:
    """A place in words below its site, e.g. 住院楼 3层 东区."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(2, len(parts) + 1)]
    names = _names(db, prefixes)
    return " ".join(names.get(p, p.rsplit("/", 1)[-1]) for p in prefixes)


def _names(db: Session, paths: list[str] | set[str]) -> dict[str, str]:
    rows = db.execute(select(PlaceRow.path, PlaceRow.name).where(PlaceRow.path.in_(paths))).all()
    return {path: name for path, name in rows}


def _plan_out(db: Session, row: FloorPlanRow) -> PlanOut:
    return PlanOut(
        place=row.place,
        place_name=_words(db, row.place),
        source=PlanSource(row.source),
        page=row.page,
        media_type=PlanMedia(row.media_type),
        width=row.width,
        height=row.height,
        sha256=row.sha256,
        size=row.size,
        uploaded_by=row.uploaded_by,
        uploaded_at=row.uploaded_at,
        image_url=f"/api/v1/places/{row.place}/plan/image?v={row.sha256}",
    )


def _plan_row(db: Session, path: str) -> FloorPlanRow:
    row = db.get(FloorPlanRow, path)
    if row is None:
        raise HTTPException(404, f"floor {path!r} has no plan yet: upload one (PUT .../plan)")
    return row


@router.get(
    "/places/{path:path}/plan/image",
    operation_id="get_floor_plan_image",
    response_class=Response,
    dependencies=[READING, MIRRORED],
    responses={
        200: {
            "description": "the plan image (an SVG as uploaded, a PDF page as PNG)",
            "content": {"image/png": {}, "image/svg+xml": {}},
        },
        304: {"description": "the image has not changed (If-None-Match)"},
        **responses(401, 403, 404, 422, 503),
    },
)
def get_plan_image(
    path: FloorPath,
    request: Request,
    db: DbSession,
    v: Annotated[
        str | None, Query(max_length=64, description="the plan's sha256, as image_url gives it")
    ] = None,
) -> Response:
    """The plan image. With `v` equal to the plan's content hash it may be cached for good; an SVG
    is served with a sandboxing Content-Security-Policy and `nosniff`."""
    _floor(db, path)
    row = _plan_row(db, path)
    etag = f'"{row.sha256}"'
    cache = "private, max-age=31536000, immutable" if v == row.sha256 else "private, no-cache"
    headers = {**IMAGE_HEADERS, "ETag": etag, "Cache-Control": cache}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(row.data, media_type=row.media_type, headers=headers)


@router.get(
    "/places/{path:path}/plan/devices",
    operation_id="list_floor_plan_devices",
    dependencies=[READING, MIRRORED],
    responses=responses(401, 403, 404, 422, 503),
)
def list_plan_devices(path: FloorPath, db: DbSession, ctx: Ctx) -> list[PlanDeviceOut]:
    """The devices on a floor (in its zones and rooms), each with its position on the floor's plan
    (null where it is not placed yet), by id."""
    _floor(db, path)
    registry = _control(ctx).registry
    on_floor = DeviceRow.place.startswith(f"{path}/", autoescape=True)
    rows = db.scalars(select(DeviceRow).where(on_floor).order_by(DeviceRow.id)).all()
    names = _place_names(db, {r.place for r in rows})
    out = []
    for r in rows:
        xy = _position(registry, r.id)
        out.append(
            PlanDeviceOut(
                id=r.id,
                name=r.name,
                profile=r.profile,
                kind=r.kind,
                place=r.place,
                place_name=names.get(r.place, r.place),
                x=xy[0] if xy else None,
                y=xy[1] if xy else None,
            )
        )
    return out


def _place_names(db: Session, places: set[str]) -> dict[str, str]:
    """Zones and rooms in words below their floor, e.g. 东区 305室."""

    def below_floor(place: str) -> list[str]:
        parts = place.split("/")
        return ["/".join(parts[:n]) for n in range(4, len(parts) + 1)]

    wanted = {p for place in places for p in below_floor(place)}
    names = _names(db, wanted)
    return {place: " ".join(names.get(p, p) for p in below_floor(place)) for place in places}


def _position(registry: Registry, device_id: str) -> tuple[float, float] | None:
    row = registry.row_of.get(device_id)
    if row is None or not registry.columns.has_plan[row]:
        return None
    x, y = registry.columns.plan[row].tolist()
    return float(x), float(y)


@router.get(
    "/places/{path:path}/plan",
    operation_id="get_floor_plan",
    dependencies=[READING, MIRRORED],
    responses=responses(401, 403, 404, 422, 503),
)
def get_plan(path: FloorPath, db: DbSession) -> PlanOut:
    """A floor's plan: what was uploaded, its size, and the image's URL. 404: the floor has none."""
    _floor(db, path)
    return _plan_out(db, _plan_row(db, path))


@router.put(
    "/places/{path:path}/plan",
    operation_id="put_floor_plan",
    dependencies=[MIRRORED],
    responses=responses(401, 403, 404, 413, 422, 503),
)
async def put_plan(
    path: FloorPath,
    who: PlanEditor,
    ctx: Ctx,
    file: Annotated[UploadFile, File(description=f"PNG, SVG or PDF, at most {MAX_PLAN_BYTES // 2**20} MB")],
    page: Annotated[int, Form(ge=1, le=10_000, description="the PDF's page to draw (from 1)")] = 1,
) -> PlanOut:
    """Upload a floor's plan, replacing any it had. A PDF's page is drawn as PNG; a file that is
    none of the three, broken, or a page the PDF does not have is refused with 422, nothing kept;
    a file or image over the limits with 413. Devices keep their positions (fractions of the plan)."""
    data = await file.read(MAX_PLAN_BYTES + 1)
    with ctx.sessions() as db:
        _floor(db, path)
    try:
        image = await run_in_threadpool(read_plan, data, page)
    except PlanTooLargeError as exc:
        raise HTTPException(413, str(exc)) from None
    except PlanError as exc:
        raise HTTPException(422, str(exc)) from None
    with ctx.sessions() as db, db.begin():
        _store(db, path, image, page if image.source == "pdf" else 1, who.signature)
    with ctx.sessions() as db:
        return _plan_out(db, _plan_row(db, path))


def _store(db: Session, path: str, image: PlanImage, page: int, by: str) -> None:
    row = db.get(FloorPlanRow, path)
    if row is None:
        row = FloorPlanRow(place=path)
        db.add(row)
    row.source = image.source.value
    row.page = page
    row.media_type = image.media.value
    row.width = image.width
    row.height = image.height
    row.sha256 = image.sha256
    row.size = len(image.data)
    row.uploaded_by = by[:200]
    row.uploaded_at = time.time()
    row.data = image.data


@router.delete(
    "/places/{path:path}/plan",
    operation_id="delete_floor_plan",
    status_code=204,
    dependencies=[MIRRORED],
    responses=responses(401, 403, 404, 422, 503),
)
def delete_plan(path: FloorPath, _who: PlanEditor, ctx: Ctx) -> Response:
    """Remove a floor's plan. Devices keep their positions, for the next plan of the same drawing."""
    with ctx.sessions() as db, db.begin():
        _floor(db, path)
        db.delete(_plan_row(db, path))
    return Response(status_code=204)


# --- a device's position ---------------------------------------------------------------------------


def _set_position(ctx: AppContext, device_id: str, xy: tuple[float, float] | None) -> PlanPositionOut:
    control = _control(ctx)
    current = control.registry.specs.get(device_id)
    if current is None:
        raise HTTPException(404, f"device {device_id!r} is not registered")
    floor = location_of(current.place)
    floor_path = "/".join((floor.site, floor.building, floor.floor))
    if xy is not None:
        with ctx.sessions() as db:
            if db.get(FloorPlanRow, floor_path) is None:
                raise HTTPException(
                    422, f"floor {floor_path!r} of device {device_id!r} has no plan yet: upload one first"
                )

    def placed(registry: Registry) -> Registry:
        spec = registry.specs.get(device_id)
        if spec is None:
            return registry.without_device(device_id)  # removed meanwhile: UnknownDeviceError, 404
        return registry.replacing_device(spec.model_copy(update={"plan": xy}))

    change = _apply(control, placed)
    return PlanPositionOut(
        device_id=device_id,
        floor=floor_path,
        x=xy[0] if xy else None,
        y=xy[1] if xy else None,
        persisted=change.persisted_to is not None,
    )


@router.put(
    "/devices/{device_id}/plan",
    operation_id="place_device_on_plan",
    responses=responses(401, 403, 404, 422, 503),
)
def place_device(device_id: DeviceId, body: PlanPositionIn, _who: DevicePlacer, ctx: Ctx) -> PlanPositionOut:
    """Place a device on its floor's plan (x, y fractions of the plan's width and height). Saved in
    the registry (its file too, where it has one); 422 if the floor has no plan."""
    return _set_position(ctx, device_id, (body.x, body.y))


@router.delete(
    "/devices/{device_id}/plan",
    operation_id="unplace_device",
    responses=responses(401, 403, 404, 503),
)
def unplace_device(device_id: DeviceId, _who: DevicePlacer, ctx: Ctx) -> PlanPositionOut:
    """Take a device off its floor's plan (it is listed as not placed)."""
    return _set_position(ctx, device_id, None)
