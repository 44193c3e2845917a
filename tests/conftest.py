"""Shared fixtures: a private mosquitto per test session, small registries and profiles built in code."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

import storage.db
from accounts.model import AccountExistsError
from accounts.passwords import Passwords
from accounts.service import AccountService
from alarms.service import AlarmService
from alarms.tickets import TicketOpener
from api.app import create_app
from api.context import AppContext
from core.domain import Role
from core.registry import BuildingSpec, Device, FloorSpec, Registry, RoomSpec, SiteSpec, ZoneSpec
from core.settings import TicketPolicy
from device_profiles.schema import Profile
from firewatch.broker import Mosquitto
from firewatch.metrics import Metrics
from ingest.index import DeviceIndex
from storage.db import make_engine, open_store
from storage.registry_sync import sync_registry
from storage.telemetry import TelemetryStore
from tests.cluster_fixtures import nats_cluster  # noqa: F401  (a fixture, offered to every test)
from tests.postgres import PrivatePostgres
from tickets.service import TicketService

SMOKE = Profile.model_validate(
    {
        "id": "t-smoke",
        "name": "test smoke detector",
        "name_zh": "测试感烟探测器",
        "kind": "smoke",
        "system": "fire_alarm",
        "report_interval_s": 10,
        "liveness": {"heartbeat_s": 10, "offline_after": 3},
        "battery": {"low_percent": 20},
        "channels": {
            "smoke": {"unit": "dB/m", "range": [0, 2], "resolution": 0.001},
            "temp": {"unit": "°C", "range": [-20, 120], "resolution": 0.1},
        },
        "detectors": [
            {
                "type": "threshold",
                "channel": "smoke",
                "levels": [
                    {
                        "name": "pre_alarm",
                        "category": "pre_alarm",
                        "at": 0.10,
                        "clear": 0.07,
                        "basis": "test",
                    },
                    {
                        "name": "alarm",
                        "category": "fire",
                        "at": 0.15,
                        "clear": 0.10,
                        "basis": "GB 4715-2024 §5.7",
                    },
                ],
            }
        ],
        "events": {"alarm": {"category": "fire"}, "fault": {"category": "fault"}},
    }
)

PRESSURE = Profile.model_validate(
    {
        "id": "t-pressure",
        "name": "test pressure sensor",
        "name_zh": "测试压力传感器",
        "kind": "water_pressure",
        "system": "water_supply",
        "report_interval_s": 10,
        "liveness": {"heartbeat_s": 10, "offline_after": 3},
        "channels": {"pressure": {"unit": "MPa", "range": [0, 2.5], "resolution": 0.001}},
        "detectors": [
            {
                "type": "threshold",
                "channel": "pressure",
                "direction": "below",
                "levels": [
                    {
                        "name": "low",
                        "category": "supervisory",
                        "at": 0.10,
                        "clear": 0.12,
                        "basis": "GB 50974",
                    },
                ],
            }
        ],
        "events": {"fault": {"category": "fault"}},
    }
)

PROFILES = {p.id: p for p in (SMOKE, PRESSURE)}


def small_registry(zones: int = 2, smoke_per_zone: int = 3) -> Registry:
    """site s1 > building b1 > floor f1 > zones z1.. ; smoke detectors per zone, one pressure sensor."""
    zone_specs = [
        ZoneSpec(
            id=f"z{z}", name=f"{z}区", department="心内科", rooms=[RoomSpec(id=f"r{z}01", name=f"{z}01病房")]
        )
        for z in range(1, zones + 1)
    ]
    site = SiteSpec(
        id="s1",
        name="测试医院",
        buildings=[
            BuildingSpec(id="b1", name="住院楼", floors=[FloorSpec(id="f1", name="1F", zones=zone_specs)])
        ],
    )
    devices = [
        Device(id=f"smk-{z}-{i}", profile="t-smoke", place=f"s1/b1/f1/z{z}/r{z}01", responsible="张三")
        for z in range(1, zones + 1)
        for i in range(1, smoke_per_zone + 1)
    ]
    devices.append(Device(id="prs-1", profile="t-pressure", place="s1/b1/f1/z1", responsible="李四"))
    return Registry([site], devices)


@pytest.fixture
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A private mosquitto on a free port for each test (never the system broker): it starts in
    milliseconds, and no retained message or queued session leaks from one test into another."""
    broker = Mosquitto(data_dir=tmp_path_factory.mktemp("mosquitto")).start()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


# --- migrated templates -------------------------------------------------------------------------------
# Every test's state store starts as the migrations make it. Running all of them again for each of
# the suite's many fresh stores cost a third of a second each (most of a short test): a new store is a
# copy of one the migrations made once per session instead (SQLite: the file; PostgreSQL: CREATE
# DATABASE ... TEMPLATE). The copy is then migrated as usual (a no-op at head). Tests marked
# `fresh_migrations` (tests/test_storage.py) run every migration on every new store.

_real_migrate = storage.db.migrate


class SqliteTemplate:
    """A SQLite state store the migrations made, made on first use, copied to each new store."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "migrated.sqlite"
        self._lock = threading.Lock()
        self._made = False

    def copy_to(self, database: Path) -> None:
        with self._lock:
            if not self._made:
                engine = make_engine(f"sqlite:///{self.path}")
                _real_migrate(engine)
                engine.dispose()  # the last connection gone: the WAL is folded into the file
                self._made = True
        # Copied beside it, then linked into place: whoever opens the same new store at the same
        # time sees it whole or not at all (os.link never replaces a store another opener made).
        copy = database.with_name(f".{database.name}.{uuid.uuid4().hex}.template")
        try:
            shutil.copyfile(self.path, copy)
            os.link(copy, database)
        except OSError:  # made by another opener meanwhile, or the migration says what is wrong
            pass
        finally:
            copy.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplate:
    return SqliteTemplate(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(autouse=True)
def migrated_sqlite_from_a_template(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, sqlite_template: SqliteTemplate
) -> None:
    """A new SQLite state store opened in this process (open_store) starts as a copy of the
    migrated template, unless the test is marked `fresh_migrations`."""
    if request.node.get_closest_marker("fresh_migrations"):
        return

    def migrate(engine: Engine) -> None:
        url = engine.url
        on_disk = url.database not in (None, "", ":memory:") and not url.query
        if url.get_backend_name() == "sqlite" and on_disk:
            database = Path(str(url.database))
            if not database.exists() and database.parent.is_dir():
                sqlite_template.copy_to(database)
        _real_migrate(engine)

    monkeypatch.setattr(storage.db, "migrate", migrate)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PrivatePostgres]:
    """One private PostgreSQL cluster per test session (never the machine's own server)."""
    cluster = PrivatePostgres().start()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def postgres_template(postgres: PrivatePostgres) -> str:
    """A database in the private cluster the migrations made: new test databases are copies of it."""
    name = postgres.create_database()
    engine = make_engine(postgres.url(name))
    _real_migrate(engine)
    engine.dispose()  # CREATE DATABASE ... TEMPLATE needs it unused
    return name


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest, postgres: PrivatePostgres) -> Iterator[str]:
    """A fresh database in the private cluster for one test, dropped afterwards: a copy of the
    migrated template, or empty for tests marked `fresh_migrations`."""
    if request.node.get_closest_marker("fresh_migrations"):
        name = postgres.create_database()
    else:
        name = postgres.create_database(template=request.getfixturevalue("postgres_template"))
    try:
        yield postgres.url(name)
    finally:
        postgres.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The state store's URL: each test using it runs on SQLite and on a private PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


class FakeClock:
    """An injected clock that only moves when a test moves it (no test sleeps)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# Real Argon2id with cheap parameters: tests sign people in often, and the production cost
# (~0.1 s a hash) is a property of the library's defaults, not of the behaviour under test.
TEST_PASSWORDS = Passwords(time_cost=1, memory_cost=1024)
TEST_PASSWORD = "correct-horse-battery"


def alarm_service(
    db: Path | str,
    start: float,
    registry: Registry | None = None,
    profiles: dict[str, Profile] | None = None,
) -> AlarmService:
    """An alarm service on a fresh SQLite store at `db` (or the store at a URL: `store_url`), its
    registry mirrored, its clock a FakeClock at `start` (the small test registry and profiles unless
    others are given)."""
    registry = registry if registry is not None else small_registry()
    profiles = profiles if profiles is not None else PROFILES
    _, sessions = open_store(db if isinstance(db, str) else f"sqlite:///{db}")
    sync_registry(sessions, registry, profiles)
    index = DeviceIndex.build(registry, profiles)
    return AlarmService(sessions, index, TicketOpener(index, TicketPolicy()), FakeClock(start))


def make_accounts(sessions: sessionmaker[Session], **options: Any) -> AccountService:
    return AccountService(sessions, hasher=TEST_PASSWORDS, **options)


def sign_in(accounts: AccountService, name: str, *roles: str, display_name: str = "") -> dict[str, str]:
    """Headers that make a request come from `name` holding `roles` (the account is made on first
    use, with the roles given then), signed in through the real login."""
    with contextlib.suppress(AccountExistsError):
        accounts.create_user(name, TEST_PASSWORD, [Role(r) for r in roles], display_name=display_name)
    issued, _ = accounts.login(name, TEST_PASSWORD)
    return {"Authorization": f"Bearer {issued.token}"}


class ApiClient(httpx.AsyncClient):
    """An API client signed in as `duty-admin` (an admin) unless a request's headers say otherwise."""

    accounts: AccountService
    app: Any  # the ASGI app behind the client

    def from_address(self, host: str) -> ApiClient:
        """Another client of the same app whose requests come from `host` (sign-in throttling is
        per client address). Not signed in: give headers per request."""
        transport = httpx.ASGITransport(app=self.app, client=(host, 50_000))
        other = ApiClient(transport=transport, base_url="http://firewatch")
        other.accounts = self.accounts
        other.app = self.app
        return other

    def as_(self, name: str, *roles: str, display_name: str = "") -> dict[str, str]:
        return sign_in(self.accounts, name, *roles, display_name=display_name)


@contextlib.asynccontextmanager
async def asgi_api(
    alarms: AlarmService, tmp_path: Path, tickets: TicketService | None = None, *, clustered: bool = False
) -> AsyncIterator[ApiClient]:
    """The real FastAPI app over an alarm service and its store, called in process (no server);
    `clustered`: as one of a cluster's workers, counting limits in the (PostgreSQL) store."""
    accounts = make_accounts(alarms.sessions, clustered=clustered)
    ctx = AppContext(
        accounts=accounts,
        tickets=tickets,
        sessions=alarms.sessions,
        alarms=alarms,
        telemetry=TelemetryStore(tmp_path / "telemetry.sqlite"),
        metrics=Metrics().registry,
        readiness=lambda: {"database": "ok"},
        on_human_transition=lambda _t: None,
        refresh_metrics=lambda: None,
        clock=alarms.clock,
        clustered=clustered,
    )
    app = create_app(ctx)
    transport = httpx.ASGITransport(app=app)
    admin = sign_in(accounts, "duty-admin", "admin", display_name="值班管理员")
    async with ApiClient(transport=transport, base_url="http://firewatch", headers=admin) as client:
        client.accounts = accounts
        client.app = app
        yield client
