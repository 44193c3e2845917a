"""Telemetry compaction in a process of its own, beside the service.

Compaction (storage/telemetry.py) is CPU work: sorting the staged samples and writing one chunk per
series. Run as a thread of the service, it competed with detection for the GIL and tripled the alarm
latency's p99 under load (docs/benchmarks.md). In its own process the operating system schedules it
like any other process. Only SQLite is shared: its write lock makes the telemetry writer wait while a
compaction commits, which delays acknowledgements, never detection.

The stop signal is the end of a pipe, not a `multiprocessing.Event`: an Event's `set` waits for
every process sleeping in its `wait` to wake up, so a child killed (or stopped) in `wait` made the
service's stop hang forever. Closing our end of a pipe never blocks, and the child sees end-of-file
the same way whether we closed it or died.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from multiprocessing.connection import Connection
from pathlib import Path

from storage.child_process import ignore_sigint, sigint_ignored_by_children
from storage.telemetry import TelemetryStore

logger = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0
STOP_GRACE_S = 2.0  # a compaction in progress may finish (and commit) within this, then SIGTERM
KILL_AFTER_S = 1.0  # SIGTERM not obeyed (a stopped or stuck process) within this: SIGKILL


def compact_until_empty(store: TelemetryStore, stop: Connection | None = None) -> int:
    """Compact until no staged batch is left, or `stop` is readable; returns the samples moved."""
    moved = 0
    while (n := store.compact().samples) and not (stop is not None and stop.poll()):
        moved += n
    return moved + n


def _run(
    path: Path, every_s: float, retention_s: float, stop: Connection, ready: Connection, parent: int
) -> None:
    """The compactor process: compact every `every_s`, prune hourly, until `stop` is readable (the
    service closed its end, or died) or orphaned."""
    ignore_sigint()  # the service decides when we stop (storage/child_process.py)
    ready.send_bytes(b"")  # imported: from now on a stop waits for the compaction in hand
    ready.close()
    store = TelemetryStore(path)
    pruned_at = 0.0
    try:
        while not stop.poll(every_s) and os.getppid() == parent:
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
        self._stop_w: Connection | None = None  # our end of the stop pipe: closed means stop
        # Readable once the child runs our code. A spawned child first imports the service's main
        # module (seconds on a busy machine) and cannot see the stop pipe meanwhile: a service
        # stopped that early would wait out the whole grace for a child that has nothing to finish.
        self._ready_r: Connection | None = None
        self._process: mp.process.BaseProcess | None = None

    def start(self) -> None:
        stop_r, self._stop_w = self._ctx.Pipe(duplex=False)
        self._ready_r, ready_w = self._ctx.Pipe(duplex=False)
        self._process = self._ctx.Process(
            target=_run,
            args=(self.path, self.every_s, self.retention_s, stop_r, ready_w, os.getpid()),
            name="firewatch-telemetry-compactor",
            daemon=True,
        )
        with sigint_ignored_by_children():
            self._process.start()
        stop_r.close()  # the child has its own copy; ours would keep the pipe open after we close _stop_w
        ready_w.close()  # likewise: with the child's copy gone, the pipe reads as end-of-file

    def started(self) -> bool:
        """The child has got past its imports into our code (or died)."""
        ready = self._ready_r
        return ready is not None and (ready.closed or ready.poll())

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop after the current compaction (its transaction commits or rolls back whole), waiting
        `grace_s` at most; then SIGTERM, then SIGKILL; a child still importing is sent SIGTERM at
        once. Returns within about grace_s + 2 s whatever the child is doing: importing, running,
        stuck, stopped (SIGSTOP) or already dead."""
        process, self._process = self._process, None
        if self._stop_w is not None:
            self._stop_w.close()
            self._stop_w = None
        started = self.started()
        if self._ready_r is not None:
            self._ready_r.close()
            self._ready_r = None
        if process is None:
            return
        # Still importing, nothing of ours has run: nothing is lost by ending it at once.
        process.join(grace_s if started else 0.0)
        if process.is_alive():
            if started:
                logger.warning("telemetry compactor did not stop within %.1f s; terminating it", grace_s)
            process.terminate()  # SQLite rolls an interrupted compaction back: nothing is lost
            process.join(KILL_AFTER_S)
        if process.is_alive():
            logger.warning("telemetry compactor ignored SIGTERM; killing it")
            process.kill()
            process.join(KILL_AFTER_S)
        if process.is_alive():  # in uninterruptible sleep (a hung disk): nothing more a parent can do
            logger.error("telemetry compactor (pid %s) is still there after SIGKILL; leaving it", process.pid)
        elif process.exitcode not in (0, None):
            logger.info("telemetry compactor ended with code %s", process.exitcode)
