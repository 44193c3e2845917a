"""Request-body limits, enforced before anything reads the body (before sign-in too).

A request without a valid bearer token may carry at most `api.max_body_bytes` (64 KiB by
default): sign-in is far smaller, and an anonymous client cannot make the service hold more. A
signed-in caller may send up to `api.max_signed_in_body_bytes` (4 MiB: a maintenance window may
name 10,000 devices), and up to `api.max_upload_bytes` to the upload operations (ticket evidence,
registry import). The token is looked up only for a body that could pass the small limit.

A declared Content-Length over the limit is answered 413 at once, without reading a byte of the
body and without calling the app. A body without Content-Length (chunked) is counted as it
streams, and the read that passes the limit raises `BodyTooLargeError`, an HTTPException, so
FastAPI and the problem handlers answer 413; at most the limit plus one chunk is ever held.
"""

from __future__ import annotations

import asyncio
import re

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from accounts.model import AuthError
from api.context import AppContext
from api.problems import PROBLEM, problem_bytes

# (method, path) of the operations that take large bodies from signed-in callers.
UPLOADS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("POST", re.compile(r"^/api/v1/tickets/[^/]+/evidence/?$")),
    ("PUT", re.compile(r"^/api/v1/registry/?$")),
    ("PUT", re.compile(r"^/api/v1/places/.+/plan/?$")),
)


# The one upload anyone may send: a staff hazard report with its photo (随手拍, no account).
PUBLIC_UPLOAD = re.compile(r"^/api/v1/public/reports/[^/]+/?$")
PUBLIC_UPLOAD_BYTES = 5 * 1024 * 1024 + 64 * 1024  # api/routes/staff_reports.py BODY_MAX_BYTES


class BodyTooLargeError(HTTPException):
    def __init__(self, detail: str) -> None:
        super().__init__(413, detail)


class BodyLimitMiddleware:
    def __init__(
        self, app: ASGIApp, max_body_bytes: int, max_signed_in_body_bytes: int, max_upload_bytes: int
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_signed_in_body_bytes = max_signed_in_body_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        chunked = declared is None and any(name == b"transfer-encoding" for name, _ in scope["headers"])
        limit = self.max_body_bytes
        detail = f"the request body is larger than {limit} bytes without sign-in (api.max_body_bytes)"
        if scope["method"] == "POST" and PUBLIC_UPLOAD.match(scope["path"]):
            # The staff hazard report's photo, without sign-in (api/routes/staff_reports.py).
            limit = PUBLIC_UPLOAD_BYTES
            detail = f"the report is larger than {limit} bytes (a photo of at most 5 MiB)"
        elif (chunked or (declared is not None and declared > limit)) and await _token_is_valid(scope):
            if any(scope["method"] == m and p.match(scope["path"]) for m, p in UPLOADS):
                limit = self.max_upload_bytes
                detail = f"the upload is larger than {limit} bytes (api.max_upload_bytes)"
            else:
                limit = self.max_signed_in_body_bytes
                detail = f"the request body is larger than {limit} bytes (api.max_signed_in_body_bytes)"
        if declared is not None and declared > limit:
            await _refuse(send, detail)
            return

        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(detail)
            return message

        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLargeError as exc:
            # Something read the body outside FastAPI's handlers (a mounted app): answer here.
            if started:
                raise
            await _refuse(send, str(exc.detail))


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            # A malformed length is the server's to refuse (uvicorn answers 400); not ours.
            return int(text) if text.isdigit() else None
    return None


async def _token_is_valid(scope: Scope) -> bool:
    ctx: AppContext | None = getattr(getattr(scope.get("app"), "state", None), "ctx", None)
    if ctx is None or ctx.accounts is None:
        return False
    token = ""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, rest = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                token = rest.strip()
    if not token:
        return False
    try:
        await asyncio.to_thread(ctx.accounts.resolve, token)
    except AuthError:
        return False
    except Exception:  # the store is failing: no large body; the operation itself will say why
        return False
    return True


async def _refuse(send: Send, detail: str) -> None:
    body = problem_bytes(413, "Too large", detail)
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", PROBLEM.encode()),
                (b"content-length", str(len(body)).encode()),
                # The unread body would be taken for the next request: end this connection.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def read_bounded(request: Request, limit: int, what: str) -> bytes:
    """An upload read whole, refused with 413 ("`what` is larger than N MB") as soon as it is known
    to pass `limit` bytes: by its Content-Length, else while it streams in."""
    too_large = f"{what} is larger than {limit // 2**20} MB"
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, too_large)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, too_large)
        chunks.append(chunk)
    return b"".join(chunks)
