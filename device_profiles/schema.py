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
    JSON = "json"


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

    (Not `on`: YAML 1.1 reads the key `on` as the boolean true.)"""

    name: Annotated[str, Field(pattern=NAME_RE)]
    category: AlarmCategory
    at: float
    clear: float
    basis: Annotated[str, Field(min_length=3)]


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


# The union grows a member per detector type; `type` is the discriminator.
DetectorConfig = Annotated[ThresholdDetector, Field(discriminator="type")]


class Liveness(Strict):
    heartbeat_s: float = Field(gt=0, description="the device reports at least this often")
    offline_after: float = Field(
        default=3.0, ge=1.0, description="offline after this many heartbeat intervals without a message"
    )
    category: AlarmCategory = AlarmCategory.FAULT
    basis: str = "site policy: a device silent for offline_after x heartbeat cannot report a fire"


class EventMapping(Strict):
    """How a device's own event bit maps to an alarm. Never delayed (STANDARDS.md, design rule)."""

    category: AlarmCategory
    basis: str = ""


class Battery(Strict):
    low_percent: float = Field(default=20.0, ge=0, le=100)


class Profile(Strict):
    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]
    name: str
    name_zh: str
    kind: DeviceKind
    system: SystemType
    codec: Codec = Codec.JSON
    report_interval_s: float = Field(gt=0, description="how often the device publishes telemetry")
    liveness: Liveness
    battery: Battery | None = None
    channels: dict[str, Channel] = Field(min_length=1)
    detectors: list[DetectorConfig] = Field(default_factory=list)
    events: dict[DeviceEventKind, EventMapping] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _references_resolve(self) -> Profile:
        for name in self.channels:
            if not re.match(NAME_RE, name):
                raise LocatedValueError(
                    f"channel name {name!r} must match {NAME_RE}", ("channels", name, "[key]")
                )
        for index, detector in enumerate(self.detectors):
            if detector.channel not in self.channels:
                raise LocatedValueError(
                    f"detectors[{index}] names channel {detector.channel!r}, "
                    f"which is not one of {sorted(self.channels)}",
                    ("detectors", index, "channel"),
                )
        return self

    def alarm_types(self) -> dict[str, AlarmCategory]:
        """Every alarm type this profile can raise, with its category."""
        out: dict[str, AlarmCategory] = {}
        for detector in self.detectors:
            for level in detector.levels:
                out[f"{detector.channel}.{level.name}"] = level.category
        out["device.offline"] = self.liveness.category
        for event, mapping in self.events.items():
            out[event_alarm_type(event)] = mapping.category
        return out


def event_alarm_type(event: DeviceEventKind) -> str:
    """The alarm type a device event raises or clears: `device.alarm`, `device.fault`, ..."""
    base = event.value.removesuffix("_clear")
    return f"device.{base}"
