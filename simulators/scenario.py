"""Declarative scenarios: a timeline of incidents and faults, and the outcomes they must produce.

A scenario is a YAML file (docs/simulators.md has the format with examples):

    name: flaming-fire-ward
    title: 病房明火 / A flaming fire in a ward
    registry: demo                  # the demo hospital, or a registry file beside the scenario
    duration: 10m                   # simulated time
    timeline:
      - {id: fire, at: 1m, do: flaming_fire, place: sxzyy/b2/f3/z1/r3101, growth: fast}
    expect:
      - alarm: {category: fire, device: b2-f3-z1-r3101-smk}
        after: fire
        within: 60s

Times are seconds or strings such as `90s`, `12m`, `1h30m`. Unknown keys are refused, so a typo
is an error with its line, never a silently ignored setting.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from core.domain import AlarmCategory
from simulators.devices import Malformed
from simulators.gb26875_link import BadFrame
from simulators.gb26875_panel import GbState
from simulators.physics import Gas, Growth

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$")


def parse_duration(raw: object) -> float:
    """Seconds from a number or a string like '90s', '12m', '1h30m', '2.5h'."""
    if isinstance(raw, bool):
        raise ValueError("a duration is a number of seconds or a string like '90s', '12m', '1h30m'")
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, str):
        m = _DURATION.match(raw)
        if m and any(m.groups()):
            h, mi, s = (float(g) if g else 0.0 for g in m.groups())
            return h * 3600 + mi * 60 + s
        try:
            return float(raw)
        except ValueError:
            pass
    raise ValueError(f"{raw!r} is not a duration: use seconds or a string like '90s', '12m', '1h30m'")


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Step(_Strict):
    id: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]*$", description="name for `after:`")
    at: Duration = Field(description="simulated time from the start of the scenario")


class FlamingFireStep(_Step):
    do: Literal["flaming_fire"]
    place: str = Field(description="room (or zone) path where it starts, or a detector's id")
    growth: Growth = Growth.MEDIUM
    peak_kw: float = Field(default=1500.0, gt=0, le=50_000)
    height_m: float = Field(default=2.8, gt=1.5, le=30)
    door_delay_s: float = Field(default=30.0, ge=0)
    corridor_speed_m_s: float = Field(default=1.0, gt=0, le=10)


class SmoulderingFireStep(_Step):
    do: Literal["smouldering_fire"]
    place: str
    t_end_s: float = Field(default=900.0, gt=0, description="time to reach `smoke_end` in the room")
    smoke_end: float = Field(default=1.2, gt=0, le=2.0, description="dB/m in the room after t_end_s")
    door_delay_s: float = Field(default=120.0, ge=0)


class SprinklerStep(_Step):
    do: Literal["sprinkler"]
    place: str = Field(description="where the head opens (its building sees the full drop)")
    drop_mpa: float = Field(default=0.2, gt=0, le=1.0)
    pump_start_s: float = Field(default=45.0, ge=0)
    pump_mpa: float = Field(default=0.55, gt=0, le=2.0)


class SlowLeakStep(_Step):
    do: Literal["slow_leak"]
    place: str = Field(description="a place on the site whose fire main leaks")
    rate_mpa_per_h: float = Field(default=0.6, gt=0, le=60)


class PumpFailureStep(_Step):
    do: Literal["pump_failure"]
    place: str = Field(description="a place on the site whose jockey pump stops")
    leakage_mpa_per_h: float | None = Field(
        default=None, gt=0, le=60, description="how fast the main loses pressure (default: its quiet cycle's)"
    )


class GasLeakStep(_Step):
    do: Literal["gas_leak"]
    place: str = Field(description="the room with the gas detectors")
    leak_m3_per_h: float = Field(default=3.0, gt=0, le=1000)
    room_volume_m3: float = Field(default=80.0, gt=1, le=100_000)
    air_changes_per_h: float = Field(default=1.0, gt=0, le=100)
    gas: Gas = Gas.NATURAL_GAS
    stop_after_s: float | None = Field(default=None, gt=0, description="the valve is closed after this long")


class CableOverheatStep(_Step):
    do: Literal["cable_overheat"]
    device: str = Field(description="an electrical-fire monitor or charging socket")
    channel: str | None = Field(default=None, description="e.g. temp_l1; default the first temperature")
    load_factor: float = Field(default=1.5, gt=1.0, le=5.0, description="current / rated current")
    tau_s: float = Field(default=600.0, gt=0, description="the cable's thermal time constant")


class DirtyChamberStep(_Step):
    do: Literal["dirty_chamber"]
    device: str
    rate_db_m_per_day: float = Field(default=0.05, gt=0, le=10)


class SilentStep(_Step):
    do: Literal["silent"]
    device: str
    disconnect: bool = Field(default=False, description="its connection drops too: the broker says offline")


class ReviveStep(_Step):
    do: Literal["revive"]
    device: str


class PowerCutStep(_Step):
    do: Literal["power_cut"]
    place: str = Field(description="a floor (or building) path: its gateways lose power")


class PowerRestoreStep(_Step):
    do: Literal["power_restore"]
    place: str


class DeviceEventStep(_Step):
    do: Literal["fault", "fault_clear", "tamper", "tamper_clear", "alarm", "alarm_clear", "test", "reset"]
    device: str
    code: int | None = None


class BatteryStep(_Step):
    do: Literal["battery"]
    device: str
    percent: float = Field(ge=0, le=100)


class DoorHeldOpenStep(_Step):
    do: Literal["door_held_open"]
    device: str


class MalformedStep(_Step):
    do: Literal["malformed"]
    device: str
    kind: Malformed
    count: int = Field(default=1, ge=1, le=10_000)


class NetworkStep(_Step):
    do: Literal["network"]
    place: str = Field(description="devices at or below this place (or one device id)")
    loss: float = Field(default=0.0, ge=0, le=1, description="average share of messages lost")
    burst: float = Field(default=0.3, gt=0, le=1, description="chance a bad spell ends at each message")
    duplicate: float = Field(default=0.0, ge=0, le=1)
    reorder: float = Field(default=0.0, ge=0, le=1)


class GbStateStep(_Step):
    """A point, panel or transmission device bound with a `gb26875=` tag takes (or leaves) a state;
    its transmission device uploads the whole new status word (docs/gb26875.md)."""

    do: Literal["gb"]
    device: str = Field(description="a point, panel or transmission device of the registry")
    state: GbState
    clear: bool = Field(default=False, description="clear the state's bit instead of setting it")


class GbResetStep(_Step):
    do: Literal["gb_reset"]
    device: str = Field(description="the fire alarm panel (火灾报警控制器) reset at its keyboard")
    operator: int = Field(default=0, ge=0, le=255, description="操作员编号 in the operation record")


class GbReconnectStep(_Step):
    do: Literal["gb_reconnect"]
    device: str = Field(description="the transmission device that drops its connection and connects again")


class GbBadFrameStep(_Step):
    do: Literal["gb_garbage"]
    device: str = Field(description="the transmission device that sends it")
    kind: BadFrame = BadFrame.GARBAGE
    count: int = Field(default=1, ge=1, le=1000)


class ChannelColumn(_Strict):
    column: str
    scale: float = 1.0
    offset: float = 0.0


class ReplayDevice(_Strict):
    device: str
    channels: dict[str, ChannelColumn] = Field(min_length=1)


class ReplayStep(_Step):
    do: Literal["replay"]
    file: str = Field(description="recorded CSV, relative to the scenario file")
    time_column: str = "Time"
    start_time: float = Field(default=0.0, description="recording time that plays at `at`")
    relative: bool = Field(default=True, description="add the recorded change to the device's own value")
    devices: list[ReplayDevice] = Field(min_length=1)


Step = Annotated[
    FlamingFireStep
    | SmoulderingFireStep
    | SprinklerStep
    | SlowLeakStep
    | PumpFailureStep
    | GasLeakStep
    | CableOverheatStep
    | DirtyChamberStep
    | SilentStep
    | ReviveStep
    | PowerCutStep
    | PowerRestoreStep
    | DeviceEventStep
    | BatteryStep
    | DoorHeldOpenStep
    | MalformedStep
    | NetworkStep
    | ReplayStep
    | GbStateStep
    | GbResetStep
    | GbReconnectStep
    | GbBadFrameStep,
    Field(discriminator="do"),
]


class AlarmMatch(_Strict):
    """Which alarms count: every given field must match (`type` may use * wildcards; `place`
    matches the place and everything below it)."""

    category: AlarmCategory | None = None
    type: str | None = Field(default=None, description="alarm type, e.g. smoke.alarm or device.*")
    device: str | None = None
    place: str | None = None


class TicketMatch(_Strict):
    category: AlarmCategory | None = None
    hazard_type: str | None = Field(default=None, description="e.g. device.offline or pressure.*")
    device: str | None = None
    place: str | None = None
    source: str | None = None


class RejectMatch(_Strict):
    reason: str
    at_least: int = Field(default=1, ge=1)


class ExpectKind(StrEnum):
    ALARM = "alarm"
    NO_ALARM = "no_alarm"
    TICKET = "ticket"
    REJECTS = "rejects"


class Expectation(_Strict):
    """One outcome: exactly one of `alarm`, `no_alarm`, `ticket`, `rejects`."""

    alarm: AlarmMatch | None = None
    no_alarm: AlarmMatch | None = None
    ticket: TicketMatch | None = None
    rejects: RejectMatch | None = None
    devices: int = Field(default=1, ge=1, description="alarms on at least this many distinct devices")
    after: str | None = Field(default=None, description="a timeline step's id: time is counted from it")
    within: Duration | None = Field(default=None, description="deadline after `after` (default: the end)")
    label: str = ""

    @model_validator(mode="after")
    def _exactly_one(self) -> Expectation:
        given = [k for k in ExpectKind if getattr(self, k.value) is not None]
        if len(given) != 1:
            raise ValueError("an expectation has exactly one of: alarm, no_alarm, ticket, rejects")
        return self

    @property
    def kind(self) -> ExpectKind:
        return next(k for k in ExpectKind if getattr(self, k.value) is not None)

    def describe(self) -> str:
        if self.label:
            return self.label
        match = getattr(self, self.kind.value)
        fields = ", ".join(f"{k}={v}" for k, v in match.model_dump(exclude_none=True).items())
        head = {"alarm": "alarm", "no_alarm": "no alarm", "ticket": "ticket", "rejects": "rejects"}[self.kind]
        extra = f" on >= {self.devices} devices" if self.devices > 1 else ""
        when = f" within {_fmt(self.within)}" if self.within is not None else ""
        after = f" of {self.after}" if self.after and self.within is not None else ""
        return f"{head} ({fields}){extra}{when}{after}"


def _fmt(seconds: float) -> str:
    if seconds >= 3600 and seconds % 60 == 0:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    if seconds >= 60 and seconds % 1 == 0:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{seconds:g}s"


class Scenario(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    title: str = ""
    description: str = ""
    registry: str = Field(default="demo", description="'demo' or a registry YAML relative to the scenario")
    seed: int = 0
    duration: Duration = Field(gt=0, description="simulated time the scenario runs")
    fast_forward: Duration = Field(
        default=0.0,
        description="play this much simulated time first as fast as the broker takes it, back-dated "
        "so it ends at the service's present (for slow processes: a chamber getting dirty)",
    )
    time_scale: float = Field(
        default=1.0, ge=1.0, le=1000.0, description="the service time scale this scenario is written for"
    )
    impairments: bool = Field(default=True, description="radio loss, duplicates and reordering on")
    timeline: list[Step] = Field(default_factory=list)
    expect: list[Expectation] = Field(default_factory=list)
    source: Path | None = Field(default=None, exclude=True, description="the file it was read from")

    @model_validator(mode="after")
    def _references_resolve(self) -> Scenario:
        ids = [s.id for s in self.timeline if s.id]
        if len(ids) != len(set(ids)):
            raise ValueError(f"timeline step ids must be unique, got {ids}")
        for i, e in enumerate(self.expect):
            if e.after is not None and e.after not in ids:
                raise ValueError(f"expect[{i}].after: no timeline step has id {e.after!r} (ids: {ids})")
        for s in self.timeline:
            if s.at > self.duration + self.fast_forward:
                raise ValueError(f"step at {s.at:g} s is after the scenario's end")
        return self

    def step_time(self, step_id: str | None) -> float:
        if step_id is None:
            return 0.0
        return next(s.at for s in self.timeline if s.id == step_id)

    @property
    def end(self) -> float:
        return self.fast_forward + self.duration


class ScenarioError(ValueError):
    """The scenario file cannot be used; the message names the file and what is wrong where."""


def load_scenario(path: Path) -> Scenario:
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: cannot read the scenario: {exc}") from exc
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: a scenario is a mapping with name, duration, timeline and expect")
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:10]
        )
        raise ScenarioError(f"{path}: {problems}") from None
    return scenario.model_copy(update={"source": path})


SHIPPED = Path(__file__).parent / "scenarios"


def shipped_scenarios() -> list[Path]:
    return sorted(SHIPPED.glob("*.yaml"))


def resolve_scenario(name_or_path: str) -> Path:
    """A scenario file path, or the name of a shipped one (`firewatch simulate list`)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    shipped = SHIPPED / f"{name_or_path.removesuffix('.yaml')}.yaml"
    if shipped.exists():
        return shipped
    names = ", ".join(p.stem for p in shipped_scenarios())
    raise ScenarioError(f"no scenario file {name_or_path!r} and no shipped scenario of that name ({names})")
