"""A state store that cannot be reached is a 503 with what to expect, never a 500."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from api.problems import problem

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 5
DETAIL = (
    "the state store (alarms, tickets, accounts) cannot be reached; retry shortly. Alarms detected "
    "meanwhile still reach the live streams and /api/v1/alarms/unrecorded, and are recorded once "
    "the store is back"
)


def install(app: FastAPI) -> None:
    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        logger.warning("%s %s: state store unavailable: %s", request.method, request.url.path, exc)
        response = problem(503, "Service unavailable", DETAIL)
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

    for kind in (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError, DBAPIError):
        app.add_exception_handler(kind, unavailable)
