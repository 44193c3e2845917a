"""Request-body limits (docs/api.md, "Request bodies"): an oversized body is refused with 413 before
anything reads it, before sign-in too, so an anonymous client cannot make the service hold it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from pydantic import ValidationError
from starlette.types import Message, Receive, Scope, Send

from alarms.service import AlarmService
from api.body_limit import BodyLimitMiddleware
from core.settings import ApiSettings, Settings, TicketPolicy
from tests.conftest import ApiClient, alarm_service, asgi_api
from tickets.service import TicketService

T0 = 1_800_000_000.0
SMALL = 64 * 1024
CHUNK = 16 * 1024
LOGIN = "/api/v1/auth/login"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[ApiClient]:
    alarms: AlarmService = alarm_service(tmp_path / "state.sqlite", T0)
    tickets = TicketService(alarms.sessions, alarms.index, TicketPolicy(), alarms=alarms, clock=alarms.clock)
    async with asgi_api(alarms, tmp_path, tickets) as client:
        yield client


class Endless:
    """An ASGI receive() that streams CHUNK-byte pieces of a body that never ends, counting them."""

    def __init__(self) -> None:
        self.pulled = 0

    async def __call__(self) -> Message:
        self.pulled += CHUNK
        return {"type": "http.request", "body": b"x" * CHUNK, "more_body": True}


Answer = tuple[int, dict[str, str], bytes]


Headers = list[tuple[bytes, bytes]]


async def call(app: Any, method: str, path: str, headers: Headers, receive: Receive) -> Answer:
    """Call an ASGI app directly; the status, headers and body it answered."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("203.0.113.9", 40000),
        "server": ("firewatch", 80),
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body


async def test_a_declared_oversize_body_is_refused_without_reading_it_or_calling_the_app() -> None:
    called = False

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal called
        called = True

    endless = Endless()
    middleware = BodyLimitMiddleware(
        app, max_body_bytes=SMALL, max_signed_in_body_bytes=4 * 2**20, max_upload_bytes=32 * 2**20
    )
    headers = [(b"content-type", b"application/json"), (b"content-length", b"262144000")]  # 250 MB
    status, answered, body = await call(middleware, "POST", LOGIN, headers, endless)
    assert status == 413
    assert answered["content-type"] == "application/problem+json"
    assert answered["connection"] == "close"
    assert json.loads(body)["detail"] == (
        f"the request body is larger than {SMALL} bytes without sign-in (api.max_body_bytes)"
    )
    assert endless.pulled == 0
    assert not called


async def test_a_streamed_oversize_login_body_is_cut_off_at_the_limit(api: ApiClient) -> None:
    # No Content-Length (chunked): the real app reads at most the limit plus one chunk, then 413.
    endless = Endless()
    status, answered, body = await call(
        api.app, "POST", LOGIN, [(b"content-type", b"application/json")], endless
    )
    assert status == 413, body
    assert answered["content-type"] == "application/problem+json"
    assert "larger than 65536 bytes" in json.loads(body)["detail"]
    assert endless.pulled <= SMALL + CHUNK


async def test_an_anonymous_upload_gets_the_small_limit(api: ApiClient) -> None:
    anonymous = api.from_address("203.0.113.9")
    files = {"file": ("photo.jpg", b"\xff" * (SMALL + 1), "image/jpeg")}
    r = await anonymous.post("/api/v1/tickets/1/evidence", files=files)
    assert r.status_code == 413
    assert "without sign-in" in r.json()["detail"]
    r = await anonymous.post(
        "/api/v1/tickets/1/evidence", files=files, headers={"Authorization": "Bearer fws_madeup"}
    )
    assert r.status_code == 413


async def test_a_signed_in_caller_uploads_more_than_the_small_limit(api: ApiClient) -> None:
    worker = api.as_("zhangwei", "operator")
    r = await api.post(
        "/api/v1/tickets",
        json={"site": "s1", "problem": "灭火器过期", "inspectors": "周九"},
        headers=worker,
    )
    assert r.status_code == 201, r.text
    photo = b"\xff\xd8" + b"p" * (200 * 1024)
    r = await api.post(
        f"/api/v1/tickets/{r.json()['ticket']['id']}/evidence",
        files={"file": ("photo.jpg", photo, "image/jpeg")},
        headers=worker,
    )
    assert r.status_code == 201, r.text
    assert r.json()["size"] == len(photo)


async def test_a_signed_in_caller_may_send_json_over_the_small_limit(api: ApiClient) -> None:
    # A maintenance window over a whole site may name thousands of devices.
    devices = [f"smk-1-{i % 3 + 1}" for i in range(8_000)]
    body = {"site": "s1", "device_ids": devices, "reason": "全院检测", "start": T0, "end": T0 + 3600}
    r = await api.post("/api/v1/maintenance", json=body)
    assert len(r.request.content) > SMALL
    assert r.status_code != 413, r.text
    anonymous = api.from_address("203.0.113.9")
    assert (await anonymous.post("/api/v1/maintenance", json=body)).status_code == 413
    r = await api.post("/api/v1/alarms/1/acknowledge", content=b"{" + b" " * (4 * 2**20) + b"}")
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"
    assert "api.max_signed_in_body_bytes" in r.json()["detail"]


def test_the_upload_limit_must_leave_room_for_the_largest_evidence() -> None:
    with pytest.raises(ValidationError, match="max_upload_bytes"):
        Settings(api=ApiSettings(max_upload_bytes=2**20), tickets=TicketPolicy(evidence_max_bytes=2**20))


# --- a real server, a real socket ---------------------------------------------------------------


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[int]:
    # Our own socket, bound before uvicorn starts: a port picked free and bound later can be taken
    # in between by another process on a busy machine.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn offers a flag only
        await asyncio.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def send_until_answered(port: int, head: bytes, piece: bytes, most: int) -> tuple[bytes, int]:
    """Send `head`, then `piece` over and over (at most `most` bytes) until the server answers;
    the answer's status line and how many body bytes were sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0
    try:
        writer.write(head)
        read = asyncio.ensure_future(reader.readline())
        while sent < most and not read.done():
            writer.write(piece)
            sent += len(piece)
            with contextlib.suppress(ConnectionError):
                await asyncio.wait_for(writer.drain(), 0.5)
            await asyncio.sleep(0)
        status = await asyncio.wait_for(read, 10)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return status, sent


async def test_a_250_mb_login_body_over_a_socket_is_refused_at_once(api: ApiClient) -> None:
    async with served(api.app) as port:
        head = (
            f"POST {LOGIN} HTTP/1.1\r\nHost: firewatch\r\nContent-Type: application/json\r\n"
            f"Content-Length: {250 * 2**20}\r\n\r\n"
        ).encode()
        status, sent = await send_until_answered(port, head, b" " * CHUNK, 250 * 2**20)
        assert status.startswith(b"HTTP/1.1 413"), status
        assert sent < 32 * 2**20  # answered long before the body was through

        chunk = f"{CHUNK:x}\r\n".encode() + b" " * CHUNK + b"\r\n"
        head = (
            f"POST {LOGIN} HTTP/1.1\r\nHost: firewatch\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
        status, sent = await send_until_answered(port, head, chunk, 250 * 2**20)
        assert status.startswith(b"HTTP/1.1 413"), status
        assert sent < 32 * 2**20
