"""What every operation does alike (docs/api.md, conventions): a 405 names every method its path
takes, a query parameter an operation does not take is refused rather than ignored, and every
operation that takes a body documents the 400 and 413 it can answer before it runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from api.app import openapi_document
from tests.conftest import ApiClient, alarm_service, asgi_api

T0 = 1_800_000_000.0


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[ApiClient]:
    async with asgi_api(alarm_service(tmp_path / "state.sqlite", T0), tmp_path) as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/api/v1/users/zhangwei", "GET, PATCH"),  # two routes, one path
        ("DELETE", "/api/v1/devices", "GET, POST"),
        ("OPTIONS", "/api/v1/devices/smk-1-1", "GET, PUT, DELETE"),
        ("PATCH", "/api/v1/tickets/ledger.xlsx", "GET"),  # not taken for a ticket id
        ("PUT", "/api/v1/maintenance", "GET, POST"),
    ],
)
async def test_a_405_names_every_method_the_path_takes(
    api: ApiClient, method: str, path: str, allow: str
) -> None:
    r = await api.request(method, path)
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == allow
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == f"{method} is not allowed on this path; it takes {allow}"


async def test_an_unknown_query_parameter_is_refused_with_what_the_operation_takes(api: ApiClient) -> None:
    r = await api.get("/api/v1/tickets", params={"stauts": "open"})  # a typo must not list everything
    assert r.status_code == 422
    (error,) = r.json()["errors"]
    assert error["loc"] == ["query", "stauts"]
    assert "status" in error["msg"]
    assert (await api.get("/api/v1/tickets", params={"status": "open"})).status_code == 200


async def test_a_single_value_parameter_given_twice_is_refused(api: ApiClient) -> None:
    r = await api.get("/api/v1/alarms?site=s1&site=s2")
    assert r.status_code == 422
    assert r.json()["errors"][0]["msg"] == "give this query parameter once"


def test_every_operation_that_takes_a_body_documents_400_and_413() -> None:
    for path, operations in openapi_document()["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                assert {"400", "413"} <= set(operation["responses"]), (method, path)
