"""Wall time and memory growth of the phases of start-up, so a slow or big start says where."""

from __future__ import annotations

import os
import time
from pathlib import Path


def resident_bytes() -> int:
    """This process's resident memory (Linux: /proc/self/statm); 0 where that is not available."""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


class Phases:
    """A lap timer: `lap(name)` puts the time since the previous lap (or since creation) on `name`,
    and the growth of resident memory over the same stretch.

    Laps rather than context managers, so timing a long constructor does not re-indent it.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.grew: dict[str, int] = {}  # bytes of resident memory, per phase (negative: shrank)
        self._last = time.perf_counter()
        self._rss = resident_bytes()

    def lap(self, name: str) -> float:
        now, rss = time.perf_counter(), resident_bytes()
        took = now - self._last
        self.seconds[name] = self.seconds.get(name, 0.0) + took
        self.grew[name] = self.grew.get(name, 0) + rss - self._rss
        self._last, self._rss = now, rss
        return took

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def summary(self) -> str:
        """'load registry 1.20 s (+310 MiB), build index 0.31 s (+12 MiB), ...'"""
        return ", ".join(
            f"{name} {s:.2f} s ({self.grew[name] / 2**20:+,.0f} MiB)" for name, s in self.seconds.items()
        )
