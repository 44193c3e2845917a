"""Property-based robustness of the API (schemathesis over the generated OpenAPI document), with
every check schemathesis has: no input, however odd, makes the service answer 5xx, a status code,
content type or header its document does not list, or a body outside its schema; invalid input
is refused, valid input served; a 405 names the methods the path takes.

The app is the real service's, over the demo hospital, with an alarm and a ticket in the store so
that generated ids sometimes hit something. Every call is an admin's, so the inputs reach the
endpoints behind sign-in; after a call that may have revoked the key it was made with (DELETE
/api-keys/{key_id}: an API key cannot log out) the next call gets a fresh one. The live streams (SSE
and WebSocket) never end by themselves and are left to their own tests.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation

from api.app import create_app
from api.downloads import XLSX
from core.domain import AlarmCategory, DetectorEvent, DetectorEventKind, Role
from core.settings import MqttSettings, Settings
from firewatch.service import Service
from tests.conftest import make_accounts

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    data: Path = tmp_path_factory.mktemp("fuzz")
    # A broker URL that is never dialled: the service is not started, only its API is exercised.
    svc = Service(Settings(data_dir=data, mqtt=MqttSettings(url="mqtt://127.0.0.1:9")))
    # Passwords hashed as in every other API test (tests/conftest.py make_accounts): the generated
    # sign-ins, new users and password changes each cost a production-strength hash otherwise.
    svc.accounts = make_accounts(svc.sessions)
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


class AdminKey:
    """An admin API key for the generated calls. Minting one is a committed write (a few ms, tens on a
    busy machine): a key each for some 5,000 calls cost more than a tenth of this module's time. One
    key serves until a call may have revoked it; only DELETE /api-keys/{key_id} can (its generated id
    may be this key's), so after it the next call gets a new key."""

    REVOKES = ("DELETE", "/api/v1/api-keys/{key_id}")

    def __init__(self, service: Service) -> None:
        self.service = service
        self.serial = itertools.count(1)
        self.token = self._mint()

    def _mint(self) -> str:
        issued, _ = self.service.accounts.create_api_key(f"fuzz-{next(self.serial)}", [Role.ADMIN], by="test")
        return issued.token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def after(self, method: str, path: str) -> None:
        if (method.upper(), path) == self.REVOKES:
            self.token = self._mint()


@pytest.fixture(scope="module")
def admin_key(service: Service) -> AdminKey:
    return AdminKey(service)


# positive_data_acceptance expects a request the document calls valid to be served (2xx) or refused
# for who asks (401, 403), what is missing (404), the state of things (409) or throttling (429).
# These operations also check what a JSON schema cannot say, and answer 422 with the reason: a
# password containing the user name, an expiry in the past, a place, profile or patrol route not
# configured, the registry file's own content, exactly one of two fields, a ticket action's fields,
# "nothing changed", a time range whose start is not before its end, a shift breaking the roster's
# rules, a push address Apprise cannot read, a drill's places, window or recipients.
# negative_data_rejection takes 413 as a refusal too: an oversized body is invalid input that
# api/body_limit.py refuses before the endpoint could.
# The roster import takes an .xlsx upload as its raw body: any bytes (a workbook or not) are sent.
schemathesis.openapi.media_type(XLSX, st.binary(max_size=4096))

SEMANTIC_422 = [
    "create_user",
    "update_user",
    "create_api_key",
    "register_device",
    "import_registry",
    "shelve_alarm",
    "begin_maintenance",
    "report_hazard",
    "update_ticket",
    "transition_ticket",
    "attach_evidence",
    "record_patrol_round",
    "get_device_history",
    "start_handover",
    "countersign_handover",
    "duty_log_report_pdf",
    "ticket_kpis",
    "list_roster",
    "create_shift",
    "update_shift",
    "set_duty_contact",
    "roster_export_xlsx",
    "import_roster",
    "declare_drill",
]
ACCEPTED = ["2xx", "401", "403", "404", "409", "429"]
REFUSED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
FUZZ_CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {"expected-statuses": ACCEPTED},
            "negative_data_rejection": {"expected-statuses": REFUSED},
        },
        "operations": [
            {
                "include-operation-id": SEMANTIC_422,
                "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "422"]}},
            }
        ],
    }
)


@pytest.fixture(scope="module")
def api_schema(app: FastAPI) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=FUZZ_CONFIG)


schema = schemathesis.pytest.from_fixture("api_schema")

# Every check schemathesis has, named rather than left to its defaults: no 5xx, every status and
# content type and header documented, invalid input refused, valid input accepted, 405 with a
# true Allow header, auth not ignored.
load_all_checks()
EVERY_CHECK: list[Any] = list(CHECKS.get_all())


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a failure is reported as found, unshrunk
)
def test_no_input_makes_the_api_fail_or_answer_outside_its_schema(
    case: schemathesis.Case[Any], admin_key: AdminKey
) -> None:
    if case.operation.path.startswith("/api/v1/stream/"):
        return  # an event stream never ends; tests/test_live_streams.py covers it
    if case.operation.path == "/readyz":
        return  # 503 is its documented answer while the broker is unreachable, as it is here
    # A negative case that mutated the headers may have left the Authorization header out on
    # purpose: adding the admin key back would make a request the case still counts as invalid
    # valid again (and served). Sent as generated, its answer must be a refusal (401).
    meta = case.meta
    drops_auth = (
        meta is not None
        and meta.is_negative_at(ParameterLocation.HEADER)
        and "Authorization" not in (case.headers or {})
    )
    try:
        response = case.call_and_validate(
            headers=None if drops_auth else admin_key.headers(), checks=EVERY_CHECK
        )
    finally:
        admin_key.after(case.operation.method, case.operation.path)
    # Negative cases may leave the Authorization header out on purpose: 401 is then the answer.
    # A request that carries the fresh admin key must get past sign-in (only a generated
    # password at /auth/login is rightly refused).
    if "Authorization" in response.request.headers and case.operation.path != "/api/v1/auth/login":
        assert response.status_code != 401, response.text


async def test_an_id_beyond_64_bits_is_refused_as_invalid_not_an_overflow(
    app: FastAPI, admin_key: AdminKey
) -> None:
    import httpx

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://firewatch", headers=admin_key.headers()
    ) as client:
        for url in (
            "/api/v1/tickets/1/evidence/3829366246278832651763712",
            "/api/v1/alarms/9223372036854775808",
        ):
            response = await client.get(url)
            assert response.status_code == 422, (url, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
