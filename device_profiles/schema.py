"""The strict schema of a device profile (one YAML file per sensor model).

Unknown keys are refused everywhere (`extra="forbid"`), so a typo in a profile is an error that
names the file and line, never a silently ignored setting. Every default threshold carries a
`basis` citing the standard it rests on (see STANDARDS.md for the verification tags V/S/U).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.domain import AlarmCategory, DeviceEventKind, DeviceKind, SystemType

NAME_RE = r"^[a-z][a-z0-9_]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocatedValueError(ValueError):
    """A cross-field check's failure that knows which field it is about.

    A model validator's error is reported by pydantic at the model itself; `loc` (relative to that
    model, pydantic's convention, `"[key]"` naming a mapping's key rather than its value) lets the
    loader point at the offending line instead of at the top of the mapping.
    """

    def __init__(self, message: str, loc: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.loc = loc


class Codec(StrEnum):
    JSON = "json"  # firewatch's MQTT envelope (docs/ingest.md)
    # Reported by a fire alarm panel through a GB/T 26875.3 transmission device (docs/gb26875.md):
    # the listener turns its frames into this device's events.
    GB26875 = "gb26875"


class Direction(StrEnum):
    ABOVE = "above"  # alarm when value >= at
    BELOW = "below"  # alarm when value <= at


class Channel(Strict):
    unit: str
    range: tuple[float, float] = Field(
        description="physical range [min, max]; outside it the reading is rejected"
    )
    resolution: float = Field(gt=0)
    label: str = ""
    label_zh: str = ""

    @model_validator(mode="after")
    def _range_ordered(self) -> Channel:
        if not self.range[0] < self.range[1]:
            raise LocatedValueError(
                f"range must be [min, max] with min < max, got {list(self.range)}", ("range",)
            )
        return self


class ThresholdLevel(Strict):
    """One level of a threshold detector: raise at `at`, clear once back past `clear` (hysteresis).

    `for_s` and `repeat` are the ThingsBoard users' "duration" and "repeating" conditions: the value
    must stay at or past `at` for that long and that many consecutive readings. They are refused on a
    fire level: a fire alarm is never delayed by a filter (STANDARDS.md design rule).

    (Not `on`: YAML 1.1 reads the key `on` as the boolean true.)"""

    name: Annotated[str, Field(pattern=NAME_RE)]
    category: AlarmCategory
    at: float
    clear: float
    for_s: float = Field(default=0.0, ge=0, description="the condition must hold this long (seconds)")
    repeat: int = Field(default=1, ge=1, le=100, description="...for this many consecutive readings")
    basis: Annotated[str, Field(min_length=3)]

    @model_validator(mode="after")
    def _fire_is_never_delayed(self) -> ThresholdLevel:
        if self.category is AlarmCategory.FIRE and (self.for_s > 0 or self.repeat > 1):
            raise LocatedValueError(
                f"level {self.name!r} is a fire level: for_s/repeat would delay a fire alarm, which "
                "firewatch never does; put the filter on a pre_alarm level instead",
                ("for_s" if self.for_s > 0 else "repeat",),
            )
        return self


class ThresholdDetector(Strict):
    type: Literal["threshold"]
    channel: str
    direction: Direction = Direction.ABOVE
    levels: list[ThresholdLevel] = Field(min_length=1, max_length=4)

    @model_validator(mode="after")
    def _hysteresis_points_back(self) -> ThresholdDetector:
        for index, level in enumerate(self.levels):
            where = ("levels", index, "clear")
            if self.direction is Direction.ABOVE and not level.clear <= level.at:
                raise LocatedValueError(
                    f"level {level.name!r}: clear ({level.clear}) must be <= at ({level.at})", where
                )
            if self.direction is Direction.BELOW and not level.clear >= level.at:
                raise LocatedValueError(
                    f"level {level.name!r}: clear ({level.clear}) must be >= at ({level.at})", where
                )
        names = [level.name for level in self.levels]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise LocatedValueError(f"level names must be unique, got {names}", ("levels", index, "name"))
        return self

    def alarm_types(self) -> dict[str, AlarmCategory]:
        return {f"{self.channel}.{level.name}": level.category for level in self.levels}


class Estimator(StrEnum):
    TWO_POINT = "two_point"  # (newest - oldest in the window) / span: the classic R element
    LEAST_SQUARES = "least_squares"  # slope of the least-squares line through the window: noise-robust


class _SingleAlarm(Strict):
    """A detector that raises one alarm type, `{channel}.{name}`."""

    channel: str
    name: Annotated[str, Field(pattern=NAME_RE)]
    category: AlarmCategory
    basis: Annotated[str, Field(min_length=3)]

    def alarm_types(self) -> dict[str, AlarmCategory]:
        return {f"{self.channel}.{self.name}": self.category}


class RateOfRiseDetector(_SingleAlarm):
    """Rate of rise in units per minute over a window: a heat detector's R element (EN 54-5 class R)."""

    type: Literal["rate_of_rise"]
    name: Annotated[str, Field(pattern=NAME_RE)] = "rate_of_rise"
    per_min: float = Field(gt=0, description="raise when the rise is at least this many units per minute")
    clear_per_min: float | None = Field(
        default=None, description="clear below this rate (default per_min / 2)"
    )
    window_s: float = Field(gt=0, le=3600)
    min_span: float = Field(
        default=0.9, gt=0, le=1, description="the readings used must span this fraction of the window"
    )
    estimator: Estimator = Estimator.TWO_POINT

    @model_validator(mode="after")
    def _clear_below(self) -> RateOfRiseDetector:
        if self.clear_per_min is not None and not self.clear_per_min <= self.per_min:
            raise LocatedValueError("clear_per_min must be <= per_min", ("clear_per_min",))
        return self


class AmbientRiseDetector(_SingleAlarm):
    """A sustained rise above the learned ambient, the threshold scaled to the sensor's own noise.

    A differential heat element with a constant-false-alarm-rate threshold (detectors/ambient.py):
    raises when every reading of the last `hold_s` is at least max(`floor`, `k` x spread) above the
    ambient baseline learned with time constant `tau_s`.
    """

    type: Literal["ambient_rise"]
    name: Annotated[str, Field(pattern=NAME_RE)] = "rise"
    tau_s: float = Field(default=300.0, gt=0, description="time constant of the ambient baseline")
    k: float = Field(default=5.0, gt=0, description="threshold in multiples of the sensor's own spread")
    floor: float = Field(gt=0, description="the threshold is never below this rise (units)")
    clip: float = Field(
        default=4.0, gt=0, description="deviations are clipped at this many spreads before learning"
    )
    warmup_s: float = Field(default=60.0, ge=0)
    hold_s: float = Field(default=5.0, ge=0, description="every reading of this long must be above")
    min_readings: int = Field(default=2, ge=1, le=64)
    sigma0: float = Field(default=0.5, gt=0, description="the spread assumed before any reading")


class StepDirection(StrEnum):
    DROP = "drop"
    JUMP = "jump"


class StepDetector(_SingleAlarm):
    """A sudden change between consecutive readings: a sprinkler head opening, a pipe bursting."""

    type: Literal["step"]
    name: Annotated[str, Field(pattern=NAME_RE)] = "step"
    direction: StepDirection = StepDirection.DROP
    delta: float = Field(gt=0, description="the change between two consecutive readings that raises")
    max_gap_s: float = Field(gt=0, description="only readings at most this far apart count as a step")
    recover: float | None = Field(
        default=None, ge=0, description="clears when back within this of the level before the step (delta/2)"
    )


class DriftDirection(StrEnum):
    UP = "up"
    DOWN = "down"


class DriftDetector(_SingleAlarm):
    """Slow drift away from a reference, by a one-sided CUSUM (Page 1954).

    S = max(0, S + sign*(x - reference) - slack); raises when S >= limit, clears when S is back to 0.
    A slow pressure loss, rising residual current, a dirty smoke chamber: maintenance hazards, not fires.
    """

    type: Literal["drift"]
    name: Annotated[str, Field(pattern=NAME_RE)] = "drift"
    direction: DriftDirection = DriftDirection.UP
    reference: float | None = Field(
        default=None, description="the normal value; when absent, the mean of the first `warmup` readings"
    )
    warmup: int = Field(default=30, ge=1, le=100_000)
    slack: float = Field(ge=0, description="deviations up to this much per reading are normal")
    limit: float = Field(gt=0, description="accumulated deviation (units x readings) that raises")
    ignore_beyond: float | None = Field(
        default=None,
        description="readings past this (an alarm level) are events, not drift: they neither count nor learn",
    )

    @model_validator(mode="after")
    def _not_fire(self) -> DriftDetector:
        if self.category is AlarmCategory.FIRE:
            raise LocatedValueError("drift is a maintenance condition; use hazard or fault", ("category",))
        return self


class AnomalyDetector(_SingleAlarm):
    """Exponentially weighted mean and variance; raises when |z| >= z_on after warm-up.

    The baseline learns only from normal readings (river's protected anomaly filter): an anomaly
    never becomes the new normal while it lasts.
    """

    type: Literal["anomaly"]
    name: Annotated[str, Field(pattern=NAME_RE)] = "anomaly"
    half_life: float = Field(gt=0, description="readings after which an old reading's weight halves")
    z_on: float = Field(default=6.0, gt=0)
    z_off: float = Field(default=3.0, gt=0)
    warmup: int = Field(default=30, ge=2)
    min_std: float = Field(gt=0, description="floor on the standard deviation (a quantised flat signal)")

    @model_validator(mode="after")
    def _z_band(self) -> AnomalyDetector:
        if not self.z_off <= self.z_on:
            raise LocatedValueError("z_off must be <= z_on", ("z_off",))
        if self.category is AlarmCategory.FIRE:
            raise LocatedValueError(
                "an adaptive anomaly is not a fire criterion; use supervisory", ("category",)
            )
        return self


class HealthDetector(Strict):
    """Sensor health of one channel. Each check raises its own fault alarm type.

    `{channel}.out_of_range`: readings outside the channel's physical range (always on);
    `{channel}.stuck`: no change beyond `stuck_tolerance` for `stuck_s`;
    `{channel}.jump`: consecutive readings further apart than `max_jump` (physically impossible);
    `{channel}.noisy`: the EWMA standard deviation of successive differences above `max_noise`.
    """

    type: Literal["health"]
    channel: str
    category: AlarmCategory = AlarmCategory.FAULT
    stuck_s: float | None = Field(default=None, gt=0)
    stuck_tolerance: float = Field(default=0.0, ge=0)
    max_jump: float | None = Field(default=None, gt=0)
    max_noise: float | None = Field(default=None, gt=0)
    noise_half_life: float = Field(default=20.0, gt=0)
    basis: Annotated[str, Field(min_length=3)]

    def alarm_types(self) -> dict[str, AlarmCategory]:
        checks = ["out_of_range"]
        checks += ["stuck"] if self.stuck_s is not None else []
        checks += ["jump"] if self.max_jump is not None else []
        checks += ["noisy"] if self.max_noise is not None else []
        return {f"{self.channel}.{check}": self.category for check in checks}


# The union grows a member per detector type; `type` is the discriminator.
DetectorConfig = Annotated[
    ThresholdDetector
    | RateOfRiseDetector
    | AmbientRiseDetector
    | StepDetector
    | DriftDetector
    | AnomalyDetector
    | HealthDetector,
    Field(discriminator="type"),
]


class Liveness(Strict):
    heartbeat_s: float = Field(gt=0, description="the device reports at least this often")
    offline_after: float = Field(
        default=3.0, ge=1.0, description="offline after this many heartbeat intervals without a message"
    )
    category: AlarmCategory = AlarmCategory.FAULT
    basis: str = "site policy: a device silent for offline_after x heartbeat cannot report a fire"
    channel_offline_after: float | None = Field(
        default=None,
        ge=1.0,
        description="per channel (a gateway's sensors): stale after this many report intervals without it",
    )
    weak_signal_dbm: float | None = Field(
        default=None, le=0, description="radio: weak signal when RSSI stays at or below this"
    )


# What a profile without liveness is watched with: never offline on its own (its panel's transmission
# device is watched instead); the offline and stale alarms it could raise keep the default category.
UNWATCHED = Liveness(
    heartbeat_s=float("inf"), basis="not watched on its own: the panel's transmission device is"
)


class EventMapping(Strict):
    """How a device's own event bit maps to an alarm. Never delayed (STANDARDS.md, design rule)."""

    category: AlarmCategory
    basis: str = ""


class Battery(Strict):
    low_percent: float = Field(default=20.0, ge=0, le=100)
    clear_percent: float | None = Field(default=None, le=100, description="clears at or above (low + 10)")
    basis: str = "site policy: replace the battery well before the device goes silent"


class Profile(Strict):
    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]
    name: str
    name_zh: str
    kind: DeviceKind
    system: SystemType
    codec: Codec = Codec.JSON
    report_interval_s: float = Field(gt=0, description="how often the device publishes telemetry")
    # None: the device is not watched on its own. A component behind a fire alarm panel reports
    # only changes of state (GB/T 26875.3 types 2 and 3); the panel's transmission device, which
    # sends a heartbeat, is watched for it.
    liveness: Liveness | None
    battery: Battery | None = None
    # Empty only for a device that reports events alone (a panel's detector or call point).
    channels: dict[str, Channel] = Field(default_factory=dict)
    detectors: list[DetectorConfig] = Field(default_factory=list)
    events: dict[DeviceEventKind, EventMapping] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _references_resolve(self) -> Profile:
        for name in self.channels:
            if not re.match(NAME_RE, name):
                raise LocatedValueError(
                    f"channel name {name!r} must match {NAME_RE}", ("channels", name, "[key]")
                )
        seen: dict[str, int] = {}
        for index, detector in enumerate(self.detectors):
            for alarm_type in detector.alarm_types():
                if alarm_type in seen:
                    raise LocatedValueError(
                        f"detectors[{index}] raises {alarm_type!r}, as detectors[{seen[alarm_type]}] "
                        "already does: give one of them another name",
                        ("detectors", index),
                    )
                seen[alarm_type] = index
            if detector.channel not in self.channels:
                raise LocatedValueError(
                    f"detectors[{index}] names channel {detector.channel!r}, "
                    f"which is not one of {sorted(self.channels)}",
                    ("detectors", index, "channel"),
                )
        return self

    @property
    def watch(self) -> Liveness:
        """The liveness settings in effect (`UNWATCHED` when the profile has none)."""
        return self.liveness if self.liveness is not None else UNWATCHED

    def thresholds(self) -> list[ThresholdDetector]:
        return [d for d in self.detectors if isinstance(d, ThresholdDetector)]

    def alarm_types(self) -> dict[str, AlarmCategory]:
        """Every alarm type this profile can raise, with its category."""
        out: dict[str, AlarmCategory] = {}
        for detector in self.detectors:
            out.update(detector.alarm_types())
        if self.liveness is not None:
            out["device.offline"] = self.liveness.category
            if self.liveness.channel_offline_after is not None:
                for name in self.channels:
                    out[f"{name}.stale"] = self.liveness.category
            if self.liveness.weak_signal_dbm is not None:
                out["device.weak_signal"] = AlarmCategory.FAULT
        if self.battery is not None:
            out["device.low_battery"] = AlarmCategory.FAULT
        for event, mapping in self.events.items():
            out[event_alarm_type(event)] = mapping.category
        return out


def event_alarm_type(event: DeviceEventKind) -> str:
    """The alarm type a device event raises or clears: `device.alarm`, `device.fault`, ..."""
    base = event.value.removesuffix("_clear")
    return f"device.{base}"
