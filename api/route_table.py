"""The app's routes as one flat table: which methods a path takes, and which operation serves a
request. Built from the routers create_app includes (their public APIRoute attributes), not from
FastAPI's internal router tree, whose shape changes between FastAPI versions.

Two uses:
- a 405 names every method the path takes in `Allow` (Starlette names only those of the first
  route whose path matched, though GET and PATCH of one path are two routes);
- `QueryCheckMiddleware` refuses a query parameter the operation does not take (422), instead of
  ignoring it: a typo such as `?stauts=open` would otherwise list every ticket as if unfiltered,
  and a parameter given twice where one value is taken would lose all but the last. What each
  operation takes is read from the app's own OpenAPI document.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from api.problems import invalid_request

METHOD_ORDER = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@dataclass(frozen=True, slots=True)
class Entry:
    regex: re.Pattern[str]
    methods: frozenset[str]
    path: str  # as in the OpenAPI document: /api/v1/tickets/{ticket_id}
    static: bool  # no path parameters
    documented: bool  # in the OpenAPI document


def build(routers: Iterable[tuple[str, APIRouter]]) -> list[Entry]:
    """Entries in the order the app tries them (the order the routers are included)."""
    table = []
    for prefix, router in routers:
        for route in router.routes:
            if isinstance(route, APIRoute):
                regex, path_format, convertors = compile_path(prefix + route.path)
                methods = frozenset(route.methods or ())
                table.append(Entry(regex, methods, path_format, not convertors, route.include_in_schema))
    return table


def allowed_methods(table: list[Entry], path: str) -> list[str]:
    """The methods some route takes at this path; a literal path (/tickets/ledger.xlsx) over a
    template that would also match it. Empty when no route matches."""
    matching = [e for e in table if e.regex.match(path)]
    literal = [e for e in matching if e.static]
    methods = set().union(*(e.methods for e in literal or matching))
    return sorted(methods, key=lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER))


def serving(table: list[Entry], method: str, path: str) -> Entry | None:
    """The entry that serves this request, as the router picks it: the first whose path and
    method both match."""
    for entry in table:
        if method in entry.methods and entry.regex.match(path):
            return entry
    return None


@dataclass(frozen=True, slots=True)
class QueryShape:
    names: frozenset[str]
    repeatable: frozenset[str]  # array parameters: may be given more than once


def _is_array(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "array" or any(_is_array(s) for s in schema.get("anyOf", []))


def query_shapes(document: dict[str, Any]) -> dict[tuple[str, str], QueryShape]:
    """(method, path) -> the query parameters the document gives that operation."""
    shapes: dict[tuple[str, str], QueryShape] = {}
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            query = [p for p in operation.get("parameters", []) if p.get("in") == "query"]
            shapes[(method.upper(), path)] = QueryShape(
                frozenset(p["name"] for p in query),
                frozenset(p["name"] for p in query if _is_array(p.get("schema", {}))),
            )
    return shapes


class QueryCheckMiddleware:
    def __init__(self, app: ASGIApp, fastapi_app: FastAPI) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        self._shapes: dict[tuple[str, str], QueryShape] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("query_string"):
            errors = self.refusals(scope)
            if errors:
                await invalid_request(errors)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refusals(self, scope: Scope) -> list[dict[str, Any]]:
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        entry = serving(self.fastapi_app.state.route_table, method, scope["path"])
        if entry is None or not entry.documented:
            return []
        if self._shapes is None:  # the document is built once, on first use
            self._shapes = query_shapes(self.fastapi_app.openapi())
        shape = self._shapes.get((method, entry.path))
        if shape is None:
            return []
        query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        counts: dict[str, int] = {}
        for name, _value in query:
            counts[name] = counts.get(name, 0) + 1
        errors = []
        for name, count in counts.items():
            if name not in shape.names:
                takes = ", ".join(sorted(shape.names)) or "none"
                errors.append(_error(name, f"no such query parameter here (this operation takes: {takes})"))
            elif count > 1 and name not in shape.repeatable:
                errors.append(_error(name, "give this query parameter once"))
        return errors


def _error(name: str, message: str) -> dict[str, Any]:
    return {"loc": ("query", name), "msg": message, "type": "extra_forbidden"}
