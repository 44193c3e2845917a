"""Sign-in throttling (docs/api.md, "Failed sign-ins"): a password guesser is slowed down per
(account, client address) and per client address, and nobody can lock the control-room operator
out of a shift by guessing their password from somewhere else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from accounts.model import AuthError, TooManyAttemptsError
from accounts.service import AccountService
from accounts.throttle import MAX_KEYS, SignInThrottle
from alarms.service import AlarmService
from core.domain import Role
from tests.conftest import TEST_PASSWORD, ApiClient, FakeClock, alarm_service, asgi_api, make_accounts

T0 = 1_800_000_000.0
ATTACKER = "203.0.113.66"
CONTROL_ROOM = "10.20.0.15"
WRONG = "guess-guess-guess"


@pytest.fixture
def alarms(tmp_path: Path) -> AlarmService:
    return alarm_service(tmp_path / "state.sqlite", T0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def accounts(alarms: AlarmService, clock: FakeClock) -> AccountService:
    service = make_accounts(
        alarms.sessions,
        clock=clock,
        max_failures=5,
        max_failures_per_address=12,
        lockout_s=60,
        lockout_max_s=900,
    )
    service.create_user("operator1", TEST_PASSWORD, [Role.OPERATOR])
    return service


def attempt(accounts: AccountService, name: str, password: str, address: str) -> str:
    """'in', 'wrong' (401) or 'wait' (429), as the API would answer."""
    try:
        accounts.login(name, password, address)
    except TooManyAttemptsError:
        return "wait"
    except AuthError:
        return "wrong"
    return "in"


def wait_of(accounts: AccountService, name: str, address: str) -> float:
    with pytest.raises(TooManyAttemptsError) as refused:
        accounts.login(name, TEST_PASSWORD, address)
    return refused.value.retry_after_s


# --- per (account, address) -----------------------------------------------------------------------


def test_five_wrong_passwords_make_that_address_wait_for_that_account(accounts: AccountService) -> None:
    outcomes = [attempt(accounts, "operator1", WRONG, ATTACKER) for _ in range(5)]
    assert outcomes == ["wrong"] * 5
    # Even the right password waits now, from the guesser's address.
    assert attempt(accounts, "operator1", TEST_PASSWORD, ATTACKER) == "wait"
    assert wait_of(accounts, "operator1", ATTACKER) == 60


def test_the_operator_signs_in_from_the_control_room_while_a_guesser_is_refused(
    accounts: AccountService, clock: FakeClock
) -> None:
    for _ in range(40):  # hammering: only the first five are even checked
        attempt(accounts, "operator1", WRONG, ATTACKER)
        clock.now += 1
    assert attempt(accounts, "operator1", WRONG, ATTACKER) == "wait"
    assert attempt(accounts, "operator1", TEST_PASSWORD, CONTROL_ROOM) == "in"


def test_each_failure_beyond_the_limit_doubles_the_wait_up_to_the_cap(
    accounts: AccountService, clock: FakeClock
) -> None:
    for _ in range(5):
        attempt(accounts, "operator1", WRONG, ATTACKER)
    waits = []
    for _ in range(6):
        wait = wait_of(accounts, "operator1", ATTACKER)
        waits.append(wait)
        clock.now += wait  # the guesser waits exactly as told, then guesses again
        assert attempt(accounts, "operator1", WRONG, ATTACKER) == "wrong"
    assert waits == [60, 120, 240, 480, 900, 900]


def test_refused_attempts_do_not_lengthen_the_wait(accounts: AccountService, clock: FakeClock) -> None:
    for _ in range(5):
        attempt(accounts, "operator1", WRONG, ATTACKER)
    clock.now += 30
    for _ in range(20):
        assert attempt(accounts, "operator1", WRONG, ATTACKER) == "wait"
    assert wait_of(accounts, "operator1", ATTACKER) == 30


def test_a_right_password_starts_the_count_afresh(accounts: AccountService) -> None:
    for _ in range(4):
        attempt(accounts, "operator1", WRONG, CONTROL_ROOM)  # typos at the start of a shift
    assert attempt(accounts, "operator1", TEST_PASSWORD, CONTROL_ROOM) == "in"
    assert [attempt(accounts, "operator1", WRONG, CONTROL_ROOM) for _ in range(5)] == ["wrong"] * 5


def test_a_pair_quiet_for_twice_the_longest_wait_is_forgotten(
    accounts: AccountService, clock: FakeClock
) -> None:
    for _ in range(5):
        attempt(accounts, "operator1", WRONG, ATTACKER)
    clock.now += 2 * 900 + 1
    assert [attempt(accounts, "operator1", WRONG, ATTACKER) for _ in range(5)] == ["wrong"] * 5


def test_an_unknown_name_is_throttled_like_a_real_one(accounts: AccountService) -> None:
    # The answers do not tell which names exist.
    real = [attempt(accounts, "operator1", WRONG, ATTACKER) for _ in range(6)]
    made_up = [attempt(accounts, "nobody-here", WRONG, ATTACKER) for _ in range(6)]
    assert real == made_up == ["wrong"] * 5 + ["wait"]


def test_parallel_guesses_cannot_slip_past_the_limit(accounts: AccountService) -> None:
    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(lambda i: attempt(accounts, "operator1", f"guess-{i}", ATTACKER), range(40)))
    assert outcomes.count("wrong") == 5
    assert outcomes.count("wait") == 35


# --- per address, across accounts ---------------------------------------------------------------


def test_one_address_guessing_many_accounts_waits_for_all_of_them(accounts: AccountService) -> None:
    # Four names, three guesses each: no pair reaches its limit of five, the address reaches 12.
    names = ["operator1", "admin", "safety", "leader"]
    outcomes = [attempt(accounts, name, WRONG, ATTACKER) for name in names for _ in range(3)]
    assert outcomes == ["wrong"] * 12
    assert attempt(accounts, "someone-new", WRONG, ATTACKER) == "wait"
    assert wait_of(accounts, "operator1", ATTACKER) == 60
    assert attempt(accounts, "operator1", TEST_PASSWORD, CONTROL_ROOM) == "in"


def test_signing_in_to_an_own_account_does_not_reset_an_addresses_count(accounts: AccountService) -> None:
    accounts.create_user("insider", "own-Secret-Phrase-77", [Role.VIEWER])
    names = ["a1", "a2", "a3", "a4"]
    for name in names:
        for _ in range(3):
            attempt(accounts, name, WRONG, ATTACKER)
            assert attempt(accounts, "insider", "own-Secret-Phrase-77", "198.51.100.1") == "in"
    # The guesses from ATTACKER still count: its twelve failures make it wait.
    assert attempt(accounts, "insider", "own-Secret-Phrase-77", ATTACKER) == "wait"


def test_the_throttles_memory_is_bounded(accounts: AccountService) -> None:
    throttle = accounts.throttle
    assert isinstance(throttle, SignInThrottle)  # one node's: in memory
    for i in range(MAX_KEYS + 500):
        throttle.begin(f"user{i}", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", T0)
    assert len(throttle.pairs._records) <= MAX_KEYS + 1
    assert len(throttle.addresses._records) <= MAX_KEYS + 1


# --- through the API ------------------------------------------------------------------------------


@pytest.fixture
async def api(alarms: AlarmService, tmp_path: Path) -> AsyncIterator[ApiClient]:
    async with asgi_api(alarms, tmp_path) as client:
        yield client


async def test_the_api_answers_429_with_retry_after_and_lets_the_operator_in_elsewhere(
    api: ApiClient,
) -> None:
    operator = api.as_("operator1", "operator")  # a session opened before the attack
    attacker = api.from_address(ATTACKER)
    control_room = api.from_address(CONTROL_ROOM)
    body = {"username": "operator1", "password": WRONG}
    for _ in range(5):
        assert (await attacker.post("/api/v1/auth/login", json=body)).status_code == 401
    refused = await attacker.post("/api/v1/auth/login", json={**body, "password": TEST_PASSWORD})
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) == 60
    assert "try again in 60 s" in refused.json()["detail"]
    # The operator signs in from the control room, and the session opened before still works.
    signed_in = await control_room.post(
        "/api/v1/auth/login", json={"username": "operator1", "password": TEST_PASSWORD}
    )
    assert signed_in.status_code == 200, signed_in.text
    assert (await api.get("/api/v1/auth/me", headers=operator)).json()["name"] == "operator1"
    assert (await api.get("/api/v1/alarms", headers=operator)).status_code == 200
