"""The InfluxDB sink: readings, alarm transitions and the pipeline's own health, copied to InfluxDB
for Grafana and long-term storage, off the alarm path (docs/influx.md).

Two halves, two processes:

- `InfluxSink`, in the service process, only hands things over: each detected batch's numpy columns,
  alarm transitions, a stats record. The hand-off is a bounded queue and every put is non-blocking:
  when it is full the points are dropped and counted, and ingest never waits.
- The worker process (storage/influx_worker.py) turns them into line protocol
  (storage/line_protocol.py), keeps a bounded buffer (past `buffer_points` the oldest points are
  dropped and counted), and writes batches through influxdb-client, retrying a failed batch with
  exponential backoff until it is written.

Why a process: formatting line protocol is Python work per sample (about 0.3 µs a sample with the
encoder of storage/line_protocol.py on the development machine, more with a naive one), then gzip
and HTTP, while ingest runs tens of thousands of samples a second under one GIL. As a thread it
would take that time from decoding and detection; in its own process (like the telemetry compactor,
storage/compactor.py) the operating system schedules it beside them, and the service's share is a
non-blocking put of three numpy arrays per batch (pickled by the queue's feeder thread).

The worker names readings by the pipeline's series slots (append-only, `Pipeline._series_keys`) and
tags them from a device table. Both tables travel through the same queue as the data, so every batch
is encoded with the tables it was made with. A table change is never dropped: while the queue is
full it waits in `_pending`, and data behind it is dropped (counted) rather than overtaking it.

Counters cross back through shared memory (`Stat`); the service reads them for its metrics, its
readiness, the `pipeline` measurement and the fault alarm (storage/influx_alarm.py).
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import os
import queue as queue_mod
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.sharedctypes import SynchronizedString
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from storage.child_process import sigint_ignored_by_children
from storage.influx_worker import DRAIN_S, ERROR_BYTES, STOP_LATE_S, Stat, WorkerConfig, run_worker
from storage.line_protocol import AlarmRow, DeviceTags, FieldValue

if TYPE_CHECKING:
    from alarms.model import Transition
    from alarms.tickets import TicketChange
    from core.settings import InfluxSettings
    from ingest.index import DeviceIndex


logger = logging.getLogger(__name__)

HANDOFF_ITEMS = 64  # batches (or lists of transitions) waiting for the worker, at most


def device_tags(index: DeviceIndex) -> dict[str, DeviceTags]:
    """The tags of each registered device's readings (empty levels are left out by the encoder)."""
    return {
        dev: {
            "site": loc.site,
            "building": loc.building,
            "floor": loc.floor,
            "zone": loc.zone,
            "kind": profile.kind.value,
        }
        for dev, loc, profile in zip(index.device_ids, index.locations, index.profiles, strict=True)
    }


@dataclass(frozen=True)
class Tables:
    """A change of the worker's tables: series from `series_from` on (the series table only grows)
    and the devices whose tags are new or changed."""

    series_from: int
    series: list[tuple[str, str]]
    devices: dict[str, DeviceTags]


@dataclass(frozen=True)
class SinkStatus:
    """The sink as the service sees it; wall-clock times."""

    offered: int  # points handed to the sink
    written: int
    dropped: dict[str, int]  # by reason
    buffered: int
    skipped: int
    failures: int
    failing_since: float | None
    refused: bool
    last_error: str
    alive: bool
    restarts: int

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class InfluxSink:
    """Start, feed, watch and stop the sink's worker process. Every `put` returns at once."""

    def __init__(
        self, settings: InfluxSettings, *, instance: str, handoff_items: int = HANDOFF_ITEMS
    ) -> None:
        self.config = WorkerConfig.of(settings)
        self.instance = instance  # the `pipeline` measurement's tag
        self.handoff_items = handoff_items
        self._ctx = mp.get_context("spawn")  # no fork of a process with threads and an event loop
        # Plain shared doubles: one writer (the worker), aligned 8-byte reads cannot tear.
        self._shared = self._ctx.Array("d", len(Stat), lock=False)
        self._error: SynchronizedString = self._ctx.Array("c", ERROR_BYTES)  # type: ignore[assignment]
        self._last_error = ""
        # The stop flag is a shared byte, not a multiprocessing.Event: setting an Event takes a lock
        # the worker also takes, and a worker killed while holding it would hang the service's stop.
        self._stop_flag: Any = self._ctx.RawValue("b", 0)
        self._lock = threading.Lock()  # puts come from the pipeline, the alarm path and the clock
        self._queue: Any = None  # the hand-off (multiprocessing.Queue)
        self._process: mp.process.BaseProcess | None = None
        self._pending: deque[tuple[Any, ...]] = deque()  # table changes waiting for room, in order
        self._series: list[tuple[str, str]] = []  # the tables as last sent, for a restarted worker
        self._devices: dict[str, DeviceTags] = {}
        self._running = False
        self._restarted_at = 0.0
        self._dead_since: float | None = None
        self.offered = 0
        self.dropped_handoff = 0
        self.dropped_exit = 0  # buffered in a worker that died
        self.restarts = 0
        self._logged_failing: float | None = None
        self._logged_refused = False
        self._logged_drops = 0
        self._drops_logged_at = 0.0

    # --- tables ----------------------------------------------------------------------------------
    def tables_for(self, index: DeviceIndex, series: Sequence[tuple[str, str]]) -> Tables:
        """What changed since the tables last sent (call beside the pipeline: this walks the registry)."""
        start = len(self._series)
        tags = device_tags(index)
        changed = {d: t for d, t in tags.items() if self._devices.get(d) != t}
        return Tables(start, list(series[start:]), changed)

    def send_tables(self, tables: Tables) -> None:
        """Hand a table change over, in order with the data (never dropped)."""
        with self._lock:
            del self._series[tables.series_from :]
            self._series.extend(tables.series)
            self._devices.update(tables.devices)
            if self._running:
                self._pending.append(("tables", tables.series_from, tables.series, tables.devices))
                self._flush_pending()

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self, tables: Tables) -> None:
        self._series = list(tables.series)
        self._devices = dict(tables.devices)
        self._spawn()

    def _spawn(self) -> None:
        q = self._ctx.Queue(maxsize=self.handoff_items)
        self._stop_flag.value = 0
        if not self._error_lock_free():  # the dead worker held it: the new one gets a fresh one
            self._error = self._ctx.Array("c", ERROR_BYTES)  # type: ignore[assignment]
        process = self._ctx.Process(
            target=run_worker,
            args=(self.config, q, self._stop_flag, self._shared, self._error, os.getpid()),
            name="firewatch-influx-sink",
            daemon=True,
        )
        with sigint_ignored_by_children():
            process.start()
        with self._lock:
            self._queue, self._process = q, process
            self._pending.clear()
            # The whole tables first: nothing reaches the worker before them.
            self._pending.append(("tables", 0, list(self._series), dict(self._devices)))
            self._flush_pending()
            self._running = True

    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def stop(self, drain_s: float = DRAIN_S) -> None:
        """Let the worker write what it holds for up to `drain_s` (one failure ends that), then
        stop it: a worker not gone 2 s past that (stuck, stopped, dead) is terminated, then killed.
        Returns within about drain_s + 4.5 s."""
        with self._lock:
            self._running = False
            process, q = self._process, self._queue
        if process is None or q is None:
            return
        try:
            q.put(("stop", time.time() + drain_s), timeout=0.5)
        except (queue_mod.Full, ValueError):
            self._stop_flag.value = 1
        process.join(drain_s + STOP_LATE_S + 1.0)
        if process.is_alive():
            logger.warning("the InfluxDB sink did not stop in time; terminating it")
            process.terminate()
            process.join(1.0)
        if process.is_alive():
            logger.warning("the InfluxDB sink's worker ignored SIGTERM; killing it")
            process.kill()
            process.join(1.0)
        q.cancel_join_thread()  # whatever is still in the pipe is not worth waiting for
        q.close()
        with self._lock:
            self._process = self._queue = None
        status = self.status()
        logger.info(
            "InfluxDB sink stopped: %d points written, %d dropped (%s)",
            status.written,
            status.dropped_total,
            ", ".join(f"{k} {v}" for k, v in status.dropped.items() if v) or "none",
        )

    # --- the hand-off (never blocks) -------------------------------------------------------------
    def put_readings(
        self,
        slot: npt.NDArray[np.integer],
        ts: npt.NDArray[np.float64],
        value: npt.NDArray[np.float64],
        points: int,
    ) -> None:
        """One detected batch: series slots (of the pipeline's series table), times, values.
        `points` is its number of messages, for counting."""
        self._offer(("readings", slot, ts, value), points)

    def on_transitions(self, transitions: list[Transition], tickets: list[TicketChange]) -> None:
        """A pipeline listener (called on the alarm path): the transitions, as `alarm_event` points."""
        if transitions:
            self._offer(("alarms", [alarm_row(t) for t in transitions]), len(transitions))

    def put_stats(self, ts: float, fields: dict[str, FieldValue]) -> None:
        """One `pipeline` point."""
        self._offer(("stats", ts, self.instance, fields), 1)

    def _offer(self, item: tuple[Any, ...], points: int) -> None:
        with self._lock:
            self.offered += points
            if not self._running or not self._flush_pending():
                self.dropped_handoff += points  # stopped, or a table change still waits for room
                return
            try:
                self._queue.put_nowait(item)
            except queue_mod.Full:
                self.dropped_handoff += points

    def _flush_pending(self) -> bool:
        """Move waiting table changes to the queue (under the lock); whether none is left."""
        while self._pending:
            try:
                self._queue.put_nowait(self._pending[0])
            except queue_mod.Full:
                return False
            self._pending.popleft()
        return True

    # --- watching ----------------------------------------------------------------------------------
    def status(self) -> SinkStatus:
        s = self._shared
        failing = s[Stat.FAILING_SINCE] or None
        alive = self.alive()
        if self._running and not alive:
            failing = min(failing or math.inf, self._dead_since or time.time())
        error = self._read_error()
        if self._running and not alive:
            before = f"; before: {error}" if error else ""
            error = f"the InfluxDB sink's worker process is not running{before}"
        return SinkStatus(
            offered=self.offered,
            written=int(s[Stat.WRITTEN]),
            dropped={
                "handoff": self.dropped_handoff,
                "buffer": int(s[Stat.DROPPED_BUFFER]),
                "rejected": int(s[Stat.DROPPED_REJECTED]),
                "invalid": int(s[Stat.DROPPED_INVALID]),
                "stopped": int(s[Stat.DROPPED_STOPPED]),
                "worker_exit": self.dropped_exit,
            },
            buffered=int(s[Stat.BUFFERED]),
            skipped=int(s[Stat.SKIPPED]),
            failures=int(s[Stat.FAILURES]),
            failing_since=failing,
            refused=bool(s[Stat.REFUSED]),
            last_error=error,
            alive=alive,
            restarts=self.restarts,
        )

    def _read_error(self) -> str:
        """The worker's last error; the one read before if its lock is not free at once (a worker
        killed while writing it holds it for good, and this runs on the event loop)."""
        lock = self._error.get_lock()
        if not lock.acquire(timeout=0.05):
            return self._last_error
        try:
            self._last_error = self._error.value.decode(errors="replace")
        finally:
            lock.release()
        return self._last_error

    def _error_lock_free(self) -> bool:
        lock = self._error.get_lock()
        if not lock.acquire(timeout=0.05):
            return False
        lock.release()
        return True

    def supervise(self, now: float | None = None) -> SinkStatus:
        """Restart a worker that died (at most once per `retry_max_s`) and log what changed: writes
        failing, recovering, points dropped. Call every second or so; returns the status."""
        now = time.time() if now is None else now
        if self._running and self._process is not None and not self._process.is_alive():
            if self._dead_since is None:
                self._dead_since = now
                logger.error(
                    "the InfluxDB sink's worker exited (code %s); %d buffered points are lost",
                    self._process.exitcode,
                    int(self._shared[Stat.BUFFERED]),
                )
            if now - self._restarted_at >= self.config.retry_max_s:
                self._restart(now)
        status = self.status()
        self._log_changes(status, now)
        return status

    def _restart(self, now: float) -> None:
        with self._lock:
            old = self._queue
            self._running = False
        self.dropped_exit += int(self._shared[Stat.BUFFERED])
        self._shared[Stat.BUFFERED] = 0
        if old is not None:
            old.cancel_join_thread()
            old.close()
        self.restarts += 1
        self._restarted_at = now
        self._dead_since = None
        logger.warning("restarting the InfluxDB sink's worker (restart %d)", self.restarts)
        self._spawn()

    def _log_changes(self, status: SinkStatus, now: float) -> None:
        """Once per change, not per attempt: failing, refused (what to fix), succeeding again."""
        if status.failing_since is not None and self._logged_failing is None:
            self._logged_failing = status.failing_since
            if not status.refused:
                logger.warning("InfluxDB writes are failing: %s", status.last_error)
        if status.refused and not self._logged_refused:
            logger.error("InfluxDB refuses the writes: %s", status.last_error)
        self._logged_refused = status.refused
        if status.failing_since is None and self._logged_failing is not None:
            logger.info("InfluxDB writes succeed again after %.0f s", now - self._logged_failing)
            self._logged_failing = None
        dropped = status.dropped_total
        if dropped > self._logged_drops and now - self._drops_logged_at >= 60.0:
            logger.warning(
                "the InfluxDB sink has dropped %d points so far (%s)",
                dropped,
                ", ".join(f"{k} {v}" for k, v in status.dropped.items() if v),
            )
            self._logged_drops, self._drops_logged_at = dropped, now

    def readiness(self, status: SinkStatus | None = None, now: float | None = None) -> str:
        status = self.status() if status is None else status
        now = time.time() if now is None else now
        if status.failing_since is None:
            return "ok"
        return f"failing for {max(0.0, now - status.failing_since):.0f} s: {status.last_error}"


def alarm_row(t: Transition) -> AlarmRow:
    """A transition as the encoder's `alarm_event` row (storage/line_protocol.py)."""
    a = t.after
    return (
        t.ts,
        t.action.value,
        t.alarm_id,
        a["device_id"],
        a["alarm_type"],
        a["category"],
        a["severity"],
        a["state"],
        a["site"],
        a["place"],
        a["value"],
        a["detail"] or "",
    )
