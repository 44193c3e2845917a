"""Assemble the running service from settings: stores, registry, pipeline, MQTT source, API context."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from accounts.model import AccountError
from accounts.passwords import check_password
from accounts.service import AccountService
from alarms.drill_service import DrillService
from alarms.drills import ALARM_TOPIC_NAME
from alarms.model import Transition
from alarms.policy import Policy
from alarms.service import AlarmService
from alarms.tickets import TicketOpener
from alarms.unrecorded import UnrecordedAlarms
from api.context import AppContext
from api.live import Item, LiveHub
from core.clock import ScaledClock
from core.domain import AlarmAction, AlarmState, IncidentAction, Role
from core.registry import Registry, load_registry
from core.registry_io import RegistryChange, diff_registries
from core.settings import PushRoute, Settings
from detectors.engine import Engine, SnapshotError
from detectors.liveness import OutagePolicy
from device_profiles.schema import Profile
from firewatch import stopping
from firewatch.dispatch import AlarmTopicRelay, AppriseChannel, Channel, Dispatcher, MqttAlarmChannel
from firewatch.faults import Condition, FaultAlarms, Finding, fault_key, is_unavailable
from firewatch.forget import forget_after
from firewatch.memory import limit_malloc_arenas, trim_freed_memory
from firewatch.metrics import Metrics
from firewatch.phases import Phases
from firewatch.pipeline import Pipeline, PipelineConfig
from firewatch.recorder import Recorder
from firewatch.roster_channel import RosterChannel
from firewatch.workers import DaemonWorker
from ingest.decode import Decoder
from ingest.envelope import Message
from ingest.index import DeviceIndex
from ingest.mqtt import BrokerAddress, MqttSource
from ingest.queue import BoundedQueue
from ingest.topics import subscriptions
from roster.service import RosterService
from simulators.hospital import DEMO_HOSPITAL
from storage.compactor import Compactor
from storage.db import (
    IMMEDIATE,
    SETUP_LOCK,
    DatabaseError,
    check,
    make_engine,
    migrate,
    one_at_a_time,
    open_store,
)
from storage.influx import InfluxSink, SinkStatus

if TYPE_CHECKING:
    from firewatch.cluster.forward import EngineInbox
    from firewatch.cluster.gb_relay import DeviceRelay
    from firewatch.cluster.registry_share import RegistryNotices
    from firewatch.cluster.source import ClusterSource
    from firewatch.cluster.worker import ClusterWorker
    from ingest.gb26875.listener import DutyCheckRecord, Gb26875Listener
    from storage.pg_telemetry import ClusterTelemetry
from storage.influx_alarm import ALARM_KEY, ALARM_TYPE, SinkAlarm, clear_event, registry_site
from storage.influx_worker import DRAIN_S
from storage.models import AlarmRow, AuditRow
from storage.registry_sync import Synced, sync_registry
from storage.rejects import RejectStore
from storage.shared_registry import Head, document_of, read_head, read_registry, write_registry
from storage.telemetry import TelemetryStore
from storage.telemetry_api import Telemetry
from tickets.service import TicketService

logger = logging.getLogger(__name__)

DEMO_REGISTRY = DEMO_HOSPITAL


# Service.stop's budget: a stop takes this long at most (plus STEP_FLOOR_S for each step already
# past it), whatever the state of tasks and child processes. TASKS_STOP_S: the asyncio tasks' share.
STOP_BUDGET_S = 10.0
TASKS_STOP_S = 4.0
STEP_FLOOR_S = 0.5

# The registry's mirror in the state store (device and place lists, dashboards) is written before
# start-up ends up to this many devices (well under a second); a larger registry's first sync runs
# in the background once the service ingests: nothing on the alarm path reads the mirror, and at
# a million devices writing it took 20 s of a 52 s start (docs/benchmarks.md, "Registry at scale").
MIRROR_AT_START_MAX = 20_000
MIRROR_WAIT_S = 10.0  # the background sync waits this long at most for the broker before it starts
MIRROR_PAUSE = 1.0  # between its transactions it waits as long as the last took: half the writer's time
MIRROR_RETRY_S = 5.0  # after a failed background sync
RETENTION_EVERY_S = 3600.0  # clustered: how often old readings are deleted from PostgreSQL

# Integrations read every alarm transition on `{prefix}/{site}/alarms` and every incident step (but
# one more detector joining) on `{prefix}/{site}/incidents`, none delayed.
ALARM_TOPIC_ROUTE = PushRoute(
    name=ALARM_TOPIC_NAME,
    url="mqtt://alarm-topic",
    actions=list(AlarmAction),
    per_alarm=True,
    incident_actions=list(IncidentAction),
    update_interval_s=0.0,
)


def broker_address(url: str) -> BrokerAddress:
    parts = urlsplit(url)
    return BrokerAddress(parts.hostname or "127.0.0.1", parts.port or 1883, parts.username, parts.password)


def alarm_topic(settings: Settings, role: str) -> MqttAlarmChannel:
    """A connection of its own to the alarm topic on the configured broker (client id suffixed)."""
    assert settings.mqtt.url is not None
    broker = broker_address(settings.mqtt.url)
    return MqttAlarmChannel(
        broker.host,
        broker.port,
        prefix=settings.mqtt.topic_prefix,
        client_id=f"{settings.mqtt.client_id}-{role}",
        username=broker.username,
        password=broker.password,
    )


def freeze_start_up_heap() -> None:
    """Leave everything made so far out of the cyclic collector's scans, for a process that runs one
    service until it stops (`firewatch serve`, `firewatch demo`; the benches that stand for them).

    The collector's full collections scan every tracked object: with the start-up's registry,
    index, detector state and imports that was about 70 ms per full collection for 5,000 devices
    (144,000 objects), a stop of the whole process that showed as the tail of the alarm latency
    (docs/benchmarks.md, "Alarm latency under load"). Start-up's objects live as long as the
    process: frozen (`gc.freeze`), they are still freed by reference counting when dropped, but no
    longer scanned, and full collections go over what was made since. Not in `Service` itself:
    a process that makes and drops many services (the tests) would keep their reference cycles.

    The C heap's free pages are then handed back: what loading the registry made and dropped
    (firewatch/memory.py).
    """
    gc.freeze()
    trim_freed_memory()


class Service:
    """One firewatch process: everything DESIGN §2 draws, wired together."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: Registry | None = None,
        profiles: dict[str, Profile] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        # Before any of the service's threads exists: each would otherwise get a malloc arena of
        # its own whose freed memory stays resident (firewatch/memory.py).
        limit_malloc_arenas()
        # Start-up makes millions of long-lived objects for a large registry (devices, rows, ids):
        # the cyclic collector would scan them over and over while they are made (measured: about
        # 40 % of loading a registry of 100,000 devices) and finds nothing to free. It runs again
        # once they are made.
        enabled = gc.isenabled()
        gc.disable()
        try:
            self._assemble(settings, registry, profiles, clock)
        finally:
            if enabled:
                gc.enable()

    def _assemble(
        self,
        settings: Settings,
        registry: Registry | None,
        profiles: dict[str, Profile] | None,
        clock: Callable[[], float] | None,
    ) -> None:
        if settings.mqtt.url is None and not settings.cluster.enabled:
            raise ValueError("no broker configured: set FIREWATCH_MQTT__URL (or use `firewatch demo`)")
        self.settings = settings
        self.phases = Phases()  # start-up, phase by phase (logged; bench.registry_scale reads it)
        if clock is None:
            clock = time.time if settings.time_scale == 1.0 else ScaledClock(settings.time_scale)
            if settings.time_scale != 1.0:
                logger.warning(
                    "time runs %g times faster than real time (time_scale): for simulations only",
                    settings.time_scale,
                )
        self.clock = clock
        if profiles is None:
            from device_profiles.loader import load_profiles

            profiles = load_profiles(settings.profiles_dir)
        self.profiles = profiles
        self.phases.lap("load profiles")
        self.registry = (
            registry if registry is not None else load_registry(settings.registry or DEMO_REGISTRY)
        )
        self.phases.lap("load registry")
        self.index = DeviceIndex.build(self.registry, self.profiles)
        self.phases.lap("build index")
        # A state store that cannot be reached at start does not keep the service from detecting:
        # it starts without it, journals alarms as during any outage, and sets the store up (schema,
        # registry mirror, accounts) once it answers (`_bring_up_store`, docs/reliability.md).
        self.store_error: BaseException | None = None
        try:
            self.db, self.sessions = open_store(settings.resolved_database_url)
        except DatabaseError as exc:
            if not is_unavailable(exc.__cause__ or exc):
                raise
            logger.error(
                "the state store cannot be reached (%s): starting without it; alarms are shown unrecorded "
                "and journaled until it answers",
                exc.__cause__ or exc,
            )
            self.store_error = exc
            self.db = make_engine(settings.resolved_database_url)
            self.sessions = sessionmaker(self.db, expire_on_commit=False)
        else:
            self.phases.lap("open state store")
        self._registry_lock = threading.Lock()  # registry changes and mirror syncs: one at a time
        self.worker_id: str | None = None
        if settings.cluster.enabled:
            from firewatch.cluster.worker import default_worker_id

            self.worker_id = settings.cluster.worker_id or default_worker_id()
        # Clustered: the version of the shared registry this worker runs (None until the store
        # answers), and where changes are announced (firewatch/cluster/registry_share.py).
        self.registry_version: int | None = None
        self.registry_notices: RegistryNotices | None = None
        if self.store_error is None and settings.cluster.enabled:
            self._join_shared_registry()
            self.phases.lap("shared registry")
        self._mirror_stale = False  # the DB mirror missed a change: the next sync writes it whole
        self.mirror_synced = threading.Event()  # the mirror has held the registry since start
        self.mirror: Synced | None = None  # what the first sync since start did
        self._mirror_stop = threading.Event()
        self._mirror_task: asyncio.Task[None] | None = None
        if self.store_error is None and len(self.registry.row_of) <= MIRROR_AT_START_MAX:
            with one_at_a_time(self.db, SETUP_LOCK):  # a cluster's workers starting together take turns
                self._sync_mirror()
            self.phases.lap("sync registry mirror")
        self.accounts = AccountService(
            self.sessions,
            session_ttl_s=settings.auth.session_ttl_s,
            demo_mode=settings.auth.demo_accounts,
            max_failures=settings.auth.max_failed_logins,
            max_failures_per_address=settings.auth.max_failed_logins_per_address,
            lockout_s=settings.auth.lockout_s,
            lockout_max_s=settings.auth.lockout_max_s,
            clustered=settings.cluster.enabled,
        )
        if self.store_error is None:
            with one_at_a_time(self.db, SETUP_LOCK):
                self._prepare_accounts()
        self.phases.lap("accounts")
        self.telemetry: Telemetry = TelemetryStore(settings.resolved_telemetry_path)
        self.shared_telemetry: ClusterTelemetry | None = None  # clustered: readings in PostgreSQL
        if settings.cluster.enabled:
            # Readings to the shared PostgreSQL, keyed so a replay stores nothing twice; the local
            # file keeps only the journal and the de-duplication state (docs/scale.md).
            from storage.pg_spool import Spool
            from storage.pg_telemetry import ClusterTelemetry

            # PostgreSQL down: readings wait in a local spool, so detection never waits for it.
            spool = Spool(settings.resolved_telemetry_path.with_name("pg_spool.sqlite"))
            self.telemetry = self.shared_telemetry = ClusterTelemetry(self.telemetry, self.db, spool)
        # Slots are laid out device by device, each device's channels in its profile's order.
        self.telemetry.bind_devices(self.index.device_ids, self.index.channel_offsets)
        self.phases.lap("bind telemetry series")
        # Staged telemetry batches become per-series chunks in a process of its own (off the GIL).
        self.compactor = Compactor(
            settings.resolved_telemetry_path,
            every_s=settings.telemetry.compact_every_s,
            retention_s=settings.telemetry.retention_days * 86_400.0,
        )
        self.metrics = Metrics()
        ing = settings.ingest
        # Push routes are checked at start: a URL Apprise cannot use stops start-up with its name.
        roster = RosterService(self.sessions, clock)  # roster routes: the people on duty (docs/duty.md)
        channels: dict[str, Channel] = {
            r.name: (
                RosterChannel(r, roster, on_gap=self.metrics.roster_gap) if r.roster else AppriseChannel(r)
            )
            for r in settings.pushes
        }
        routes = list(settings.pushes)
        if settings.mqtt.url is not None:
            # Every transition also goes to the alarm topic, through the same outbox.
            routes.append(ALARM_TOPIC_ROUTE)
            channels[ALARM_TOPIC_ROUTE.name] = alarm_topic(settings, "alarms")
        self.alarms = AlarmService(
            self.sessions,
            self.index,
            TicketOpener(self.index, settings.tickets),
            clock,
            routes,
            Policy(settings.alarms),
        )
        self.tickets = TicketService(
            self.sessions,
            self.index,
            settings.tickets,
            alarms=self.alarms,
            telemetry=self.telemetry,
            clock=clock,
        )
        self.dispatcher = Dispatcher(self.sessions, channels, clock=clock)
        # Drills (演练): held by the alarm service as values; their Apprise URLs get channels here.
        self.drills = DrillService(self.sessions, self.alarms, routes, self._drill_channels)
        det = settings.detection
        self.engine = Engine(
            self.index,
            start=clock(),
            fusion_window_s=det.fusion_window_s,
            outage=OutagePolicy(
                min_devices=det.outage_min_devices,
                min_fraction=det.outage_min_fraction,
                quiet_heartbeats=det.outage_quiet_heartbeats,
                hold_heartbeats=det.outage_hold_heartbeats,
                update_s=det.outage_update_s,
                grace_s=det.offline_grace_s,
            ),
        )
        # Clustered, detector state comes per partition as the worker takes each over.
        self.warm_units = (
            0 if settings.cluster.enabled else self._load_snapshot(settings.detector_snapshot_path)
        )
        self.phases.lap("alarm services, detector state")
        self.rejects = RejectStore(self.sessions, ing.reject_store_max)
        # Alarm events and rejects journaled while the state store was failing, before a stop or a
        # crash: recorded before the engine aligns with the store's open alarms.
        active = set()
        if self.store_error is None:
            self.drills.refresh()
            self._record_journal()
            active = self.alarms.active_keys()
        self.engine.resume(active)
        self._sink_alarm_active = (ALARM_KEY, ALARM_TYPE) in active  # left by an earlier run?
        # The InfluxDB sink, only when configured (`influx.url`): otherwise nothing of it runs.
        self.sink = (
            InfluxSink(settings.influx, instance=settings.mqtt.client_id)
            if settings.influx.url is not None
            else None
        )
        self.decoder = Decoder(
            self.index,
            prefix=settings.mqtt.topic_prefix,
            max_payload=ing.max_payload_bytes,
            max_future_s=ing.max_future_s,
            max_past_s=ing.max_past_s,
        )
        self.pipeline = Pipeline(
            decoder=self.decoder,
            engine=self.engine,
            alarms=self.alarms,
            telemetry=self.telemetry,
            rejects=self.rejects,
            metrics=self.metrics,
            clock=clock,
            config=PipelineConfig(
                ing.batch_max,
                ing.batch_wait_ms / 1000.0,
                ing.liveness_check_s,
                snapshot_path=None if settings.cluster.enabled else settings.detector_snapshot_path,
                snapshot_every_s=(
                    settings.cluster.snapshot_every_s
                    if settings.cluster.enabled
                    else settings.detection.snapshot_every_s
                ),
                handoff_max=ing.handoff_max,
                alarm_write_timeout_s=ing.alarm_write_timeout_s,
                journal_source=self.telemetry.journal_id,
            ),
            sink=self.sink,
        )
        if self.store_error is not None:
            self.pipeline.pending_setup = self._bring_up_store
            self.pipeline.storage_unavailable(self.store_error)
        if self.sink is not None:
            # Transitions as `alarm_event` points: the listener only enqueues (the alarm path).
            self.pipeline.listeners.append(self.sink.on_transitions)
        # Every published batch of transitions wakes the dispatcher: pushes leave at once, not at
        # the next poll.
        self.pipeline.listeners.append(
            lambda transitions, tickets: self.dispatcher.wake() if transitions else None
        )
        # The WebSocket and SSE alarm streams. Fed at commit, under the alarm write lock, so they see
        # transitions in event-id order even when the pipeline, the policy clock and API requests
        # write concurrently (a client resumes after the last id it saw: order matters).
        self.live = LiveHub()
        self.alarms.on_commit.append(self.live.publish)
        self.alarms.on_incident.append(self.live.publish)
        # Alarms the state store could not record yet reach the control room at once all the same:
        # the live streams (and so the console) and the MQTT alarm topic (docs/reliability.md).
        self.pipeline.unrecorded.consumers.append(self.live.publish)
        self.alarm_relay: AlarmTopicRelay | None = None
        if settings.mqtt.url is not None:
            self.alarm_relay = AlarmTopicRelay(alarm_topic(settings, "unrecorded"))
            self.pipeline.unrecorded.consumers.append(self.alarm_relay.offer)
        site, place = registry_site(self.index.sites)
        # Clustered, each worker's own fault alarms (firewatch/faults.fault_key).
        key = fault_key(self.worker_id)
        self.faults = FaultAlarms(site=site, place=place, active={t for d, t in active if d == key}, key=key)
        self._broker_down_since: float | None = None
        self.findings: list[Finding] = []
        self.queue = BoundedQueue(ing.queue_max)
        self.cluster: ClusterWorker | None = None
        # Where messages come from: the broker (single node: also `source`), or clustered the
        # engine's partitions this worker holds.
        self.ingest: MqttSource | ClusterSource
        if settings.cluster.enabled:
            self.cluster = self._start_cluster(settings)
            self.ingest = self.cluster.source
        else:
            self.source = self.ingest = self._mqtt_source(settings)
        source = self.ingest
        self.pipeline.connection = lambda: source.epoch if source.connected.is_set() else None
        # Fire alarm panels through GB/T 26875.3 transmission devices (docs/gb26875.md): their
        # reports join the same queue as device events, confirmed once stored.
        self.gb26875: Gb26875Listener | None = None
        self.gb_inbox: EngineInbox | None = None
        self.gb_relay: DeviceRelay | None = None  # clustered: queries and duty checks via any worker
        if settings.gb26875.enabled:
            from ingest.gb26875.listener import Gb26875Listener

            decoder = self.decoder
            inbox = self.queue
            if self.cluster is not None:
                # Clustered: uploads go to the engine, to the worker owning the device's site.
                from firewatch.cluster.forward import EngineInbox

                cluster_source = self.cluster.source
                assert self.worker_id is not None
                inbox = self.gb_inbox = EngineInbox(
                    lambda: cluster_source.js, lambda m: self._gb_confirm(m), name=self.worker_id
                )
            self.gb26875 = Gb26875Listener(
                settings.gb26875,
                queue=inbox,
                index=lambda: decoder.index,
                prefix=settings.mqtt.topic_prefix,
                clock=clock,
            )
            self.gb26875.on_duty_answer = self._record_duty_answer
            if self.cluster is not None:
                # Clustered: a device is asked through the worker it is connected to, whichever
                # worker's API is asked (firewatch/cluster/gb_relay.py).
                from firewatch.cluster.gb_relay import DeviceRelay

                relay_source, worker = self.cluster.source, self.cluster
                self.gb_relay = DeviceRelay(self.gb26875, lambda: relay_source.nc, lambda: worker.peers)
        self._stop = asyncio.Event()
        self._health_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._sink_tasks: list[asyncio.Task[None]] = []
        self._probe = DaemonWorker("store-probe")
        self.phases.lap("the rest")
        logger.info("start-up took %.1f s: %s", self.phases.total, self.phases.summary())

    def _mqtt_source(self, settings: Settings) -> MqttSource:
        ing = settings.ingest
        assert settings.mqtt.url is not None  # checked at start
        return MqttSource(
            broker_address(settings.mqtt.url),
            client_id=settings.mqtt.client_id,
            topics=subscriptions(settings.mqtt.topic_prefix),
            queue=self.queue,
            clock=self.clock,
            protocol=settings.mqtt.protocol,
            receive_maximum=min(settings.mqtt.receive_maximum, ing.queue_max),
            keepalive=settings.mqtt.keepalive_s,
        )

    def _start_cluster(self, settings: Settings) -> ClusterWorker:
        """One worker of a cluster (docs/scale.md): ingest from the engine's partitions this worker
        holds leases on, and live streams shared with the other workers."""
        from firewatch.cluster.engine import ensure_stream
        from firewatch.cluster.source import ClusterSource
        from firewatch.cluster.worker import ClusterWorker

        cfg = settings.cluster
        assert self.worker_id is not None
        worker_id = self.worker_id
        source = ClusterSource(
            settings.cluster.engine,
            queue=self.queue,
            pipeline=self.pipeline,
            clock=self.clock,
            name=f"firewatch {worker_id}",
            ensure=lambda js: ensure_stream(
                js, cfg.partitions, replicas=cfg.stream_replicas, max_age_s=cfg.stream_max_age_h * 3600.0
            ),
        )
        return ClusterWorker(
            settings.cluster,
            sessions=self.sessions,
            pipeline=self.pipeline,
            alarms=self.alarms,
            source=source,
            worker_id=worker_id,
            clock=self.clock,
        )

    def _prepare_accounts(self) -> None:
        """Demo accounts in demo mode; else the first admin from `auth.admin_password`, which must
        not be weak or a default (AccountError stops start-up)."""
        auth = self.settings.auth
        if auth.demo_accounts:
            self.accounts.ensure_demo_accounts()
            return
        if auth.admin_password is not None:
            password = auth.admin_password.get_secret_value()
            try:
                check_password(password, "admin")
            except AccountError as exc:
                raise AccountError(f"auth.admin_password is refused: {exc}") from None
            if not self.accounts.has_users():
                self.accounts.create_user("admin", password, [Role.ADMIN], display_name="Administrator")
                logger.warning("created the user 'admin' from auth.admin_password")
        demo = self.accounts.demo_accounts()
        if demo:
            logger.warning(
                "demo accounts %s are refused outside demo mode: give each a password with "
                "`firewatch users passwd NAME`",
                ", ".join(demo),
            )
        if not self.accounts.has_users():
            logger.warning(
                "no accounts yet, so nobody can sign in: create an admin with "
                "`firewatch users add NAME --role admin` (or set FIREWATCH_AUTH__ADMIN_PASSWORD)"
            )

    def _bring_up_store(self) -> None:
        """What start-up does with the state store, once it answers after starting without it
        (blocking; raises while it still cannot be reached). The journal is recorded after it."""
        migrate(self.db)
        small = len(self.registry.row_of) <= MIRROR_AT_START_MAX
        if small:  # else the background sync, retrying, writes it once `store_error` is cleared
            self._sync_mirror()
        self._prepare_accounts()
        self.store_error = None
        if small:
            logger.warning("the state store answers: schema, registry mirror and accounts are set up")
        else:
            logger.warning(
                "the state store answers: schema and accounts are set up; the registry mirror is "
                "written in the background"
            )

    def _sync_mirror(self, pause: float = 0.0) -> None:
        """The first sync of the registry's mirror since start (blocking; none if a registry change
        wrote it first). A start with the registry the mirror holds finds its fingerprint and reads
        nothing back."""
        with self._registry_lock:
            if self.mirror_synced.is_set():
                return
            began = time.perf_counter()
            synced = sync_registry(
                self.sessions, self.registry, self.profiles, stop=self._mirror_stop, pause=pause
            )
            if not synced.complete:
                return
            self.mirror, self._mirror_stale = synced, False
            self.mirror_synced.set()
        logger.info(
            "registry mirror %s in %.1f s (%d rows written, %d deleted)",
            "unchanged" if synced.skipped else "synced",
            time.perf_counter() - began,
            synced.written,
            synced.deleted,
        )

    async def _mirror_in_background(self) -> None:
        """A large registry's first mirror sync, once the service ingests (or after MIRROR_WAIT_S
        without a broker), in short transactions paced to leave the alarm path the state store;
        retried while the store fails. Until it ends the device and place lists answer 503."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ingest.connected.wait(), MIRROR_WAIT_S)
        while not (self._mirror_stop.is_set() or self.mirror_synced.is_set()):
            if self.store_error is None:  # else `_bring_up_store` runs first (migrations)
                try:
                    await asyncio.to_thread(self._sync_mirror, MIRROR_PAUSE)
                    continue
                except Exception:
                    logger.exception("registry mirror sync failed; retrying in %.0f s", MIRROR_RETRY_S)
            await asyncio.to_thread(self._mirror_stop.wait, MIRROR_RETRY_S)

    def _record_journal(self) -> int:
        """Record what an earlier run journaled while the state store was failing (blocking)."""
        recorder = Recorder(
            self.telemetry,
            self.alarms,
            self.rejects,
            UnrecordedAlarms(lambda: self.index, self.clock),
            source=self.telemetry.journal_id,
            publish=lambda transitions, tickets: None,  # nobody is listening yet; pushes are in the outbox
            clock=self.clock,
        )
        total = 0
        while drained := recorder.drain(500).entries:
            total += drained
        if total:
            logger.warning("recorded %d journal entries left by an earlier run", total)
        return total

    # --- fault safety: what makes the service unready, and its fault alarms ----------------------
    def health_findings(self) -> list[Finding]:
        """The conditions of docs/reliability.md that hold now."""
        ing = self.settings.ingest
        p = self.pipeline
        now = self.clock()
        # The bounds are real seconds; the service clock may run faster (time_scale, simulations).
        scale = self.settings.time_scale
        out: list[Finding] = []
        if p.storage_failing_since is not None:
            pending, _ = self.telemetry.journal_size()
            out.append(
                Finding(
                    Condition.STORAGE_FAILING,
                    f"state store failing for {now - p.storage_failing_since:.0f} s ({p.storage_error}); "
                    f"{len(p.unrecorded)} alarms shown unrecorded, {pending} journal entries waiting",
                )
            )
        if p.local_failing_since is not None:
            out.append(
                Finding(
                    Condition.STORAGE_FAILING,
                    f"local telemetry store failing for {now - p.local_failing_since:.0f} s "
                    f"({p.local_error}); ingest holds and retries",
                )
            )
        oldest = p.oldest_unacknowledged()
        if oldest is not None and (now - oldest) / scale > ing.unacked_max_age_s:
            out.append(
                Finding(
                    Condition.UNACKED_BACKLOG,
                    f"the oldest unacknowledged message arrived {(now - oldest) / scale:.0f} s ago "
                    f"(limit {ing.unacked_max_age_s:g} s); {p.backlog()} waiting",
                )
            )
        if p.backlog() and (now - p.progress_at) / scale > ing.stall_after_s:
            out.append(
                Finding(
                    Condition.STALLED,
                    f"{p.backlog()} messages wait and none was acknowledged for "
                    f"{(now - p.progress_at) / scale:.0f} s",
                )
            )
        if self.ingest.connected.is_set():
            self._broker_down_since = None
        elif self._broker_down_since is None:
            self._broker_down_since = now
        if (
            self._broker_down_since is not None
            and (now - self._broker_down_since) / scale >= ing.broker_down_after_s
        ):
            out.append(
                Finding(
                    Condition.BROKER_DOWN,
                    f"not connected to the broker for {(now - self._broker_down_since) / scale:.0f} s",
                )
            )
        return out

    async def _health_clock(self, stop: asyncio.Event) -> None:
        """Every second: find the readiness conditions, export them, raise or clear their fault
        alarms. Raised like any alarm, through the pipeline, so one about the state store itself
        reaches the control room unrecorded while the store is down."""
        while not stop.is_set():
            try:
                findings = self.findings = self.health_findings()
                self._export_health(findings)
                events = self.faults.decide(self._merged(findings), self.clock())
                if events:
                    deferred = await asyncio.to_thread(self.pipeline.submit_events, events)
                    self.pipeline.journal_events(deferred)
                    self.faults.applied(events)
            except Exception:
                logger.exception("health check failed; retrying in 1 s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    @staticmethod
    def _merged(findings: list[Finding]) -> list[Finding]:
        """One finding per condition (both stores failing is one fault alarm)."""
        merged: dict[Condition, Finding] = {}
        for f in findings:
            prev = merged.get(f.condition)
            merged[f.condition] = f if prev is None else Finding(f.condition, f"{prev.why}; {f.why}")
        return list(merged.values())

    def _export_health(self, findings: list[Finding]) -> None:
        m, p = self.metrics, self.pipeline
        holding = {f.condition for f in findings}
        for cond in Condition:
            m.fault_conditions.labels(cond.value).set(1 if cond in holding else 0)
        oldest = p.oldest_unacknowledged()
        age = 0.0 if oldest is None else max(0.0, self.clock() - oldest) / self.settings.time_scale
        m.unacked_age.set(age)
        m.ingest_stalled.set(1 if Condition.STALLED in holding else 0)
        m.unrecorded_alarms.set(len(p.unrecorded))
        if (inbox := self.gb_inbox) is not None:
            m.observe_gb_forward(inbox.forwarded, inbox.failures, inbox.refused, len(inbox))
        if (shared := self.shared_telemetry) is not None:
            m.observe_pg_spool(shared.spool_status(time.time()))

    def _load_snapshot(self, path: Path) -> int:
        """Resume detector state (baselines, windows, runs) from the last snapshot, if usable."""
        if not path.exists():
            return 0
        try:
            warm = self.engine.load(path)
        except SnapshotError as exc:
            logger.warning("%s; starting detectors cold (alarms still resume from the store)", exc)
            return 0
        logger.info("detector state resumed for %d units from %s", warm, path)
        return warm

    # --- lifecycle -------------------------------------------------------------------------------
    def _record_duty_answer(self, record: DutyCheckRecord) -> None:
        """A duty person answered a check (查岗应答): the answer and its time go to the audit log, beside
        the request that sent the check (GB 25506-2010 asks for duty records)."""
        sessions = self.sessions

        def write() -> None:
            with sessions.begin() as s:
                s.connection(execution_options=IMMEDIATE)
                s.add(
                    AuditRow(
                        ts=record.answered_at,
                        actor=f"gb26875:{record.device_id}"[:100],
                        role="",
                        action="duty_check_answered",
                        subject=f"/gb26875/devices/{record.device_id}"[:400],
                        source="",
                        detail={
                            "sent_at": record.sent_at,
                            "answer_s": record.answer_s,
                            "operator": record.operator,
                            "timeout_minutes": record.timeout_minutes,
                        },
                    )
                )

        def done(f: asyncio.Future[None]) -> None:
            if not f.cancelled() and f.exception() is not None:
                logger.error(
                    "could not record the duty check answer of %s", record.device_id, exc_info=f.exception()
                )

        asyncio.get_running_loop().run_in_executor(None, write).add_done_callback(done)

    def _gb_confirm(self, messages: Iterable[Message]) -> int:
        return self.gb26875.ack(messages) if self.gb26875 is not None else 0

    def _ack(self, messages: list[Message]) -> int:
        """Acknowledge a stored batch to where its messages came from: PUBACKs to the broker, and
        confirms to the GB/T 26875.3 devices whose uploads are all stored."""
        n = self.ingest.ack(messages)
        if self.gb26875 is not None:
            n += self.gb26875.ack(messages)
        return n

    async def start(self) -> None:
        self._stop = asyncio.Event()
        if self.gb26875 is not None:
            try:
                await self.gb26875.start()
            except OSError as exc:
                raise OSError(
                    exc.errno,
                    f"the GB/T 26875.3 listener cannot listen on {self.settings.gb26875.bind}:"
                    f"{self.settings.gb26875.port} ({exc.strerror or exc}): free the port, or set "
                    "gb26875.port (FIREWATCH_GB26875__PORT) to another",
                ) from exc
        self.engine.grace(self.clock())
        self.compactor.start()
        self._tasks = [
            asyncio.create_task(self.ingest.run(self._stop), name="mqtt-source"),
            asyncio.create_task(self.pipeline.run(self.queue, self._ack, self._stop), name="pipeline"),
            *(
                [
                    asyncio.create_task(self.cluster.run(self._stop), name="cluster-leases"),
                    asyncio.create_task(self._live_bus(self.cluster, self._stop), name="live-bus"),
                    *(
                        [asyncio.create_task(self._gb_relay(self.gb_relay, self._stop), name="gb26875-relay")]
                        if self.gb_relay is not None
                        else []
                    ),
                    asyncio.create_task(
                        self._registry_follower(self.cluster, self._stop), name="registry-follower"
                    ),
                    asyncio.create_task(self._retention_clock(self._stop), name="telemetry-retention"),
                ]
                if self.cluster is not None
                else []
            ),
            asyncio.create_task(self.dispatcher.run(self._stop), name="push-dispatcher"),
            asyncio.create_task(self._policy_clock(self._stop), name="alarm-policy"),
            asyncio.create_task(self._ticket_clock(self._stop), name="ticket-clock"),
        ]
        # Outside `_tasks`: it reports on them, readiness does not wait for it.
        self._health_task = asyncio.create_task(self._health_clock(self._stop), name="health")
        if not self.mirror_synced.is_set():  # a large registry, or the store was down at start
            self._mirror_stop.clear()
            self._mirror_task = asyncio.create_task(self._mirror_in_background(), name="registry-mirror")
        # The sink's tasks stay out of `_tasks`: readiness never depends on them.
        if self.sink is not None:
            self.sink.start(self.sink.tables_for(self.index, self.pipeline.series_keys))
            self._sink_tasks = [
                asyncio.create_task(self._influx_clock(self.sink, self._stop), name="influx-sink")
            ]
        elif self._sink_alarm_active:  # the sink was switched off: its fault alarm no longer applies
            self._sink_tasks = [asyncio.create_task(self._clear_sink_alarm(), name="influx-alarm-clear")]
        logger.info("firewatch started: %d devices, %d slots", self.index.n_devices, self.index.n_slots)

    async def _policy_clock(self, stop: asyncio.Event) -> None:
        """Escalations, reminders and expiries fall due with time, not with messages: check them
        every `alarms.tick_s` and publish what changed like any other transition."""
        every = self.settings.alarms.tick_s
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            if stop.is_set():
                return
            if not self.runs_duties:
                continue
            try:
                transitions = await asyncio.to_thread(self.alarms.tick)
            except Exception:  # a database hiccup must not end the policy clock
                logger.exception("alarm policy tick failed; retrying in %.1f s", every)
                continue
            if transitions:
                self.pipeline.publish(transitions, [])

    @staticmethod
    async def _engine_connected(source: ClusterSource, stop: asyncio.Event) -> bool:
        """Wait until the engine connection is made (True), or the service stops (False)."""
        connected = asyncio.ensure_future(source.connected.wait())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({connected, stopping}, return_when=asyncio.FIRST_COMPLETED)
        connected.cancel()
        stopping.cancel()
        return not stop.is_set() and source.nc is not None

    async def _gb_relay(self, relay: DeviceRelay, stop: asyncio.Event) -> None:
        """Clustered: the subjects of the transmission devices connected here held on the engine,
        and the other workers' questions to them served (firewatch/cluster/gb_relay.py)."""
        assert self.cluster is not None
        if not await self._engine_connected(self.cluster.source, stop):
            return
        await relay.start()
        try:
            await stop.wait()
        finally:
            await relay.stop()

    async def _live_bus(self, cluster: ClusterWorker, stop: asyncio.Event) -> None:
        """Clustered: this worker's alarms and incident steps to every other worker's live streams,
        and theirs to ours, over the engine (firewatch/cluster/live_bus.py), so a console on any
        worker sees them all at once — unrecorded ones included."""
        from firewatch.cluster.live_bus import LiveBus

        source = cluster.source
        if not await self._engine_connected(source, stop) or source.nc is None:
            return
        bus = LiveBus(source.nc, cluster.worker_id, self.live, on_remote=self._remote_items)
        hooks = (self.alarms.on_commit, self.alarms.on_incident, self.pipeline.unrecorded.consumers)
        for hook in hooks:
            hook.append(bus.publish)
        await bus.start()
        try:
            await stop.wait()
        finally:
            for hook in hooks:
                hook.remove(bus.publish)
            await bus.stop()

    async def _retention_clock(self, stop: asyncio.Event) -> None:
        """Clustered: readings in PostgreSQL older than `telemetry.retention_days` are deleted, in
        small chunks, by the worker that runs the duties, every RETENTION_EVERY_S (a single node's
        compactor does this for its local file)."""
        keep_s = self.settings.telemetry.retention_days * 86_400.0
        while not stop.is_set():
            if keep_s > 0 and self.runs_duties:
                try:
                    dropped = await asyncio.to_thread(self.telemetry.prune, self.clock() - keep_s)
                    if dropped:
                        logger.info(
                            "retention: %d readings older than %g days deleted", dropped, keep_s / 86_400
                        )
                except Exception:
                    logger.exception("telemetry retention failed; trying again later")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RETENTION_EVERY_S)

    @property
    def runs_duties(self) -> bool:
        """Whether this process runs the clocks of the whole deployment (escalations, reminders,
        ticket deadlines): always on a single node; clustered, the one worker holding the duties
        lease (firewatch/cluster/leases.py), so they run once, not once per worker."""
        return self.cluster is None or self.cluster.duties

    async def _ticket_clock(self, stop: asyncio.Event) -> None:
        """Ticket deadlines, maintenance plans, patrols and re-inspection: every `tickets.tick_s`,
        and once at start so a plan due while the service was down opens its ticket at once.
        Overdue tickets come back as alarm transitions, published like any other."""
        every = self.settings.tickets.tick_s
        while not stop.is_set():
            try:
                transitions = await asyncio.to_thread(self.tickets.tick) if self.runs_duties else []
            except Exception:  # a database hiccup must not end the ticket clock
                logger.exception("ticket tick failed; retrying in %.1f s", every)
            else:
                if transitions:
                    self.pipeline.publish(transitions, [])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

    async def _influx_clock(self, sink: InfluxSink, stop: asyncio.Event) -> None:
        """Watch the InfluxDB sink every second: restart a dead worker, refresh its metrics, write
        the `pipeline` point every `influx.stats_every_s`, and raise the fault alarm while writes
        have failed for `influx.alarm_after_s` (cleared once they succeed). Durations are wall time."""
        cfg = self.settings.influx
        site, place = registry_site(self.index.sites)
        alarm = SinkAlarm(
            after_s=cfg.alarm_after_s,
            url=sink.config.url,
            site=site,
            place=place,
            active=self._sink_alarm_active,
        )
        tick = max(0.05, min(1.0, cfg.stats_every_s, cfg.alarm_after_s / 2))
        stats_due = time.monotonic()
        while not stop.is_set():
            try:
                now = time.time()
                status = sink.supervise(now)
                self.metrics.observe_influx(status, now)
                if time.monotonic() >= stats_due:
                    stats_due = time.monotonic() + cfg.stats_every_s
                    sink.put_stats(self.clock(), self._pipeline_fields(status))
                event = alarm.decide(status, now, self.clock())
                if event is not None:
                    deferred = await asyncio.to_thread(self.pipeline.submit_events, [event])
                    self.pipeline.journal_events(deferred)
                    alarm.applied(event)
                    self._sink_alarm_active = alarm.active
            except Exception:  # a database hiccup: decided again at the next tick
                logger.exception("InfluxDB sink supervision failed; retrying in %.1f s", tick)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick)

    async def _clear_sink_alarm(self) -> None:
        try:
            await asyncio.to_thread(self.pipeline.raise_alarms, [clear_event(self.clock())])
            self._sink_alarm_active = False
        except Exception:
            logger.exception("cannot clear the InfluxDB sink's fault alarm left by an earlier run")

    def _pipeline_fields(self, status: SinkStatus) -> dict[str, float | int | str]:
        """The `pipeline` point (docs/influx.md): cumulative counters, gauges, the interval's
        longest alarm latency."""
        p = self.pipeline
        return {
            "messages": p.messages,
            "readings": p.accepted,
            "samples": p.samples,
            "rejects": p.rejected,
            "duplicates": p.duplicates,
            "queue_dropped": self.queue.dropped,
            "sink_written": status.written,
            "sink_dropped": status.dropped_total,
            "alarm_transitions": p.transitions,
            "queue_depth": len(self.queue),
            "telemetry_pending": p.telemetry_pending,
            "sink_buffered": status.buffered,
            "mqtt_connected": 1 if self.ingest.connected.is_set() else 0,
            "alarm_latency_max_s": p.take_alarm_latency_max(),
        }

    async def stop(self, budget_s: float = STOP_BUDGET_S) -> None:
        """Stop within about `budget_s` whatever state things are in (issue 18): each step gets
        what is left of the budget (at least `STEP_FLOOR_S`); one that does not finish in time is
        logged and skipped. The compactor is stopped beside the rest (it needs none of it)."""
        deadline = time.monotonic() + budget_s

        def left(cap: float = budget_s) -> float:
            return max(STEP_FLOOR_S, min(cap, deadline - time.monotonic()))

        if self.cluster is not None:  # first: no more messages read; what was read is stored below
            try:
                await asyncio.wait_for(self.cluster.stop_reading(), left(2.0))
            except TimeoutError:
                logger.error("stopping: the partitions' readers did not end in time")
        self._stop.set()
        self._mirror_stop.set()  # a sync in progress ends after its transaction; the next start resumes
        if self.gb26875 is not None:  # first: uploads not yet stored stay unconfirmed and are resent
            try:
                await asyncio.wait_for(self.gb26875.stop(), left(2.0))
            except TimeoutError:
                logger.error("stopping: the GB/T 26875.3 listener did not close its connections in time")
        if self.gb_inbox is not None:  # before the engine connection closes: what is not forwarded
            await self.gb_inbox.close()  # stays unconfirmed, and the devices resend it elsewhere
        compactor = asyncio.create_task(
            stopping.bounded("the telemetry compactor", self.compactor.stop, left())
        )
        tasks = [
            *self._tasks,
            *self._sink_tasks,
            *([self._health_task] if self._health_task else []),
            *([self._mirror_task] if self._mirror_task else []),
        ]
        self._tasks, self._sink_tasks, self._health_task, self._mirror_task = [], [], None, None
        if tasks:  # they end at their next check of `_stop`; a batch being written finishes first
            wait_s = left(TASKS_STOP_S)
            _, pending = await asyncio.wait(tasks, timeout=wait_s)
            for task in pending:
                logger.error(
                    "stopping: task %s did not end within %.1f s; cancelling it", task.get_name(), wait_s
                )
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=left(1.0))
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    logger.error("stopping: task %s had failed", task.get_name(), exc_info=task.exception())
        if self.sink is not None:  # the pipeline has stopped: a last `pipeline` point, then drain
            sink = self.sink
            sink.put_stats(self.clock(), self._pipeline_fields(sink.status()))
            # InfluxSink.stop takes up to drain_s + 4.5 s (hand-over, late write, SIGTERM, SIGKILL).
            drain_s = min(DRAIN_S, max(0.0, deadline - time.monotonic() - 4.5))
            await stopping.bounded("the InfluxDB sink", lambda: sink.stop(drain_s), left())
        await compactor
        await stopping.bounded("the push dispatcher", self.dispatcher.close, left())
        if self.alarm_relay is not None:
            relay = self.alarm_relay
            await stopping.bounded("the alarm topic relay", lambda: relay.close(1.0), left())
        if self.cluster is not None:  # the pipeline has stored what it read: snapshot, release the leases
            try:
                await asyncio.wait_for(self.cluster.leave(), left(3.0))
            except TimeoutError:
                logger.error("stopping: leaving the cluster took too long; the leases expire by themselves")
            except Exception:
                logger.exception("stopping: leaving the cluster failed; the leases expire by themselves")
        await stopping.bounded("the detector snapshot", self._save_snapshot, left())
        await stopping.bounded("the telemetry store", self.telemetry.close, left())
        await stopping.bounded("the state store", self.db.dispose, left())
        logger.info("firewatch stopped in %.1f s", time.monotonic() - deadline + budget_s)

    def _save_snapshot(self) -> None:
        try:
            self.pipeline.save_snapshot()
        except OSError:
            logger.exception(
                "cannot save the detector snapshot; the next start is warm from the alarm store only"
            )

    # --- what the API needs ----------------------------------------------------------------------
    def _bounded(self, work: Callable[[], object], timeout_s: float = 2.0) -> None:
        """Run a state-store query for readiness or metrics, giving up after `timeout_s`: a store that
        hangs must not hang the endpoints that report it (TimeoutError then)."""
        self._probe.submit(work).result(timeout=timeout_s)

    def readiness(self) -> dict[str, str]:
        checks = {}
        try:
            self._bounded(lambda: check(self.db))
            checks["database"] = "ok"
        except TimeoutError:
            checks["database"] = "no answer in 2 s"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
        checks["broker"] = "ok" if self.ingest.connected.is_set() else "not connected"
        checks["pipeline"] = "ok" if self._tasks and not any(t.done() for t in self._tasks) else "not running"
        # What the health clock found (docs/reliability.md), each with its reason; a database that
        # answers SELECT 1 while alarm writes fail is still failing.
        for f in self._merged(self.health_findings()):
            checks[f.condition.value] = f.why
        checks["telemetry_compactor"] = "ok" if self.compactor.alive() else "not running"
        # Reported when configured, and never a reason to be unready (api/routes/health.py): the
        # alarm path does not need InfluxDB. Off, it is left out (nothing of it runs).
        if self.sink is not None:
            checks["influx"] = self.sink.readiness()
        return checks

    # --- registry changes while running (issue 7) ------------------------------------------------
    @property
    def profile_ids(self) -> Collection[str]:
        return self.profiles.keys()

    def apply_registry(
        self, new: Registry | Callable[[Registry], Registry], *, dry_run: bool = False
    ) -> RegistryChange:
        """Validate `new` and swap it in between two pipeline batches (blocking; call in a thread).
        `new` may be a function of the current registry (a device added, ...): it is called under
        the change lock, so two changes at once never lose one another.

        Nothing is applied when it names an unknown profile (UnknownProfileError; places were
        checked when `new` was built) or the registry file cannot be written (OSError). Devices that
        stay keep their detector state, liveness and de-duplication; added devices are accepted from
        the next batch on; a removed device's messages become rejects (unknown device) and its
        alarms, tickets and history stay. The registry file, if there is one, is rewritten whole.
        """
        with self._registry_lock, self._cluster_registry_lock():
            if self.cluster is not None:
                self._catch_up()  # a change is made on the cluster's latest registry
            old = self.registry
            registry = new(old) if callable(new) else new
            index = DeviceIndex.build(registry, self.profiles)
            diff = diff_registries(old, registry)
            path = self.settings.registry
            if dry_run:
                return RegistryChange(diff, False, None, "dry run: nothing was applied")
            head: Head | None = None
            if self.cluster is not None:
                # Shared first: once stored, every worker (this one too) ends up running it even if
                # what follows fails here; a registry file that cannot be written is then caught up
                # from the shared copy at the next start.
                document = document_of(registry)
                head = self._publish_registry(registry, document)
            carry = self._swap_in(registry, index, tolerant=head is not None)
            if head is not None:
                self.registry_version = head.version
                if self.registry_notices is not None:
                    self.registry_notices.announce(head)
            try:
                whole = self._mirror_stale or not self.mirror_synced.is_set()
                sync_registry(self.sessions, registry, self.profiles, previous=None if whole else old)
                self._mirror_stale = False
                self.mirror_synced.set()
            except Exception:
                self._mirror_stale = True
                raise
            logger.info(
                "registry changed: %d devices added, %d removed, %d changed; %d detector units warm%s",
                len(diff.added),
                len(diff.removed),
                len(diff.changed),
                carry,
                "" if head is None else f"; the cluster's registry version {head.version}",
            )
            note = (
                f"written to {path}"
                if path is not None
                else "kept in memory only: this service runs the built-in demo registry (no `registry` "
                "file is configured), so a restart returns to it"
            )
            return RegistryChange(diff, True, path, note)

    def _swap_in(self, registry: Registry, index: DeviceIndex, *, tolerant: bool) -> int:
        """Write `registry` to the registry file, if there is one, and swap it in between two
        batches, detector state carried over; the detector units kept warm. A file that cannot be
        written raises OSError before anything is swapped, unless `tolerant` (clustered: the
        shared copy holds the registry), when it is logged."""
        rebind = self.pipeline.prepare_rebind(index, active=self.alarms.active_keys())
        path = self.settings.registry
        if path is not None:
            try:
                _write_atomically(path, registry.to_text(path))
            except OSError:
                if not tolerant:
                    raise
                logger.exception("cannot write the registry file %s; it is applied all the same", path)

        def swap() -> None:  # under the pipeline's batch lock, with the detector state moved
            self.registry, self.index = registry, index
            self.decoder, self.engine = rebind.decoder, rebind.engine
            self.alarms.index = self.alarms.tickets.index = self.tickets.index = index
            if self.cluster is not None:  # the new engine watches this worker's devices only
                added = {d for d, o in zip(index.device_ids, rebind.old_of_new, strict=True) if o < 0}
                self.cluster.rebound(index.device_ids, index.sites, added)

        self.pipeline.rebind(rebind, also=swap)
        return rebind.carry.warm_units

    # --- clustered: one registry for every worker (firewatch/cluster/registry_share.py) ----------
    def _cluster_registry_lock(self) -> contextlib.AbstractContextManager[None]:
        """Clustered: the cluster's registry lock, so changes through two workers' APIs are made one
        after the other (the second on the first's result)."""
        if self.cluster is None:
            return contextlib.nullcontext()
        from firewatch.cluster.registry_share import REGISTRY_LOCK

        return one_at_a_time(self.db, REGISTRY_LOCK)

    def _publish_registry(self, registry: Registry, document: tuple[bytes, str]) -> Head:
        """Store `registry` as the shared registry's next version (under the cluster's lock)."""
        with self.sessions.begin() as s:
            return write_registry(
                s, registry, changed_at=time.time(), changed_by=self.worker_id or "", document=document
            )

    def _file_changed_at(self) -> float | None:
        path = self.settings.registry
        if path is None:
            return None
        try:
            return path.stat().st_mtime
        except OSError:
            return None

    def _join_shared_registry(self) -> None:
        """Clustered start-up, the store answering (before the pipeline exists): take the shared
        registry if it is newer than the file, else make the file's the shared one
        (registry_share.at_start); the mirror is synced from the result afterwards."""
        from firewatch.cluster.registry_share import REGISTRY_LOCK, AtStart, at_start

        with one_at_a_time(self.db, REGISTRY_LOCK):
            head = read_head(self.sessions)
            document = document_of(self.registry)
            decision = at_start(head, document[1], self._file_changed_at())
            if decision is AtStart.ADOPT:
                got = read_registry(self.sessions)
                assert got is not None  # the row is never deleted
                head, registry = got
                self.registry, self.index = registry, DeviceIndex.build(registry, self.profiles)
                path = self.settings.registry
                if path is not None:
                    try:
                        _write_atomically(path, registry.to_text(path))
                    except OSError:
                        logger.exception("cannot write the registry file %s; running the shared one", path)
            elif decision is AtStart.PUBLISH:
                head = self._publish_registry(self.registry, document)
            assert head is not None
            self.registry_version = head.version
        logger.info(
            "registry: %s the cluster's version %d (changed by %s)",
            {AtStart.SAME: "the file is", AtStart.ADOPT: "took", AtStart.PUBLISH: "the file is"}[decision],
            head.version,
            head.changed_by or "?",
        )

    def _catch_up(self) -> bool:
        """Under the change lock, running: apply the shared registry if this worker runs another
        version; True if it did."""
        head = read_head(self.sessions)
        if head is None or head.version == self.registry_version:
            return False
        if self.registry_version is None and self._file_changed_at() is not None:
            # The store was down at start: decide as a start does (the file may be the newer).
            from firewatch.cluster.registry_share import AtStart, at_start

            document = document_of(self.registry)
            decision = at_start(head, document[1], self._file_changed_at())
            if decision is not AtStart.ADOPT:
                if decision is AtStart.PUBLISH:
                    with self._cluster_registry_lock():
                        head = self._publish_registry(self.registry, document)
                    if self.registry_notices is not None:
                        self.registry_notices.announce(head)
                self.registry_version = head.version
                return False
        got = read_registry(self.sessions)
        if got is None:
            return False
        head, registry = got
        old = self.registry
        index = DeviceIndex.build(registry, self.profiles)
        carry = self._swap_in(registry, index, tolerant=True)
        self.registry_version = head.version
        diff = diff_registries(old, registry)
        logger.info(
            "registry: took the cluster's version %d (changed by %s): %d devices added, %d removed, "
            "%d changed; %d detector units warm",
            head.version,
            head.changed_by or "?",
            len(diff.added),
            len(diff.removed),
            len(diff.changed),
            carry,
        )
        return True

    def _follow_shared_registry(self) -> bool:
        """Apply the shared registry if it changed (blocking; call in a thread)."""
        with self._registry_lock:
            return self._catch_up()

    async def _registry_follower(self, cluster: ClusterWorker, stop: asyncio.Event) -> None:
        """Clustered: apply other workers' registry changes, on their notice over the engine or at
        the latest every `cluster.registry_poll_s` (firewatch/cluster/registry_share.py)."""
        from firewatch.cluster.registry_share import RegistryNotices

        wake = asyncio.Event()
        every = self.settings.cluster.registry_poll_s
        source = cluster.source
        try:
            while not stop.is_set():
                if self.registry_notices is None and source.nc is not None and source.connected.is_set():
                    notices = RegistryNotices(source.nc, cluster.worker_id, wake.set)
                    try:
                        await notices.start()
                        self.registry_notices = notices
                    except Exception:
                        logger.warning("cannot subscribe to registry notices yet; polling meanwhile")
                wake.clear()
                try:
                    await asyncio.to_thread(self._follow_shared_registry)
                except Exception:
                    logger.exception("applying the shared registry failed; trying again later")
                # Until subscribed, look again soon: the subscription is what makes a change quick.
                timeout = every if self.registry_notices is not None else min(every, 1.0)
                woken = asyncio.ensure_future(wake.wait())
                stopping = asyncio.ensure_future(stop.wait())
                await asyncio.wait({woken, stopping}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
                stopping.cancel()
        finally:
            if self.registry_notices is not None:
                await self.registry_notices.stop()
                self.registry_notices = None

    def _remote_items(self, items: Sequence[Item]) -> None:
        """Clustered: another worker's transitions, from the live bus. A person's reset or clear of
        a device this worker owns, made through another worker's API, is forgotten here too: the
        detectors that would raise it again run here (firewatch/forget.py)."""
        for t in items:
            if isinstance(t, Transition) and t.recorded:
                forget_after(self.engine, t)

    def on_human_transition(self, t: Transition) -> None:
        forget_after(self.engine, t)  # firewatch/forget.py: a persisting condition raises it again
        self.pipeline.publish([t], [])

    def _count_active(self) -> list[tuple[str, str, int]]:
        with self.sessions() as s:
            rows = s.execute(
                select(AlarmRow.category, AlarmRow.system, func.count())
                .where(AlarmRow.state.in_([AlarmState.ACTIVE_UNACKNOWLEDGED, AlarmState.ACTIVE_ACKNOWLEDGED]))
                .group_by(AlarmRow.category, AlarmRow.system)
            )
            return [(c, sy, int(n)) for c, sy, n in rows]

    def refresh_metrics(self) -> None:
        # The pipeline's own figures first: they are what matters while the state store fails.
        self._export_health(self.findings)
        try:
            active = self._probe.submit(self._count_active).result(timeout=2.0)
        except Exception:  # the store is failing: the gauge keeps its last figures, readiness says why
            logger.warning("active alarm counts not refreshed: the state store did not answer")
        else:
            self.metrics.active_alarms.clear()
            for category, system, n in active:
                self.metrics.active_alarms.labels(category, system).set(n)
        self.metrics.mqtt_connected.set(1 if self.ingest.connected.is_set() else 0)
        self.metrics.mqtt_rebuilds.set(self.ingest.rebuilds)
        self.metrics.queue_depth.set(len(self.queue))
        self.metrics.queue_dropped.set(self.queue.dropped)
        self.metrics.queue_overflow.set(self.queue.overflow)
        if self.sink is not None:
            self.metrics.observe_influx(self.sink.status(), time.time())

    def app_context(self) -> AppContext:
        return AppContext(
            sessions=self.sessions,
            alarms=self.alarms,
            telemetry=self.telemetry,
            metrics=self.metrics.registry,
            readiness=self.readiness,
            on_human_transition=self.on_human_transition,
            refresh_metrics=self.refresh_metrics,
            start=self.start,
            stop=self.stop,
            live=self.live,
            tickets=self.tickets,
            export_font=self.settings.exports.font_path,
            clock=self.clock,
            time_scale=self.settings.time_scale,
            accounts=self.accounts,
            registry=self,
            unrecorded=self.pipeline.unrecorded.snapshot,
            storage_failing=lambda: self.pipeline.storage_failing_since is not None,
            mirror_ready=self.mirror_synced.is_set,
            max_body_bytes=self.settings.api.max_body_bytes,
            max_signed_in_body_bytes=self.settings.api.max_signed_in_body_bytes,
            max_upload_bytes=self.settings.api.max_upload_bytes,
            gb26875=self.gb26875,
            gb26875_asker=self.gb_relay,
            gb26875_surveyor=self.gb_relay,
            drills=self.drills,
            clustered=self.settings.cluster.enabled,
        )

    def _drill_channels(self, routes: list[PushRoute]) -> None:
        """Channels for drills' Apprise URLs (alarms/drills.py), set as a new dict: the dispatcher's
        threads read the one they find whole."""
        new: dict[str, Channel] = {}
        for route in routes:
            if route.name not in self.dispatcher.channels:
                try:
                    new[route.name] = AppriseChannel(route)
                except ValueError:  # checked when declared; kept owed, as for a route removed
                    logger.warning("drill push route %s: its URL is not one Apprise understands", route.name)
        if new:
            self.dispatcher.channels = {**self.dispatcher.channels, **new}


def _write_atomically(path: Path, text: str) -> None:
    """Write, flush to disk, then rename over: a crash leaves the old file or the new, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    if path.exists():
        shutil.copymode(path, tmp)  # keep the file's permissions
    os.replace(tmp, path)
