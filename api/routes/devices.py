from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import select

from api.deps import Ctx, DbSession, PageParams, page_of
from api.schemas import DeviceOut, DiscoveredDeviceOut, HistoryOut, Page
from storage.models import DeviceRow, DiscoveredDeviceRow

router = APIRouter(prefix="/devices", tags=["devices"])


@router.get("", operation_id="list_devices")
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


@router.get("/discovered", operation_id="list_discovered_devices")
def list_discovered(db: DbSession, page: PageParams) -> Page[DiscoveredDeviceOut]:
    query = select(DiscoveredDeviceRow).order_by(DiscoveredDeviceRow.last_seen.desc())
    return page_of(db, query, page, DiscoveredDeviceOut)


@router.get("/{device_id}", operation_id="get_device")
def get_device(device_id: str, db: DbSession) -> DeviceOut:
    row = db.get(DeviceRow, device_id)
    if row is None:
        raise HTTPException(404, f"device {device_id!r} is not registered")
    return DeviceOut.model_validate(row)


@router.get("/{device_id}/history", operation_id="get_device_history")
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
    if db.get(DeviceRow, device_id) is None:
        raise HTTPException(404, f"device {device_id!r} is not registered")
    end = end if end is not None else time.time()
    start = start if start is not None else end - 3600.0
    if start >= end:
        raise HTTPException(400, f"start ({start}) must be before end ({end})")
    h = ctx.telemetry.history(device_id, channel, start, end, buckets=buckets)
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
