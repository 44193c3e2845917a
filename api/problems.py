"""RFC 7807 problem bodies for every error the API returns."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

PROBLEM = "application/problem+json"


class Problem(BaseModel):
    """An RFC 7807 problem: what went wrong (`title`) and what to do about it (`detail`)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str = ""
    errors: list[dict[str, Any]] | None = Field(default=None, description="422: each invalid field")


_MEANING = {
    400: "the request cannot be served as asked",
    401: "not signed in, or the token is unknown, expired or revoked",
    403: "signed in, but the role may not do this",
    404: "no such resource",
    409: "the resource's state does not allow this now",
    413: "the upload is too large",
    415: "the body's content type is not one the operation takes",
    422: "the request is invalid: `errors` lists each field",
    429: "too many attempts: wait (Retry-After)",
    502: "another worker of the cluster, asked on this one's behalf, answered something unexpected",
    503: "a component this needs is not running",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The problem responses an operation declares in the OpenAPI document."""
    return {s: {"model": Problem, "description": _MEANING.get(s, "error")} for s in statuses}


# What every operation that takes a body can answer, wherever it is declared: FastAPI answers 400
# for a body it cannot parse (not UTF-8, broken multipart), and api/body_limit.py 413 for one too
# large, both before the endpoint runs.
BODY_PROBLEMS = {
    "400": "the body cannot be parsed as the media type it claims",
    "413": "the body is larger than the limit (api.max_body_bytes, or api.max_upload_bytes)",
}


def document_problems(openapi: dict[str, Any]) -> dict[str, Any]:
    """Error responses are served as application/problem+json: say so in the document (FastAPI
    files every declared model under application/json), and describe FastAPI's own 422 as one.
    Operations that take a body also declare BODY_PROBLEMS."""
    ref = {"$ref": "#/components/schemas/Problem"}
    for operations in openapi.get("paths", {}).values():
        for operation in operations.values():
            answers = operation.setdefault("responses", {})
            if "requestBody" in operation and any(s not in answers for s in BODY_PROBLEMS):
                for status, description in BODY_PROBLEMS.items():
                    answers.setdefault(status, {"description": description})
                operation["responses"] = dict(sorted(answers.items(), key=lambda kv: kv[0]))
            for status, response in operation.get("responses", {}).items():
                if not status.isdigit() or int(status) < 400:
                    continue
                response["content"] = {PROBLEM: {"schema": ref}}
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Problem", Problem.model_json_schema())
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return openapi


def problem_bytes(status: int, title: str, detail: str) -> bytes:
    """A problem body for answers sent below FastAPI (ASGI middleware)."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return json.dumps(body, ensure_ascii=False).encode()


def problem(status: int, title: str, detail: str = "", **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def invalid_request(raw: Sequence[Any]) -> JSONResponse:
    """422 for validation errors (FastAPI's or pydantic's `errors()`), each with where and why."""
    errors = [
        {
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in raw
    ]
    detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:5])
    return problem(422, "Invalid request", detail, errors=errors)


def install(app: FastAPI) -> None:
    from api.route_table import allowed_methods  # here: route_table imports this module

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})  # WWW-Authenticate, Retry-After
        detail = str(exc.detail)
        table = getattr(app.state, "route_table", None)
        allowed = allowed_methods(table, request.url.path) if exc.status_code == 405 and table else []
        if allowed:  # else a route outside the table (the console): Starlette's Allow stands
            headers["Allow"] = ", ".join(allowed)
            detail = f"{request.method} is not allowed on this path; it takes {', '.join(allowed)}"
        response = problem(exc.status_code, title_for(exc.status_code), detail)
        response.headers.update(headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return invalid_request(exc.errors())

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem(500, "Internal error", "the error was logged; please report it")


def title_for(status: int) -> str:
    return {
        400: "Bad request",
        401: "Not signed in",
        403: "Forbidden",
        404: "Not found",
        405: "Method not allowed",
        409: "Conflict",
        413: "Too large",
        415: "Unsupported media type",
        422: "Invalid request",
        429: "Too many requests",
        503: "Service unavailable",
    }.get(status, "Error")
