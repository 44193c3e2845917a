"""The registered detector types, and how profiles compile into banks of units over the registry.

`DETECTOR_TYPES` is what the conformance suite runs over: a detector type registered here gets
its tests without new code. `compile_banks` turns each device's profile into units: one per
threshold level, one per other detector, one per health check, and the device-level battery and
signal checks, each with the (device, alarm type) key its alarm is stored under.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, overload

import numpy as np
import numpy.typing as npt

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
    Profile,
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


@dataclass(frozen=True, slots=True)
class UnitKind:
    """What every unit of one detector entry of one profile shares: all of UnitInfo but the device."""

    alarm_type: str
    category: AlarmCategory
    channel: str | None
    basis: str
    detail: str
    evidence: str


class UnitInfos(Sequence[UnitInfo]):
    """Each unit's UnitInfo, made when asked for: a device index and a kind per unit, not an object
    per unit (a million devices have about seven million units). Units are in device order."""

    def __init__(
        self,
        device_ids: Sequence[str],
        dev: npt.NDArray[np.int32],
        kind: npt.NDArray[np.integer[Any]],
        kinds: list[UnitKind],
    ) -> None:
        self.device_ids = device_ids
        self.dev = dev
        self.kind = kind
        self.kinds = kinds

    def __len__(self) -> int:
        return int(self.dev.size)

    @overload
    def __getitem__(self, unit: int) -> UnitInfo: ...
    @overload
    def __getitem__(self, unit: slice) -> list[UnitInfo]: ...
    def __getitem__(self, unit: int | slice) -> UnitInfo | list[UnitInfo]:
        if isinstance(unit, slice):
            return [self[u] for u in range(*unit.indices(len(self)))]
        k = self.kinds[int(self.kind[unit])]
        return UnitInfo(
            self.device_ids[int(self.dev[unit])],
            k.alarm_type,
            k.category,
            k.channel,
            k.basis,
            k.detail,
            k.evidence,
        )

    def __iter__(self) -> Iterator[UnitInfo]:
        ids, kinds = self.device_ids, self.kinds
        for d, k in zip(self.dev.tolist(), self.kind.tolist(), strict=True):
            u = kinds[k]
            yield UnitInfo(ids[d], u.alarm_type, u.category, u.channel, u.basis, u.detail, u.evidence)

    def keys(self, sep: str) -> list[str]:
        """'{device_id}{sep}{alarm_type}' per unit, without making a UnitInfo for each."""
        ids, types = self.device_ids, [k.alarm_type for k in self.kinds]
        return [
            f"{ids[d]}{sep}{types[k]}" for d, k in zip(self.dev.tolist(), self.kind.tolist(), strict=True)
        ]

    def units_of(self, dev: int) -> range:
        """The units of one device (contiguous: units are in device order)."""
        lo, hi = np.searchsorted(self.dev, [dev, dev + 1])
        return range(int(lo), int(hi))


@dataclass
class Bank:
    name: str
    stream: Stream
    detector: Detector
    info: UnitInfos


@dataclass
class _Builder:
    """Units added a detector entry at a time for all devices of one profile (arrays, no loop per
    device), put in device order at `build`, in the order they were added within a device. Each
    entry's parameters are one row of the bank's tables (rows equal in every value are one row)."""

    stream: Stream
    cls: type[Detector]
    slots: list[npt.NDArray[np.int64]] = field(default_factory=list)
    devs: list[npt.NDArray[np.int64]] = field(default_factory=list)
    seqs: list[npt.NDArray[np.int64]] = field(default_factory=list)
    kind: list[npt.NDArray[np.int32]] = field(default_factory=list)
    rows: list[npt.NDArray[np.int32]] = field(default_factory=list)
    row_of: dict[tuple[tuple[str, str], ...], int] = field(default_factory=dict)
    params: dict[str, list[npt.NDArray[Any]]] = field(default_factory=lambda: defaultdict(list))

    def add(
        self,
        devs: npt.NDArray[np.int64],
        slots: npt.NDArray[np.int64],
        seq: int,
        kind: int,
        **params: float,
    ) -> None:
        if not devs.size:
            return
        # The value's type and exact repr: 1 and 1.0 stay apart, as NaN stays equal to itself.
        key = tuple((k, f"{type(v).__name__}:{v!r}") for k, v in params.items())
        row = self.row_of.get(key)
        if row is None:
            row = self.row_of[key] = len(self.row_of)
            for k, v in params.items():
                # The dtype np.array would give the value alone: ints stay ints, as they did per unit.
                self.params[k].append(np.full(1, v, dtype=np.asarray(v).dtype))
        self.devs.append(devs)
        self.slots.append(slots)
        self.seqs.append(np.full(devs.size, seq, dtype=np.int64))
        self.kind.append(np.full(devs.size, kind, dtype=np.int32))
        self.rows.append(np.full(devs.size, row, dtype=np.int32))

    def build(self, name: str, device_ids: Sequence[str], kinds: list[UnitKind]) -> Bank | None:
        if not self.slots:
            return None
        devs, seqs = np.concatenate(self.devs), np.concatenate(self.seqs)
        order = np.lexsort((seqs, devs))
        tables = {k: np.concatenate(v) for k, v in self.params.items()}
        slots = np.concatenate(self.slots)[order]
        kind = np.concatenate(self.kind)[order].astype(np.min_scalar_type(-max(1, len(kinds) - 1)))
        info = UnitInfos(device_ids, devs[order].astype(np.int32), kind, kinds)
        return Bank(name, self.stream, self.cls(slots, row=np.concatenate(self.rows)[order], **tables), info)


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
    kinds: list[UnitKind] = []
    kind_of: dict[UnitKind, int] = {}
    for profile, devs in _devices_by_profile(index):
        seq = itertools.count()  # units in the order they are added for a device (as per device before)
        offset = {name: i for i, name in enumerate(profile.channels)}
        base = index.slot_base[devs].astype(np.int64)

        def unit_kind(
            alarm_type: str,
            category: AlarmCategory,
            channel: str | None,
            basis: str,
            detail: str,
            evidence: str,
        ) -> int:
            k = UnitKind(alarm_type, category, channel, basis, detail, evidence)
            if k not in kind_of:
                kind_of[k] = len(kinds)
                kinds.append(k)
            return kind_of[k]

        for det in profile.detectors:
            slot = base + offset[det.channel]
            ch = profile.channels[det.channel]
            unit = ch.unit

            def add(
                builder: str,
                alarm_type: str,
                category: AlarmCategory,
                basis: str,
                detail: str,
                evidence: str,
                **params: float,
            ) -> None:
                kind = unit_kind(alarm_type, category, det.channel, basis, detail, evidence)  # noqa: B023
                builders[builder].add(devs, slot, next(seq), kind, **params)  # noqa: B023

            if isinstance(det, ThresholdDetector):
                sign = 1.0 if det.direction is Direction.ABOVE else -1.0
                cmp, back = (">=", "below") if sign > 0 else ("<=", "above")
                for level in det.levels:
                    extra = (f" for {level.for_s:g} s" if level.for_s else "") + (
                        f" in {level.repeat} readings" if level.repeat > 1 else ""
                    )
                    detail = f"{det.channel} {cmp} {level.at:g} {unit}{extra} (clears {back} {level.clear:g})"
                    add(
                        "threshold",
                        f"{det.channel}.{level.name}",
                        level.category,
                        level.basis,
                        detail,
                        unit,
                        sign=sign,
                        at=level.at,
                        clear=level.clear,
                        for_s=level.for_s,
                        repeat=level.repeat,
                    )
            elif isinstance(det, AmbientRiseDetector):
                add(
                    "ambient_rise",
                    f"{det.channel}.{det.name}",
                    det.category,
                    det.basis,
                    f"{det.channel} held >= max({det.floor:g} {unit}, {det.k:g} sigma) above its ambient "
                    f"for {det.hold_s:g} s",
                    f"{unit} above ambient",
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
                add(
                    "rate_of_rise",
                    f"{det.channel}.{det.name}",
                    det.category,
                    det.basis,
                    f"{det.channel} rising >= {det.per_min:g} {unit}/min over {det.window_s:g} s",
                    f"{unit}/min",
                    per_min=det.per_min,
                    clear_per_min=det.clear_per_min if det.clear_per_min is not None else det.per_min / 2,
                    window_s=det.window_s,
                    min_span=det.min_span,
                    estimator=LEAST_SQUARES if det.estimator is Estimator.LEAST_SQUARES else TWO_POINT,
                    capacity=capacity,
                )
            elif isinstance(det, StepDetector):
                word = "drop" if det.direction is StepDirection.DROP else "jump"
                add(
                    "step",
                    f"{det.channel}.{det.name}",
                    det.category,
                    det.basis,
                    f"{det.channel} {word} of >= {det.delta:g} {unit} within {det.max_gap_s:g} s",
                    unit,
                    sign=-1.0 if det.direction is StepDirection.DROP else 1.0,
                    delta=det.delta,
                    max_gap_s=det.max_gap_s,
                    recover=det.recover if det.recover is not None else det.delta / 2,
                )
            elif isinstance(det, DriftDetector):
                sign = 1.0 if det.direction is DriftDirection.UP else -1.0
                ref = f"{det.reference:g} {unit}" if det.reference is not None else "its learned normal"
                add(
                    "drift",
                    f"{det.channel}.{det.name}",
                    det.category,
                    det.basis,
                    f"{det.channel} drifting {det.direction.value} from {ref} (CUSUM >= {det.limit:g})",
                    f"{unit} (CUSUM)",
                    sign=sign,
                    reference=det.reference if det.reference is not None else np.nan,
                    warmup=det.warmup,
                    slack=det.slack,
                    limit=det.limit,
                    ignore_beyond=det.ignore_beyond if det.ignore_beyond is not None else sign * np.inf,
                )
            elif isinstance(det, AnomalyDetector):
                add(
                    "anomaly",
                    f"{det.channel}.{det.name}",
                    det.category,
                    det.basis,
                    f"{det.channel} unusual for this device (|z| >= {det.z_on:g})",
                    "z",
                    alpha=1.0 - 0.5 ** (1.0 / det.half_life),
                    z_on=det.z_on,
                    z_off=det.z_off,
                    warmup=det.warmup,
                    min_std=det.min_std,
                )
            elif isinstance(det, HealthDetector):
                lo, hi = ch.range
                add(
                    "out_of_range",
                    f"{det.channel}.out_of_range",
                    det.category,
                    det.basis,
                    f"{det.channel} outside its physical range [{lo:g}, {hi:g}] {unit}",
                    unit,
                    lo=lo,
                    hi=hi,
                )
                if det.stuck_s is not None:
                    add(
                        "stuck",
                        f"{det.channel}.stuck",
                        det.category,
                        det.basis,
                        f"{det.channel} unchanged for {det.stuck_s:g} s",
                        "s",
                        stuck_s=det.stuck_s,
                        tolerance=det.stuck_tolerance,
                    )
                if det.max_jump is not None:
                    add(
                        "jump",
                        f"{det.channel}.jump",
                        det.category,
                        det.basis,
                        f"{det.channel} changed by more than {det.max_jump:g} {unit} between readings",
                        unit,
                        max_jump=det.max_jump,
                    )
                if det.max_noise is not None:
                    add(
                        "noisy",
                        f"{det.channel}.noisy",
                        det.category,
                        det.basis,
                        f"{det.channel} noise above {det.max_noise:g} {unit} RMS",
                        unit,
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
                devs,
                devs,
                next(seq),
                unit_kind(
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
        weak = profile.watch.weak_signal_dbm
        if weak is not None:
            builders["rssi"].add(
                devs,
                devs,
                next(seq),
                unit_kind(
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
    banks = [b.build(name, index.device_ids, kinds) for name, b in builders.items()]
    return [b for b in banks if b is not None]


def _devices_by_profile(index: DeviceIndex) -> list[tuple[Profile, npt.NDArray[np.int64]]]:
    """Each profile in use with its devices' indices, ascending."""
    code_of: dict[str, int] = {}
    profiles: list[Profile] = []
    for p in index.profiles:
        if p.id not in code_of:
            code_of[p.id] = len(profiles)
            profiles.append(p)
    codes = np.fromiter((code_of[p.id] for p in index.profiles), dtype=np.int64, count=index.n_devices)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(profiles) + 1))
    return [(p, order[bounds[c] : bounds[c + 1]]) for c, p in enumerate(profiles)]
