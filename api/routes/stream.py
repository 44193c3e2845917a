"""Live alarm transitions over Server-Sent Events and WebSocket, resumable from the event log.

Both streams send every committed transition as `Transition.to_json()`, oldest first. A client that
reconnects with the last event id it saw (`Last-Event-ID` or `after=`) first gets exactly what it
missed from the alarm event log, then the live transitions, with no gap and no duplicate.

Incident steps (alarms/incident_service.py) go on the same streams as they happen: `event: incident`
over SSE, `{"type": "incident", ...}` over WebSocket, each carrying the whole incident. They are not
replayed on resume: a reconnecting client reads `GET /api/v1/incidents` for where incidents stand.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, HTTPException, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from alarms.model import IncidentUpdate, Transition
from api.auth import READ, StreamReader, authenticate_websocket
from api.context import AppContext
from api.deps import Ctx
from api.live import (
    Backlog,
    CloseReason,
    Item,
    LiveHub,
    StreamClosedError,
    StreamFilter,
    Subscription,
    follow,
    read_backlog,
)
from api.problems import invalid_request, problem, responses, title_for
from core.domain import AlarmCategory
from core.registry import ID_RE

router = APIRouter(prefix="/stream", tags=["stream"])

RETRY_MS = 2_000  # how soon an EventSource reconnects after the stream ends
# WebSocket close codes (RFC 6455 §7.4.1, IANA registry): 1013 "try again later" for a client that
# should reconnect and resume at once, 1001 "going away" when the service stops.
WS_CLOSE = {
    CloseReason.LAGGED: 1013,
    CloseReason.BACKLOG: 1013,
    CloseReason.RESYNC: 1013,
    CloseReason.STOPPING: 1001,
}

SiteId = Annotated[str, Field(pattern=ID_RE)]
EVENT_ID_MAX = 2**63 - 1  # the event log's ids are 64-bit integers at most


class StreamQuery(BaseModel):
    """Where to resume and what to send; both streams take the same query parameters."""

    model_config = ConfigDict(extra="forbid")  # a mistyped filter must not widen the stream silently

    after: int | None = Field(
        None,
        ge=0,
        le=EVENT_ID_MAX,
        description="replay every event with a greater id first (the last `event_id` seen)",
    )
    site: list[SiteId] = Field(default_factory=list, max_length=100, description="only these sites")
    category: list[AlarmCategory] = Field(default_factory=list, description="only these categories")
    access_token: str | None = Field(
        None,
        max_length=200,
        description="the bearer token, for clients that cannot set the Authorization header (a "
        "browser's EventSource and WebSocket); redacted from the access log",
    )

    def filter(self) -> StreamFilter:
        return StreamFilter(frozenset(self.site), frozenset(self.category))


def _hub(ctx: AppContext) -> LiveHub:
    if ctx.live is None:
        raise HTTPException(503, "live streams are not enabled in this process")
    return ctx.live


async def _open(
    ctx: AppContext, hub: LiveHub, after: int | None, flt: StreamFilter
) -> tuple[Subscription, Backlog]:
    """Subscribe first, then read what was missed: a transition committed in between is in both, and
    `follow` drops the second copy, so nothing falls between the backlog and the live queue."""
    sub = hub.subscribe(flt)
    try:
        backlog = await asyncio.to_thread(
            read_backlog, ctx.sessions, after, flt, hub.replay_max, hub.resume_window_s
        )
    except BaseException:
        hub.discard(sub)
        raise
    return sub, backlog


def _resume_hint(closed: StreamClosedError, cursor: int | None) -> str:
    return closed.detail + (f" (after={cursor})" if cursor is not None else "")


# --- Server-Sent Events ----------------------------------------------------------------------------


class _EventStream(StreamingResponse):
    """A text/event-stream response that always releases its subscription, however it ends."""

    def __init__(self, content: AsyncIterator[bytes], sub: Subscription, hub: LiveHub) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},  # no proxy buffering
        )
        self._sub = sub
        self._hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._hub.discard(self._sub)


def sse_event(t: Item, cursor: int | None) -> bytes:
    if isinstance(t, IncidentUpdate):
        # An incident step (`event: incident`): no `id`, the resume cursor is the alarm event log's.
        return b"event: incident\ndata: %s\n\n" % orjson.dumps(t.to_json())
    if not t.recorded:
        # Not in the event log yet: no `id`, so the client's resume cursor stays where it was, and
        # an event type of its own (`unrecorded`); the recorded transition follows as usual.
        return b"event: unrecorded\ndata: %s\n\n" % orjson.dumps(t.to_json())
    return b"id: %d\nevent: transition\ndata: %s\n\n" % (
        t.event_id if cursor is None else cursor,
        orjson.dumps(t.to_json()),
    )


async def _sse(sub: Subscription, backlog: Backlog, heartbeat_s: float) -> AsyncIterator[bytes]:
    # The SSE `id` is the resume cursor: the highest event id sent so far. One worker's hub is fed in
    # commit order, so that is the event's own id. In a cluster another worker's transition may
    # arrive after a higher id: the cursor stays the highest, and resuming after it re-reads the
    # hub's resume window below it (api/live.py), where that transition is.
    cursor = backlog.after
    yield b"retry: %d\n\n" % RETRY_MS
    try:
        async for t in follow(sub, backlog, heartbeat_s):
            if t is None:
                yield b": keep-alive\n\n"
                continue
            if isinstance(t, Transition) and t.recorded:
                cursor = t.event_id if cursor is None else max(cursor, t.event_id)
            yield sse_event(t, cursor)
    except StreamClosedError as closed:
        body = {"reason": closed.reason.value, "detail": _resume_hint(closed, cursor), "after": cursor}
        # No `id` field: the client's last event id stays the cursor, where it resumes.
        yield b"event: disconnect\ndata: %s\n\n" % orjson.dumps(body)


@router.get(
    "/alarms",
    operation_id="stream_alarms_sse",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "`text/event-stream`: `event: transition`, `id: <event id>`, "
            "`data: <transition JSON>`; `: keep-alive` comments while idle; `event: disconnect` "
            "with the reason when the server ends the stream",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **responses(401, 403, 422, 503),
    },
)
async def stream_alarms_sse(
    ctx: Ctx,
    _who: StreamReader,
    query: Annotated[StreamQuery, Query()],
    last_event_id: Annotated[
        int | None,
        Header(
            ge=0,
            le=EVENT_ID_MAX,
            description="sent by EventSource on reconnection; takes precedence over `after`",
        ),
    ] = None,
) -> Response:
    """Alarm transitions as Server-Sent Events: what was missed after `Last-Event-ID` (or `after`)
    from the event log first, oldest first, then live. A client that falls behind by more than the
    hub's queue is disconnected with `event: disconnect` and resumes where it stopped."""
    hub = _hub(ctx)
    # EventSource reconnects to the original URL and adds Last-Event-ID: the header is newer.
    after = last_event_id if last_event_id is not None else query.after
    flt = query.filter()
    sub, backlog = await _open(ctx, hub, after, flt)
    return _EventStream(_sse(sub, backlog, hub.heartbeat_s), sub, hub)


# --- WebSocket -------------------------------------------------------------------------------------


def _close_reason(text: str) -> str:
    """A close frame's reason holds at most 123 bytes of UTF-8 (RFC 6455 §5.5)."""
    return text.encode()[:123].decode(errors="ignore")


async def _deny(websocket: WebSocket, response: Response, reason: str) -> None:
    """Refuse the handshake with an HTTP problem where the server allows it (ASGI denial
    extension), otherwise with a policy-violation close."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:
        await websocket.close(code=1008, reason=_close_reason(reason))


async def _until_disconnect(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends until it goes away."""
    with contextlib.suppress(WebSocketDisconnect):
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass


@router.websocket("/alarms/ws", name="stream_alarms_ws")
async def stream_alarms_ws(websocket: WebSocket) -> None:
    """Alarm transitions as WebSocket text messages (one transition JSON each), with the SSE
    stream's query parameters and resume semantics (`after` = the last `event_id` received)."""
    ctx: AppContext = websocket.app.state.ctx
    params = websocket.query_params
    raw: dict[str, Any] = {k: params.getlist(k) for k in params if k in ("site", "category")}
    raw.update({k: params[k] for k in params if k not in ("site", "category")})
    try:
        query = StreamQuery.model_validate(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": ("query", *e["loc"])} for e in exc.errors()]
        await _deny(websocket, invalid_request(errors), "invalid query")
        return
    try:
        authenticate_websocket(websocket, [r.value for r in READ])
    except HTTPException as exc:
        await _deny(
            websocket, problem(exc.status_code, title_for(exc.status_code), str(exc.detail)), str(exc.detail)
        )
        return
    if ctx.live is None:
        disabled = problem(503, "Service unavailable", "live streams are not enabled in this process")
        await _deny(websocket, disabled, "live streams are not enabled")
        return
    hub = ctx.live
    sub, backlog = await _open(ctx, hub, query.after, query.filter())
    tasks: list[asyncio.Task[Any]] = []
    try:
        await websocket.accept()
        reader = asyncio.create_task(_until_disconnect(websocket))
        pump = asyncio.create_task(_pump(websocket, sub, backlog, hub.heartbeat_s))
        tasks = [reader, pump]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if pump.done():  # else the client went away
            closed = pump.result()
            await websocket.close(code=WS_CLOSE[closed.reason], reason=_close_reason(closed.detail))
    except (WebSocketDisconnect, OSError):
        pass  # the client went away while we were sending
    finally:
        hub.discard(sub)
        for task in tasks:
            task.cancel()
        for task in tasks:  # the outcome is decided: what they end with no longer matters
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _pump(
    websocket: WebSocket, sub: Subscription, backlog: Backlog, heartbeat_s: float
) -> StreamClosedError:
    """Send until the stream is closed by the server; returns why, with where to resume."""
    cursor = backlog.after
    try:
        async for t in follow(sub, backlog, heartbeat_s):
            if t is None:
                continue  # the server's WebSocket pings keep the connection alive
            # An unrecorded alarm (`recorded` false) is not in the log to resume from; an incident
            # step is numbered in the incident log.
            if isinstance(t, Transition) and t.recorded:
                cursor = t.event_id if cursor is None else max(cursor, t.event_id)
            await websocket.send_text(orjson.dumps(t.to_json()).decode())
    except StreamClosedError as closed:
        return StreamClosedError(closed.reason, _resume_hint(closed, cursor))
    raise AssertionError("follow() ends only by StreamClosedError")
