"""The GB/T 26875.3 transmission devices as the control room works them: which are connected, what
they answer to a query (types 61–88), their clock, and the duty check (查岗) with its answer time
(docs/gb26875.md)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import READING, AlarmHandler
from api.context import AppContext, DeviceAsker, HeldConnection, RelayError, Survey
from api.deps import Ctx
from api.problems import responses
from ingest.gb26875.codes import Command, TypeId
from ingest.gb26875.frame import Frame
from ingest.gb26875.listener import DutyCheckRecord, Gb26875Listener
from ingest.gb26875.objects import SyncClock, encode_adu
from ingest.gb26875.points import Station
from ingest.gb26875.queries import QueryError, QueryFields, request_adu
from ingest.gb26875.to_json import frame_to_json

router = APIRouter(prefix="/gb26875", tags=["gb26875"], responses=responses(401, 403))
DeviceId = Annotated[
    str, Path(min_length=1, max_length=64, description="the transmission device's registry id")
]
# 502 and 503 only when clustered: the question went to the worker the device is connected to.
_PROBLEMS = responses(404, 409, 422, 502, 503, 504)


class TransmissionDeviceOut(BaseModel):
    device_id: str
    address: int = Field(description="its frames' 48-bit source address")
    site: str
    connected: bool
    peer: str | None = None
    connected_at: float | None = None
    inspected_at: float | None = Field(default=None, description="its last answer to a state read (巡检)")
    points: int = Field(description="panels and points bound to it in the registry")


class QueryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: int = Field(description="61-68 (a facility system or point), 81, 84-86, 88 (the device)")
    system_type: int | None = Field(default=None, ge=0, le=255)
    system_address: int | None = Field(default=None, ge=0, le=255)
    component_address: int | None = Field(default=None, ge=0, le=0xFFFFFFFF)
    records: int | None = Field(default=None, ge=1, le=102, description="types 64, 84: how many")
    start: datetime | None = Field(default=None, description="types 64, 84: records from (local time)")


class AnswerOut(BaseModel):
    command: int
    command_name: str
    frame: dict[str, Any] = Field(description="the answer decoded, as `firewatch gb26875 decode --json`")


class DutyCheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout_minutes: int = Field(default=10, ge=1, le=255, description="how long the duty person has")


class DutyCheckOut(BaseModel):
    device_id: str
    sent_at: float
    timeout_minutes: int
    confirmed: bool = Field(description="the device confirmed the command")
    answered_at: float | None = Field(default=None, description="when its duty person answered (查岗应答)")
    answer_s: float | None = None
    operator: int | None = None


def _listener(ctx: AppContext) -> Gb26875Listener:
    if ctx.gb26875 is None:
        # 409, not 503: the service is healthy, it is configured not to take these devices.
        raise HTTPException(
            409, "the GB/T 26875.3 listener is off: set gb26875.enabled (FIREWATCH_GB26875__ENABLED=true)"
        )
    return ctx.gb26875


def _station(ctx: AppContext, device_id: str) -> Station:
    for station in _listener(ctx).points().stations.values():
        if station.device_id == device_id:
            return station
    raise HTTPException(
        404, f"{device_id!r} is not a transmission device (a device tagged gb26875=<address>)"
    )


def _asker(ctx: AppContext) -> DeviceAsker:
    """The listener; clustered, the relay that asks through whichever worker holds the device."""
    listener = _listener(ctx)
    return ctx.gb26875_asker if ctx.gb26875_asker is not None else listener


@contextlib.contextmanager
def _answering(station: Station) -> Iterator[None]:
    """A device not connected is 409; one that does not answer within 10 s is 504. Clustered: the
    other workers out of reach is 503, and a reply from one that is not an answer 502."""
    name = station.device_id
    try:
        yield
    except LookupError:
        raise HTTPException(409, f"{name} is not connected now") from None
    except TimeoutError as exc:
        why = f"{name}: {exc}" if str(exc) else f"{name} did not answer within 10 s"
        raise HTTPException(504, why) from None
    except ConnectionError as exc:
        raise HTTPException(503, f"{name} is not connected to this worker, and {exc}") from None
    except RelayError as exc:
        raise HTTPException(502, f"{name}: {exc}") from None


async def _ask(ctx: AppContext, station: Station, command: Command, adu: bytes) -> Frame:
    with _answering(station):
        return await _asker(ctx).ask(station.address, command, adu)


def _answer(frame: Frame) -> AnswerOut:
    names = {Command.RESPONSE: "应答", Command.CONFIRM: "确认", Command.DENY: "否认"}
    return AnswerOut(
        command=frame.command, command_name=names.get(Command(frame.command), ""), frame=frame_to_json(frame)
    )


INCOMPLETE = "X-Firewatch-Incomplete"
_INCOMPLETE_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            INCOMPLETE: {
                "description": "clustered: why the list may lack what other workers hold (some did "
                "not answer in time, or the engine is out of reach); absent when it is complete",
                "schema": {"type": "string"},
            }
        }
    }
}


async def _elsewhere(ctx: AppContext, response: Response) -> Survey:
    """Clustered: what the other workers hold (nothing on one node). A survey that could not reach
    every worker is still answered, with why in the X-Firewatch-Incomplete header."""
    none = Survey({}, [], 0)
    if ctx.gb26875_surveyor is None:
        return none
    try:
        survey = await ctx.gb26875_surveyor.survey()
    except ConnectionError as exc:
        response.headers[INCOMPLETE] = f"only this worker's: {exc}"
        return none
    if survey.unanswered:
        response.headers[INCOMPLETE] = (
            f"{survey.unanswered} other worker(s) did not answer within 1 s: what they hold is missing"
        )
    return survey


@router.get(
    "/devices",
    operation_id="list_transmission_devices",
    dependencies=[READING],
    responses={**responses(409), **_INCOMPLETE_DOC},
)
async def list_devices(ctx: Ctx, response: Response) -> list[TransmissionDeviceOut]:
    """Every transmission device in the registry, whether it is connected, and its last inspection.
    Clustered, a device connected to another worker is shown connected, as that worker tells."""
    listener = _listener(ctx)
    elsewhere = (await _elsewhere(ctx, response)).connections
    out = []
    for station in sorted(listener.points().stations.values(), key=lambda s: s.device_id):
        conn = listener.connection_of(station.address)
        held = (
            HeldConnection(station.address, conn.peer, conn.connected_at, conn.inspected_at)
            if conn is not None
            else elsewhere.get(station.address)
        )
        out.append(
            TransmissionDeviceOut(
                device_id=station.device_id,
                address=station.address,
                site=station.site,
                connected=held is not None,
                peer=held.peer if held is not None else None,
                connected_at=held.connected_at if held is not None else None,
                inspected_at=held.inspected_at if held is not None else None,
                points=len(station.systems) + len(station.components),
            )
        )
    return out


@router.post("/devices/{device_id}/query", operation_id="query_transmission_device", responses=_PROBLEMS)
async def query(device_id: DeviceId, body: QueryIn, _who: AlarmHandler, ctx: Ctx) -> AnswerOut:
    """Ask the device (command 4) and return its answer (5, or a denial), decoded."""
    station = _station(ctx, device_id)
    fields = QueryFields(
        body.system_type, body.system_address, body.component_address, body.records, body.start
    )
    try:
        adu = request_adu(body.type, fields)
    except QueryError as exc:
        raise HTTPException(422, str(exc)) from None
    return _answer(await _ask(ctx, station, Command.REQUEST, adu))


@router.post("/devices/{device_id}/clock", operation_id="sync_transmission_device_clock", responses=_PROBLEMS)
async def sync_clock(device_id: DeviceId, _who: AlarmHandler, ctx: Ctx) -> AnswerOut:
    """Set the device's clock to the centre's (type 90); its confirm or denial."""
    station = _station(ctx, device_id)
    adu = encode_adu(TypeId.SYNC_CLOCK, [SyncClock(_listener(ctx).now_tag())])
    return _answer(await _ask(ctx, station, Command.CONTROL, adu))


@router.post("/devices/{device_id}/duty-check", operation_id="duty_check", responses=_PROBLEMS)
async def duty_check(device_id: DeviceId, body: DutyCheckIn, _who: AlarmHandler, ctx: Ctx) -> DutyCheckOut:
    """查岗: ask the duty person at the device to answer within `timeout_minutes`. The answer's time is
    recorded when it comes (`GET /gb26875/duty-checks`, and the audit log)."""
    station = _station(ctx, device_id)
    with _answering(station):
        record = await _asker(ctx).duty_check(station.address, station.device_id, body.timeout_minutes)
    return _duty_out(record)


@router.get(
    "/duty-checks",
    operation_id="list_duty_checks",
    dependencies=[READING],
    responses={**responses(409), **_INCOMPLETE_DOC},
)
async def duty_checks(ctx: Ctx, response: Response) -> list[DutyCheckOut]:
    """The duty checks sent since the service started, newest first, with their answer times.
    Clustered, every worker's: a check is kept by the worker its device was connected to."""
    mine = list(_listener(ctx).duty_checks)
    elsewhere = (await _elsewhere(ctx, response)).duty_checks
    return [_duty_out(r) for r in sorted([*mine, *elsewhere], key=lambda r: r.sent_at, reverse=True)]


def _duty_out(r: DutyCheckRecord) -> DutyCheckOut:
    return DutyCheckOut(
        device_id=r.device_id,
        sent_at=r.sent_at,
        timeout_minutes=r.timeout_minutes,
        confirmed=r.confirmed,
        answered_at=r.answered_at,
        answer_s=r.answer_s,
        operator=r.operator,
    )
