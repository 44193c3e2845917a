"""Property-based robustness of the API (schemathesis over the generated OpenAPI document): no input,
however odd, makes the service answer 5xx or break its own documented response schema.

The app is the real service's, over the demo hospital, with an alarm and a ticket in the store so
that generated ids sometimes hit something. Every call is an admin's, so the inputs reach the
endpoints behind sign-in; each call gets a fresh key, because a generated call may revoke the key
it was made with (logout, DELETE /api-keys/{id}). The live streams (SSE and WebSocket) never end by
themselves and are left to their own tests.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from api.app import create_app
from core.domain import AlarmCategory, DetectorEvent, DetectorEventKind, Role
from core.settings import MqttSettings, Settings
from firewatch.service import Service

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    data: Path = tmp_path_factory.mktemp("fuzz")
    # A broker URL that is never dialled: the service is not started, only its API is exercised.
    svc = Service(Settings(data_dir=data, mqtt=MqttSettings(url="mqtt://127.0.0.1:9")))
    now = svc.clock()
    svc.alarms.apply(
        [
            DetectorEvent(
                device_id="b2-f3-z1-r303-smk",
                alarm_type="smoke.alarm",
                kind=DetectorEventKind.RAISE,
                category=AlarmCategory.FIRE,
                ts=now,
                value=0.3,
                detail="smoke 0.3 dB/m",
                basis="test",
            ),
            DetectorEvent(
                device_id="b2-f1-z2-meter-gas",
                alarm_type="device.fault",
                kind=DetectorEventKind.RAISE,
                category=AlarmCategory.FAULT,
                ts=now,
                detail="fault 3",
                basis="test",
            ),
        ]
    )
    yield svc
    svc.telemetry.close()


@pytest.fixture(scope="module")
def app(service: Service) -> FastAPI:
    ctx = service.app_context()
    ctx.start = ctx.stop = None
    return create_app(ctx)


@pytest.fixture(scope="module")
def admin_headers(service: Service) -> Callable[[], dict[str, str]]:
    """Headers with a new admin API key each time (minting one hashes no password: cheap)."""
    serial = itertools.count(1)

    def mint() -> dict[str, str]:
        issued, _ = service.accounts.create_api_key(f"fuzz-{next(serial)}", [Role.ADMIN], by="test")
        return {"Authorization": f"Bearer {issued.token}"}

    return mint


@pytest.fixture(scope="module")
def api_schema(app: FastAPI) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a failure is reported as found, unshrunk
)
def test_no_input_makes_the_api_fail_or_answer_outside_its_schema(
    case: schemathesis.Case[Any], admin_headers: Callable[[], dict[str, str]]
) -> None:
    if case.operation.path.startswith("/api/v1/stream/"):
        return  # an event stream never ends; tests/test_live_streams.py covers it
    if case.operation.path == "/readyz":
        return  # 503 is its documented answer while the broker is unreachable, as it is here
    response = case.call_and_validate(
        headers=admin_headers(), checks=[not_a_server_error, response_schema_conformance]
    )
    # Negative cases may leave the Authorization header out on purpose: 401 is then the answer.
    # A request that carries the fresh admin key must get past sign-in (only a generated
    # password at /auth/login is rightly refused).
    if "Authorization" in response.request.headers and case.operation.path != "/api/v1/auth/login":
        assert response.status_code != 401, response.text


async def test_an_id_beyond_64_bits_is_refused_as_invalid_not_an_overflow(
    app: FastAPI, admin_headers: Callable[[], dict[str, str]]
) -> None:
    import httpx

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://firewatch", headers=admin_headers()
    ) as client:
        for url in (
            "/api/v1/tickets/1/evidence/3829366246278832651763712",
            "/api/v1/alarms/9223372036854775808",
        ):
            response = await client.get(url)
            assert response.status_code == 422, (url, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
