"""Limits a cluster's workers count together (docs/scale.md, "Limits counted together"): two
workers on one PostgreSQL database refuse the sign-in after the limit, and the staff report after
five, exactly where one worker would, whichever worker takes each attempt. One worker alone still
counts in its memory, never in the store. PostgreSQL failing locks nobody out: the sign-in throttle
counts in the worker's memory meanwhile, and the rate limit admits (both say so in the log, once).
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from accounts.model import AuthError, TooManyAttemptsError
from accounts.service import AccountService
from accounts.shared_throttle import SharedSignInThrottle
from accounts.throttle import SignInThrottle
from alarms.service import AlarmService
from alarms.tickets import TicketOpener
from api.rate_limit import RateLimit, SharedRateLimit
from api.routes.staff_reports import REPORTS_PER_WINDOW, WINDOW_S
from core.domain import Role
from core.settings import TicketPolicy
from ingest.index import DeviceIndex
from storage.cluster_models import RateLimitRow, SignInFailureRow
from storage.db import open_store
from storage.registry_sync import sync_registry
from tests.conftest import (
    PROFILES,
    TEST_PASSWORD,
    ApiClient,
    FakeClock,
    asgi_api,
    make_accounts,
    small_registry,
)
from tests.postgres import PrivatePostgres
from tests.test_staff_reports import code_of, codes, send
from tickets.service import TicketService

T0 = 1_800_000_000.0
ATTACKER = "203.0.113.66"
CONTROL_ROOM = "10.20.0.15"
WRONG = "guess-guess-guess"
LIMITS = {"max_failures": 5, "max_failures_per_address": 12, "lockout_s": 60, "lockout_max_s": 900}

pytestmark = pytest.mark.integration


def workers(url: str, clock: FakeClock, n: int = 2, **limits: float) -> list[AccountService]:
    """`n` workers' account services on one database, each with its own engine and connections."""
    out = []
    for _ in range(n):
        _, sessions = open_store(url)
        out.append(make_accounts(sessions, clock=clock, clustered=True, **{**LIMITS, **limits}))
    return out


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


def rows(sessions: sessionmaker[Session], table: type[SignInFailureRow] | type[RateLimitRow]) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(table)) or 0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def pair(postgres_url: str, clock: FakeClock) -> tuple[AccountService, AccountService]:
    w1, w2 = workers(postgres_url, clock)
    w1.create_user("operator1", TEST_PASSWORD, [Role.OPERATOR])
    return w1, w2


# --- the sign-in throttle ----------------------------------------------------------------------------


def test_the_sixth_attempt_is_refused_whichever_worker_took_the_five(
    pair: tuple[AccountService, AccountService],
) -> None:
    w1, w2 = pair
    outcomes = [attempt((w1, w2)[i % 2], "operator1", WRONG, ATTACKER) for i in range(5)]
    assert outcomes == ["wrong"] * 5
    assert attempt(w1, "operator1", TEST_PASSWORD, ATTACKER) == "wait"
    assert wait_of(w2, "operator1", ATTACKER) == 60
    # The operator, from the control room, is let in by either.
    assert attempt(w2, "operator1", TEST_PASSWORD, CONTROL_ROOM) == "in"
    assert attempt(w1, "operator1", TEST_PASSWORD, CONTROL_ROOM) == "in"


def test_the_doubling_wait_runs_across_the_workers(
    pair: tuple[AccountService, AccountService], clock: FakeClock
) -> None:
    w1, w2 = pair
    for i in range(5):
        attempt((w1, w2)[i % 2], "operator1", WRONG, ATTACKER)
    waits = []
    for i in range(6):
        wait = wait_of((w2, w1)[i % 2], "operator1", ATTACKER)
        waits.append(wait)
        clock.now += wait
        assert attempt((w1, w2)[i % 2], "operator1", WRONG, ATTACKER) == "wrong"
    assert waits == [60, 120, 240, 480, 900, 900]


def test_a_right_password_on_one_worker_starts_the_pairs_count_afresh_on_the_other(
    pair: tuple[AccountService, AccountService],
) -> None:
    w1, w2 = pair
    for _ in range(4):
        attempt(w1, "operator1", WRONG, CONTROL_ROOM)
    assert attempt(w2, "operator1", TEST_PASSWORD, CONTROL_ROOM) == "in"
    assert [attempt(w1, "operator1", WRONG, CONTROL_ROOM) for _ in range(5)] == ["wrong"] * 5
    assert attempt(w2, "operator1", WRONG, CONTROL_ROOM) == "wait"


def test_one_address_guessing_many_accounts_on_both_workers_waits_for_all(
    pair: tuple[AccountService, AccountService],
) -> None:
    w1, w2 = pair
    names = ["operator1", "admin", "safety", "leader"]
    outcomes = [attempt((w1, w2)[i % 2], name, WRONG, ATTACKER) for name in names for i in range(3)]
    assert outcomes == ["wrong"] * 12
    assert attempt(w1, "someone-new", WRONG, ATTACKER) == "wait"
    assert attempt(w2, "operator1", TEST_PASSWORD, CONTROL_ROOM) == "in"


def test_parallel_guesses_on_two_workers_cannot_slip_past_the_limit(
    pair: tuple[AccountService, AccountService],
) -> None:
    w1, w2 = pair
    with ThreadPoolExecutor(16) as pool:
        outcomes = list(
            pool.map(lambda i: attempt((w1, w2)[i % 2], "operator1", f"guess-{i}", ATTACKER), range(40))
        )
    assert outcomes.count("wrong") == 5
    assert outcomes.count("wait") == 35


def test_two_workers_answer_every_attempt_exactly_as_one_worker_does(
    postgres_url: str, tmp_path: Path
) -> None:
    """A random run of right and wrong passwords, names, addresses and pauses: the answers (and the
    waits and reasons of the refusals) of two workers taking turns at random are one worker's."""
    limits = {"max_failures": 3, "max_failures_per_address": 7, "lockout_s": 60, "lockout_max_s": 400}
    one_clock, two_clock = FakeClock(T0), FakeClock(T0)
    _, sessions = open_store(f"sqlite:///{tmp_path / 'one.sqlite'}")
    one = make_accounts(sessions, clock=one_clock, **limits)
    two = workers(postgres_url, two_clock, **limits)
    for accounts in (one, two[0]):
        accounts.create_user("operator1", TEST_PASSWORD, [Role.OPERATOR])
        accounts.create_user("safety1", TEST_PASSWORD, [Role.SAFETY])
    rng = random.Random(20261206)
    answers: dict[str, list[str]] = {"one": [], "two": []}
    for _ in range(250):
        name = rng.choice(["operator1", "safety1", "nobody"])
        address = rng.choice([ATTACKER, CONTROL_ROOM, "198.51.100.7"])
        password = TEST_PASSWORD if rng.random() < 0.15 else WRONG
        pause = rng.choice([0.0, 0.0, 0.0, 1.0, 30.0, 61.0, 250.0, 801.0])
        one_clock.now += pause
        two_clock.now += pause
        for label, accounts in (("one", one), ("two", rng.choice(two))):
            try:
                accounts.login(name, password, address)
                answers[label].append("in")
            except TooManyAttemptsError as exc:
                answers[label].append(f"wait {exc.retry_after_s} {exc}")
            except AuthError:
                answers[label].append("wrong")
    assert answers["two"] == answers["one"]
    # The run went through every kind of answer.
    assert {a.split()[0] for a in answers["one"]} == {"in", "wrong", "wait"}


def test_one_worker_alone_counts_in_memory_and_writes_nothing(postgres_url: str, clock: FakeClock) -> None:
    _, sessions = open_store(postgres_url)
    alone = make_accounts(sessions, clock=clock, **LIMITS)
    assert isinstance(alone.throttle, SignInThrottle)
    alone.create_user("operator1", TEST_PASSWORD, [Role.OPERATOR])
    assert [attempt(alone, "operator1", WRONG, ATTACKER) for _ in range(6)] == ["wrong"] * 5 + ["wait"]
    assert rows(sessions, SignInFailureRow) == 0


def test_keys_quiet_for_twice_the_longest_wait_are_deleted(
    pair: tuple[AccountService, AccountService], clock: FakeClock
) -> None:
    w1, w2 = pair
    for i in range(5):
        attempt((w1, w2)[i % 2], "operator1", WRONG, ATTACKER)
    attempt(w1, "operator1", WRONG, CONTROL_ROOM)
    assert rows(w1.sessions, SignInFailureRow) == 4  # two pairs, two addresses
    clock.now += 2 * 900 - 10
    attempt(w2, "operator1", WRONG, CONTROL_ROOM)  # keeps the control room's keys
    clock.now += 11
    throttle = w1.throttle
    assert isinstance(throttle, SharedSignInThrottle)
    throttle.sweep(clock.now)
    assert rows(w1.sessions, SignInFailureRow) == 2
    assert [attempt(w2, "operator1", WRONG, ATTACKER) for _ in range(5)] == ["wrong"] * 5


# --- the staff report's rate limit -------------------------------------------------------------------


@pytest.fixture
async def two_apps(postgres_url: str, tmp_path: Path) -> AsyncIterator[tuple[ApiClient, ApiClient]]:
    """Two workers' APIs on one database, clustered, their clocks one."""
    clock = FakeClock(T0)
    registry = small_registry()
    index = DeviceIndex.build(registry, PROFILES)
    async with AsyncExitStack() as stack:
        clients = []
        for n in (1, 2):
            _, sessions = open_store(postgres_url)
            sync_registry(sessions, registry, PROFILES)
            alarms = AlarmService(sessions, index, TicketOpener(index, TicketPolicy()), clock)
            tickets = TicketService(sessions, index, TicketPolicy(), alarms=alarms, clock=clock)
            folder = tmp_path / f"w{n}"
            folder.mkdir()
            clients.append(await stack.enter_async_context(asgi_api(alarms, folder, tickets, clustered=True)))
        yield clients[0], clients[1]


async def test_the_sixth_report_from_an_address_is_refused_whichever_worker_took_the_five(
    two_apps: tuple[ApiClient, ApiClient],
) -> None:
    a, b = two_apps
    room = code_of(await codes(a), place="s1/b1/f1/z1/r101")
    for i in range(REPORTS_PER_WINDOW):
        assert (await send((a, b)[i % 2], room["token"], photo=None)).status_code == 201
    for api in (a, b):
        r = await send(api, room["token"], photo=None)
        assert r.status_code == 429
        assert int(r.headers["Retry-After"]) == WINDOW_S
        assert "过于频繁" in r.json()["detail"]
    total = (await b.get("/api/v1/tickets", params={"source": "staff_report"})).json()["total"]
    assert total == REPORTS_PER_WINDOW
    assert (await send(b.from_address("10.0.0.9"), room["token"], photo=None)).status_code == 201


def test_the_shared_window_answers_exactly_as_the_one_in_memory(postgres_url: str) -> None:
    """A random run of submissions from three addresses, to two workers at random: every answer
    (admitted, or the seconds to wait) is what one worker's memory gives."""
    one = RateLimit(3, 100.0)
    two = [SharedRateLimit(open_store(postgres_url)[1], "test", 3, 100.0) for _ in range(2)]
    rng = random.Random(7)
    now = T0
    answers: dict[str, list[float]] = {"one": [], "two": []}
    for _ in range(300):
        now += rng.choice([0.0, 0.0, 1.5, 10.0, 33.0, 99.0, 100.0, 250.0])
        address = rng.choice(["10.0.0.1", "10.0.0.2", "2001:db8::7"])
        answers["one"].append(one.wait_s(address, now))
        answers["two"].append(rng.choice(two).wait_s(address, now))
    assert answers["two"] == answers["one"]
    assert 0.0 in answers["one"]
    assert any(w > 0 for w in answers["one"])


def test_parallel_submissions_to_two_workers_admit_exactly_the_limit(postgres_url: str) -> None:
    limits = [SharedRateLimit(open_store(postgres_url)[1], "test", 5, 600.0) for _ in range(2)]
    with ThreadPoolExecutor(16) as pool:
        waits = list(pool.map(lambda i: limits[i % 2].wait_s("10.0.0.1", T0), range(40)))
    assert waits.count(0.0) == 5
    assert all(w == 600.0 for w in waits if w != 0.0)


def test_quiet_addresses_are_deleted_and_one_worker_alone_writes_nothing(postgres_url: str) -> None:
    _, sessions = open_store(postgres_url)
    shared = SharedRateLimit(sessions, "test", 5, 600.0)
    shared.wait_s("10.0.0.1", T0)  # the first call of a worker sweeps
    shared.wait_s("10.0.0.2", T0 + 500)
    assert rows(sessions, RateLimitRow) == 2
    shared.wait_s("10.0.0.3", T0 + 601)  # a minute after the first sweep: another
    assert rows(sessions, RateLimitRow) == 2  # 10.0.0.1's window is over
    RateLimit(5, 600.0).wait_s("10.0.0.4", T0)
    assert rows(sessions, RateLimitRow) == 2


# --- PostgreSQL failing --------------------------------------------------------------------------------


@pytest.fixture
def own_postgres() -> Iterator[PrivatePostgres]:
    """A cluster of this test's own: it is stopped, which no other test may see."""
    cluster = PrivatePostgres().start()
    try:
        yield cluster
    finally:
        cluster.close()


def test_with_postgresql_down_sign_ins_are_counted_in_memory_and_reports_admitted(
    own_postgres: PrivatePostgres, caplog: pytest.LogCaptureFixture
) -> None:
    url = own_postgres.url(own_postgres.create_database())
    (w1,) = workers(url, FakeClock(T0), n=1)
    throttle = w1.throttle
    assert isinstance(throttle, SharedSignInThrottle)
    limit = SharedRateLimit(w1.sessions, "test", 1, 600.0)
    for _ in range(3):
        assert throttle.begin("operator1", ATTACKER, T0) is None  # counted in the cluster
    assert limit.wait_s(ATTACKER, T0) == 0.0
    assert limit.wait_s(ATTACKER, T0) == 600.0
    with w1.sessions() as s:
        # The test cluster runs with synchronous_commit off, so a crash could lose the last commits;
        # a checkpoint makes them durable, as a production server's commit does.
        s.execute(text("CHECKPOINT"))
    own_postgres.halt()
    try:
        with caplog.at_level(logging.WARNING):
            # This worker goes on from the cluster's count it last read: two more, then a wait.
            assert throttle.begin("operator1", ATTACKER, T0) is None
            assert throttle.begin("operator1", ATTACKER, T0) is None
            refusal = throttle.begin("operator1", ATTACKER, T0)
            assert refusal is not None
            assert refusal.retry_after_s == 60
            throttle.succeeded("operator1", CONTROL_ROOM)  # no error either
            # The rate limit admits, but for a refusal this worker was told of (its wait stands).
            assert [limit.wait_s(CONTROL_ROOM, T0) for _ in range(3)] == [0.0, 0.0, 0.0]
            assert limit.wait_s(ATTACKER, T0 + 1) == 599.0
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 2  # once each, not once per attempt
        assert "sign-in throttle" in warnings[0]
        assert "counts sign-ins on its own" in warnings[0]
        assert "rate limit" in warnings[1]
        assert "admitted" in warnings[1]
    finally:
        own_postgres.resume()
    # Back: counted in the cluster again (which holds its three, and no admission from the outage).
    assert throttle.begin("operator1", CONTROL_ROOM, T0) is None
    assert limit.wait_s(CONTROL_ROOM, T0) == 0.0
    assert limit.wait_s(CONTROL_ROOM, T0) == 600.0
    assert rows(w1.sessions, SignInFailureRow) == 4


def test_a_refusal_a_worker_knows_of_is_answered_without_the_database(
    pair: tuple[AccountService, AccountService], postgres_url: str
) -> None:
    """A flood from a refused address costs the store nothing: the worker that was told of the wait
    answers from memory until it ends (with the same wait and reason)."""
    w1, w2 = pair
    for i in range(5):
        attempt((w1, w2)[i % 2], "operator1", WRONG, ATTACKER)
    told = wait_of(w1, "operator1", ATTACKER)  # from the store
    statements = Statements(w1.sessions)
    assert [wait_of(w1, "operator1", ATTACKER) for _ in range(20)] == [told] * 20
    limit = SharedRateLimit(w1.sessions, "test", 1, 600.0)
    limit.wait_s(ATTACKER, T0)
    assert limit.wait_s(ATTACKER, T0) == 600.0  # told by the store
    before = statements.count
    assert [limit.wait_s(ATTACKER, T0 + 10) for _ in range(20)] == [590.0] * 20
    assert statements.count == before
    assert statements.count == 3  # the rate limit's first two calls and its first sweep; none for sign-ins


class Statements:
    """Counts the statements an engine sends."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.count = 0
        event.listen(sessions.kw["bind"], "before_cursor_execute", self._seen)

    def _seen(self, *_args: object) -> None:
        self.count += 1
