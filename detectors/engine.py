"""The detection engine: every detector bank over the whole registry, one batch at a time.

Order within a batch: the devices' own event bits first (never delayed), then every bank, then
liveness, then zone fusion over what the others decided. The result is sorted fire first, stably,
so nothing queues ahead of a fire alarm and each alarm's own transitions keep their order.

State: `snapshot()` returns every bank's arrays keyed by (device, alarm type), so `restore()` works
on a changed registry too (devices added, removed or moved to another partition resume warm where
they match, cold where they do not). `save()`/`load()` keep it in an `.npz` file without pickle.
A registry changed while running moves state from the engine to its successor by the same keys
(`carry_from`), in two steps so that the step inside the pipeline's batch lock is only array copies.
"""

from __future__ import annotations

import io
import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.domain import AlarmCategory, DetectorEvent, DetectorEventKind
from detectors.base import Hits
from detectors.catalog import Bank, Stream, compile_banks
from detectors.device_events import DeviceEventMapper
from detectors.fusion import CONFIRMED, ZoneFusion
from detectors.liveness import OFFLINE, OUTAGE, ChannelWatch, LivenessWatch, OutagePolicy
from detectors.samples import Samples
from ingest.decode import ClockChange, DecodedBatch
from ingest.index import DeviceIndex

SNAPSHOT_VERSION = 2  # 2: units keyed by device index and alarm-type code (1: by joined strings)


CLOCK_ALARM = "device.clock_wrong"


def clock_events(changes: list[ClockChange]) -> list[DetectorEvent]:
    """A device whose clock is wrong is heard all the same (ingest stamps its messages with their
    receipt time); the wrong clock itself is a fault to fix, raised until a plausible time returns."""
    return [
        DetectorEvent(
            device_id=c.device_id,
            alarm_type=CLOCK_ALARM,
            kind=DetectorEventKind.RAISE if c.wrong else DetectorEventKind.CLEAR,
            category=AlarmCategory.FAULT,
            ts=c.ts,
            detail=f"设备时钟异常 / the device's clock is wrong: {c.detail}; its readings are stamped with "
            "their receipt time until it is set right",
            basis="ingest.max_future_s / ingest.max_past_s",
        )
        for c in changes
    ]


class SnapshotError(ValueError):
    """A snapshot file that cannot be used; the engine then starts from the alarm store instead."""


@dataclass
class StateCarry:
    """Detector state to move from `old` to `new` (an engine over a changed registry): which rows go
    where, worked out ahead; `apply()` copies them, between two batches, with a few numpy gathers."""

    old: Engine
    new: Engine
    banks: list[tuple[Bank, Bank, npt.NDArray[np.int64], npt.NDArray[np.int64]]]  # new, old, dst, src
    dev_dst: npt.NDArray[np.int64]
    dev_src: npt.NDArray[np.int64]
    slot_dst: npt.NDArray[np.int64]
    slot_src: npt.NDArray[np.int64]

    @property
    def warm_units(self) -> int:
        return sum(int(dst.size) for _, _, dst, _ in self.banks)

    def apply(self) -> None:
        """Copy the old engine's current state over (call with detection paused: under its lock)."""
        for new_bank, old_bank, dst, src in self.banks:
            for name, array in new_bank.detector.state.items():
                array[dst] = old_bank.detector.state[name][src]
        old, new = self.old, self.new
        new.liveness.last_seen[self.dev_dst] = old.liveness.last_seen[self.dev_src]
        new.liveness.offline[self.dev_dst] = old.liveness.offline[self.dev_src]
        new.liveness.carry_outages(old.liveness, self.dev_dst, self.dev_src)
        new.channels.last[self.slot_dst] = old.channels.last[self.slot_src]
        new.channels.stale[self.slot_dst] = old.channels.stale[self.slot_src]
        # Zone fusion is keyed by zone path and device id already: it moves as it is. Signals of a
        # removed or moved device age out of their window like any other.
        new.fusion.zones = old.fusion.zones


class Engine:
    def __init__(
        self,
        index: DeviceIndex,
        *,
        start: float,
        fusion_window_s: float = 120.0,
        outage: OutagePolicy | None = None,
    ) -> None:
        self.index = index
        self.banks: list[Bank] = compile_banks(index)
        self.liveness = LivenessWatch(index, start, outage)
        self.channels = ChannelWatch(index, start)
        self.device_events = DeviceEventMapper(index)
        self.fusion = ZoneFusion(index, fusion_window_s)
        # No per-unit dictionary: a unit is found by its device (units are in device order in each
        # bank, UnitInfos.units_of), which keeps a million devices' seven million units cheap.

    @property
    def n_units(self) -> int:
        return sum(b.detector.n_units for b in self.banks)

    def state_bytes(self) -> int:
        arrays = self.liveness.last_seen.nbytes + self.liveness.offline.nbytes
        arrays += self.channels.last.nbytes + self.channels.stale.nbytes + self.channels.limit.nbytes
        return arrays + sum(b.detector.state_bytes() for b in self.banks)

    def process(self, batch: DecodedBatch) -> list[DetectorEvent]:
        """Events for one decoded batch, fire-category events first."""
        events = self.device_events.map(batch.events)
        for e in events:
            if e.kind is DetectorEventKind.RESET:  # before the banks run: a persisting condition re-raises
                self.forget_device(e.device_id)
        events += clock_events(batch.clock_changes)
        streams = self._streams(batch)
        for bank in self.banks:
            hits = bank.detector.update(streams[bank.stream])
            if len(hits):
                events += self._events(bank, hits)
        events += self.liveness.seen(batch.seen_dev, batch.seen_at)
        if batch.seen_at.size:
            events += self.channels.seen(batch.sample_slot, batch.sample_ts, float(batch.seen_at.max()))
        events += self._fuse(events)
        events.sort(key=lambda e: e.category is not AlarmCategory.FIRE)
        return events

    def process_samples(self, samples: Samples) -> list[DetectorEvent]:
        """Channel readings only (replay, tests): every slot bank and fusion, fire first."""
        events: list[DetectorEvent] = []
        for bank in self.banks:
            if bank.stream in (Stream.SAMPLES, Stream.CHECKED):
                hits = bank.detector.update(samples)
                if len(hits):
                    events += self._events(bank, hits)
        events += self._fuse(events)
        events.sort(key=lambda e: e.category is not AlarmCategory.FIRE)
        return events

    def is_active(self, device_id: str, alarm_type: str) -> bool:
        hit = self._unit(device_id, alarm_type)
        return hit is not None and bool(hit[0].detector.state["active"][hit[1]])

    def grace(self, now: float) -> None:
        """Count silence afresh from `now`, when the service starts listening."""
        self.liveness.grace(now)
        self.channels.grace(now)

    def own(self, mine: npt.NDArray[np.bool_], gained: npt.NDArray[np.bool_], now: float) -> None:
        """Liveness for the devices `mine` only (per device index; a clustered worker's partitions),
        `gained` counting their silence afresh from `now` (LivenessWatch.own)."""
        self.liveness.own(mine, gained, now)
        self.channels.own(mine, gained, now)

    def pause(self, gap: float) -> None:
        """Ingest did not listen for `gap` seconds: not counted as silence."""
        self.liveness.pause(gap)
        self.channels.pause(gap)

    def check(self, now: float) -> list[DetectorEvent]:
        """Time-driven checks (liveness), run on a timer independent of traffic."""
        events = self.liveness.check(now) + self.channels.check(now)
        return events + self._fuse(events)

    def _fuse(self, events: list[DetectorEvent]) -> list[DetectorEvent]:
        # In time order, whichever bank decided first: the window is about when things happened.
        return self.fusion.update(sorted(events, key=lambda e: e.ts)) if events else []

    def _streams(self, batch: DecodedBatch) -> dict[Stream, Samples]:
        n_slots, n_dev = self.index.n_slots, self.index.n_devices
        samples = Samples.of(batch.sample_slot, batch.sample_ts, batch.sample_value, n_slots)
        checked = samples
        if batch.range_slot.size:
            checked = Samples(
                np.concatenate([batch.sample_slot, batch.range_slot]),
                np.concatenate([batch.sample_ts, batch.range_ts]),
                np.concatenate([batch.sample_value, batch.range_value]),
            )
        has_batt = np.isfinite(batch.reading_batt)
        has_rssi = np.isfinite(batch.reading_rssi)
        return {
            Stream.SAMPLES: samples,
            Stream.CHECKED: checked,
            Stream.BATTERY: Samples.of(
                batch.reading_dev[has_batt], batch.reading_ts[has_batt], batch.reading_batt[has_batt], n_dev
            ),
            Stream.RSSI: Samples.of(
                batch.reading_dev[has_rssi], batch.reading_ts[has_rssi], batch.reading_rssi[has_rssi], n_dev
            ),
        }

    @staticmethod
    def _events(bank: Bank, hits: Hits) -> list[DetectorEvent]:
        out = []
        for unit, ts, value, raised in zip(
            hits.unit.tolist(), hits.ts.tolist(), hits.value.tolist(), hits.raised.tolist(), strict=True
        ):
            info = bank.info[unit]
            out.append(
                DetectorEvent(
                    device_id=info.device_id,
                    alarm_type=info.alarm_type,
                    kind=DetectorEventKind.RAISE if raised else DetectorEventKind.CLEAR,
                    category=info.category,
                    ts=ts,
                    value=round(value, 4),
                    channel=info.channel,
                    detail=f"{info.detail}; {round(value, 3):g} {info.evidence}",
                    basis=info.basis,
                    extra={"detector": bank.name},
                )
            )
        return out

    # --- warm starts -------------------------------------------------------------------------

    def resume(self, active: set[tuple[str, str]]) -> None:
        """Align every unit's active flag with the alarms active in the state store.

        The store is the truth about alarms: after a snapshot is restored, an alarm a person cleared
        meanwhile is inactive again (so a persisting condition re-raises), one raised after the
        snapshot is active (so it is not raised twice). Without a snapshot this is the warm start.
        """
        for bank in self.banks:
            bank.detector.state["active"][:] = False
        self.liveness.offline[:] = False
        self.channels.stale[:] = False
        for key in active:
            hit = self._unit(*key)
            if hit is not None:
                hit[0].detector.set_active([hit[1]])
        self.liveness.restore_offline({device for device, alarm_type in active if alarm_type == OFFLINE})
        self.liveness.restore_outages({key for key, t in active if t == OUTAGE}, self.liveness.not_before)
        self.channels.restore_stale(active)
        self.fusion.restore_confirmed(active)

    def resume_devices(
        self, devices: npt.NDArray[np.bool_], active: set[tuple[str, str]], now: float
    ) -> None:
        """`resume` for the devices `devices` (per device index) only: a clustered worker taking a
        partition over aligns those devices' units with the store, whatever the snapshot says (an
        alarm the worker before raised after its snapshot is active, one cleared is not), and adopts
        the outages open there. The others' state is left as it is."""
        mine = {(d, t) for d, t in active if (i := self.index.dev_of.get(d)) is not None and devices[i]}
        for bank in self.banks:
            bank.detector.state["active"][devices[bank.info.dev]] = False
        self.channels.stale[devices[self.index.slot_device]] = False
        for key in mine:
            hit = self._unit(*key)
            if hit is not None:
                hit[0].detector.set_active([hit[1]])
        self.liveness.restore_offline({d for d, t in mine if t == OFFLINE})
        self.liveness.adopt_outages({key for key, t in active if t == OUTAGE}, devices, now)
        self.channels.restore_stale(mine)
        self.fusion.restore_confirmed(mine)

    def carry_from(self, old: Engine, *, warm: Collection[str], active: set[tuple[str, str]]) -> StateCarry:
        """Plan moving `old`'s state into this (fresh, not yet used) engine.

        Detector units of the devices in `warm` (those that stay with the same profile) carry by
        (device, alarm type); liveness by device and channel staleness by (device, channel) for every
        device in both. Every other unit starts cold, aligned with the alarms `active` in the store
        (as on a warm start), so an open alarm is neither lost nor raised twice.
        """
        warm_set = set(warm)
        carried: set[tuple[str, str]] = set()
        banks = []
        old_banks = {b.name: b for b in old.banks}
        for bank in self.banks:
            was = old_banks.get(bank.name)
            if was is None or any(
                was.detector.state[k].shape[1:] != a.shape[1:] or was.detector.state[k].dtype != a.dtype
                for k, a in bank.detector.state.items()
            ):
                continue
            row_of = {(i.device_id, i.alarm_type): u for u, i in enumerate(was.info)}
            pairs = [
                (u, row_of[key])
                for u, i in enumerate(bank.info)
                if i.device_id in warm_set and (key := (i.device_id, i.alarm_type)) in row_of
            ]
            if pairs:
                dst, src = np.array(pairs, dtype=np.int64).T
                banks.append((bank, was, dst, src))
                carried.update((bank.info[u].device_id, bank.info[u].alarm_type) for u, _ in pairs)
        for key in active - carried:
            hit = self._unit(*key)
            if hit is not None:
                hit[0].detector.set_active([hit[1]])
        idx, was_idx = self.index, old.index
        devs = [(d, was_idx.dev_of[i]) for d, i in enumerate(idx.device_ids) if i in was_idx.dev_of]
        new_devices = {i for i in idx.device_ids if i not in was_idx.dev_of}
        self.liveness.restore_offline({d for d, t in active if t == OFFLINE and d in new_devices})
        slots = []
        for d, o in devs:
            old_offsets = was_idx.channel_offsets[o]
            base, old_base = int(idx.slot_base[d]), int(was_idx.slot_base[o])
            slots += [
                (base + k, old_base + old_offsets[ch])
                for ch, k in idx.channel_offsets[d].items()
                if ch in old_offsets
            ]
        carried_slots = {s for s, _ in slots}
        cold_stale = {
            (d, t)
            for d, t in active
            if t.endswith(".stale")
            and d in idx.dev_of
            and (ch := t.removesuffix(".stale")) in idx.channel_offsets[idx.dev_of[d]]
            and idx.slot(d, ch) not in carried_slots
        }
        self.channels.restore_stale(cold_stale)
        dev_pairs = np.array(devs, dtype=np.int64).reshape(-1, 2).T
        slot_pairs = np.array(slots, dtype=np.int64).reshape(-1, 2).T
        return StateCarry(old, self, banks, dev_pairs[0], dev_pairs[1], slot_pairs[0], slot_pairs[1])

    def forget(self, device_id: str, alarm_type: str) -> None:
        """Reset the state behind an alarm a person cleared, so a persisting condition re-raises."""
        if alarm_type == OFFLINE:
            dev = self.index.dev_of.get(device_id)
            if dev is not None:
                self.liveness.offline[dev] = False
            return
        if alarm_type == OUTAGE:
            self.liveness.forget_outage(device_id)
            return
        if alarm_type == CONFIRMED:
            for zone in self.fusion.zones.values():
                if zone.confirmed_on == device_id:
                    zone.confirmed_on = None
            return
        if alarm_type.endswith(".stale"):
            dev = self.index.dev_of.get(device_id)
            channel = alarm_type.removesuffix(".stale")
            if dev is not None and channel in self.index.channel_offsets[dev]:
                self.channels.stale[
                    int(self.index.slot_base[dev]) + self.index.channel_offsets[dev][channel]
                ] = False
            return
        hit = self._unit(device_id, alarm_type)
        if hit is not None:
            hit[0].detector.reset([hit[1]])

    def forget_device(self, device_id: str) -> None:
        """A latched fire alarm of this device was reset: forget the state behind its fire and
        pre-alarm units, so a condition that persists raises them afresh (a pre-alarm absorbed while
        the fire was latched included)."""
        dev = self.index.dev_of.get(device_id)
        if dev is None:
            return
        latching = [
            k.alarm_type
            for bank in self.banks
            for u in bank.info.units_of(dev)
            if (k := bank.info.kinds[int(bank.info.kind[u])]).category
            in (AlarmCategory.FIRE, AlarmCategory.PRE_ALARM)
        ]
        for alarm_type in latching:
            self.forget(device_id, alarm_type)

    def _unit(self, device_id: str, alarm_type: str) -> tuple[Bank, int] | None:
        """The bank and unit of a (device, alarm type), if this engine has one."""
        dev = self.index.dev_of.get(device_id)
        if dev is None:
            return None
        for bank in reversed(self.banks):  # the last bank wins, as the key map built in bank order did
            for u in bank.info.units_of(dev):
                if bank.info.kinds[int(bank.info.kind[u])].alarm_type == alarm_type:
                    return bank, u
        return None

    def snapshot(self) -> dict[str, npt.NDArray[Any]]:
        """All state as flat named arrays. Each bank's rows are keyed by (device, alarm type) as
        numbers: a device index into `devices` and a code into the bank's `types` — a million
        devices have about seven million units, and a string key per unit made each save take
        seconds on the pipeline's thread (docs/benchmarks.md, registry at scale)."""
        out: dict[str, npt.NDArray[Any]] = {"version": np.array(SNAPSHOT_VERSION), "devices": self._devices()}
        for bank in self.banks:
            types, codes = self._type_codes(bank)
            out[f"{bank.name}/dev"] = bank.info.dev
            out[f"{bank.name}/type"] = codes
            out[f"{bank.name}/types"] = np.array(types)
            for name, array in bank.detector.snapshot().items():
                out[f"{bank.name}/{name}"] = array
        # Liveness times are not kept: after a restart every device gets a fresh grace period, else a
        # long downtime would raise every device offline at once. Offline alarms come from the store.
        out["fusion"] = np.array(json.dumps(self.fusion.snapshot()))
        return out

    def _devices(self) -> npt.NDArray[Any]:
        # Made for each snapshot, not kept: as a fixed-width string array the ids take four bytes
        # per character of the longest (80 MB at a million devices) beside the index's own list,
        # for about 0.1 s per save at a million (docs/benchmarks.md, registry at scale).
        return np.array(self.index.device_ids)

    @staticmethod
    def _type_codes(bank: Bank) -> tuple[list[str], npt.NDArray[np.int32]]:
        """The bank's alarm types, and each unit's as a code into them."""
        types = sorted({k.alarm_type for k in bank.info.kinds})
        code_of_kind = np.array([types.index(k.alarm_type) for k in bank.info.kinds], dtype=np.int32)
        return types, code_of_kind[bank.info.kind]

    def restore(self, state: dict[str, npt.NDArray[Any]], devices: Collection[str] | None = None) -> int:
        """Restore what matches this registry (by device and alarm type); returns how many units
        resumed warm.

        With `devices` (a worker taking partitions over, firewatch/cluster), only those devices'
        units are restored, and those of them the snapshot lacks start cold; every other unit keeps
        its current state. Zone fusion is not restored wholesale then: its state is keyed by zone,
        and a zone's devices may belong to partitions of several workers, so the saved zones would
        overwrite signals this worker holds of its own devices. Only the listed devices' signals
        are taken from the snapshot (ZoneFusion.restore_devices); without them a signal raised
        before the snapshot would be forgotten (its unit is restored active, so the replay does not
        raise it again), and the zone could miss its confirmation or clear it early — cold fusion
        does not err to alarm. Confirmations stay as they are; `resume` aligns them with the store.
        """
        if int(state.get("version", np.array(-1))) != SNAPSHOT_VERSION:
            raise SnapshotError("snapshot version does not match this firewatch")
        dev_of = self.index.dev_of
        only: npt.NDArray[np.bool_] | None = None
        if devices is not None:
            only = np.zeros(self.index.n_devices, dtype=bool)
            only[[dev_of[d] for d in devices if d in dev_of]] = True
        # saved device index -> this registry's (-1: gone)
        dev_now = np.array([dev_of.get(d, -1) for d in state["devices"].tolist()], dtype=np.int64)
        n_dev = max(1, self.index.n_devices)
        warm = 0
        for bank in self.banks:
            if only is not None:
                bank.detector.reset(np.flatnonzero(only[bank.info.dev]))
            if f"{bank.name}/dev" not in state:
                continue
            types, codes = self._type_codes(bank)
            saved_types = state[f"{bank.name}/types"].tolist()
            code_now = np.array([types.index(t) if t in types else -1 for t in saved_types], dtype=np.int64)
            s_dev = dev_now[state[f"{bank.name}/dev"]]
            s_code = code_now[state[f"{bank.name}/type"]] if saved_types else np.zeros(0, dtype=np.int64)
            keep = np.flatnonzero((s_dev >= 0) & (s_code >= 0))
            saved_keys = s_code[keep] * n_dev + s_dev[keep]
            my_keys = codes.astype(np.int64) * n_dev + bank.info.dev
            _, dst, at = np.intersect1d(my_keys, saved_keys, assume_unique=False, return_indices=True)
            src = keep[at]
            if only is not None:
                chosen = only[bank.info.dev[dst]]
                dst, src = dst[chosen], src[chosen]
            if dst.size == 0:
                continue
            saved = {name: state.get(f"{bank.name}/{name}") for name in bank.detector.state}
            if any(v is None or v.shape[1:] != bank.detector.state[k].shape[1:] for k, v in saved.items()):
                continue  # parameters changed shape (e.g. a longer window): this bank starts cold
            for name, array in bank.detector.state.items():
                array[dst] = saved[name][src]  # type: ignore[index]
            warm += int(dst.size)
        if "fusion" in state:
            saved = json.loads(str(state["fusion"]))
            if devices is None:
                self.fusion.restore(saved)
            else:
                self.fusion.restore_devices(saved, set(devices))
        return warm

    def save(self, path: Path) -> None:
        """Write the snapshot atomically (write, then rename), so a crash never leaves half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as f:
            np.savez(f, **self.snapshot())  # type: ignore[arg-type]  # numpy's stub types kwds as bool
        tmp.replace(path)

    def load(self, path: Path) -> int:
        return self.restore(_read_snapshot(path, str(path)))

    def snapshot_bytes(self) -> bytes:
        """The snapshot as the bytes of an `.npz` file (a cluster keeps it in PostgreSQL)."""
        buffer = io.BytesIO()
        np.savez(buffer, **self.snapshot())  # type: ignore[arg-type]  # numpy's stub types kwds as bool
        return buffer.getvalue()

    def restore_bytes(self, blob: bytes, devices: Collection[str] | None = None) -> int:
        """`restore` from `snapshot_bytes` (of this or another worker's engine)."""
        return self.restore(_read_snapshot(io.BytesIO(blob), "from the cluster store"), devices)


def _read_snapshot(source: Path | io.BytesIO, name: str) -> dict[str, npt.NDArray[Any]]:
    try:
        with np.load(source, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"cannot read the detector snapshot {name}: {exc}") from exc
