"""Wall time of the phases of start-up, so a slow start says where its time went."""

from __future__ import annotations

import time


class Phases:
    """A lap timer: `lap(name)` puts the time since the previous lap (or since creation) on `name`.

    Laps rather than context managers, so timing a long constructor does not re-indent it.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> float:
        now = time.perf_counter()
        took = now - self._last
        self._last = now
        self.seconds[name] = self.seconds.get(name, 0.0) + took
        return took

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def summary(self) -> str:
        """'load registry 1.20 s, build index 0.31 s, ...'"""
        return ", ".join(f"{name} {s:.2f} s" for name, s in self.seconds.items())
