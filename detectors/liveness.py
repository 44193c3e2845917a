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
