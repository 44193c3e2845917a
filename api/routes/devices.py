"""Devices: the registry's devices as listed in the store, their history, the devices that publish
unregistered; registering, replacing and removing devices, and the whole registry as YAML or CSV.

A change goes to the running service at once (firewatch.service.Service.apply_registry): devices
that stay keep their detector state, an added device's messages are accepted from the next batch,
a removed device's become rejects (unknown device) while its history and alarms stay.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import select

from api.auth import READING, Admin
from api.body_limit import read_bounded
from api.context import AppContext
from api.deps import MIRRORED, Ctx, DbSession, PageParams, page_of
from api.device_schemas import DeviceChangeOut, DeviceFields, DeviceIn, RegistryChangeOut
from api.problems import problem, responses
from api.schemas import DeviceEventOut, DeviceOut, DiscoveredDeviceOut, HistoryOut, Page
from core.registry import DuplicateDeviceError, Registry, RegistryError, UnknownDeviceError
from core.registry_io import (
    RegistryChange,
    RegistryControl,
    RegistryImportError,
    decode_text,
    registry_from_csv,
    registry_from_yaml,
    registry_to_csv,
)
from ingest.index import UnknownProfileError
from storage.models import DeviceRow, DiscoveredDeviceRow

router = APIRouter(tags=["devices"])

MAX_IMPORT_BYTES = 20 * 1024 * 1024  # a generated 100,000-device hospital is about 15 MB of YAML
YAML_TYPES = ("application/yaml", "text/yaml", "application/x-yaml")
CSV_TYPE = "text/csv"
PERSISTED = "X-Registry-Persisted"  # on 204 answers, which have no body to say it in
# The YAML document's shape, for the OpenAPI document: core.registry.RegistryFile, as YAML.
REGISTRY_YAML = {
    "type": "object",
    "required": ["sites"],
    "properties": {
        "sites": {"type": "array", "description": "the place tree: site > building > floor > zone > room"},
        "devices": {"type": "array", "description": "id, profile, place and optional details per device"},
    },
}


@router.get(
    "/devices",
    operation_id="list_devices",
    dependencies=[READING, MIRRORED],
    responses=responses(401, 403, 503),
)
def list_devices(
    db: DbSession,
    page: PageParams,
    site: str | None = None,
    kind: str | None = None,
    building: str | None = None,
    zone: str | None = None,
    department: str | None = None,
) -> Page[DeviceOut]:
    q = select(DeviceRow)
    for column, value in (
        (DeviceRow.site, site),
        (DeviceRow.kind, kind),
        (DeviceRow.building, building),
        (DeviceRow.zone, zone),
        (DeviceRow.department, department),
    ):
        if value is not None:
            q = q.where(column == value)
    return page_of(db, q.order_by(DeviceRow.id), page, DeviceOut)


@router.get(
    "/devices/discovered",
    operation_id="list_discovered_devices",
    dependencies=[READING, MIRRORED],
    responses=responses(401, 403, 503),
)
def list_discovered(db: DbSession, page: PageParams) -> Page[DiscoveredDeviceOut]:
    """Devices that published but are not registered; register one with POST /devices."""
    query = (
        select(DiscoveredDeviceRow)
        # A device registered while its last unknown messages were still being stored is registered.
        .where(DiscoveredDeviceRow.device_id.not_in(select(DeviceRow.id)))
        .order_by(DiscoveredDeviceRow.last_seen.desc())
    )
    return page_of(db, query, page, DiscoveredDeviceOut)


@router.get(
    "/devices/{device_id}",
    operation_id="get_device",
    dependencies=[READING, MIRRORED],
    responses=responses(401, 403, 404, 503),
)
def get_device(device_id: str, db: DbSession) -> DeviceOut:
    row = db.get(DeviceRow, device_id)
    if row is None:
        raise HTTPException(404, f"device {device_id!r} is not registered")
    return DeviceOut.model_validate(row)


@router.get(
    "/devices/{device_id}/history",
    operation_id="get_device_history",
    dependencies=[READING, MIRRORED],
    responses=responses(400, 401, 403, 404, 503),
)
def device_history(
    device_id: str,
    ctx: Ctx,
    db: DbSession,
    channel: Annotated[str, Query(min_length=1, max_length=64, description="channel name from the profile")],
    start: Annotated[
        float | None, Query(ge=0, le=1e11, description="epoch seconds; default end - 1 h")
    ] = None,
    end: Annotated[float | None, Query(ge=0, le=1e11, description="epoch seconds; default now")] = None,
    buckets: Annotated[
        int | None, Query(ge=1, le=10_000, description="downsample to min/max/mean buckets")
    ] = None,
) -> HistoryOut:
    registered = db.get(DeviceRow, device_id) is not None
    end = end if end is not None else time.time()
    start = start if start is not None else end - 3600.0
    if start >= end:
        raise HTTPException(422, f"start ({start}) must be before end ({end})")
    h = ctx.telemetry.history(device_id, channel, start, end, buckets=buckets)
    if not registered and not h.ts.size:  # a removed device's history stays readable
        raise HTTPException(404, f"device {device_id!r} is not registered")
    return HistoryOut(
        device_id=device_id,
        channel=channel,
        start=start,
        end=end,
        buckets=buckets,
        ts=h.ts.tolist(),
        value=h.value.tolist(),
        min=h.min.tolist() if h.min is not None else None,
        max=h.max.tolist() if h.max is not None else None,
        count=h.count.tolist() if h.count is not None else None,
    )


@router.get(
    "/devices/{device_id}/events",
    operation_id="get_device_events",
    dependencies=[READING, MIRRORED],
    responses=responses(401, 403, 404, 503),
)
def device_events(
    device_id: str,
    ctx: Ctx,
    db: DbSession,
    start: Annotated[
        float | None, Query(ge=0, le=1e11, description="epoch seconds; default end - 7 days")
    ] = None,
    end: Annotated[float | None, Query(ge=0, le=1e11, description="epoch seconds; default now")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> list[DeviceEventOut]:
    """The device's own events, newest first: its alarm, fault and test signals, and for a point of
    a fire alarm panel its linkage, feedback, delays and the operations at its panel (GB/T 26875.3),
    each with the frame it came in."""
    end = end if end is not None else time.time()
    start = start if start is not None else end - 7 * 86_400.0
    rows = ctx.telemetry.device_events(device_id, start, end, limit)  # an empty window: none
    if not rows and db.get(DeviceRow, device_id) is None:
        raise HTTPException(404, f"device {device_id!r} is not registered")
    return [
        DeviceEventOut(ts=ts, received=received, event=event, code=code, channel=channel, frame=frame)
        for _, ts, received, event, code, channel, frame in rows
    ]


# --- changing the registry ----------------------------------------------------------------------


def _control(ctx: AppContext) -> RegistryControl:
    if ctx.registry is None:
        raise HTTPException(503, "registry changes are not available in this process")
    return ctx.registry


def _apply(
    control: RegistryControl, new: Registry | Callable[[Registry], Registry], *, dry_run: bool = False
) -> RegistryChange:
    """Apply a change; bad input becomes the problem it is (never a 500), nothing applied."""
    try:
        return control.apply_registry(new, dry_run=dry_run)
    except DuplicateDeviceError as exc:
        raise HTTPException(409, str(exc)) from None
    except UnknownDeviceError as exc:
        raise HTTPException(404, str(exc)) from None
    except RegistryImportError:
        raise
    except RegistryError as exc:
        raise HTTPException(422, str(exc)) from None
    except UnknownProfileError as exc:
        raise HTTPException(422, str(exc.args[0])) from None
    except OSError as exc:
        raise HTTPException(503, f"cannot write the registry file, nothing was applied: {exc}") from None


def _device_out(ctx: AppContext, device_id: str) -> DeviceOut:
    with ctx.sessions() as db:
        row = db.get(DeviceRow, device_id)
        if row is None:  # the mirror is written before the change returns: not expected
            raise HTTPException(503, f"device {device_id!r} is registered but not yet listed")
        return DeviceOut.model_validate(row)


@router.post(
    "/devices",
    operation_id="register_device",
    status_code=201,
    responses=responses(401, 403, 409, 422, 503),
)
def register_device(body: DeviceIn, _who: Admin, ctx: Ctx) -> DeviceChangeOut:
    """Register a device (a discovered one too: it leaves GET /devices/discovered). Its messages are
    accepted from the next batch on."""
    device = body.device(body.id)
    with ctx.sessions() as db:
        seen = db.get(DiscoveredDeviceRow, device.id)
    site = device.place.split("/", 1)[0]
    if seen is not None and seen.site != site:
        raise HTTPException(
            422,
            f"device {device.id!r} publishes under site {seen.site!r} (fw/v1/{seen.site}/...), but place "
            f"{device.place!r} is in site {site!r}: its messages would still be refused",
        )
    change = _apply(_control(ctx), lambda current: current.with_device(device))
    return DeviceChangeOut(device=_device_out(ctx, device.id), change=RegistryChangeOut.of(change))


@router.put(
    "/devices/{device_id}", operation_id="replace_device", responses=responses(401, 403, 404, 422, 503)
)
def replace_device(device_id: str, body: DeviceFields, _who: Admin, ctx: Ctx) -> DeviceChangeOut:
    """Specify a registered device anew (profile, place, names...). Its detectors stay warm unless
    its profile changes."""
    try:
        device = body.device(device_id)
    except ValueError:  # pydantic's ValidationError: not a valid id, so not a registered one either
        raise HTTPException(404, f"device {device_id!r} is not registered") from None
    change = _apply(_control(ctx), lambda current: current.replacing_device(device))
    return DeviceChangeOut(device=_device_out(ctx, device_id), change=RegistryChangeOut.of(change))


@router.delete(
    "/devices/{device_id}",
    operation_id="remove_device",
    status_code=204,
    responses=responses(401, 403, 404, 503),
)
def remove_device(device_id: str, _who: Admin, ctx: Ctx) -> Response:
    """Unregister a device: its later messages are rejected as from an unknown device; its history,
    alarms and tickets stay. Header X-Registry-Persisted says whether the registry file has it."""
    change = _apply(_control(ctx), lambda current: current.without_device(device_id))
    return Response(status_code=204, headers={PERSISTED: "true" if change.persisted_to else "false"})


@router.get(
    "/registry",
    operation_id="export_registry",
    response_class=Response,
    dependencies=[READING],
    responses={
        200: {
            "description": "YAML as the service reads it at start, or CSV (UTF-8 with a byte-order "
            "mark) with one row per device",
            "content": {
                "application/yaml": {"schema": REGISTRY_YAML},
                CSV_TYPE: {"schema": {"type": "string"}},
            },
        },
        **responses(401, 403, 503),
    },
)
def export_registry(
    ctx: Ctx,
    format: Annotated[
        Literal["yaml", "csv"], Query(description="yaml: the whole registry; csv: its devices")
    ] = "yaml",
) -> Response:
    registry = _control(ctx).registry
    if format == "csv":
        return Response(
            registry_to_csv(registry).encode("utf-8"),
            media_type=f"{CSV_TYPE}; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="registry.csv"'},
        )
    return Response(
        registry.to_yaml().encode("utf-8"),
        media_type="application/yaml; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="registry.yaml"'},
    )


def _import_problem(exc: RegistryImportError) -> JSONResponse:
    return problem(
        422,
        "Invalid registry",
        f"nothing was applied; {len(exc.lines)} problem(s): {exc}",
        errors=[{"line": i.line, "msg": i.message} for i in exc.lines],
    )


@router.put(
    "/registry",
    operation_id="import_registry",
    response_model=RegistryChangeOut,
    responses={
        200: {"description": "the change (with dry_run: the change it would make, nothing applied)"},
        **responses(401, 403, 413, 415, 422, 503),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "YAML (application/yaml or text/yaml): the whole registry, as the service "
            "reads it at start. CSV (text/csv, UTF-8): the device list, one row per device with the "
            "columns of GET /registry?format=csv; the place tree stays.",
            "content": {
                "application/yaml": {"schema": REGISTRY_YAML},
                "text/yaml": {"schema": REGISTRY_YAML},
                CSV_TYPE: {"schema": {"type": "string"}},
            },
        }
    },
)
async def import_registry(
    request: Request,
    _who: Admin,
    ctx: Ctx,
    dry_run: Annotated[bool, Query(description="validate and report the change, apply nothing")] = False,
) -> RegistryChangeOut | JSONResponse:
    """Replace the registry (YAML) or its device list (CSV). Every problem is reported with its line
    number and nothing is applied if there is any."""
    control = _control(ctx)
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in (*YAML_TYPES, CSV_TYPE):
        raise HTTPException(
            415, f"send the registry as application/yaml or {CSV_TYPE}, not {media or 'nothing'}"
        )
    data = await read_bounded(request, MAX_IMPORT_BYTES, "the registry")
    profiles = control.profile_ids

    def build(current: Registry) -> Registry:
        text = decode_text(data)
        if media == CSV_TYPE:
            return registry_from_csv(text, base=current, profiles=profiles)
        return registry_from_yaml(text, profiles=profiles)

    try:
        change = await run_in_threadpool(_apply, control, build, dry_run=dry_run)
    except RegistryImportError as exc:
        return _import_problem(exc)
    return RegistryChangeOut.of(change)
