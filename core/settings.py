"""Settings: environment variables (prefix ``FIREWATCH_``, nested with ``__``) over a TOML config
file over defaults. Validated once at start; a bad value stops start-up with a message naming it.

    FIREWATCH_MQTT__URL=mqtt://127.0.0.1:1883 firewatch serve
    firewatch serve --config firewatch.toml        # or FIREWATCH_CONFIG=firewatch.toml
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from core.domain import SUBSCRIBED_INCIDENT_ACTIONS, AlarmAction, AlarmCategory, IncidentAction

CONFIG_ENV = "FIREWATCH_CONFIG"
# The config file `load_settings` was given, while it builds the settings (it wins over CONFIG_ENV).
_config_file: ContextVar[str | None] = ContextVar("firewatch_config_file", default=None)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MqttSettings(_Section):
    url: str | None = Field(
        default=None,
        description="mqtt://[user:password@]host:port of the broker; unset = embedded broker (demo only)",
    )
    client_id: str = "firewatch-ingest"
    topic_prefix: str = "fw/v1"
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    # MQTT 5 Receive Maximum: how many unacknowledged QoS 1 messages the broker may have in flight
    # to us. Acks wait for the batch commit, so this is also the most that can be redelivered. It
    # holds about three of ingest's largest batches (batch_max), so a backlog keeps a batch being
    # detected, one being recorded and the next arriving (docs/decisions/0013-drain-batches.md).
    receive_maximum: int = Field(default=65_535, ge=10, le=65_535)
    protocol: int = Field(default=5, description="MQTT protocol: 5, or 4 for 3.1.1 brokers")

    @field_validator("url")
    @classmethod
    def _url_is_mqtt(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
            raise ValueError(f"expected mqtt://host:port, got {value!r}")
        return value

    @field_validator("protocol")
    @classmethod
    def _known_protocol(cls, value: int) -> int:
        if value not in (4, 5):
            raise ValueError("protocol must be 5 (MQTT 5) or 4 (MQTT 3.1.1)")
        return value


ENGINE_TOPIC_PREFIX = "fw/v1"  # what the cluster's engine partitions (firewatch/cluster/engine.py)


class Gb26875Settings(_Section):
    """The GB/T 26875.3-2011 listener: fire alarm panels reporting through their user information
    transmission devices (用户信息传输装置) over TCP (docs/gb26875.md)."""

    enabled: bool = Field(default=False, description="accept transmission devices on bind:port")
    bind: str = Field(default="127.0.0.1", description="address to listen on (0.0.0.0: every interface)")
    port: int = Field(default=26875, ge=0, le=65_535, description="0: any free port (tests)")
    # The time tags on the wire carry no zone; devices in China send Beijing time (UTC+8).
    utc_offset_hours: float = Field(default=8.0, ge=-12, le=14)
    # GB 50440 asks the centre to check each device at least every 2 h (巡检, docs/gb26875.md):
    # a read of its state (type 81), answered with its state (type 21).
    inspection_every_s: float = Field(default=3600.0, gt=0, le=7200.0)
    max_connections: int = Field(default=20_000, ge=1, description="connections accepted at once")
    idle_close_s: float = Field(
        default=600.0,
        gt=0,
        description="a connection silent this long is closed (the device reconnects; its heartbeat is "
        "20-30 s, and liveness raises it offline long before)",
    )


class IngestSettings(_Section):
    batch_max: int = Field(
        default=20_000,
        ge=1,
        description="most messages decoded as one batch (a backlog's batches; live traffic's are "
        "what arrives within batch_wait_ms)",
    )
    batch_wait_ms: float = Field(default=10.0, ge=0, description="longest a message waits for its batch")
    queue_max: int = Field(
        default=100_000,
        ge=100,
        description="bounded receive queue; overflow is counted (the broker's window, "
        "mqtt.receive_maximum, is held to it)",
    )
    max_payload_bytes: int = Field(default=16_384, ge=256)
    max_future_s: float = Field(default=300.0, ge=0, description="timestamps further ahead are rejected")
    max_past_s: float = Field(
        default=30 * 86_400.0,
        gt=0,
        description="timestamps further back are rejected (devices that buffer offline resend late)",
    )
    reject_store_max: int = Field(default=10_000, ge=10, description="raw rejected messages kept")
    handoff_max: int = Field(
        default=100_000,
        ge=100,
        description="messages detected but not yet stored, at most; past it detection waits for storage",
    )
    liveness_check_s: float = Field(default=1.0, gt=0)
    # Fault safety (docs/reliability.md).
    alarm_write_timeout_s: float = Field(
        default=2.0,
        gt=0,
        le=30,
        description="longest a batch's alarms wait for the state store before they are shown as unrecorded",
    )
    unacked_max_age_s: float = Field(
        default=60.0,
        gt=0,
        description="unready, with a fault alarm, while a message waits longer for its ack",
    )
    stall_after_s: float = Field(
        default=30.0, gt=0, description="unready, with a fault alarm, while messages wait and none is acked"
    )
    broker_down_after_s: float = Field(
        default=30.0, gt=0, description="a fault alarm when the broker connection has been down this long"
    )


class PushRoute(_Section):
    """Where transitions are pushed: one notification URL and which alarms go there.

    `url` is an Apprise URL (json://, mailto://, dingtalk://, wecombot://, ...) and a secret: it is
    never logged or shown. Empty filters match everything.

    A route without `roles` is a subscription: it receives the `actions` it lists. A route with
    `roles` reaches people on duty: it receives what the escalation policy addresses to one of its
    roles (the first notice, escalations, reminders, the stand-down on acknowledgement). With
    `roster = true` those pushes go to the push addresses of the people on duty in the role at send
    time (docs/duty.md); `url`, optional then, is where they go when nobody is.
    """

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)
    url: str | None = Field(
        default=None, min_length=3, repr=False, description="required unless roster = true"
    )
    roster: bool = Field(
        default=False,
        description="send to the people on duty in the addressed role (the roster, docs/duty.md); "
        "`url` is the fallback when nobody is on duty or the roster cannot be read",
    )
    categories: list[AlarmCategory] = Field(default_factory=list)
    sites: list[str] = Field(default_factory=list)
    departments: list[str] = Field(default_factory=list, description="科室 of the alarm's device")
    roles: list[str] = Field(default_factory=list, description="duty roles this route reaches")
    # Apprise spaces consecutive sends of one service 5.5 s apart by default (email, DingTalk, WeCom),
    # which would make the sixth alarm of a burst reach an inbox ~27 s late. Safety first: no
    # spacing unless asked; a service that rejects a burst is retried with backoff like any failure.
    min_interval_s: float | None = Field(
        default=0.0, ge=0, le=60, description="seconds between sends on this route; null = Apprise's default"
    )
    actions: list[AlarmAction] = Field(
        default_factory=lambda: [
            AlarmAction.RAISED,
            AlarmAction.UNSHELVED,
            AlarmAction.RELEASED,
            AlarmAction.FLAPPING,
            AlarmAction.RESET,  # the stand-down of a fire alarm it heard raised
        ],
        description="with per_alarm: the alarm transitions a route without roles receives",
    )
    # People are told about incidents (alarms/incidents.py), not about every detector of one fire:
    # per-alarm pushes are for integrations that want them.
    per_alarm: bool = Field(
        default=False,
        description="also push individual alarm transitions (roles: as addressed; else `actions`)",
    )
    update_interval_s: float | None = Field(
        default=None,
        ge=0,
        le=3600,
        description="this route's alarms.incident_update_interval_s (null: the policy's)",
    )
    incident_actions: list[IncidentAction] = Field(
        default_factory=lambda: list(SUBSCRIBED_INCIDENT_ACTIONS),
        description="the incident steps a route without roles receives",
    )

    @model_validator(mode="after")
    def _reaches_an_address(self) -> PushRoute:
        if self.url is None and not self.roster:
            raise ValueError(f"push route {self.name!r}: give its `url` (or `roster = true` with `roles`)")
        if self.roster and not self.roles:
            raise ValueError(f"push route {self.name!r}: `roster = true` needs the duty `roles` it reaches")
        return self


class EscalationStep(_Section):
    role: str = Field(min_length=1, max_length=64, description="duty role told at this step")
    wait_s: float = Field(default=60.0, gt=0, description="wait this long for an acknowledgement")


class EscalationChain(_Section):
    """Who is told, in which order, while an alarm stays unacknowledged (DESIGN §4): e.g. control
    room -> micro fire station / safety manager -> department head. The first chain whose filters
    match an alarm applies; empty filters match everything."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)
    categories: list[AlarmCategory] = Field(default_factory=list)
    sites: list[str] = Field(default_factory=list)
    steps: list[EscalationStep] = Field(min_length=1)
    remind_every_s: float = Field(
        default=60.0, gt=0, description="remind every role told so far this often until acknowledged"
    )


def default_fire_chain() -> EscalationChain:
    return EscalationChain(
        name="fire",
        categories=[AlarmCategory.FIRE],
        steps=[
            EscalationStep(role="control_room", wait_s=60.0),
            EscalationStep(role="micro_fire_station", wait_s=120.0),
            EscalationStep(role="leader_on_call", wait_s=60.0),
        ],
        remind_every_s=300.0,
    )


class AlarmPolicySettings(_Section):
    """The knobs of alarms/policy.py. Defaults are site policy, not a standard (STANDARDS.md)."""

    # Fire ships with a chain (issue: nine fires sat unacknowledged for 15 minutes with none): the
    # control room first, then the micro fire station (微型消防站), then the leader on call. Site
    # policy, editable; `escalation: []` in the settings file turns escalation off.
    escalation: list[EscalationChain] = Field(default_factory=lambda: [default_fire_chain()])
    incident_gap_s: float = Field(
        default=600.0,
        gt=0,
        description="an alarm other than fire or gas joins an open incident of its kind and building "
        "(outages: site) whose last alarm is at most this old",
    )
    verify_limit_s: float = Field(
        default=180.0,
        gt=0,
        description="a fire incident not confirmed (真实火警/误报/测试) this long after its first fire "
        "alarm escalates to verify_escalate_role (site policy; GB 25506-2010 §4.2.2 asks for "
        "confirmation at once)",
    )
    verify_escalate_role: str = Field(
        default="leader_on_call",
        min_length=1,
        max_length=64,
        description="duty role told when verification is overdue",
    )
    incident_update_interval_s: float = Field(
        default=300.0,
        ge=0,
        description="per route and incident, updates that are not urgent (reminders, acknowledgement, "
        "verification steps) go out at most this often, the latest replacing those waiting; the first "
        "push, spread, a fire, confirmation, escalation and reset always go at once",
    )
    flap_cycles: int = Field(
        default=5, ge=2, description="raise/clear cycles within flap_window_s that make a sensor flapping"
    )
    flap_window_s: float = Field(default=600.0, gt=0)
    close_after_s: float = Field(
        default=300.0, ge=0, description="a cleared and acknowledged alarm closes after this quiet time"
    )
    shelve_max_s: float = Field(default=24 * 3600.0, gt=0, description="longest an alarm may be shelved")
    maintenance_max_s: float = Field(
        default=7 * 24 * 3600.0, gt=0, description="longest maintenance window that may be declared"
    )
    tick_s: float = Field(default=1.0, gt=0, description="how often escalations and expiries are checked")


class DetectionSettings(_Section):
    fusion_window_s: float = Field(
        default=120.0, gt=0, description="two signals of one zone this close in time confirm a fire"
    )
    snapshot_every_s: float = Field(
        default=60.0, ge=0, description="save detector state this often (0: only at a clean stop)"
    )
    # Outage grouping (detectors/liveness.py, docs/detection.md): many devices of one place silent
    # together are one outage alarm and one ticket, not an offline alarm and a ticket each.
    outage_min_devices: int = Field(
        default=10, ge=2, description="a place is out when at least this many of its devices went quiet"
    )
    outage_min_fraction: float = Field(
        default=0.5, gt=0, le=1, description="... and at least this share of its registered devices is quiet"
    )
    outage_quiet_heartbeats: float = Field(
        default=1.5, gt=0, description="a device is quiet after this many heartbeats without a message"
    )
    outage_hold_heartbeats: float = Field(
        default=1.0,
        ge=0,
        description="where an outage may be forming, a device past its offline limit waits this many "
        "heartbeats for it before raising its own offline alarm",
    )
    outage_update_s: float = Field(
        default=30.0, gt=0, description="an open outage's count is updated this often"
    )
    offline_grace_s: float = Field(
        default=0.0,
        ge=0,
        description="after the service starts or ingest resumes, nobody is called offline for this long; "
        "every device always gets at least its own offline window (heartbeat x offline_after)",
    )


class TelemetrySettings(_Section):
    """The local telemetry store (storage/telemetry.py). Retention is site policy: no national
    retention period for raw sensor readings was found (STANDARDS.md)."""

    compact_every_s: float = Field(
        default=5.0, gt=0, description="move staged batches into per-series chunks this often"
    )
    retention_days: float = Field(
        default=400.0, ge=0, description="raw samples older than this are dropped (0: keep everything)"
    )


class InfluxSettings(_Section):
    """The InfluxDB sink (storage/influx.py, docs/influx.md): readings, alarm transitions and the
    pipeline's own health, written off the alarm path for Grafana and long-term storage. Off until
    `url` is set. The local telemetry store keeps every reading either way."""

    url: str | None = Field(
        default=None, description="http(s)://host:port of InfluxDB 2 (or any /api/v2/write server)"
    )
    org: str = Field(default="firewatch", min_length=1, max_length=200)
    bucket: str = Field(default="firewatch", min_length=1, max_length=200)
    token: SecretStr | None = Field(
        default=None, description="an InfluxDB API token allowed to write the bucket"
    )
    batch_points: int = Field(default=5_000, ge=1, le=100_000, description="most points per write request")
    flush_interval_s: float = Field(default=1.0, gt=0, le=60, description="longest a point waits to be sent")
    buffer_points: int = Field(
        default=1_000_000,
        ge=1_000,
        description="points held while InfluxDB is slow or down; past this the oldest are dropped (counted)",
    )
    timeout_s: float = Field(default=10.0, gt=0, le=300, description="one write request, at most")
    retry_max_s: float = Field(default=30.0, gt=0, le=600, description="longest wait between retries")
    alarm_after_s: float = Field(
        default=120.0,
        gt=0,
        description="writes failing for this long raise a fault alarm (cleared when writes succeed again)",
    )
    stats_every_s: float = Field(
        default=10.0, gt=0, le=3600, description="the pipeline's own health is written this often"
    )

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected http(s)://host:port, got {value!r}")
        return value.rstrip("/")


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65_535)
    max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="the largest request body without a valid token (sign-in included), checked "
        "before the body is read; 413 above",
    )
    max_signed_in_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        le=256 * 1024 * 1024,
        description="the largest request body from a caller with a valid token (uploads aside)",
    )
    max_upload_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="the largest body of an upload (ticket evidence, registry import) from a caller "
        "with a valid token; must exceed tickets.evidence_max_bytes",
    )


class AuthSettings(_Section):
    """Sign-in and tokens (docs/api.md). Nobody is let in by default: create the first admin with
    `firewatch users add NAME --role admin`, or give `admin_password` for an empty store."""

    session_ttl_s: float = Field(
        default=12 * 3600.0, ge=60, le=30 * 86_400.0, description="a login lasts this long (a shift)"
    )
    admin_password: SecretStr | None = Field(
        default=None,
        description="creates the user 'admin' with this password when the store has no users yet; "
        "weak or default passwords stop start-up",
    )
    demo_accounts: bool = Field(
        default=False,
        description="`firewatch demo` only: one account per role with the published demo password. "
        "Outside demo mode those accounts are refused",
    )
    max_failed_logins: int = Field(
        default=5,
        ge=1,
        le=100,
        description="failed sign-ins for one account from one client address before that pair waits",
    )
    max_failed_logins_per_address: int = Field(
        default=50,
        ge=1,
        le=10_000,
        description="failed sign-ins from one client address, all accounts together, before it waits",
    )
    lockout_s: float = Field(
        default=60.0,
        ge=0,
        le=86_400.0,
        description="the first wait after too many failures; it doubles with each further failure",
    )
    lockout_max_s: float = Field(
        default=900.0,
        ge=0,
        le=86_400.0,
        description="the longest wait; a pair or address quiet for twice this long starts afresh",
    )


class MaintenancePlan(_Section):
    """A recurring maintenance task or test (e.g. the monthly detector test) that opens a ticket at
    each site when it falls due. Frequencies are site policy: GB 25201-2010 requires periodic
    testing, but its intervals were not verified (STANDARDS.md), so none is claimed here."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)
    title_zh: str = Field(min_length=1, max_length=200)
    title_en: str = Field(default="", max_length=200)
    every_days: float = Field(gt=0, le=3660, description="how often it is due")
    deadline_hours: float = Field(default=72.0, gt=0, description="time allowed once due")
    kinds: list[str] = Field(default_factory=list, description="device kinds it covers (for the ticket text)")
    sites: list[str] = Field(default_factory=list, description="sites it applies to; empty = every site")
    department: str = Field(default="", max_length=100, description="科室 that carries it out")
    responsible: str = Field(default="", max_length=100, description="责任人")


class PatrolRoute(_Section):
    """A patrol round people walk on a schedule (hospitals: strengthened night patrols, Ministry of
    Public Security Order 61 Art. 25/26, tag S in STANDARDS.md). A round not recorded within
    `every_hours + grace_hours` of the last one is a missed patrol: itself a hazard ticket."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)
    site: str = Field(min_length=1, max_length=64)
    title_zh: str = Field(min_length=1, max_length=200)
    checkpoints: list[str] = Field(min_length=1, description="checkpoint ids (usually place paths)")
    every_hours: float = Field(default=24.0, gt=0, le=24 * 90)
    grace_hours: float = Field(default=1.0, ge=0, le=24 * 7)
    department: str = Field(default="", max_length=100)
    responsible: str = Field(default="", max_length=100)


def _default_plans() -> list[MaintenancePlan]:
    return [
        MaintenancePlan(
            name="detector-test",
            title_zh="火灾探测器功能测试",
            title_en="fire detector function test",
            every_days=30,
            kinds=["smoke", "heat", "smoke_heat"],
            department="保卫科",
        ),
        MaintenancePlan(
            name="pump-test",
            title_zh="消防水泵启泵测试",
            title_en="fire pump start test",
            every_days=91,
            kinds=["water_pressure"],
            department="总务科",
        ),
    ]


class TicketPolicy(_Section):
    """Rectification deadlines per alarm category, in hours: site policy (STANDARDS.md: no national
    fault-repair deadline was found, so these are labelled site policy, not a standard)."""

    deadline_hours: dict[str, float] = Field(
        default_factory=lambda: {
            "fault": 72.0,
            "supervisory": 24.0,
            "disabled": 24.0,  # a disabled point cannot report a fire: back in service within a day
            "hazard": 168.0,
            "pre_alarm": 72.0,
        }
    )
    default_deadline_hours: float = 72.0

    normal_for_s: float = Field(
        default=24 * 3600.0,
        gt=0,
        description="a device condition normal this long marks its ticket ready for re-inspection",
    )
    evidence_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    tick_s: float = Field(default=30.0, gt=0, description="how often deadlines and schedules are checked")
    plans: list[MaintenancePlan] = Field(default_factory=_default_plans)
    patrols: list[PatrolRoute] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> TicketPolicy:
        for what, names in (
            ("plans", [p.name for p in self.plans]),
            ("patrols", [r.name for r in self.patrols]),
        ):
            if len(names) != len(set(names)):
                raise ValueError(f"tickets.{what}: names must be unique")
        return self

    def deadline_s(self, category: AlarmCategory) -> float:
        return self.deadline_hours.get(category.value, self.default_deadline_hours) * 3600.0


class ClusterSettings(_Section):
    """Several workers on one NATS JetStream engine and one PostgreSQL (docs/scale.md). Off by
    default: a single node reads MQTT itself and keeps telemetry in its local file."""

    enabled: bool = Field(default=False, description="run as one worker of a cluster")
    engine: list[str] = Field(
        default_factory=lambda: ["nats://127.0.0.1:4222"],
        description="NATS client URLs of the engine's nodes (any one is enough to start; "
        "all, to ride out a node's loss)",
    )
    partitions: int = Field(
        default=12,
        ge=1,
        le=1024,
        description="partitions of the stream; must equal the engine's subject mapping "
        "(`firewatch cluster engine --partitions`)",
    )
    worker_id: str | None = Field(
        default=None, max_length=100, description="this worker's name; default host name and process id"
    )
    api_url: str = Field(
        default="", max_length=400, description="where this worker's API is reached (shown to operators)"
    )
    lease_ttl_s: float = Field(
        default=5.0, ge=1.0, le=60.0, description="a worker not heard from this long loses its partitions"
    )
    heartbeat_s: float = Field(
        default=1.0,
        gt=0.0,
        le=20.0,
        description="how often a worker renews its leases (well under lease_ttl_s)",
    )
    snapshot_every_s: float = Field(
        default=5.0,
        gt=0.0,
        description="detector state saved to PostgreSQL this often (bounds a takeover's replay)",
    )
    registry_poll_s: float = Field(
        default=15.0,
        gt=0.0,
        le=3600.0,
        description="how often a worker checks the shared registry's version (a change's notice "
        "over the engine reaches it at once; this catches one it missed)",
    )
    stream_replicas: int = Field(
        default=3,
        ge=1,
        le=5,
        description="copies of the stream the engine keeps (three ride out the loss of a node)",
    )
    stream_max_age_h: float = Field(
        default=168.0,
        gt=0.0,
        description="how long the engine keeps messages (a takeover replays from the last snapshot: "
        "far more than snapshot_every_s)",
    )

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> ClusterSettings:
        if self.heartbeat_s * 2 >= self.lease_ttl_s:
            raise ValueError("cluster.heartbeat_s must be less than half of cluster.lease_ttl_s")
        return self


class ExportSettings(_Section):
    """Printable exports of tickets (tickets/export.py)."""

    font_path: Path | None = Field(
        default=None,
        description="a TrueType CJK font (.ttf/.ttc) for the PDF forms; default: the first known "
        "Debian CJK font found (fonts-wqy-microhei, fonts-wqy-zenhei, fonts-arphic-uming)",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FIREWATCH_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    data_dir: Path = Path("data")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in data_dir")
    telemetry_path: Path | None = Field(default=None, description="local telemetry SQLite file")
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    influx: InfluxSettings = Field(default_factory=InfluxSettings)
    registry: Path | None = Field(
        default=None,
        description="registry YAML, or the same document as JSON in a .json file (faster to load when "
        "large); default the demo hospital",
    )
    profiles_dir: Path | None = Field(default=None, description="device profiles; default the shipped ones")
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    gb26875: Gb26875Settings = Field(default_factory=Gb26875Settings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    detection: DetectionSettings = Field(default_factory=DetectionSettings)
    pushes: list[PushRoute] = Field(default_factory=list, description="notification routes (Apprise URLs)")
    api: ApiSettings = Field(default_factory=ApiSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    tickets: TicketPolicy = Field(default_factory=TicketPolicy)
    exports: ExportSettings = Field(default_factory=ExportSettings)
    alarms: AlarmPolicySettings = Field(default_factory=AlarmPolicySettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    time_scale: float = Field(
        default=1.0,
        ge=1.0,
        le=1000.0,
        description="simulation only: the service's clock runs this many times faster than real time, "
        "so scenarios with simulated devices play out in seconds (docs/simulators.md); 1 in production",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = _config_file.get() or os.environ.get(CONFIG_ENV)
        if config:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config)))
        return tuple(sources)

    @model_validator(mode="after")
    def _escalation_reaches_someone(self) -> Settings:
        """An escalation step whose role no push route reaches would escalate into silence. A
        roster route reaches its roles too: the people on duty, else its fallback url, else the
        push stays owed and is retried until someone is on duty (firewatch/roster_channel.py)."""
        reached = {role for route in self.pushes for role in route.roles}
        # The shipped fire chain is checked only once a site edits it: until then an unreached step
        # still shows on the board and in the incident's timeline (escalated to whom, when).
        chains = self.alarms.escalation if "escalation" in self.alarms.model_fields_set else []
        for chain in chains:
            for step in chain.steps:
                if step.role not in reached:
                    raise ValueError(
                        f"escalation chain {chain.name!r}: no push route has role {step.role!r}; "
                        f"add it to a route's `roles` (pushes[].roles)"
                    )
        names = [route.name for route in self.pushes]
        if len(names) != len(set(names)):
            raise ValueError("push route names must be unique")
        return self

    @model_validator(mode="after")
    def _evidence_fits_an_upload(self) -> Settings:
        """The request-body limit is checked first: evidence within its own limit must pass it."""
        if self.api.max_upload_bytes <= self.tickets.evidence_max_bytes:
            raise ValueError(
                f"api.max_upload_bytes ({self.api.max_upload_bytes}) must exceed "
                f"tickets.evidence_max_bytes ({self.tickets.evidence_max_bytes}): the upload carries "
                "the file and its form fields"
            )
        return self

    @model_validator(mode="after")
    def _cluster_shares_postgresql(self) -> Settings:
        """Workers share nothing but the engine and PostgreSQL: leases, snapshots, alarms and
        telemetry all live there (docs/scale.md)."""
        if self.cluster.enabled and not (self.database_url or "").startswith("postgresql"):
            raise ValueError(
                "cluster.enabled needs a shared PostgreSQL: set database_url "
                "(FIREWATCH_DATABASE_URL=postgresql+psycopg://user@host/firewatch)"
            )
        return self

    @model_validator(mode="after")
    def _cluster_speaks_the_engines_topics(self) -> Settings:
        """The engine maps subjects under `fw.v1` to partitions (firewatch/cluster/engine.py
        SOURCE_PREFIX): clustered, what the workers read and what the GB/T 26875.3 listener
        forwards must be under `fw/v1`, or nothing of it would reach a partition."""
        if self.cluster.enabled and self.mqtt.topic_prefix != ENGINE_TOPIC_PREFIX:
            raise ValueError(
                f"cluster.enabled needs mqtt.topic_prefix {ENGINE_TOPIC_PREFIX!r} (the engine's partition "
                f"mapping), not {self.mqtt.topic_prefix!r}"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'firewatch.sqlite'}"

    @property
    def detector_snapshot_path(self) -> Path:
        return self.data_dir / "detectors.npz"

    @property
    def resolved_telemetry_path(self) -> Path:
        return self.telemetry_path or self.data_dir / "telemetry.sqlite"


class SettingsError(ValueError):
    """Settings failed validation; the message lists each bad setting and how to set it."""


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build and validate the settings. A config file given here wins over FIREWATCH_CONFIG."""
    if config_file is not None:
        if not config_file.is_file():
            raise SettingsError(f"config file {config_file} does not exist")
    elif (env_file := os.environ.get(CONFIG_ENV)) and not Path(env_file).is_file():
        raise SettingsError(f"{CONFIG_ENV}={env_file}: no such file")
    # The file goes to the settings sources through a context variable, not os.environ: setting
    # FIREWATCH_CONFIG here would outlive this call and change what the next load reads.
    token = _config_file.set(str(config_file) if config_file is not None else None)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            loc = ".".join(str(p) for p in error["loc"])
            env = "FIREWATCH_" + "__".join(str(p).upper() for p in error["loc"])
            lines.append(f"  {loc}: {error['msg']} (set it in the config file or as {env})")
        raise SettingsError("invalid settings:\n" + "\n".join(lines)) from None
    finally:
        _config_file.reset(token)
