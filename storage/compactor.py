"""Telemetry compaction in a process of its own, beside the service.

Compaction (storage/telemetry.py) is CPU work: sorting the staged samples and writing one chunk per
series. Run as a thread of the service, it competed with detection for the GIL and tripled the alarm
latency's p99 under load (docs/benchmarks.md). In its own process the operating system schedules it
like any other process. Only SQLite is shared: its write lock makes the telemetry writer wait while a
compaction commits, which delays acknowledgements, never detection.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path

from storage.telemetry import TelemetryStore

logger = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0


def compact_until_empty(store: TelemetryStore, stop: MpEvent | None = None) -> int:
    """Compact until no staged batch is left; returns the samples moved."""
    moved = 0
    while (n := store.compact().samples) and not (stop is not None and stop.is_set()):
        moved += n
    return moved + n


def _run(path: Path, every_s: float, retention_s: float, stop: MpEvent, parent: int) -> None:
    """The compactor process: compact every `every_s`, prune hourly, until `stop` or orphaned."""
    store = TelemetryStore(path)
    pruned_at = 0.0
    try:
        while not stop.wait(every_s) and os.getppid() == parent:
            try:
                compact_until_empty(store, stop)
                now = time.time()
                if retention_s > 0 and now - pruned_at >= PRUNE_EVERY_S:
                    pruned_at = now
                    store.prune(now - retention_s)
            except Exception:  # a full disk or a locked file: staged batches wait for the next pass
                logger.exception("telemetry compaction failed; retrying in %.1f s", every_s)
    finally:
        store.close()


class Compactor:
    """Start and stop the compactor process for one telemetry file."""

    def __init__(self, path: Path, *, every_s: float, retention_s: float) -> None:
        self.path = path
        self.every_s = every_s
        self.retention_s = retention_s
        self._ctx = mp.get_context("spawn")  # no fork of a process with threads and an event loop
        self._stop = self._ctx.Event()
        self._process: mp.process.BaseProcess | None = None

    def start(self) -> None:
        self._stop.clear()
        self._process = self._ctx.Process(
            target=_run,
            args=(self.path, self.every_s, self.retention_s, self._stop, os.getpid()),
            name="firewatch-telemetry-compactor",
            daemon=True,
        )
        self._process.start()

    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the current compaction (its transaction commits or rolls back whole)."""
        if self._process is None:
            return
        self._stop.set()
        self._process.join(timeout_s)
        if self._process.is_alive():
            logger.warning("telemetry compactor did not stop within %.0f s; terminating it", timeout_s)
            self._process.terminate()
            self._process.join(5)
        self._process = None
