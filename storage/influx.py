"""The InfluxDB sink: readings, alarm transitions and the pipeline's own health, copied to InfluxDB
for Grafana and long-term storage, off the alarm path (docs/influx.md).

Two halves, two processes:

- `InfluxSink`, in the service process, only hands things over: each detected batch's numpy columns,
  alarm transitions, a stats record. The hand-off is a bounded queue and every put is non-blocking:
  when it is full the points are dropped and counted, and ingest never waits.
- The worker process (`_run`) turns them into line protocol (storage/line_protocol.py), keeps a
  bounded buffer (past `buffer_points` the oldest points are dropped and counted), and writes batches
  through influxdb-client, retrying a failed batch with exponential backoff until it is written.

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

Counters cross back through shared memory (`_Stat`); the service reads them for its metrics, its
readiness, the `pipeline` measurement and the fault alarm (`SinkAlarm`).
"""

from __future__ import annotations

import gzip
import logging
import math
import multiprocessing as mp
import os
import queue as queue_mod
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from multiprocessing.sharedctypes import SynchronizedString
from multiprocessing.synchronize import Event as MpEvent
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from core.domain import AlarmCategory, DetectorEvent, DetectorEventKind
from storage.line_protocol import AlarmRow, DeviceTags, FieldValue, ReadingEncoder, alarm_line, line

if TYPE_CHECKING:
    from alarms.model import Transition
    from alarms.tickets import TicketChange
    from core.settings import InfluxSettings
    from ingest.index import DeviceIndex

logger = logging.getLogger(__name__)

HANDOFF_ITEMS = 64  # batches (or lists of transitions) waiting for the worker, at most
ERROR_BYTES = 1024  # the last error's text, as shared with the service
RETRY_FIRST_S = 0.25  # the first retry's wait; it doubles up to influx.retry_max_s
DRAIN_S = 5.0  # on stop, the worker writes what it holds for this long at most
# Level 1: on the encoder's lines it compressed ~10x faster than level 9 (gzip's default) for a
# body ~15 % larger (measured on the development machine, 550 kB of readings).
GZIP_LEVEL = 1
ALARM_KEY = "service:influx"  # the fault alarm's key: not a device, like "ticket:YH-..."
ALARM_TYPE = "influx.write_failing"


class _Stat(IntEnum):
    """Slots of the shared counters, written by the worker and read by the service."""

    WRITTEN = 0
    DROPPED_BUFFER = 1  # oldest points dropped from the full buffer
    DROPPED_REJECTED = 2  # batches InfluxDB refused as malformed (400, 413, 422): never retried
    DROPPED_STOPPED = 3  # still buffered when the worker stopped
    DROPPED_INVALID = 4  # records the worker could not encode (a bug: logged)
    SKIPPED = 5  # samples that are not finite (line protocol cannot carry them)
    BUFFERED = 6
    FAILURES = 7  # write requests that failed
    FAILING_SINCE = 8  # wall clock of the first failure since the last success; 0 while writes succeed
    REFUSED = 9  # 1 while InfluxDB refuses the token, the org or the bucket (401, 403, 404)
    REQUESTS = 10


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


# --- the service's half ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Config:
    """What the worker needs of the settings (the token in clear: it crosses a private pipe)."""

    url: str
    org: str
    bucket: str
    token: str | None
    batch_points: int
    flush_interval_s: float
    buffer_points: int
    timeout_s: float
    retry_max_s: float

    @classmethod
    def of(cls, s: InfluxSettings) -> _Config:
        if s.url is None:
            raise ValueError("the InfluxDB sink needs influx.url")
        token = s.token.get_secret_value() if s.token is not None else None
        return cls(
            s.url,
            s.org,
            s.bucket,
            token,
            s.batch_points,
            s.flush_interval_s,
            s.buffer_points,
            s.timeout_s,
            s.retry_max_s,
        )


class InfluxSink:
    """Start, feed, watch and stop the sink's worker process. Every `put` returns at once."""

    def __init__(
        self, settings: InfluxSettings, *, instance: str, handoff_items: int = HANDOFF_ITEMS
    ) -> None:
        self.config = _Config.of(settings)
        self.instance = instance  # the `pipeline` measurement's tag
        self.handoff_items = handoff_items
        self._ctx = mp.get_context("spawn")  # no fork of a process with threads and an event loop
        # Plain shared doubles: one writer (the worker), aligned 8-byte reads cannot tear.
        self._shared = self._ctx.Array("d", len(_Stat), lock=False)
        self._error: SynchronizedString = self._ctx.Array("c", ERROR_BYTES)  # type: ignore[assignment]
        self._stop_event = self._ctx.Event()
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
        self._stop_event.clear()
        process = self._ctx.Process(
            target=_run,
            args=(self.config, q, self._stop_event, self._shared, self._error, os.getpid()),
            name="firewatch-influx-sink",
            daemon=True,
        )
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
        stop it; a worker that does not end in time is terminated."""
        with self._lock:
            self._running = False
            process, q = self._process, self._queue
        if process is None or q is None:
            return
        try:
            q.put(("stop", time.time() + drain_s), timeout=0.5)
        except (queue_mod.Full, ValueError):
            self._stop_event.set()
        process.join(drain_s + self.config.timeout_s + 1.0)
        if process.is_alive():
            logger.warning("the InfluxDB sink did not stop in time; terminating it")
            process.terminate()
            process.join(5)
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
            self._offer(("alarms", [_alarm_row(t) for t in transitions]), len(transitions))

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
        failing = s[_Stat.FAILING_SINCE] or None
        alive = self.alive()
        if self._running and not alive:
            failing = min(failing or math.inf, self._dead_since or time.time())
        with self._error.get_lock():
            error = self._error.value.decode(errors="replace")
        if self._running and not alive:
            before = f"; before: {error}" if error else ""
            error = f"the InfluxDB sink's worker process is not running{before}"
        return SinkStatus(
            offered=self.offered,
            written=int(s[_Stat.WRITTEN]),
            dropped={
                "handoff": self.dropped_handoff,
                "buffer": int(s[_Stat.DROPPED_BUFFER]),
                "rejected": int(s[_Stat.DROPPED_REJECTED]),
                "invalid": int(s[_Stat.DROPPED_INVALID]),
                "stopped": int(s[_Stat.DROPPED_STOPPED]),
                "worker_exit": self.dropped_exit,
            },
            buffered=int(s[_Stat.BUFFERED]),
            skipped=int(s[_Stat.SKIPPED]),
            failures=int(s[_Stat.FAILURES]),
            failing_since=failing,
            refused=bool(s[_Stat.REFUSED]),
            last_error=error,
            alive=alive,
            restarts=self.restarts,
        )

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
                    int(self._shared[_Stat.BUFFERED]),
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
        self.dropped_exit += int(self._shared[_Stat.BUFFERED])
        self._shared[_Stat.BUFFERED] = 0
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


def _alarm_row(t: Transition) -> AlarmRow:
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


# --- the fault alarm -----------------------------------------------------------------------------------
class SinkAlarm:
    """A FAULT alarm while writes have failed for longer than `after_s`, cleared once one succeeds.

    Its key is not a device: like the overdue-ticket alarms it says where it belongs in `extra`
    (the registry's site when there is one, else none: the sink serves every site)."""

    def __init__(self, *, after_s: float, url: str, site: str, place: str, active: bool) -> None:
        self.after_s = after_s
        self.url = url
        self.site = site
        self.place = place
        self.active = active  # as in the alarm store (an alarm left active by a previous run counts)

    def decide(self, status: SinkStatus, wall_now: float, ts: float) -> DetectorEvent | None:
        """The event to apply now, if any (then call `applied`)."""
        since = status.failing_since
        if since is not None and not self.active and wall_now - since >= self.after_s:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
            detail = (
                f"InfluxDB 写入失败 / writes to {self.url} failing since {when} "
                f"({wall_now - since:.0f} s): {status.last_error} — {status.buffered} points buffered, "
                f"{status.dropped_total} dropped so far. Alarms and the local telemetry store are not "
                "affected; Grafana's InfluxDB data is."
            )
            return DetectorEvent(
                device_id=ALARM_KEY,
                alarm_type=ALARM_TYPE,
                kind=DetectorEventKind.RAISE,
                category=AlarmCategory.FAULT,
                ts=ts,
                detail=detail,
                basis="influx.alarm_after_s",
                extra={"site": self.site, "place": self.place},
            )
        if since is None and self.active:
            return clear_event(ts)
        return None

    def applied(self, event: DetectorEvent) -> None:
        self.active = event.kind is DetectorEventKind.RAISE


def clear_event(ts: float) -> DetectorEvent:
    return DetectorEvent(
        device_id=ALARM_KEY,
        alarm_type=ALARM_TYPE,
        kind=DetectorEventKind.CLEAR,
        category=AlarmCategory.FAULT,
        ts=ts,
    )


# --- the worker's half ---------------------------------------------------------------------------------
@dataclass
class _Chunk:
    data: bytes
    ends: npt.NDArray[np.int64]  # end offset of each line (after its newline)
    at: float  # when it was buffered
    pos: int = 0  # lines before this one have left the buffer

    @property
    def left(self) -> int:
        return int(self.ends.size) - self.pos

    def offset(self, line_no: int) -> int:
        return 0 if line_no == 0 else int(self.ends[line_no - 1])


class PointBuffer:
    """Encoded lines waiting to be written, oldest first, kept as the blocks they were encoded in
    (about a hundred bytes a point, no object per point)."""

    def __init__(self) -> None:
        self._chunks: deque[_Chunk] = deque()
        self.points = 0

    @staticmethod
    def _chunk(data: bytes, at: float) -> _Chunk:
        ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10).astype(np.int64) + 1
        return _Chunk(data, ends, at)

    def add(self, data: bytes, at: float) -> None:
        """Lines, each ending in a newline."""
        if data:
            c = self._chunk(data, at)
            self._chunks.append(c)
            self.points += c.left

    def put_back(self, data: bytes, at: float) -> None:
        """A batch that failed goes back to the front, to be retried first (or dropped first)."""
        if data:
            c = self._chunk(data, at)
            self._chunks.appendleft(c)
            self.points += c.left

    @property
    def oldest_at(self) -> float | None:
        return self._chunks[0].at if self._chunks else None

    def take(self, max_points: int) -> tuple[bytes, int, float]:
        """Up to `max_points` of the oldest lines: (data, points, when the oldest was buffered)."""
        parts: list[bytes] = []
        n = 0
        at = self.oldest_at or time.time()
        while self._chunks and n < max_points:
            c = self._chunks[0]
            k = min(max_points - n, c.left)
            parts.append(c.data[c.offset(c.pos) : c.offset(c.pos + k)])
            c.pos += k
            n += k
            if not c.left:
                self._chunks.popleft()
        self.points -= n
        return b"".join(parts), n, at

    def trim(self, max_points: int) -> int:
        """Drop the oldest points until at most `max_points` are left; returns how many."""
        dropped = 0
        while self.points > max_points:
            c = self._chunks[0]
            k = min(self.points - max_points, c.left)
            c.pos += k
            self.points -= k
            dropped += k
            if not c.left:
                self._chunks.popleft()
        return dropped


@dataclass(frozen=True)
class Outcome:
    """How one write request ended. `kind`: ok; retry (the server or network may recover: the same
    batch again after a backoff); rejected (the batch itself can never be written: dropped);
    refused (credentials, org or bucket: nothing can be written until someone fixes them)."""

    kind: str
    message: str = ""
    retry_after: float | None = None


def outcome_of(status: int, message: str, retry_after: str | None, cfg: _Config, points: int) -> Outcome:
    """Classify an HTTP error answer to a write, with what to do about it."""
    if status in (401, 403):
        return Outcome(
            "refused",
            f"HTTP {status} from {cfg.url}: InfluxDB refused the token ({message}). Check influx.token "
            f"(FIREWATCH_INFLUX__TOKEN): it must be a valid API token allowed to write bucket "
            f"'{cfg.bucket}' in org '{cfg.org}'",
        )
    if status == 404:
        return Outcome(
            "refused",
            f"HTTP 404 from {cfg.url} ({message}). Check that org '{cfg.org}' and bucket '{cfg.bucket}' "
            "exist (influx.org, influx.bucket) and that influx.url points at InfluxDB",
        )
    if status == 413:
        return Outcome(
            "rejected",
            f"HTTP 413: a batch of {points} points is too large for the server and was dropped; "
            "lower influx.batch_points",
        )
    if status in (400, 422):
        return Outcome(
            "rejected",
            f"HTTP {status}: InfluxDB rejected (some of) a batch of {points} points, which is not "
            f"retried ({message}). Usually a field type conflict (a field written earlier with another "
            "type), a point outside the bucket's retention or an encoding bug; the message names the line",
        )
    wait = None
    if retry_after:
        try:
            wait = float(retry_after)
        except ValueError:
            wait = None
    return Outcome(
        "retry",
        f"HTTP {status} from {cfg.url} ({message}); retrying. Check InfluxDB's health and logs "
        "(disk, memory, write limits)",
        wait,
    )


class _Writer:
    """Write requests through influxdb-client's write service.

    The service rather than `WriteApi`: WriteApi's synchronous write takes neither a per-request
    timeout nor a compression level (its gzip runs at level 9), and its batching mode retries on a
    schedule of its own, while the sink must own the retry, the buffer and the counting."""

    def __init__(self, cfg: _Config) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.service.write_service import WriteService

        self.cfg = cfg
        # retries=False: no hidden urllib3 retries under our backoff. No token: no header at all.
        self._client = InfluxDBClient(
            cfg.url, token=cfg.token or "", org=cfg.org, timeout=int(cfg.timeout_s * 1000), retries=False
        )
        self._service = WriteService(self._client.api_client)  # type: ignore[no-untyped-call]

    def write(self, body: bytes, points: int, timeout_s: float) -> Outcome:
        from influxdb_client.rest import ApiException

        try:
            self._service.post_write(  # type: ignore[no-untyped-call]
                org=self.cfg.org,
                bucket=self.cfg.bucket,
                body=body,
                precision="ms",
                content_type="text/plain; charset=utf-8",
                content_encoding="gzip",
                _request_timeout=int(timeout_s * 1000),
            )
        except ApiException as exc:
            message = str(getattr(exc, "message", "") or exc.reason or "")[:300]
            return outcome_of(int(exc.status or 0), message, exc.retry_after, self.cfg, points)
        except Exception as exc:  # connection refused, reset, timeout, DNS: the server may come back
            return Outcome(
                "retry",
                f"cannot reach {self.cfg.url}: {type(exc).__name__}: {str(exc)[:200]}. Check that "
                "InfluxDB is running and reachable from this host (influx.url, FIREWATCH_INFLUX__URL)",
            )
        return Outcome("ok")

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


class _Worker:
    """The worker process: a receiving thread encodes into the buffer, a sending thread writes."""

    def __init__(
        self,
        cfg: _Config,
        shared: Any,
        error: SynchronizedString,
        write: Callable[[bytes, int, float], Outcome],
    ) -> None:
        self.cfg = cfg
        self.shared = shared
        self.error = error
        self.write = write
        self.cond = threading.Condition()
        self.buffer = PointBuffer()
        self.in_flight = 0
        self.deadline: float | None = None  # set on stop: write what is held until then
        self.stopping = threading.Event()
        self.series: list[tuple[str, str]] = []
        self.devices: dict[str, DeviceTags] = {}
        self.encoder = ReadingEncoder([], {})

    # --- receiving -------------------------------------------------------------------------------
    def receive(self, q: Any, stop: MpEvent, parent: int) -> None:
        while True:
            try:
                item = q.get(timeout=0.25)
            except queue_mod.Empty:
                if stop.is_set():
                    return self._begin_stop(time.time() + DRAIN_S)
                if os.getppid() != parent:  # the service is gone: nobody to write for
                    return self._begin_stop(time.time())
                continue
            if item[0] == "stop":
                return self._begin_stop(float(item[1]))
            self.take(item)

    def take(self, item: tuple[Any, ...]) -> None:
        """Encode one hand-off item into the buffer."""
        kind = item[0]
        try:
            if kind == "tables":
                self._tables(item[1], item[2], item[3])
                return
            data, skipped = self._encode(kind, item)
        except Exception:  # a bug, not a condition: say so, count, keep going
            logger.exception("the InfluxDB sink cannot encode a %s record; it is dropped", kind)
            self.shared[_Stat.DROPPED_INVALID] += _points_of(item)
            return
        now = time.time()
        with self.cond:
            self.shared[_Stat.SKIPPED] += skipped
            self.buffer.add(data, now)
            self._bound()
            self.cond.notify()

    def _tables(self, start: int, series: list[tuple[str, str]], devices: dict[str, DeviceTags]) -> None:
        del self.series[start:]
        self.series.extend(series)
        self.devices.update(devices)
        self.encoder = ReadingEncoder(self.series, self.devices)

    def _encode(self, kind: str, item: tuple[Any, ...]) -> tuple[bytes, int]:
        """Lines (each ending in a newline) and the samples skipped as not finite."""
        if kind == "readings":
            enc = self.encoder.encode(item[1], item[2], item[3])
            return enc.data, enc.skipped
        if kind == "alarms":
            lines = [alarm_line(row, self.devices) for row in item[1]]
            return "".join(f"{x}\n" for x in lines if x).encode(), 0
        if kind == "stats":
            _, ts, instance, fields = item
            text = line("pipeline", {"instance": instance}, fields, round(ts * 1000))
            return (f"{text}\n".encode() if text else b""), 0
        raise ValueError(f"unknown hand-off item {kind!r}")

    def _bound(self) -> None:
        """Hold at most `buffer_points` (the batch on the wire included): drop the oldest."""
        dropped = self.buffer.trim(max(0, self.cfg.buffer_points - self.in_flight))
        if dropped:
            self.shared[_Stat.DROPPED_BUFFER] += dropped
        self.shared[_Stat.BUFFERED] = self.buffer.points + self.in_flight

    def _begin_stop(self, deadline: float) -> None:
        with self.cond:
            self.deadline = deadline
            self.stopping.set()
            self.cond.notify()

    # --- sending ---------------------------------------------------------------------------------
    def _ready(self, now: float) -> bool:
        if self.stopping.is_set():
            return True
        oldest = self.buffer.oldest_at
        return self.buffer.points >= self.cfg.batch_points or (
            oldest is not None and now - oldest >= self.cfg.flush_interval_s
        )

    def send(self) -> None:
        """Write batches until stopped; a failed batch is retried first, after a growing pause."""
        delay = RETRY_FIRST_S
        while True:
            with self.cond:
                while not self._ready(now := time.time()):
                    oldest = self.buffer.oldest_at
                    self.cond.wait(None if oldest is None else oldest + self.cfg.flush_interval_s - now)
                if self.stopping.is_set() and (not self.buffer.points or now >= (self.deadline or now)):
                    return
                data, points, at = self.buffer.take(self.cfg.batch_points)
                self.in_flight = points
            timeout = self.cfg.timeout_s
            if self.deadline is not None:
                timeout = max(0.5, min(timeout, self.deadline - time.time()))
            outcome = self.write(gzip.compress(data, GZIP_LEVEL), points, timeout)
            wait = self._record(outcome, data, points, at)
            if wait is None:
                delay = RETRY_FIRST_S
                continue
            if wait == 0:  # this batch was rejected (and dropped); the next one is another batch
                continue
            if self.stopping.is_set():
                return  # on stop, one failure ends the flush: the rest counts as dropped
            if outcome.kind == "retry":
                wait = min(outcome.retry_after or delay, self.cfg.retry_max_s)
                delay = min(delay * 2, self.cfg.retry_max_s)
            self.stopping.wait(wait)

    def _record(self, outcome: Outcome, data: bytes, points: int, at: float) -> float | None:
        """Count the outcome; None after a success, else how long to pause (0: go on)."""
        s = self.shared
        with self.cond:
            self.in_flight = 0
            s[_Stat.REQUESTS] += 1
            if outcome.kind == "ok":
                s[_Stat.WRITTEN] += points
                s[_Stat.FAILING_SINCE] = 0
                s[_Stat.REFUSED] = 0
                self._bound()
                return None
            s[_Stat.FAILURES] += 1
            if not s[_Stat.FAILING_SINCE]:
                s[_Stat.FAILING_SINCE] = time.time()
            self._set_error(outcome.message)
            if outcome.kind == "rejected":
                s[_Stat.DROPPED_REJECTED] += points
                self._bound()
                return 0.0
            s[_Stat.REFUSED] = 1 if outcome.kind == "refused" else 0
            self.buffer.put_back(data, at)
            self._bound()
            # Refused: nothing changes until someone fixes the token or the bucket; probe slowly.
            return self.cfg.retry_max_s

    def _set_error(self, text: str) -> None:
        raw = text.encode()[: ERROR_BYTES - 1]
        with self.error.get_lock():
            self.error.value = raw

    def finish(self) -> None:
        with self.cond:
            left = self.buffer.points
            self.buffer.trim(0)
            self.shared[_Stat.DROPPED_STOPPED] += left
            self.shared[_Stat.BUFFERED] = 0


def _points_of(item: tuple[Any, ...]) -> int:
    kind = item[0]
    if kind == "readings":
        return int(item[1].size)
    if kind == "alarms":
        return len(item[1])
    return 1


def _run(cfg: _Config, q: Any, stop: MpEvent, shared: Any, error: SynchronizedString, parent: int) -> None:
    """The worker process's entry point."""
    writer = _Writer(cfg)
    worker = _Worker(cfg, shared, error, writer.write)
    sender = threading.Thread(target=worker.send, name="influx-writer", daemon=True)
    sender.start()
    try:
        worker.receive(q, stop, parent)
        sender.join((worker.deadline or time.time()) - time.time() + cfg.timeout_s + 0.5)
    finally:
        worker.finish()
        writer.close()


def registry_site(sites: Iterable[str]) -> tuple[str, str]:
    """(site, place) for the fault alarm: the registry's site when it has exactly one."""
    distinct = sorted(set(sites))
    return (distinct[0], distinct[0]) if len(distinct) == 1 else ("", "")
