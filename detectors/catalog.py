"""The registered detector types, and how profiles compile into banks of units over the registry.

`DETECTOR_TYPES` is what the conformance suite runs over: a detector type registered here gets
its tests without new code. `compile_banks` turns each device's profile into units: one per
threshold level, one per other detector, one per health check, and the device-level battery and
signal checks, each with the (device, alarm type) key its alarm is stored under.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from core.domain import AlarmCategory
from detectors.ambient import AmbientRise
from detectors.anomaly import Anomaly
from detectors.base import Detector
from detectors.drift import Drift
from detectors.health import Jump, Noisy, OutOfRange, Stuck
from detectors.rate import LEAST_SQUARES, TWO_POINT, RateOfRise
from detectors.step import Step
from detectors.threshold import Threshold
from device_profiles.schema import (
    AmbientRiseDetector,
    AnomalyDetector,
    Direction,
    DriftDetector,
    DriftDirection,
    Estimator,
    HealthDetector,
    RateOfRiseDetector,
    StepDetector,
    StepDirection,
    ThresholdDetector,
)
from ingest.index import DeviceIndex

DETECTOR_TYPES: tuple[type[Detector], ...] = (
    Threshold,
    RateOfRise,
    AmbientRise,
    Step,
    Drift,
    Anomaly,
    OutOfRange,
    Stuck,
    Jump,
    Noisy,
)


class Stream(StrEnum):
    """Which values of a batch a bank reads. Slots are (device, channel) pairs; devices for the rest."""

    SAMPLES = "samples"  # accepted channel readings, by slot
    CHECKED = "checked"  # accepted readings plus the out-of-range ones, by slot
    BATTERY = "battery"  # battery percent of telemetry messages, by device
    RSSI = "rssi"  # signal strength of telemetry messages, by device


@dataclass(frozen=True)
class UnitInfo:
    device_id: str
    alarm_type: str
    category: AlarmCategory
    channel: str | None
    basis: str
    detail: str  # what the condition is, e.g. "temp >= 57 °C (clears below 50)"
    evidence: str  # what the event's value is, e.g. "°C" or "°C/min"


@dataclass
class Bank:
    name: str
    stream: Stream
    detector: Detector
    info: list[UnitInfo]


@dataclass
class _Builder:
    stream: Stream
    cls: type[Detector]
    slots: list[int] = field(default_factory=list)
    params: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    info: list[UnitInfo] = field(default_factory=list)

    def add(self, slot: int, info: UnitInfo, **params: float) -> None:
        self.slots.append(slot)
        for k, v in params.items():
            self.params[k].append(v)
        self.info.append(info)

    def build(self, name: str) -> Bank | None:
        if not self.slots:
            return None
        params = {k: np.array(v) for k, v in self.params.items()}
        return Bank(name, self.stream, self.cls(np.array(self.slots, dtype=np.int64), **params), self.info)


def _ring(window_s: float, report_interval_s: float, at_least: int) -> int:
    """Readings to keep for a window: room for a device reporting twice as fast as its profile says
    (a window that does not fit would make the estimate silently span less), bounded memory."""
    return int(min(512, max(at_least, np.ceil(2 * window_s / report_interval_s)) + 2))


def compile_banks(index: DeviceIndex) -> list[Bank]:
    builders = {
        "threshold": _Builder(Stream.SAMPLES, Threshold),
        "rate_of_rise": _Builder(Stream.SAMPLES, RateOfRise),
        "ambient_rise": _Builder(Stream.SAMPLES, AmbientRise),
        "step": _Builder(Stream.SAMPLES, Step),
        "drift": _Builder(Stream.SAMPLES, Drift),
        "anomaly": _Builder(Stream.SAMPLES, Anomaly),
        "out_of_range": _Builder(Stream.CHECKED, OutOfRange),
        "stuck": _Builder(Stream.SAMPLES, Stuck),
        "jump": _Builder(Stream.SAMPLES, Jump),
        "noisy": _Builder(Stream.SAMPLES, Noisy),
        "battery": _Builder(Stream.BATTERY, Threshold),
        "rssi": _Builder(Stream.RSSI, Threshold),
    }
    for dev, profile in enumerate(index.profiles):
        device_id = index.device_ids[dev]
        for det in profile.detectors:
            slot = int(index.slot_base[dev]) + index.channel_offsets[dev][det.channel]
            ch = profile.channels[det.channel]
            unit = ch.unit

            def info(
                alarm_type: str, category: AlarmCategory, basis: str, detail: str, evidence: str
            ) -> UnitInfo:
                return UnitInfo(device_id, alarm_type, category, det.channel, basis, detail, evidence)  # noqa: B023

            if isinstance(det, ThresholdDetector):
                sign = 1.0 if det.direction is Direction.ABOVE else -1.0
                cmp, back = (">=", "below") if sign > 0 else ("<=", "above")
                for level in det.levels:
                    extra = (f" for {level.for_s:g} s" if level.for_s else "") + (
                        f" in {level.repeat} readings" if level.repeat > 1 else ""
                    )
                    detail = f"{det.channel} {cmp} {level.at:g} {unit}{extra} (clears {back} {level.clear:g})"
                    builders["threshold"].add(
                        slot,
                        info(f"{det.channel}.{level.name}", level.category, level.basis, detail, unit),
                        sign=sign,
                        at=level.at,
                        clear=level.clear,
                        for_s=level.for_s,
                        repeat=level.repeat,
                    )
            elif isinstance(det, AmbientRiseDetector):
                builders["ambient_rise"].add(
                    slot,
                    info(
                        f"{det.channel}.{det.name}",
                        det.category,
                        det.basis,
                        f"{det.channel} held >= max({det.floor:g} {unit}, {det.k:g} sigma) above its ambient "
                        f"for {det.hold_s:g} s",
                        f"{unit} above ambient",
                    ),
                    tau_s=det.tau_s,
                    k=det.k,
                    floor=det.floor,
                    clip=det.clip,
                    warmup_s=det.warmup_s,
                    hold_s=det.hold_s,
                    min_readings=det.min_readings,
                    sigma0=det.sigma0,
                    capacity=_ring(det.hold_s, profile.report_interval_s, det.min_readings),
                )
            elif isinstance(det, RateOfRiseDetector):
                capacity = _ring(det.window_s, profile.report_interval_s, 2)
                builders["rate_of_rise"].add(
                    slot,
                    info(
                        f"{det.channel}.{det.name}",
                        det.category,
                        det.basis,
                        f"{det.channel} rising >= {det.per_min:g} {unit}/min over {det.window_s:g} s",
                        f"{unit}/min",
                    ),
                    per_min=det.per_min,
                    clear_per_min=det.clear_per_min if det.clear_per_min is not None else det.per_min / 2,
                    window_s=det.window_s,
                    min_span=det.min_span,
                    estimator=LEAST_SQUARES if det.estimator is Estimator.LEAST_SQUARES else TWO_POINT,
                    capacity=capacity,
                )
            elif isinstance(det, StepDetector):
                word = "drop" if det.direction is StepDirection.DROP else "jump"
                builders["step"].add(
                    slot,
                    info(
                        f"{det.channel}.{det.name}",
                        det.category,
                        det.basis,
                        f"{det.channel} {word} of >= {det.delta:g} {unit} within {det.max_gap_s:g} s",
                        unit,
                    ),
                    sign=-1.0 if det.direction is StepDirection.DROP else 1.0,
                    delta=det.delta,
                    max_gap_s=det.max_gap_s,
                    recover=det.recover if det.recover is not None else det.delta / 2,
                )
            elif isinstance(det, DriftDetector):
                sign = 1.0 if det.direction is DriftDirection.UP else -1.0
                ref = f"{det.reference:g} {unit}" if det.reference is not None else "its learned normal"
                builders["drift"].add(
                    slot,
                    info(
                        f"{det.channel}.{det.name}",
                        det.category,
                        det.basis,
                        f"{det.channel} drifting {det.direction.value} from {ref} (CUSUM >= {det.limit:g})",
                        f"{unit} (CUSUM)",
                    ),
                    sign=sign,
                    reference=det.reference if det.reference is not None else np.nan,
                    warmup=det.warmup,
                    slack=det.slack,
                    limit=det.limit,
                    ignore_beyond=det.ignore_beyond if det.ignore_beyond is not None else sign * np.inf,
                )
            elif isinstance(det, AnomalyDetector):
                builders["anomaly"].add(
                    slot,
                    info(
                        f"{det.channel}.{det.name}",
                        det.category,
                        det.basis,
                        f"{det.channel} unusual for this device (|z| >= {det.z_on:g})",
                        "z",
                    ),
                    alpha=1.0 - 0.5 ** (1.0 / det.half_life),
                    z_on=det.z_on,
                    z_off=det.z_off,
                    warmup=det.warmup,
                    min_std=det.min_std,
                )
            elif isinstance(det, HealthDetector):
                lo, hi = ch.range
                builders["out_of_range"].add(
                    slot,
                    info(
                        f"{det.channel}.out_of_range",
                        det.category,
                        det.basis,
                        f"{det.channel} outside its physical range [{lo:g}, {hi:g}] {unit}",
                        unit,
                    ),
                    lo=lo,
                    hi=hi,
                )
                if det.stuck_s is not None:
                    builders["stuck"].add(
                        slot,
                        info(
                            f"{det.channel}.stuck",
                            det.category,
                            det.basis,
                            f"{det.channel} unchanged for {det.stuck_s:g} s",
                            "s",
                        ),
                        stuck_s=det.stuck_s,
                        tolerance=det.stuck_tolerance,
                    )
                if det.max_jump is not None:
                    builders["jump"].add(
                        slot,
                        info(
                            f"{det.channel}.jump",
                            det.category,
                            det.basis,
                            f"{det.channel} changed by more than {det.max_jump:g} {unit} between readings",
                            unit,
                        ),
                        max_jump=det.max_jump,
                    )
                if det.max_noise is not None:
                    builders["noisy"].add(
                        slot,
                        info(
                            f"{det.channel}.noisy",
                            det.category,
                            det.basis,
                            f"{det.channel} noise above {det.max_noise:g} {unit} RMS",
                            unit,
                        ),
                        max_noise=det.max_noise,
                        alpha=1.0 - 0.5 ** (1.0 / det.noise_half_life),
                    )
        if profile.battery is not None:
            low = profile.battery.low_percent
            clear = (
                profile.battery.clear_percent
                if profile.battery.clear_percent is not None
                else min(low + 10, 100)
            )
            builders["battery"].add(
                dev,
                UnitInfo(
                    device_id,
                    "device.low_battery",
                    AlarmCategory.FAULT,
                    None,
                    profile.battery.basis,
                    f"battery <= {low:g} % (clears above {clear:g} %)",
                    "%",
                ),
                sign=-1.0,
                at=low,
                clear=clear,
                for_s=0.0,
                repeat=1,
            )
        weak = profile.liveness.weak_signal_dbm
        if weak is not None:
            builders["rssi"].add(
                dev,
                UnitInfo(
                    device_id,
                    "device.weak_signal",
                    AlarmCategory.FAULT,
                    None,
                    "site policy: a radio link this weak loses messages, alarms among them",
                    f"signal <= {weak:g} dBm in 3 readings (clears above {weak + 5:g})",
                    "dBm",
                ),
                sign=-1.0,
                at=weak,
                clear=weak + 5.0,
                for_s=0.0,
                repeat=3,  # one weak reading is radio weather; three in a row is a site problem
            )
    banks = [b.build(name) for name, b in builders.items()]
    return [b for b in banks if b is not None]
