"""The registry compiled for the hot path: devices and (device, channel) slots as integer indices.

Every (device, channel) pair gets a *slot*; detector state lives in numpy arrays indexed by slot and
by device index. A device's slots are contiguous: ``slot_base[dev] + channel_offset``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.registry import Device, Location, Registry
from device_profiles.schema import Profile


class UnknownProfileError(KeyError):
    """A device names a profile that does not exist."""


@dataclass(frozen=True)
class DeviceIndex:
    device_ids: list[str]
    dev_of: dict[str, int]
    devices: list[Device]
    profiles: list[Profile]  # per device
    locations: list[Location]  # per device
    sites: list[str]  # per device
    channel_offsets: list[dict[str, int]]  # per device: channel name -> offset (shared per profile)
    slot_base: npt.NDArray[np.int32]  # per device
    slot_device: npt.NDArray[np.int32]  # per slot
    slot_channel: list[str]  # per slot
    slot_lo: npt.NDArray[np.float64]  # physical range, per slot
    slot_hi: npt.NDArray[np.float64]
    heartbeat_s: npt.NDArray[np.float64]  # per device
    offline_after: npt.NDArray[np.float64]  # per device, multiples of heartbeat
    place_names: dict[str, str]  # place path -> display name

    def place_label(self, path: str) -> str:
        """'住院楼 3F 东区 305病房' for a place path, from the registry's names (site omitted)."""
        parts = path.split("/")
        shown = [self.place_names.get("/".join(parts[: i + 1]), parts[i]) for i in range(1, len(parts))]
        return " ".join(shown) or path

    @property
    def n_devices(self) -> int:
        return len(self.device_ids)

    @property
    def n_slots(self) -> int:
        return len(self.slot_channel)

    def series_keys(self) -> list[tuple[str, str]]:
        """(device id, channel) of every slot, in slot order: the telemetry store's series."""
        ids = self.device_ids
        return [(ids[d], c) for d, c in zip(self.slot_device.tolist(), self.slot_channel, strict=True)]

    def slot(self, device_id: str, channel: str) -> int:
        dev = self.dev_of[device_id]
        return int(self.slot_base[dev]) + self.channel_offsets[dev][channel]

    @classmethod
    def build(cls, registry: Registry, profiles: dict[str, Profile]) -> DeviceIndex:
        missing = sorted({d.profile for d in registry.devices.values() if d.profile not in profiles})
        if missing:
            raise UnknownProfileError(f"registry names unknown profiles {missing}; known: {sorted(profiles)}")
        offsets_of = {pid: {name: i for i, name in enumerate(p.channels)} for pid, p in profiles.items()}
        device_ids = sorted(registry.devices)
        devices = [registry.devices[d] for d in device_ids]
        dev_profiles = [profiles[d.profile] for d in devices]
        counts = np.array([len(p.channels) for p in dev_profiles], dtype=np.int32)
        slot_base = np.zeros(len(devices), dtype=np.int32)
        if len(devices):
            slot_base[1:] = np.cumsum(counts)[:-1]
        slot_device = np.repeat(np.arange(len(devices), dtype=np.int32), counts)
        slot_channel = [name for p in dev_profiles for name in p.channels]
        slot_lo = np.array([c.range[0] for p in dev_profiles for c in p.channels.values()], dtype=np.float64)
        slot_hi = np.array([c.range[1] for p in dev_profiles for c in p.channels.values()], dtype=np.float64)
        return cls(
            device_ids=device_ids,
            dev_of={d: i for i, d in enumerate(device_ids)},
            devices=devices,
            profiles=dev_profiles,
            locations=[registry.locations[d] for d in device_ids],
            sites=[registry.locations[d].site for d in device_ids],
            channel_offsets=[offsets_of[d.profile] for d in devices],
            slot_base=slot_base,
            slot_device=slot_device,
            slot_channel=slot_channel,
            slot_lo=slot_lo,
            slot_hi=slot_hi,
            heartbeat_s=np.array([p.liveness.heartbeat_s for p in dev_profiles], dtype=np.float64),
            offline_after=np.array([p.liveness.offline_after for p in dev_profiles], dtype=np.float64),
            place_names={path: place.name for path, place in registry.places.items()},
        )
