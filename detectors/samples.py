"""A batch of samples grouped by slot, shared by every detector of the engine."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Samples:
    """Samples in arrival order. Detectors that need per-slot order use `by_slot()`."""

    slot: npt.NDArray[np.int32]
    ts: npt.NDArray[np.float64]
    value: npt.NDArray[np.float64]
    # True when no slot occurs twice (the live case): detectors then skip their per-unit count.
    unique: bool = False

    @staticmethod
    def of(
        slot: npt.NDArray[np.int32], ts: npt.NDArray[np.float64], value: npt.NDArray[np.float64], n_slots: int
    ) -> Samples:
        unique = not slot.size or int(np.bincount(slot, minlength=n_slots).max()) <= 1
        return Samples(slot, ts, value, unique)

    def __len__(self) -> int:
        return int(self.slot.size)


def group_starts(
    keys: npt.NDArray[np.int64] | npt.NDArray[np.int32],
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.intp]]:
    """For keys sorted ascending: a mask of group starts, and for every element its group's start."""
    n = keys.size
    new = np.empty(n, dtype=bool)
    if n:
        new[0] = True
        new[1:] = keys[1:] != keys[:-1]
    start = np.maximum.accumulate(np.where(new, np.arange(n), 0)) if n else np.zeros(0, dtype=np.intp)
    return new, start
