"""Sign-in, tokens, roles and the audit trail, through the real app over a real SQLite store.

Every /api/v1 operation declares the roles that may call it; a request without a valid token is
401, with a token whose roles do not fit 403; every change by a signed-in caller is audited with
who, when, what and from where; passwords are kept only as Argon2 hashes and default credentials
are refused outside demo mode.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from accounts.model import AccountError, AuthError, DemoAccountRefusedError, TooManyAttemptsError
from accounts.passwords import DEMO_PASSWORD, check_password
from accounts.service import DEMO_ACCOUNTS
from alarms.service import AlarmService
from api import audit as audit_module
from api.app import openapi_document
from api.auth import RedactTokens
from core.domain import AlarmCategory, DetectorEvent, DetectorEventKind, Role
from core.settings import AuthSettings, MqttSettings, Settings, TicketPolicy
from firewatch.service import Service
from storage.models import TokenRow, UserRow
from tests.conftest import (
    TEST_PASSWORD,
    ApiClient,
    FakeClock,
    alarm_service,
    asgi_api,
    make_accounts,
)
from tickets.service import TicketService

T0 = 1_800_000_000.0
NO_BROKER = "mqtt://127.0.0.1:9"  # the service is built, never started: nothing connects
# Open to anyone: health, metrics, signing in, and the staff hazard report a QR code opens (随手拍:
# staff and visitors have no accounts; its random per-place token is what it checks, docs/tickets.md).
OPEN = {"/healthz", "/readyz", "/metrics", "/api/v1/auth/login", "/api/v1/public/reports/{token}"}


@pytest.fixture
def alarms(tmp_path: Path) -> AlarmService:
    return alarm_service(tmp_path / "state.sqlite", T0)


@pytest.fixture
async def api(alarms: AlarmService, tmp_path: Path) -> AsyncIterator[ApiClient]:
    index = alarms.index
    tickets = TicketService(alarms.sessions, index, TicketPolicy(), alarms=alarms, clock=alarms.clock)
    async with asgi_api(alarms, tmp_path, tickets) as client:
        yield client


def raise_fire(alarms: AlarmService) -> int:
    event = DetectorEvent("smk-1-1", "smoke.alarm", DetectorEventKind.RAISE, AlarmCategory.FIRE, T0, 0.3)
    (t,), _ = alarms.apply([event])
    return t.alarm_id


async def login(api: ApiClient, username: str, password: str = TEST_PASSWORD) -> Any:
    return await api.post("/api/v1/auth/login", json={"username": username, "password": password}, headers={})


# --- the document: every operation says who may call it -----------------------------------------


def test_every_operation_declares_its_roles_in_the_openapi_document() -> None:
    doc = openapi_document()
    undeclared = []
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            if path in OPEN:
                assert "security" not in op, f"{method} {path} should be open"
                continue
            security = op.get("security") or []
            roles = [r for requirement in security for r in requirement.get("token", [])]
            if not roles:
                undeclared.append(f"{method.upper()} {path}")
            assert {"401", "403"} <= set(op["responses"]), f"{method} {path} must document 401 and 403"
    assert undeclared == []
    scheme = doc["components"]["securitySchemes"]["token"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")


def test_errors_are_documented_as_problem_bodies() -> None:
    doc = openapi_document()
    ack = doc["paths"]["/api/v1/alarms/{alarm_id}/acknowledge"]["post"]["responses"]
    for status in ("401", "403", "404", "409", "422"):
        assert list(ack[status]["content"]) == ["application/problem+json"], status
    assert "Problem" in doc["components"]["schemas"]


# --- signing in --------------------------------------------------------------------------------


async def test_a_person_signs_in_and_the_token_identifies_them(api: ApiClient) -> None:
    api.as_("zhangwei", "operator", display_name="消控室 张伟")
    r = await login(api, "zhangwei")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token"].startswith("fws_")
    assert body["token_type"] == "bearer"
    assert body["user"] == {
        "name": "zhangwei",
        "display_name": "消控室 张伟",
        "roles": ["operator"],
        "via": "session",
        "expires_at": body["expires_at"],
    }
    me = await api.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.json()["name"] == "zhangwei"


async def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(api: ApiClient) -> None:
    api.as_("zhangwei", "operator")
    wrong = await login(api, "zhangwei", "not-the-password")
    unknown = await login(api, "nobody", "not-the-password")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]
    assert wrong.headers["content-type"] == "application/problem+json"


async def test_no_token_is_401_and_a_made_up_one_too(api: ApiClient) -> None:
    r = await api.get("/api/v1/alarms", headers={"Authorization": ""})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert "sign in" in r.json()["detail"]
    r = await api.get("/api/v1/alarms", headers={"Authorization": "Bearer fws_madeup"})
    assert r.status_code == 401


async def test_signing_out_ends_the_session(api: ApiClient) -> None:
    headers = api.as_("zhangwei", "operator")
    assert (await api.post("/api/v1/auth/logout", headers=headers)).status_code == 204
    r = await api.get("/api/v1/alarms", headers=headers)
    assert r.status_code == 401
    assert "revoked" in r.json()["detail"]


async def test_a_session_expires(alarms: AlarmService) -> None:
    clock = FakeClock(T0)
    accounts = make_accounts(alarms.sessions, clock=clock, session_ttl_s=3600)
    accounts.create_user("zhangwei", TEST_PASSWORD, [Role.OPERATOR])
    issued, _ = accounts.login("zhangwei", TEST_PASSWORD)
    assert accounts.resolve(issued.token).name == "zhangwei"
    clock.now += 3600
    with pytest.raises(AuthError, match="expired"):
        accounts.resolve(issued.token)


async def test_disabling_a_user_ends_their_sessions_at_once(api: ApiClient) -> None:
    headers = api.as_("zhangwei", "operator")
    assert (await api.get("/api/v1/alarms", headers=headers)).status_code == 200
    r = await api.patch("/api/v1/users/zhangwei", json={"disabled": True})
    assert r.status_code == 200
    assert r.json()["disabled"] is True
    assert (await api.get("/api/v1/alarms", headers=headers)).status_code == 401
    assert (await login(api, "zhangwei")).status_code == 401


async def test_changing_your_password_ends_your_sessions(api: ApiClient) -> None:
    headers = api.as_("zhangwei", "operator")
    weak = await api.put(
        "/api/v1/auth/password", json={"current": TEST_PASSWORD, "new": "12345678"}, headers=headers
    )
    assert weak.status_code == 422
    r = await api.put(
        "/api/v1/auth/password",
        json={"current": TEST_PASSWORD, "new": "a-much-longer-secret"},
        headers=headers,
    )
    assert r.status_code == 204
    assert (await api.get("/api/v1/alarms", headers=headers)).status_code == 401
    assert (await login(api, "zhangwei", "a-much-longer-secret")).status_code == 200


# --- roles ---------------------------------------------------------------------------------------


async def test_a_viewer_reads_but_may_not_acknowledge(api: ApiClient, alarms: AlarmService) -> None:
    alarm = raise_fire(alarms)
    viewer = api.as_("guard", "viewer")
    assert (await api.get(f"/api/v1/alarms/{alarm}", headers=viewer)).status_code == 200
    r = await api.post(f"/api/v1/alarms/{alarm}/acknowledge", json={"note": "seen"}, headers=viewer)
    assert r.status_code == 403
    assert "guard (viewer) may not do this" in r.json()["detail"]
    assert "operator" in r.json()["detail"]


async def test_an_operator_acknowledges_and_is_recorded_as_who_did(
    api: ApiClient, alarms: AlarmService
) -> None:
    alarm = raise_fire(alarms)
    operator = api.as_("zhangwei", "operator")
    r = await api.post(f"/api/v1/alarms/{alarm}/acknowledge", json={"note": "到场确认"}, headers=operator)
    assert r.status_code == 200, r.text
    assert r.json()["actor"] == "zhangwei"
    # Nobody can claim to be somebody else: the body has no actor any more.
    r = await api.post(
        f"/api/v1/alarms/{alarm}/clear", json={"actor": "someone-else", "note": ""}, headers=operator
    )
    assert r.status_code == 422


async def test_only_an_admin_manages_accounts(api: ApiClient) -> None:
    operator = api.as_("zhangwei", "operator")
    r = await api.post(
        "/api/v1/users",
        json={"name": "lisi", "roles": ["admin"], "password": "a-long-password-1"},
        headers=operator,
    )
    assert r.status_code == 403
    assert (await api.get("/api/v1/users", headers=operator)).status_code == 403
    r = await api.post(
        "/api/v1/users", json={"name": "lisi", "roles": ["maintenance"], "password": "a-long-password-1"}
    )
    assert r.status_code == 201, r.text
    assert r.json()["roles"] == ["maintenance"]
    assert "password" not in r.json()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"name": "lisi", "roles": ["operator"], "password": "short"}, 422),
        ({"name": "lisi", "roles": ["operator"], "password": "password123"}, 422),
        ({"name": "lisi", "roles": ["operator"], "password": DEMO_PASSWORD}, 422),
        ({"name": "lisi", "roles": [], "password": "a-long-password-1"}, 422),
        ({"name": "李四", "roles": ["operator"], "password": "a-long-password-1"}, 422),
        ({"name": "lisi", "roles": ["janitor"], "password": "a-long-password-1"}, 422),
        ({"name": "duty-admin", "roles": ["operator"], "password": "a-long-password-1"}, 409),
    ],
)
async def test_bad_accounts_are_refused_with_a_reason(
    api: ApiClient, body: dict[str, Any], status: int
) -> None:
    r = await api.post("/api/v1/users", json=body)
    assert r.status_code == status, r.text
    assert r.json()["detail"]


async def test_an_admin_cannot_lock_themself_out(api: ApiClient) -> None:
    r = await api.patch("/api/v1/users/duty-admin", json={"disabled": True})
    assert r.status_code == 422
    r = await api.patch("/api/v1/users/duty-admin", json={"roles": ["viewer"]})
    assert r.status_code == 422


async def test_a_ticket_role_must_be_one_the_person_holds(api: ApiClient) -> None:
    maintenance = api.as_("wushi", "maintenance")
    hazard = {"site": "s1", "problem": "疏散通道堆放杂物", "inspectors": "吴十"}
    r = await api.post("/api/v1/tickets", json={**hazard, "role": "safety"}, headers=maintenance)
    assert r.status_code == 403
    assert "does not hold the role 'safety'" in r.json()["detail"]
    r = await api.post("/api/v1/tickets", json=hazard, headers=maintenance)  # acts as maintenance
    assert r.status_code == 201, r.text
    ticket = r.json()["ticket"]["id"]
    detail = (await api.get(f"/api/v1/tickets/{ticket}")).json()
    assert (detail["events"][0]["actor"], detail["events"][0]["role"]) == ("wushi", "maintenance")


# --- API keys ------------------------------------------------------------------------------------


async def test_an_api_key_works_until_revoked_and_is_shown_only_once(api: ApiClient) -> None:
    r = await api.post("/api/v1/api-keys", json={"name": "bms-gateway", "roles": ["viewer"]})
    assert r.status_code == 201, r.text
    token, key = r.json()["token"], r.json()["key"]
    assert token.startswith("fwk_")
    assert key["hint"] == token[:8]
    headers = {"Authorization": f"Bearer {token}"}
    me = (await api.get("/api/v1/auth/me", headers=headers)).json()
    assert (me["name"], me["via"], me["roles"]) == ("key:bms-gateway", "api_key", ["viewer"])
    listed = (await api.get("/api/v1/api-keys")).json()["items"]
    assert [k["name"] for k in listed] == ["bms-gateway"]
    assert "token" not in listed[0]
    with api.accounts.sessions() as s:  # only the digest is stored
        assert token not in {row.digest for row in s.scalars(select(TokenRow))}
    assert (await api.delete(f"/api/v1/api-keys/{key['id']}")).status_code == 204
    assert (await api.get("/api/v1/alarms", headers=headers)).status_code == 401
    assert (await api.delete("/api/v1/api-keys/999")).status_code == 404


async def test_a_key_name_in_use_is_409(api: ApiClient) -> None:
    body = {"name": "reports", "roles": ["viewer"]}
    assert (await api.post("/api/v1/api-keys", json=body)).status_code == 201
    assert (await api.post("/api/v1/api-keys", json=body)).status_code == 409


# --- the audit trail -----------------------------------------------------------------------------


async def test_every_change_is_audited_with_who_when_what_and_from_where(
    api: ApiClient, alarms: AlarmService
) -> None:
    alarm = raise_fire(alarms)
    operator = api.as_("zhangwei", "operator")
    await api.post(f"/api/v1/alarms/{alarm}/acknowledge", json={"note": "到场"}, headers=operator)
    viewer = api.as_("guard", "viewer")
    await api.post(f"/api/v1/alarms/{alarm}/clear", json={}, headers=viewer)  # refused: audited too
    await login(api, "zhangwei", "wrong-password!")  # a failed sign-in
    r = await api.get("/api/v1/audit", params={"limit": 10})
    assert r.status_code == 200, r.text
    rows = r.json()["items"]
    by_action = {(e["actor"], e["action"]): e for e in rows}
    ack = by_action[("zhangwei", "acknowledge_alarm")]
    assert ack["subject"] == f"/api/v1/alarms/{alarm}/acknowledge"
    assert ack["role"] == "operator"
    assert ack["source"] == "127.0.0.1"
    assert ack["detail"]["status"] == 200
    assert ack["detail"]["via"] == "session"
    assert ack["ts"] == T0  # the service's clock
    assert by_action[("guard", "clear_alarm")]["detail"]["status"] == 403
    assert by_action[("zhangwei", "login")]["detail"]["status"] == 401
    # Passwords never reach the trail.
    assert "wrong-password!" not in r.text
    assert TEST_PASSWORD not in r.text
    # Only the safety office and admins read it.
    assert (await api.get("/api/v1/audit", headers=operator)).status_code == 403
    only = await api.get("/api/v1/audit", params={"actor": "zhangwei", "action": "acknowledge_alarm"})
    assert only.json()["total"] == 1


async def test_signing_out_with_an_api_key_is_refused_and_the_key_keeps_working(api: ApiClient) -> None:
    r = await api.post("/api/v1/api-keys", json={"name": "bms-gateway", "roles": ["viewer"]})
    headers = {"Authorization": f"Bearer {r.json()['token']}"}
    refused = await api.post("/api/v1/auth/logout", headers=headers)
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert "firewatch api-keys revoke" in refused.json()["detail"]
    assert (await api.get("/api/v1/alarms", headers=headers)).status_code == 200


async def test_a_change_refused_for_want_of_a_valid_token_is_audited(api: ApiClient) -> None:
    outsider = api.from_address("198.51.100.23")
    await outsider.post("/api/v1/alarms/1/acknowledge", json={})
    stale = {"Authorization": "Bearer fws_stolen-and-revoked"}
    await outsider.post("/api/v1/alarms/1/clear", json={}, headers=stale)
    rows = (await api.get("/api/v1/audit", params={"actor": "(not signed in)"})).json()["items"]
    by_action = {e["action"]: e for e in rows}
    assert set(by_action) == {"acknowledge_alarm", "clear_alarm"}
    assert {e["source"] for e in rows} == {"198.51.100.23"}
    assert {e["detail"]["status"] for e in rows} == {401}
    assert by_action["clear_alarm"]["detail"]["token_hint"] == "fws_stol"
    assert "stolen-and-revoked" not in str(rows)


async def test_refusals_to_callers_not_signed_in_are_recorded_bounded_then_summarised(
    api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(audit_module, "monotonic", lambda: now[0])
    flooder = api.from_address("203.0.113.50")
    other = api.from_address("203.0.113.51")
    for _ in range(audit_module.PER_ADDRESS + 25):
        assert (await flooder.post("/api/v1/alarms/1/acknowledge", json={})).status_code == 401
    assert (await other.post("/api/v1/alarms/1/acknowledge", json={})).status_code == 401
    now[0] += audit_module.WINDOW_S  # the next window: the first refusal in it writes the summary
    await other.post("/api/v1/alarms/1/acknowledge", json={})
    query: dict[str, str | int] = {"actor": "(not signed in)", "limit": 1000}
    rows = (await api.get("/api/v1/audit", params=query)).json()["items"]
    sources = [e["source"] for e in rows if e["action"] == "acknowledge_alarm"]
    assert sources.count("203.0.113.50") == audit_module.PER_ADDRESS
    assert sources.count("203.0.113.51") == 2
    (summary,) = [e for e in rows if e["action"] == "unrecorded_refusals"]
    assert summary["detail"]["unrecorded"] == 25
    assert summary["detail"]["by_address"] == {"203.0.113.50": 25}


def test_the_refusal_budget_caps_all_addresses_together() -> None:
    budget = audit_module.RefusalBudget(per_address=2, overall=5, window_s=60)
    admitted = [budget.admit(f"10.0.0.{i}", 0.0)[0] for i in range(8)]
    assert admitted == [True] * 5 + [False] * 3
    _, summary = budget.admit("10.0.0.1", 60.0)
    assert summary is not None
    assert summary["unrecorded"] == 3
    assert summary["addresses"] == 3


# --- passwords and default credentials ------------------------------------------------------------


def test_passwords_are_stored_as_argon2id_hashes(alarms: AlarmService) -> None:
    accounts = make_accounts(alarms.sessions)
    accounts.create_user("zhangwei", TEST_PASSWORD, [Role.OPERATOR])
    with alarms.sessions() as s:
        row = s.get(UserRow, "zhangwei")
        assert row is not None
        assert row.password_hash.startswith("$argon2id$")
        assert TEST_PASSWORD not in row.password_hash


@pytest.mark.parametrize(
    "password", ["admin", "Password123", "firewatch-demo", "admin123456", "zhangwei-2026"]
)
def test_weak_and_default_passwords_are_refused(password: str) -> None:
    with pytest.raises(AccountError):
        check_password(password, "zhangwei")


def test_demo_accounts_work_in_demo_mode_and_are_refused_outside_it(alarms: AlarmService) -> None:
    demo = make_accounts(alarms.sessions, demo_mode=True)
    assert demo.ensure_demo_accounts() == list(DEMO_ACCOUNTS)
    issued, principal = demo.login("operator", DEMO_PASSWORD)
    assert principal.name == "operator"
    production = make_accounts(alarms.sessions)
    with pytest.raises(DemoAccountRefusedError, match="firewatch users passwd operator"):
        production.login("operator", DEMO_PASSWORD)
    with pytest.raises(DemoAccountRefusedError):
        production.resolve(issued.token)  # a demo session does not survive a restart outside demo
    production.set_password("operator", "a-real-password-now")
    assert production.login("operator", "a-real-password-now")[1].name == "operator"


def test_a_service_refuses_to_start_with_a_default_admin_password(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        mqtt=MqttSettings(url=NO_BROKER),
        auth=AuthSettings(admin_password=SecretStr("admin123")),
    )
    with pytest.raises(AccountError, match=r"auth.admin_password is refused"):
        Service(settings)


def test_a_service_creates_the_first_admin_from_a_strong_password(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        mqtt=MqttSettings(url=NO_BROKER),
        auth=AuthSettings(admin_password=SecretStr("Str0ng-and-l0ng-enough")),
    )
    service = Service(settings)
    assert [(u.name, [r.value for r in u.roles]) for u in service.accounts.list_users()] == [
        ("admin", ["admin"])
    ]
    for _ in range(5):
        with pytest.raises(AuthError):
            service.accounts.login("admin", "wrong-guess-123")
    with pytest.raises(TooManyAttemptsError):
        service.accounts.login("admin", "Str0ng-and-l0ng-enough")


def test_tokens_in_stream_urls_are_redacted_from_the_access_log() -> None:
    """uvicorn logs HTTP requests on uvicorn.access and WebSocket handshakes on uvicorn.error."""
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/api/v1/stream/alarms?site=s1&access_token=fws_secret", "1.1", 200),
        None,
    )
    RedactTokens().filter(record)
    assert "fws_secret" not in record.getMessage()
    assert "access_token=[redacted]" in record.getMessage()
