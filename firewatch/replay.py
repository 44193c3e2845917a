"""Replay a recorded CSV through the live service's detectors and alarm logic.

    firewatch replay DATA.csv --spec SPEC.yaml --out EVENTS.jsonl

The spec names the time column and, for each simulated device, its id, profile, zone and which
CSV column feeds which channel (with an optional scale). Every row's readings become samples at
the row's time; the engine is `detectors.engine.Engine` and the alarms are the live
`alarms.service.AlarmService` on a private SQLite store, so replay and live decide alike. Time is
the CSV's own: liveness (silence) is not replayed, everything else is.

Each alarm transition is one JSON object per line: time (in the CSV's time column), device,
alarm type, category, severity, state, action, value and detail.
"""

from __future__ import annotations

import csv
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from alarms.service import AlarmService
from alarms.tickets import TicketOpener
from core.domain import AlarmAction
from core.registry import BuildingSpec, Device, FloorSpec, Registry, SiteSpec, ZoneSpec
from core.settings import TicketPolicy
from detectors.engine import Engine
from detectors.samples import Samples
from device_profiles.loader import load_profiles
from device_profiles.schema import Profile
from ingest.index import DeviceIndex
from storage.db import open_store
from storage.registry_sync import sync_registry


class ReplayError(ValueError):
    """The spec or the CSV cannot be replayed; the message says what to fix."""


class TimeFormat(StrEnum):
    SECONDS = "seconds"  # a number of seconds (any origin, negative allowed)
    ISO = "iso"  # ISO 8601 date-times


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChannelSource(_Strict):
    column: str
    scale: float = 1.0
    offset: float = 0.0


class ReplayDevice(_Strict):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    profile: str
    zone: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")] = "zone1"
    channels: dict[str, ChannelSource | str] = Field(min_length=1)

    def source(self, channel: str) -> ChannelSource:
        src = self.channels[channel]
        return ChannelSource(column=src) if isinstance(src, str) else src


class ReplaySpec(_Strict):
    time_column: str
    time_format: TimeFormat = TimeFormat.SECONDS
    profiles: list[Path] = Field(default_factory=list, description="extra profile files or folders")
    fusion_window_s: float = Field(default=120.0, gt=0)
    devices: list[ReplayDevice] = Field(min_length=1)


def load_spec(path: Path) -> ReplaySpec:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ReplayError(f"cannot read the spec {path}: {exc}") from exc
    try:
        spec = ReplaySpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ReplayError(f"{path}: {problems}") from None
    # Relative profile paths are relative to the spec, like any include.
    return spec.model_copy(
        update={"profiles": [p if p.is_absolute() else path.parent / p for p in spec.profiles]}
    )


@dataclass
class ReplayResult:
    rows: int = 0
    samples: int = 0
    seconds: float = 0.0
    transitions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Recording:
    time: npt.NDArray[np.float64]  # seconds (the CSV's own for SECONDS, epoch seconds for ISO)
    columns: dict[str, npt.NDArray[np.float64]]  # NaN where a cell is empty or not a number
    raw_time: list[str]


def read_csv(path: Path, time_column: str, columns: list[str], time_format: TimeFormat) -> Recording:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise ReplayError(f"{path} is empty")
            missing = [c for c in [time_column, *columns] if c not in header]
            if missing:
                shown = ", ".join(header[:8]) + (", ..." if len(header) > 8 else "")
                raise ReplayError(f"{path} has no column(s) {missing}; it has: {shown}")
            at = {c: header.index(c) for c in [time_column, *columns]}
            rows = [r for r in reader if r]
    except OSError as exc:
        raise ReplayError(f"cannot read {path}: {exc}") from exc
    raw_time = [r[at[time_column]] if len(r) > at[time_column] else "" for r in rows]
    t = np.array([_time(v, time_format) for v in raw_time], dtype=np.float64)
    data = {c: np.array([_number(r[at[c]]) if len(r) > at[c] else np.nan for r in rows]) for c in columns}
    keep = np.isfinite(t)
    if not keep.any():
        raise ReplayError(f"{path}: no row has a readable {time_column!r} ({time_format.value})")
    order = np.argsort(t[keep], kind="stable")
    kept = np.flatnonzero(keep)[order]
    return Recording(t[kept], {c: v[kept] for c, v in data.items()}, [raw_time[i] for i in kept.tolist()])


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def _time(text: str, fmt: TimeFormat) -> float:
    if fmt is TimeFormat.SECONDS:
        return _number(text)
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        return float("nan")


def build_registry(spec: ReplaySpec) -> Registry:
    zones = sorted({d.zone for d in spec.devices})
    site = SiteSpec(
        id="replay",
        name="replay",
        buildings=[
            BuildingSpec(
                id="b",
                name="replay",
                floors=[FloorSpec(id="f", name="replay", zones=[ZoneSpec(id=z, name=z) for z in zones])],
            )
        ],
    )
    return Registry(
        [site], [Device(id=d.id, profile=d.profile, place=f"replay/b/f/{d.zone}") for d in spec.devices]
    )


def _profiles(spec: ReplaySpec) -> dict[str, Profile]:
    profiles = load_profiles()
    for extra in spec.profiles:
        profiles.update(load_profiles(extra))
    return profiles


def replay(
    csv_path: Path,
    spec: ReplaySpec,
    *,
    chunk_rows: int = 2_000,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Run the CSV through the detectors and the alarm service; transitions in time order."""
    columns = sorted({d.source(ch).column for d in spec.devices for ch in d.channels})
    rec = read_csv(csv_path, spec.time_column, columns, spec.time_format)
    return run(rec, spec, chunk_rows=chunk_rows, progress=progress)


def run(
    rec: Recording,
    spec: ReplaySpec,
    *,
    chunk_rows: int = 2_000,
    progress: Callable[[int, int], None] | None = None,
    profiles: dict[str, Profile] | None = None,
) -> ReplayResult:
    """Run a recording already in memory (the scoring harness uses this directly)."""
    profiles = profiles if profiles is not None else _profiles(spec)
    unknown = sorted({d.profile for d in spec.devices} - profiles.keys())
    if unknown:
        raise ReplayError(
            f"unknown profile(s) {unknown}; known: {sorted(profiles)} (add files under `profiles:`)"
        )
    for d in spec.devices:
        bad = sorted(set(d.channels) - profiles[d.profile].channels.keys())
        if bad:
            raise ReplayError(
                f"device {d.id!r}: profile {d.profile!r} has no channel(s) {bad}; "
                f"it has {sorted(profiles[d.profile].channels)}"
            )
    ids = [d.id for d in spec.devices]
    if len(set(ids)) != len(ids):
        raise ReplayError(f"device ids must be unique, got {ids}")
    profiles = _at_recorded_rate(profiles, {d.profile for d in spec.devices}, rec.time)
    registry = build_registry(spec)
    index = DeviceIndex.build(registry, profiles)
    feeds = [(index.slot(d.id, ch), d.source(ch)) for d in spec.devices for ch in d.channels]
    missing = sorted({s.column for _, s in feeds} - rec.columns.keys())
    if missing:
        raise ReplayError(f"the recording has no column(s) {missing}")

    started = time.perf_counter()
    engine = Engine(index, start=float(rec.time[0]), fusion_window_s=spec.fusion_window_s)
    result = ReplayResult(rows=int(rec.time.size))
    raw_of = {float(t): raw for t, raw in zip(rec.time.tolist(), rec.raw_time, strict=False)}  # ISO only
    with tempfile.TemporaryDirectory(prefix="firewatch-replay-") as tmp:
        db, sessions = open_store(f"sqlite:///{Path(tmp) / 'alarms.sqlite'}")
        try:
            sync_registry(sessions, registry, profiles)
            now = [float(rec.time[0])]
            alarms = AlarmService(sessions, index, TicketOpener(index, TicketPolicy()), lambda: now[0])
            for lo, hi in _chunks(rec.time.size, chunk_rows):
                samples = _samples(rec, feeds, lo, hi)
                result.samples += len(samples)
                events = engine.process_samples(samples)
                now[0] = float(rec.time[hi - 1])
                transitions, _tickets = alarms.apply(events)
                for t in transitions:
                    result.transitions.append(_record(t.action, t.after, raw_of, spec.time_format))
                if progress is not None:
                    progress(hi, rec.time.size)
        finally:
            db.dispose()
    result.seconds = time.perf_counter() - started
    result.transitions.sort(key=lambda r: r["_ts"])
    return result


def _at_recorded_rate(
    profiles: dict[str, Profile], used: set[str], t: npt.NDArray[np.float64]
) -> dict[str, Profile]:
    """Profiles whose report interval is longer than the recording's step, shortened to it.

    Windowed detectors size their bounded history by the report interval; a log sampled faster
    than the device reports live (1 Hz lab data for a 10 s detector) must not overflow it.
    """
    steps = np.diff(t)
    steps = steps[steps > 0]
    if not steps.size:
        return profiles
    step = float(np.median(steps))
    out = dict(profiles)
    for pid in used:
        if step < profiles[pid].report_interval_s:
            out[pid] = profiles[pid].model_copy(update={"report_interval_s": step})
    return out


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for lo in range(0, n, size):
        yield lo, min(n, lo + size)


def _samples(rec: Recording, feeds: list[tuple[int, ChannelSource]], lo: int, hi: int) -> Samples:
    """Rows lo..hi as samples in time order (row by row, every feed in turn); empty cells skipped."""
    t = rec.time[lo:hi]
    values = np.stack([rec.columns[s.column][lo:hi] * s.scale + s.offset for _, s in feeds], axis=1)
    slots = np.broadcast_to(np.array([slot for slot, _ in feeds], dtype=np.int32), values.shape)
    ts = np.broadcast_to(t[:, None], values.shape)
    ok = np.isfinite(values)
    return Samples(slots[ok].copy(), ts[ok].copy(), values[ok].copy())


def _record(
    action: AlarmAction, after: dict[str, Any], raw_of: dict[float, str], fmt: TimeFormat
) -> dict[str, Any]:
    ts = float(after["cleared_ts"] if action is AlarmAction.CLEARED else after["last_ts"])
    raw = raw_of.get(ts)
    shown: float | str = raw if fmt is TimeFormat.ISO and raw is not None else ts
    return {
        "time": shown,
        "device": after["device_id"],
        "alarm_type": after["alarm_type"],
        "category": after["category"],
        "severity": after["severity"],
        "state": after["state"],
        "action": action.value,
        "value": after["value"],
        "detail": after["detail"],
        "_ts": ts,
    }


def write_jsonl(result: ReplayResult, out: Path) -> None:
    with out.open("wb") as f:
        for r in result.transitions:
            f.write(orjson.dumps({k: v for k, v in r.items() if k != "_ts"}) + b"\n")
