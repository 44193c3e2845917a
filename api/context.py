"""What the API needs from the running service, handed to the app factory (no globals)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session, sessionmaker

from accounts.service import AccountService
from alarms.drill_service import DrillService
from alarms.model import Transition
from alarms.service import AlarmService
from api.live import LiveHub
from core.registry_io import RegistryControl
from ingest.gb26875.codes import Command
from ingest.gb26875.frame import Frame
from ingest.gb26875.listener import DutyCheckRecord, Gb26875Listener
from storage.telemetry_api import Telemetry
from tickets.service import TicketService


class RelayError(Exception):
    """Clustered: the worker a question was relayed to replied something other than an answer."""


@dataclass(frozen=True)
class HeldConnection:
    """Clustered: a transmission device's connection to another worker, as that worker told."""

    address: int
    peer: str
    connected_at: float
    inspected_at: float | None


@dataclass(frozen=True)
class Survey:
    """Clustered: what the other workers hold of the GB/T 26875.3 transmission devices."""

    connections: dict[int, HeldConnection]  # device address -> its connection on another worker
    duty_checks: list[DutyCheckRecord]  # the duty checks the other workers sent, any order
    unanswered: int  # live workers that did not answer in time: their devices may show unconnected


class DeviceSurveyor(Protocol):
    """Clustered: asks every other worker which transmission devices it holds (the relay)."""

    async def survey(self) -> Survey: ...


class DeviceAsker(Protocol):
    """Sends a question to a GB/T 26875.3 transmission device and waits for its answer: the
    listener, or clustered the relay (firewatch/cluster/gb_relay.py), which asks through the
    worker the device is connected to. LookupError: connected nowhere; TimeoutError: no answer in
    time; ConnectionError: the other workers cannot be reached; RelayError."""

    async def ask(self, address: int, command: Command, adu: bytes) -> Frame: ...

    async def duty_check(self, address: int, device_id: str, timeout_minutes: int) -> DutyCheckRecord: ...


@dataclass
class AppContext:
    sessions: sessionmaker[Session]
    alarms: AlarmService
    telemetry: Telemetry  # the local file, or PostgreSQL beside it when clustered
    metrics: CollectorRegistry
    readiness: Callable[[], dict[str, str]]  # component -> "ok" or what is wrong
    on_human_transition: Callable[[Transition], None]
    refresh_metrics: Callable[[], None]
    start: Callable[[], Awaitable[None]] | None = None
    stop: Callable[[], Awaitable[None]] | None = None
    live: LiveHub | None = None  # the WebSocket and SSE alarm streams (api/routes/stream.py)
    tickets: TicketService | None = None  # the ticket loop (tickets/service.py)
    export_font: Path | None = None  # settings.exports.font_path; None = a known system CJK font
    clock: Callable[[], float] = time.time  # the service's clock (scaled in simulations)
    time_scale: float = 1.0  # settings.time_scale: how much faster than real time the clock runs
    accounts: AccountService | None = None  # users, sign-in and tokens (api/auth.py)
    registry: RegistryControl | None = None  # read and change the registry (api/routes/devices.py)
    unrecorded: Callable[[], list[dict[str, Any]]] | None = None  # alarms/unrecorded.py
    storage_failing: Callable[[], bool] | None = None
    # False while the registry's first mirror into the state store is being written (a large one is
    # written once the service ingests): the device and place lists answer 503 until then (api/deps.py).
    mirror_ready: Callable[[], bool] | None = None
    max_body_bytes: int = 64 * 1024  # settings.api.max_body_bytes: without sign-in (api/body_limit.py)
    max_signed_in_body_bytes: int = 4 * 1024 * 1024  # settings.api.max_signed_in_body_bytes
    gb26875: Gb26875Listener | None = None  # the GB/T 26875.3 listener, when on (api/routes/gb26875.py)
    gb26875_asker: DeviceAsker | None = None  # clustered: asks through any worker (None: the listener)
    gb26875_surveyor: DeviceSurveyor | None = None  # clustered: the devices the other workers hold
    max_upload_bytes: int = 32 * 1024 * 1024  # settings.api.max_upload_bytes: uploads when signed in
    drills: DrillService | None = None  # declared drills (演练, api/routes/drills.py)
    clustered: bool = False  # settings.cluster.enabled: rate limits are counted in the shared store
