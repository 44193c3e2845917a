"""Offline detection: no message for `offline_after` x the profile's heartbeat (per device).

The watchdog decides, not the retained status topic: a broker can hold a stale `online` for a
device whose power is long gone.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from core.domain import DetectorEvent, DetectorEventKind
from ingest.index import DeviceIndex

OFFLINE = "device.offline"


class LivenessWatch:
    def __init__(self, index: DeviceIndex, start: float) -> None:
        self.index = index
        # A device never heard from gets a full grace period from start-up before it counts as silent.
        self.last_seen = np.full(index.n_devices, start, dtype=np.float64)
        self.offline = np.zeros(index.n_devices, dtype=bool)
        self.limit = index.heartbeat_s * index.offline_after
        self.category = [p.liveness.category for p in index.profiles]
        self.basis = [p.liveness.basis for p in index.profiles]

    def seen(self, dev: npt.NDArray[np.int32], at: npt.NDArray[np.float64]) -> list[DetectorEvent]:
        if not dev.size:
            return []
        np.maximum.at(self.last_seen, dev, at)
        back = np.unique(dev[self.offline[dev]])
        self.offline[back] = False
        return [self._event(int(d), DetectorEventKind.CLEAR, float(self.last_seen[d])) for d in back.tolist()]

    def grace(self, now: float) -> None:
        """Start every device's silence count afresh at `now` (the service starting): while the
        service was not listening, nobody knows whether a device was quiet."""
        np.maximum(self.last_seen, now, out=self.last_seen)

    def check(self, now: float) -> list[DetectorEvent]:
        silent = np.flatnonzero(~self.offline & (now - self.last_seen > self.limit))
        self.offline[silent] = True
        return [self._event(int(d), DetectorEventKind.RAISE, now) for d in silent.tolist()]

    def _event(self, dev: int, kind: DetectorEventKind, ts: float) -> DetectorEvent:
        silent_for = ts - float(self.last_seen[dev])
        return DetectorEvent(
            device_id=self.index.device_ids[dev],
            alarm_type=OFFLINE,
            kind=kind,
            category=self.category[dev],
            ts=ts,
            value=round(silent_for, 1) if kind is DetectorEventKind.RAISE else None,
            detail=(
                f"no message for {silent_for:.0f} s (limit {self.limit[dev]:.0f} s)"
                if kind is DetectorEventKind.RAISE
                else "reporting again"
            ),
            basis=self.basis[dev],
        )

    def restore_offline(self, device_ids: set[str]) -> None:
        for device_id in device_ids:
            dev = self.index.dev_of.get(device_id)
            if dev is not None:
                self.offline[dev] = True


class ChannelWatch:
    """Per-channel staleness, for devices that relay several sensors (a gateway, a multi-channel
    electrical-fire monitor): the device keeps reporting, one of its channels has stopped.

    Only profiles with `liveness.channel_offline_after` take part; a channel is stale after that many
    report intervals without a reading of it, and fresh again at its next reading.
    """

    def __init__(self, index: DeviceIndex, start: float) -> None:
        self.index = index
        limit = np.full(index.n_slots, np.inf)
        for dev, profile in enumerate(index.profiles):
            k = profile.liveness.channel_offline_after
            if k is not None:
                base = int(index.slot_base[dev])
                limit[base : base + len(profile.channels)] = k * profile.report_interval_s
        self.limit = limit
        self.watched = np.isfinite(limit)
        self.last = np.full(index.n_slots, start, dtype=np.float64)
        self.stale = np.zeros(index.n_slots, dtype=bool)

    def seen(
        self, slot: npt.NDArray[np.int32], ts: npt.NDArray[np.float64], now: float
    ) -> list[DetectorEvent]:
        if not slot.size or not self.watched.any():
            return []
        # Receipt time, not the device's timestamp: a device clock that is off must not make a
        # channel look stale or fresh.
        self.last[slot] = np.maximum(self.last[slot], now)
        back = np.unique(slot[self.stale[slot]])
        self.stale[back] = False
        return [self._event(int(s), DetectorEventKind.CLEAR, now) for s in back.tolist()]

    def grace(self, now: float) -> None:
        """As LivenessWatch.grace: the service starting knows nothing of the time it was down."""
        np.maximum(self.last, now, out=self.last)

    def check(self, now: float) -> list[DetectorEvent]:
        silent = np.flatnonzero(self.watched & ~self.stale & (now - self.last > self.limit))
        self.stale[silent] = True
        return [self._event(int(s), DetectorEventKind.RAISE, now) for s in silent.tolist()]

    def _event(self, slot: int, kind: DetectorEventKind, ts: float) -> DetectorEvent:
        dev = int(self.index.slot_device[slot])
        channel = self.index.slot_channel[slot]
        profile = self.index.profiles[dev]
        silent_for = ts - float(self.last[slot])
        return DetectorEvent(
            device_id=self.index.device_ids[dev],
            alarm_type=f"{channel}.stale",
            kind=kind,
            category=profile.liveness.category,
            ts=ts,
            value=round(silent_for, 1) if kind is DetectorEventKind.RAISE else None,
            channel=channel,
            detail=(
                f"no {channel} reading for {silent_for:.0f} s (limit {self.limit[slot]:.0f} s)"
                if kind is DetectorEventKind.RAISE
                else f"{channel} reporting again"
            ),
            basis="site policy: a channel silent behind a live device cannot report its hazard",
        )

    def restore_stale(self, keys: set[tuple[str, str]]) -> None:
        for device_id, alarm_type in keys:
            channel, _, suffix = alarm_type.partition(".")
            dev = self.index.dev_of.get(device_id)
            if suffix == "stale" and dev is not None and channel in self.index.channel_offsets[dev]:
                self.stale[int(self.index.slot_base[dev]) + self.index.channel_offsets[dev][channel]] = True
