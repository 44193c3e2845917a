"""The InfluxDB sink's worker process (storage/influx.py starts it): line protocol, a bounded buffer,
writes with retries.

It receives what the service hands over (readings as numpy columns, alarm transitions, stats
points, and the tables that name the readings' series), turns them into line protocol
(storage/line_protocol.py), keeps a bounded buffer (past `buffer_points` the oldest points are
dropped and counted), and writes batches through influxdb-client, retrying a failed batch with
exponential backoff until it is written. Its counters go back to the service through shared
memory (`Stat`).
"""

from __future__ import annotations

import gzip
import logging
import os
import queue as queue_mod
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from multiprocessing.sharedctypes import SynchronizedString
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from storage.child_process import ignore_sigint
from storage.line_protocol import DeviceTags, ReadingEncoder, alarm_line, line

if TYPE_CHECKING:
    from core.settings import InfluxSettings


logger = logging.getLogger(__name__)


ERROR_BYTES = 1024  # the last error's text, as shared with the service
DRAIN_S = 5.0  # on stop, the worker writes what it holds for this long at most
STOP_LATE_S = 1.0  # past the drain deadline, a write still in flight gets this long, then we exit
WORKER_NICENESS = 10  # added to the service's niceness (os.nice)
RETRY_FIRST_S = 0.25  # the first retry's wait; it doubles up to influx.retry_max_s
# Level 1: on the encoder's lines it compressed ~10x faster than level 9 (gzip's default) for a
# body ~15 % larger (measured on the development machine, 550 kB of readings).
GZIP_LEVEL = 1


class Stat(IntEnum):
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


@dataclass(frozen=True)
class WorkerConfig:
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
    def of(cls, s: InfluxSettings) -> WorkerConfig:
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


def outcome_of(status: int, message: str, retry_after: str | None, cfg: WorkerConfig, points: int) -> Outcome:
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

    def __init__(self, cfg: WorkerConfig) -> None:
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
        cfg: WorkerConfig,
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
    def receive(self, q: Any, stop: Any, parent: int) -> None:
        """Take what the service hands over until a stop item, `stop.value` set (a shared byte,
        lock-free) or the service gone."""
        while True:
            try:
                item = q.get(timeout=0.25)
            except queue_mod.Empty:
                if stop.value:
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
            self.shared[Stat.DROPPED_INVALID] += _points_of(item)
            return
        now = time.time()
        with self.cond:
            self.shared[Stat.SKIPPED] += skipped
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
            self.shared[Stat.DROPPED_BUFFER] += dropped
        self.shared[Stat.BUFFERED] = self.buffer.points + self.in_flight

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
            s[Stat.REQUESTS] += 1
            if outcome.kind == "ok":
                s[Stat.WRITTEN] += points
                s[Stat.FAILING_SINCE] = 0
                s[Stat.REFUSED] = 0
                self._bound()
                return None
            s[Stat.FAILURES] += 1
            if not s[Stat.FAILING_SINCE]:
                s[Stat.FAILING_SINCE] = time.time()
            self._set_error(outcome.message)
            if outcome.kind == "rejected":
                s[Stat.DROPPED_REJECTED] += points
                self._bound()
                return 0.0
            s[Stat.REFUSED] = 1 if outcome.kind == "refused" else 0
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
            self.shared[Stat.DROPPED_STOPPED] += left
            self.shared[Stat.BUFFERED] = 0


def _points_of(item: tuple[Any, ...]) -> int:
    kind = item[0]
    if kind == "readings":
        return int(item[1].size)
    if kind == "alarms":
        return len(item[1])
    return 1


def run_worker(
    cfg: WorkerConfig, q: Any, stop: Any, shared: Any, error: SynchronizedString, parent: int
) -> None:
    """The worker process's entry point."""
    ignore_sigint()  # the service decides when we stop (storage/child_process.py)
    # A lower CPU priority than the service's: when the cores are busy, ingest and alarms go first
    # and the sink catches up from its buffer afterwards.
    os.nice(WORKER_NICENESS)
    writer = _Writer(cfg)
    worker = _Worker(cfg, shared, error, writer.write)
    sender = threading.Thread(target=worker.send, name="influx-writer", daemon=True)
    sender.start()
    try:
        worker.receive(q, stop, parent)
        # Bounded, so the service's stop (which terminates us 2 s past the deadline) finds us done.
        left = max(0.0, (worker.deadline or time.time()) - time.time())
        sender.join(left + min(cfg.timeout_s, STOP_LATE_S))
    finally:
        worker.finish()
        writer.close()
