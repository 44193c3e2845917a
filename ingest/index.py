"""The registry compiled for the hot path: devices and (device, channel) slots as integer indices.

Every (device, channel) pair gets a *slot*; detector state lives in numpy arrays indexed by slot and
by device index. A device's slots are contiguous: ``slot_base[dev] + channel_offset``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import TypeVar, overload

import numpy as np
import numpy.typing as npt

from core.place_label import said_once
from core.registry import ByDeviceId, Device, Location, Registry
from device_profiles.schema import Profile


class UnknownProfileError(KeyError):
    """A device names a profile that does not exist."""


@dataclass(frozen=True)
class DeviceIndex:
    device_ids: list[str]
    dev_of: dict[str, int]
    devices: Sequence[Device]  # per device, made on demand from the registry's columns
    profiles: list[Profile]  # per device
    locations: Sequence[Location]  # per device
    sites: list[str]  # per device
    places: list[str]  # per device: its place path
    gateways: list[str]  # per device: its gateway ('': none known)
    channel_offsets: list[dict[str, int]]  # per device: channel name -> offset (shared per profile)
    slot_base: npt.NDArray[np.int32]  # per device
    slot_device: npt.NDArray[np.int32]  # per slot
    slot_channel: list[str]  # per slot
    slot_lo: npt.NDArray[np.float64]  # physical range, per slot
    slot_hi: npt.NDArray[np.float64]
    heartbeat_s: npt.NDArray[np.float64]  # per device
    offline_after: npt.NDArray[np.float64]  # per device, multiples of heartbeat
    place_names: Mapping[str, str]  # place path -> display name (read from the registry's tree)

    def place_label(self, path: str) -> str:
        """'住院楼 3F 东区 305病房' for a place path, from the registry's names (site omitted);
        a site alone is its own name ('测试医院')."""
        parts = path.split("/")
        if len(parts) == 1:
            return self.place_names.get(path, path)
        names = [self.place_names.get("/".join(parts[: i + 1]), parts[i]) for i in range(1, len(parts))]
        return " ".join(said_once(names)) or path

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
        columns = registry.columns
        items = columns.values.items
        profile_codes = np.unique(columns.profile).tolist()
        missing = sorted({items[c] for c in profile_codes if items[c] not in profiles})
        if missing:
            raise UnknownProfileError(f"registry names unknown profiles {missing}; known: {sorted(profiles)}")
        device_ids = sorted(registry.row_of)
        n = len(device_ids)
        rows = np.fromiter(map(registry.row_of.__getitem__, device_ids), np.intp, n)
        codes = columns.profile[rows]
        # Per profile (a handful), then spread to devices and slots with numpy.
        by_code = {c: profiles[items[c]] for c in profile_codes}
        lookup = np.zeros(len(items), dtype=np.int32)  # profile code -> position in `table`
        table = list(by_code.values())
        lookup[list(by_code)] = np.arange(len(table), dtype=np.int32)
        which = lookup[codes]
        channels = [list(p.channels.values()) for p in table]
        names = [list(p.channels) for p in table]
        first = np.cumsum([0, *(len(c) for c in channels)])  # each profile's first channel, all profiles
        counts = np.diff(first).astype(np.int32)[which]
        slot_base = np.zeros(n, dtype=np.int32)
        if n:
            slot_base[1:] = np.cumsum(counts)[:-1]
        slot_device = np.repeat(np.arange(n, dtype=np.int32), counts)
        # A slot's channel among all profiles' channels: its device's profile's first, plus its offset.
        channel = first[which][slot_device] + (np.arange(len(slot_device)) - slot_base[slot_device])
        # Place and site per distinct place (about one room per device), spread to devices in C.
        distinct, place_at = np.unique(columns.place[rows], return_inverse=True)
        place_text: list[str] = list(map(items.__getitem__, distinct.tolist()))
        site_text = list(map(itemgetter(0), map(str.partition, place_text, repeat("/"))))
        place_at_list = place_at.tolist()
        all_names = [name for ns in names for name in ns]
        which_list = which.tolist()
        offsets = [{name: i for i, name in enumerate(ns)} for ns in names]
        return cls(
            device_ids=device_ids,
            dev_of=dict(zip(device_ids, range(n), strict=True)),
            devices=ByIndex(registry.devices, rows),
            profiles=list(map(table.__getitem__, which_list)),
            locations=ByIndex(registry.locations, rows),
            sites=list(map(site_text.__getitem__, place_at_list)),
            places=list(map(place_text.__getitem__, place_at_list)),
            gateways=list(map(items.__getitem__, columns.gateway[rows].tolist())),
            channel_offsets=list(map(offsets.__getitem__, which_list)),
            slot_base=slot_base,
            slot_device=slot_device,
            slot_channel=list(map(all_names.__getitem__, channel.tolist())),
            slot_lo=np.array([c.range[0] for cs in channels for c in cs], dtype=np.float64)[channel],
            slot_hi=np.array([c.range[1] for cs in channels for c in cs], dtype=np.float64)[channel],
            # A profile without liveness (a panel's component) is never called offline on its own.
            heartbeat_s=np.array(
                [p.liveness.heartbeat_s if p.liveness is not None else np.inf for p in table],
                dtype=np.float64,
            )[which],
            offline_after=np.array(
                [p.liveness.offline_after if p.liveness is not None else 1.0 for p in table], dtype=np.float64
            )[which],
            place_names=registry.place_names,
        )


V = TypeVar("V")


class ByIndex(Sequence[V]):
    """A registry view (devices or locations) by device index, made when one is read
    (`index.devices[dev]`, `index.locations[dev]`)."""

    def __init__(self, view: ByDeviceId[V], rows: npt.NDArray[np.intp]) -> None:
        self._view = view
        self._rows = rows

    @overload
    def __getitem__(self, dev: int) -> V: ...
    @overload
    def __getitem__(self, dev: slice) -> list[V]: ...
    def __getitem__(self, dev: int | slice) -> V | list[V]:
        if isinstance(dev, slice):
            return [self._view.at(r) for r in self._rows[dev].tolist()]
        return self._view.at(int(self._rows[dev]))

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[V]:
        return (self._view.at(r) for r in self._rows.tolist())
