"""The telemetry series the pipeline has stored under, in series-slot order: append-only columns.

A series is one (device id, channel). Stored batches name series by slot in this table, so a
registry change only appends to it (a batch detected before the change and stored after it still
names the right series). At first the table is the index's own slots and shares its columns; a
million devices have about two million series, and a `(device, channel)` tuple with a dictionary
entry per series cost about 150 bytes each, twice over (docs/benchmarks.md, "Registry at scale").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

from ingest.index import DeviceIndex


class SeriesTable:
    """Series by slot: `device[slot]` is a position in `device_ids`, `channel[slot]` the channel."""

    def __init__(
        self, device_ids: Sequence[str], device: npt.NDArray[np.int32], channel: Sequence[str]
    ) -> None:
        # Never changed in place: they may be the index's own (`of_index`); `bound_to` makes new ones.
        self.device_ids = device_ids
        self.device = device
        self.channel = channel

    @classmethod
    def of_index(cls, index: DeviceIndex) -> SeriesTable:
        """The index's slots as series, in slot order (its columns shared, not copied)."""
        return cls(index.device_ids, index.slot_device, index.slot_channel)

    def __len__(self) -> int:
        return len(self.channel)

    def keys(self) -> Iterator[tuple[str, str]]:
        """(device id, channel) per series, in slot order, made as they are read."""
        ids = self.device_ids
        return ((ids[d], c) for d, c in zip(self.device.tolist(), self.channel, strict=True))

    def bound_to(self, index: DeviceIndex) -> tuple[SeriesTable, npt.NDArray[np.int64]]:
        """This table with the series of `index`'s slots it lacks appended (in slot order), and the
        series slot of each of `index`'s slots."""
        n = len(self)
        # Each series' device in `index` (-1: gone), then its slot there by channel offset (-1: gone).
        dev_in_index = np.fromiter(
            (index.dev_of.get(d, -1) for d in self.device_ids), dtype=np.int64, count=len(self.device_ids)
        )
        dev = dev_in_index[self.device] if n else np.zeros(0, dtype=np.int64)
        offsets = index.channel_offsets
        offset = np.fromiter(
            (
                offsets[d].get(c, -1) if d >= 0 else -1
                for d, c in zip(dev.tolist(), self.channel, strict=True)
            ),
            dtype=np.int64,
            count=n,
        )
        known = offset >= 0
        series_of_slot = np.full(index.n_slots, -1, dtype=np.int64)
        series_of_slot[index.slot_base[dev[known]] + offset[known]] = np.flatnonzero(known)
        missing = np.flatnonzero(series_of_slot < 0)
        if not missing.size:
            return self, series_of_slot
        series_of_slot[missing] = n + np.arange(missing.size, dtype=np.int64)
        # The devices of the new series: their position in `device_ids`, appending those not there.
        position = np.full(index.n_devices, -1, dtype=np.int64)
        present = dev_in_index >= 0
        position[dev_in_index[present]] = np.flatnonzero(present)
        new_devices = np.unique(index.slot_device[missing])
        added = new_devices[position[new_devices] < 0]
        position[added] = len(self.device_ids) + np.arange(added.size, dtype=np.int64)
        ids = index.device_ids
        table = SeriesTable(
            [*self.device_ids, *(ids[d] for d in added.tolist())],
            np.concatenate([self.device, position[index.slot_device[missing]].astype(np.int32)]),
            [*self.channel, *(index.slot_channel[s] for s in missing.tolist())],
        )
        return table, series_of_slot
