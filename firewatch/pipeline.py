"""The data path of DESIGN §2 in one process: queue -> decode -> detect -> alarms -> telemetry -> ack.

Alarms are decided and persisted before the batch's telemetry is written, and the telemetry writer
runs beside detection with a hand-off of its own (`PipelineConfig.handoff_max` messages), so storage
never sits on the alarm path. The broker's acknowledgement waits for both (a crash before it means
redelivery), so a writer that stays behind is finally bounded by the broker's in-flight window.

A batch's alarm write runs on the alarm-writer thread while the next batch is received and
detected (docs/decisions/0001-mqtt-client.md): the batch goes on to the telemetry writer, and so to
its acknowledgement, once its write is settled (recorded, or deferred to the journal), and the
batch before is settled before the next one is detected, so at most one write overlaps detection.
Writes run one at a time in the order submitted, and one behind a write that was deferred is
deferred too, so alarms reach the store in the order they happened.

A batch's effects are all or nothing, and no fire alarm waits for the state store (issue 18,
docs/reliability.md):
- A batch whose decoding or detection fails leaves no de-duplication marks behind and is tried
  again; failing twice, it is split in halves until the one message that fails it is found, which
  becomes a reject (`unprocessable`) with its bytes, and the rest goes on.
- When the state store cannot record a batch's alarm events (down, or slower than
  `alarm_write_timeout_s`), they are shown at once as unrecorded alarms (alarms/unrecorded.py: live
  streams, console, MQTT alarm topic) and kept in the local journal, in the same local transaction
  as the batch's telemetry and de-duplication state; then the batch is acknowledged. The recorder
  (firewatch/recorder.py) records the journal in order once the store answers; until it has caught
  up, later batches join the journal too, so alarms are recorded in the order they happened.
- Rejects go to the journal the same way when the state store refuses them.
- A local store that fails is retried with backoff (ingest holds, bounded by the hand-off and the
  broker's in-flight window); one whose failure follows a message is isolated like a poison.

A changed registry is swapped in between two batches (`prepare_rebind`, then `rebind`): everything
costly is built beside the running pipeline, and the swap itself, under the batch lock, only copies
detector state and exchanges references, so no batch sees half the old and half the new index and a
fire alarm waits for no more than those copies.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from operator import attrgetter
from pathlib import Path

import numpy as np
import numpy.typing as npt

from alarms.gc_pause import collector_paused
from alarms.model import Transition
from alarms.service import AlarmService
from alarms.tickets import TicketChange
from alarms.unrecorded import UnrecordedAlarms
from core.domain import DetectorEvent, DeviceEventKind, RejectReason
from detectors.engine import Engine, StateCarry
from firewatch.faults import is_unavailable
from firewatch.journal import EntryKind, encode_events, encode_rejects
from firewatch.metrics import Metrics
from firewatch.recorder import Drained, Recorder
from firewatch.workers import DaemonWorker
from ingest.decode import DecodedBatch, Decoder, empty_batch
from ingest.envelope import Message
from ingest.index import DeviceIndex
from ingest.queue import BoundedQueue
from ingest.rejects import Reject
from ingest.series import SeriesTable
from storage.influx import InfluxSink, Tables
from storage.marks import PartitionMark
from storage.rejects import RejectRecord, RejectStore
from storage.telemetry import EventRecord
from storage.telemetry_api import Telemetry

logger = logging.getLogger(__name__)

# A batch's earliest receipt, `min(map(_received, messages))`: in C, not a generator per message.
_received = attrgetter("received")
LIVENESS_CHUNK = 25  # offline alarms per transaction
# An event-loop wake-up this much later than asked for is a stall of the service, not of devices.
LOOP_STALL_S = 0.5

Listener = Callable[[list[Transition], list[TicketChange]], None]


@dataclass
class PipelineConfig:
    batch_max: int = 20_000
    batch_wait_s: float = 0.005
    liveness_check_s: float = 1.0
    snapshot_path: Path | None = None  # detector state, saved between batches
    snapshot_every_s: float = 60.0
    # Messages detected but not yet stored, at most: past this, detection waits for storage. Only
    # a storage stall reaches it (the writer sustains over a million samples/s, docs/benchmarks.md).
    handoff_max: int = 100_000
    # The longest a batch's alarms wait for the state store before they are shown as unrecorded
    # and journaled: a store that hangs (not refuses) must not hold a fire alarm longer than this.
    alarm_write_timeout_s: float = 2.0
    store_retry_max_s: float = 5.0  # the longest wait between two tries of a failing store
    journal_source: str = "local"  # this journal's name in the state store's marks


class _Outcome(Enum):
    PENDING = "pending"  # submitted, not yet answered
    RECORDED = "recorded"  # committed in the state store in time
    DEFERRED = "deferred"  # shown as unrecorded, for the journal


@dataclass(frozen=True)
class AlarmWriteTiming:
    """Where one batch's alarm write spent its time (wall clock, `time.time()`), for diagnosis:
    `Pipeline.alarm_timings` keeps the latest, and bench.alarm_latency breaks each alarm down by them."""

    devices: tuple[str, ...]  # the devices of its events
    taken: float  # the batch left the receive queue
    detecting: float  # its decoding began, in the detection thread
    submitted: float  # its alarm events were handed to the alarm writer
    writing: float  # the alarm writer began the write
    committed: float  # the write returned, committed
    published: float  # the listeners were told (the live streams at commit, the dispatcher's wake)
    write_cpu: float  # CPU seconds of the alarm-writer thread over the write


ALARM_TIMINGS_MAX = 2_000


@dataclass
class _AlarmWrite:
    """One batch's alarm events on their way to the state store or, failing that, to the journal.

    Its outcome is decided once, under `Pipeline._write_state`: by the alarm writer (recorded, or
    deferred when the store fails or an earlier write was deferred) or by whoever waits for it when
    its deadline passes first (deferred; a write that then commits late is published all the same,
    and the journal's copy is recorded as repeats)."""

    events: list[DetectorEvent]
    first_received: float | None
    submitted: float  # time.monotonic()
    deadline: float  # time.monotonic() by which it is recorded or deferred
    future: concurrent.futures.Future[None] | None = None  # None: deferred without a try
    outcome: _Outcome = _Outcome.PENDING
    taken: float | None = None  # a batch's: when it left the receive queue (`time.time()`)
    detecting: float = 0.0  # a batch's: when its decoding began (`time.time()`)
    handed: float = 0.0  # when it was handed to the alarm writer (`time.time()`)
    mark: PartitionMark | None = None  # clustered: how far its partitions' alarms are then recorded


@dataclass(eq=False)  # compared by identity: one batch on its way
class _Stored:
    """A detected batch on its way to storage: its messages and the alarm events to journal."""

    batch: DecodedBatch
    messages: list[Message]
    deferred: list[DetectorEvent] = field(default_factory=list)
    oldest: float | None = None  # when its longest-waiting message arrived
    write: _AlarmWrite | None = None  # its alarm write, until settled (then `deferred` says the rest)


@dataclass
class Rebind:
    """What `rebind` swaps in, prepared beside the running pipeline (`prepare_rebind`)."""

    index: DeviceIndex
    decoder: Decoder
    engine: Engine
    carry: StateCarry
    old_of_new: list[int]  # per new device, its index in the old one (-1: added)
    seq_rows: list[tuple[int, int, int, float, bytes | None]]  # stored de-duplication state of added devices
    series: npt.NDArray[np.int64] | None  # telemetry slot per index slot (None: the same)
    sink_tables: Tables | None = None  # what the InfluxDB sink's tables gain (None: no sink)


class Pipeline:
    def __init__(
        self,
        *,
        decoder: Decoder,
        engine: Engine,
        alarms: AlarmService,
        telemetry: Telemetry,
        rejects: RejectStore,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        config: PipelineConfig | None = None,
        sink: InfluxSink | None = None,
    ) -> None:
        self.decoder = decoder
        self.engine = engine
        self.alarms = alarms
        self.telemetry = telemetry
        self.rejects = rejects
        self.metrics = metrics
        self.clock = clock
        self.config = config or PipelineConfig()
        self.listeners: list[Listener] = []
        # The InfluxDB sink (storage/influx.py), or None: then it costs one test per batch.
        self.sink = sink
        self.batches = 0
        self.messages = 0
        self.accepted = 0  # telemetry messages accepted
        self.samples = 0
        self.rejected = 0
        self.duplicates = 0
        self.transitions = 0  # alarm transitions published
        self.telemetry_pending = 0  # messages detected and not yet stored
        self.store_failures = 0
        self.stored_samples = 0
        self.isolated = 0  # messages that failed their batch and were rejected on their own
        # Alarms the state store has not recorded yet, shown live meanwhile (alarms/unrecorded.py).
        self.unrecorded = UnrecordedAlarms(lambda: self.decoder.index, clock)
        self.recorder = Recorder(
            telemetry,
            alarms,
            rejects,
            self.unrecorded,
            source=self.config.journal_source,
            publish=self.publish,
            clock=clock,
        )
        # Batches whose alarm events wait in (or on their way to) the journal; while any do, later
        # batches join them, so alarms are recorded in detection order. Changed under `_lock`.
        self._deferred = telemetry.journal_kinds().get(EntryKind.EVENTS, 0)
        self.storage_failing_since: float | None = None  # the state store failed and has not recovered
        self.storage_error = ""
        self.local_failing_since: float | None = None  # the local store (telemetry, journal) fails
        self.local_error = ""
        self.progress_at = clock()  # the last acknowledgement (or start): ingest stall detection
        # Alarm writes run here, one at a time in the order submitted, so a store that hangs holds
        # the write, not the batch thread; and a batch's write overlaps the next batch's detection.
        self._alarm_writer = DaemonWorker("alarm-writer")
        # Guards `_deferred` and each write's outcome between the batch thread (which also holds
        # `_lock`, taken first), the alarm writer and the event loop; never held while waiting.
        self._write_state = threading.Lock()
        self._alarm_write: concurrent.futures.Future[None] | None = None  # a write given up on, maybe running
        self._last_write: concurrent.futures.Future[None] | None = None  # the latest submitted
        # Batches detected whose alarm writes are not settled yet, and the task that settles the
        # latest (each settling task waits for the one before, so batches reach the writer in order).
        self._settling: asyncio.Task[None] | None = None
        self._unsettled: list[_Stored] = []
        self._handoff: _Handoff | None = None
        self._snapshot_safe = True
        # Set when the service started without its state store: run (in a thread) before anything
        # is recorded there; until it succeeds, every alarm is journaled.
        self.pending_setup: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._recorder_wake: asyncio.Event | None = None
        self._stats_lock = threading.Lock()  # `transitions` and `_latency_max` change in several threads
        self._latency_max = 0.0  # the longest receipt-to-alarm time since `take_alarm_latency_max`
        # Detector state is touched by the batch thread and the liveness timer: one at a time.
        self._lock = threading.Lock()
        self._snapshot_at = clock()
        self._queue: BoundedQueue | None = None  # set by run(): its oldest message bounds the watermark
        # The ingest connection (None: down; else its number). While it is down nobody can be
        # heard, so nobody is called offline, and the time it was down is not counted as anyone's
        # silence. By default ingest is always up (tests, tools).
        self.connection: Callable[[], int | None] = lambda: 0
        self._down_since: float | None = None
        self._detecting_since: float | None = None  # arrival of the oldest message in detection
        self._taken: float | None = None  # when the batch in detection left the queue (`time.time()`)
        # The latest batches' alarm writes, step by step (diagnosis; appended by the alarm writer).
        self.alarm_timings: deque[AlarmWriteTiming] = deque(maxlen=ALARM_TIMINGS_MAX)
        restored = telemetry.seq_state()
        dev_of = decoder.index.dev_of
        decoder.seq.restore([(dev_of[d], m, b, t, f) for d, m, b, t, f in restored if d in dev_of])
        # The telemetry store's series, as bound by the service: the index's slots, in order. A
        # registry change only appends to them, so batches detected before it and stored after it
        # still name the right series (`_slot_series` maps the current index's slots onto them).
        self._series = SeriesTable.of_index(decoder.index)
        self._slot_series: npt.NDArray[np.int64] | None = None
        # Clustered (docs/scale.md, firewatch/cluster/worker.py): messages come from engine
        # partitions. Per partition, the last stream sequence detected (a snapshot taken between
        # batches holds the state after exactly those); each alarm write marks its partitions'
        # sequences recorded in its own transaction; `snapshot_hook` replaces the snapshot file.
        self.partitioned = False
        self.detected_seq: dict[int, int] = {}
        self.snapshot_hook: Callable[[], None] | None = None

    # --- the synchronous core, also driven directly by tests and benchmarks ------------------------
    def detect(self, messages: list[Message]) -> DecodedBatch:
        """Decode, detect and raise alarms for one batch, outside `run` (tests, tools); returns the
        batch for storage. Alarm events the state store could not record are journaled at once (on
        `run`'s path they go in with the batch's own telemetry instead)."""
        batch, deferred = self.detect_deferring(messages)
        if deferred:
            empty = empty_batch()
            journal = [(EntryKind.EVENTS.value, encode_events(deferred))]
            self.telemetry.write(
                empty.sample_slot, empty.sample_ts, empty.sample_value, [], journal, self.clock()
            )
        return batch

    def detect_deferring(self, messages: list[Message]) -> tuple[DecodedBatch, list[DetectorEvent]]:
        """`detect`, with the alarm events left for the journal (empty when they were recorded)."""
        batch, write = self.detect_submitting(messages)
        return batch, self._settle(write)

    def detect_submitting(self, messages: list[Message]) -> tuple[DecodedBatch, _AlarmWrite | None]:
        """Decode and detect one batch and submit its alarms to the alarm writer without waiting for
        them (None: it raised none); `_settle` (or `_settle_async`) then says whether they were
        recorded or are left for the journal. `run` detects the next batch meanwhile."""
        started = time.perf_counter()
        detecting = time.time()
        # The whole batch, its alarms' submission included, under the lock: a registry swap happens
        # between batches, and waits for the alarm writes submitted before it, so the alarms of a
        # batch are recorded with the index it was decoded with.
        with self._lock:
            now = self.clock()
            seq = self.decoder.seq
            seq.begin()
            try:
                # Decoding holds the batch's parsed payloads (a tracked dict each) until its columns
                # are made: the cyclic collector would run its young collections over them every few
                # hundred messages and promote them, which brings on full collections of the heap,
                # to free nothing. Held off for the batch, as for a bulk alarm write.
                with collector_paused():
                    batch = self.decoder.decode(messages, now)
                    events = self.engine.process(batch)
            except BaseException:
                seq.rollback()  # no marks of a failed batch: it is decoded again
                raise
            seq.commit()
            mark = None
            if self.partitioned:
                # In stream order within a partition, so the last one of each is its highest.
                seqs = {m.partition: m.mid or 0 for m in messages if m.partition >= 0}
                self.detected_seq.update(seqs)
                mark = PartitionMark(seqs)
            self._maybe_snapshot(now)
            write = self._submit_alarms(
                events,
                min(map(_received, messages)),
                taken=detecting if self._taken is None else self._taken,
                detecting=detecting,
                mark=mark,
            )
            series = self._slot_series
            if self.sink is not None and batch.n_samples:
                # After the alarms, and under the lock: a registry swap's table change reaches the
                # sink in order with the batches, so each is tagged with the tables it was made with.
                slots = batch.sample_slot if series is None else series[batch.sample_slot]
                self.sink.put_readings(
                    slots, batch.sample_ts, batch.sample_value, int(batch.reading_dev.size)
                )
        m = self.metrics
        m.messages.inc(len(messages))
        m.readings.inc(int(batch.reading_dev.size))
        self.messages += len(messages)
        self.accepted += int(batch.reading_dev.size)
        self.samples += batch.n_samples
        self.duplicates += batch.duplicates
        self.rejected += len(batch.rejects)
        m.samples.inc(batch.n_samples)
        m.duplicates.inc(batch.duplicates)
        for r in batch.rejects:
            m.rejects.labels(r.reason.value).inc()
        m.batch_seconds.observe(time.perf_counter() - started)
        m.batch_messages.observe(len(messages))
        self.batches += 1
        if series is not None:  # the registry changed: store under the telemetry store's series slots
            batch = replace(batch, sample_slot=series[batch.sample_slot].astype(np.int32))
        return batch, write

    # --- recording alarms, or deferring them while the state store cannot -------------------------
    def _submit_alarms(
        self,
        events: list[DetectorEvent],
        first_received: float | None,
        *,
        taken: float | None = None,
        detecting: float = 0.0,
        mark: PartitionMark | None = None,
    ) -> _AlarmWrite | None:
        """Hand `events` to the alarm writer, behind the writes submitted before (under `_lock`);
        while the journal holds alarm events, or a write given up on still runs, they are deferred
        at once instead, so alarms are recorded in the order they happened. `taken`, `detecting`:
        a batch's times, for `alarm_timings`."""
        if not events:
            return None
        began = time.monotonic()
        write = _AlarmWrite(events, first_received, began, began + self.config.alarm_write_timeout_s)
        write.taken, write.detecting, write.handed = taken, detecting, time.time()
        write.mark = mark
        with self._write_state:
            direct = (
                self._deferred == 0
                and self.pending_setup is None
                and (self._alarm_write is None or self._alarm_write.done())
            )
        if direct:
            write.future = self._last_write = self._alarm_writer.submit(self._write_alarms, write)
        else:
            self._defer(write, None)
        return write

    def _write_alarms(self, write: _AlarmWrite) -> None:
        """Record one write's events (on the alarm writer, in submission order), then publish them.
        A write behind one that was deferred is deferred too: its events follow those in the journal."""
        with self._write_state:
            skip = write.outcome is not _Outcome.PENDING or self._deferred > 0
        if skip:
            self._defer(write, None)
            return
        # A failure defers the write before the next one starts (this thread runs them in order),
        # so the next one sees it.
        writing, cpu = time.time(), time.thread_time()
        try:
            transitions, tickets = self.alarms.apply(write.events, mark=write.mark)
        except Exception as exc:
            self._defer(write, exc)
            return
        except BaseException as exc:
            self._defer(write, exc)
            raise
        with self._write_state:
            in_time = write.outcome is _Outcome.PENDING
            if in_time:
                write.outcome = _Outcome.RECORDED
                self._storage_ok()
        committed, cpu = time.time(), time.thread_time() - cpu
        if in_time:
            self.metrics.alarm_write_seconds.observe(time.monotonic() - write.submitted)
            self._observe_latency(write.first_received)
        # Published even when given up on: the journal's copy of these events is then recorded as
        # repeats.
        self.publish(transitions, tickets)
        if write.taken is not None:
            devices = tuple(dict.fromkeys(e.device_id for e in write.events))
            self.alarm_timings.append(
                AlarmWriteTiming(
                    devices, write.taken, write.detecting, write.handed, writing, committed, time.time(), cpu
                )
            )

    def _defer(self, write: _AlarmWrite, exc: BaseException | None, *, hung: bool = False) -> bool:
        """Decide `write` deferred unless it was decided already (any thread): shown as unrecorded
        at once, its events for the journal. `exc`: the store's failure; `hung`: given up on a write
        still running (nothing goes to the store until it ends)."""
        with self._write_state:
            if write.outcome is not _Outcome.PENDING:
                return False
            write.outcome = _Outcome.DEFERRED
            self._deferred += 1
            if hung:
                self._alarm_write = write.future
            if exc is not None:
                self._storage_failed(exc)
        self.unrecorded.add(write.events)
        self._observe_latency(write.first_received)
        return True

    def _timed_out(self, write: _AlarmWrite) -> None:
        self._defer(write, TimeoutError(f"no answer in {self.config.alarm_write_timeout_s:g} s"), hung=True)

    def _settle(self, write: _AlarmWrite | None) -> list[DetectorEvent]:
        """Wait for `write` until its deadline (blocking); returns its events if deferred."""
        if write is None:
            return []
        if write.future is not None:
            done, _ = concurrent.futures.wait([write.future], max(0.0, write.deadline - time.monotonic()))
            if not done:
                self._timed_out(write)
        return write.events if write.outcome is _Outcome.DEFERRED else []

    async def _settle_async(self, write: _AlarmWrite | None) -> list[DetectorEvent]:
        """`_settle` on the event loop."""
        if write is None:
            return []
        if write.future is not None and not write.future.done():
            # asyncio.wait, not wait_for: a write still queued must not be cancelled by the timeout.
            wrapped = asyncio.wrap_future(write.future)
            done, _ = await asyncio.wait({wrapped}, timeout=max(0.0, write.deadline - time.monotonic()))
            if not done:
                self._timed_out(write)
        return write.events if write.outcome is _Outcome.DEFERRED else []

    def _writes_settled(self) -> bool:
        """Every alarm write submitted so far recorded (under `_lock`, so no new one starts); waits
        for the latest until its deadline at most."""
        if (last := self._last_write) is not None and not last.done():
            concurrent.futures.wait([last], self.config.alarm_write_timeout_s)
        with self._write_state:
            return self._deferred == 0 and (last is None or last.done())

    def _observe_latency(self, first_received: float | None) -> None:
        if first_received is None:
            return
        latency = max(0.0, self.clock() - first_received)
        self.metrics.alarm_latency.observe(latency)
        with self._stats_lock:
            self._latency_max = max(self._latency_max, latency)

    def storage_unavailable(self, exc: BaseException) -> None:
        """The state store is known to be failing (e.g. at start): report it like a failed write."""
        with self._lock:
            self._storage_failed(exc)

    def _storage_failed(self, exc: BaseException) -> None:
        if self.storage_failing_since is None:
            self.storage_failing_since = self.clock()
            logger.error(
                "the state store cannot record alarms (%s: %s): they are shown as unrecorded and kept "
                "in the local journal until it can",
                type(exc).__name__,
                exc,
            )
        elif not is_unavailable(exc):
            logger.error("the state store refused alarm events: %s: %s", type(exc).__name__, exc)
        self.storage_error = f"{type(exc).__name__}: {str(exc)[:300]}"
        self.metrics.storage_failing.set(1)

    def _storage_ok(self) -> None:
        if self.storage_failing_since is not None:
            logger.warning(
                "the state store records again (it failed for %.0f s)",
                self.clock() - self.storage_failing_since,
            )
        self.storage_failing_since = None
        self.storage_error = ""
        self.metrics.storage_failing.set(0)

    def submit_events(self, events: list[DetectorEvent]) -> list[DetectorEvent]:
        """Record events that come from no batch (liveness, the service's own fault alarms): like a
        batch's, they wait for no store (blocking: call in a thread). Returns those to journal;
        `journal_events` (on the loop) takes them there."""
        with self._lock:
            return self._settle(self._submit_alarms(events, None))

    def journal_events(self, events: list[DetectorEvent]) -> None:
        """Hand deferred events of no batch to the writer (on the event loop), behind the batches
        whose alarm writes are still being settled, so the journal keeps the order of the alarms."""
        if events and self._handoff is not None:
            self._settle_then_hand_off([_Stored(empty_batch(), [], events)], self._handoff)
        elif events:  # not running: nothing can journal them; keep them visible at least
            logger.error("%d alarm events could not be recorded and the pipeline is not running", len(events))

    def _maybe_snapshot(self, now: float) -> None:
        """Save detector state every `snapshot_every_s` (under the lock, between batches).

        Only once the alarms of every batch before are committed (it waits for the alarm write
        still running, if any), so the snapshot never runs ahead of the alarm store; the store is
        aligned again on start (Engine.resume).
        """
        cfg = self.config
        if (
            (cfg.snapshot_path is None and self.snapshot_hook is None)
            or cfg.snapshot_every_s <= 0
            or now - self._snapshot_at < cfg.snapshot_every_s
            or not self._writes_settled()
        ):
            return
        self._snapshot_at = now
        if self.snapshot_hook is not None:
            self.snapshot_hook()  # takes the state and the sequences; saves them elsewhere
            return
        assert cfg.snapshot_path is not None
        try:
            self.engine.save(cfg.snapshot_path)
        except OSError:
            logger.exception("cannot save the detector snapshot to %s; detection goes on", cfg.snapshot_path)

    # --- clustered: taking a partition over ----------------------------------------------------
    async def catch_up(self, store_only: list[Message], silent: list[Message]) -> None:
        """Messages of a partition taken over (firewatch/cluster/worker.py) that the worker before
        had dealt with: `store_only` are in the restored snapshot's state already, `silent` came
        after it but their alarm events are recorded (up to the partition's mark). Both are stored
        again — by key, so nothing twice, and nothing the worker before had not stored yet is lost
        — and `silent` are detected for their state with their events dropped. They go through the
        same writer as every batch, so stored and acknowledged in stream order."""
        handoff = self._handoff
        if handoff is None:
            raise RuntimeError("the pipeline is not running")
        parts = await asyncio.to_thread(self._catch_up_parts, store_only, silent)
        previous = self._settle_then_hand_off(parts, handoff)
        if previous is not None:
            await previous

    def _catch_up_parts(self, store_only: list[Message], silent: list[Message]) -> list[_Stored]:
        parts: list[_Stored] = []
        with self._lock:
            now = self.clock()
            for messages, detect in ((store_only, False), (silent, True)):
                if not messages:
                    continue
                try:
                    batch = self._decode_quietly(messages, now, detect)
                except Exception:
                    # The worker before rejected the message that fails (counted, kept); here it
                    # is only dropped, one by one, so the rest is stored.
                    logger.exception("catching a partition up failed; going message by message")
                    for m in messages:
                        try:
                            parts.append(_Stored(self._decode_quietly([m], now, detect), [m], [], m.received))
                        except Exception:
                            logger.warning(
                                "dropped a message %s already rejected before the takeover", m.topic
                            )
                    continue
                parts.append(_Stored(batch, messages, [], min(map(_received, messages))))
            for m in (*store_only, *silent):
                if m.partition >= 0:
                    self.detected_seq[m.partition] = max(self.detected_seq.get(m.partition, 0), m.mid or 0)
        return parts

    def _decode_quietly(self, messages: list[Message], now: float, detect: bool) -> DecodedBatch:
        """Decode (and detect, dropping the events) under `_lock`, as a batch would be."""
        seq = self.decoder.seq
        seq.begin()
        try:
            with collector_paused():
                batch = self.decoder.decode(messages, now)
                if detect:
                    self.engine.process(batch)
        except BaseException:
            seq.rollback()
            raise
        seq.commit()
        # Its rejects were kept by the worker before: not again.
        batch = replace(batch, rejects=[], unknown_devices=[])
        if (series := self._slot_series) is not None:
            batch = replace(batch, sample_slot=series[batch.sample_slot].astype(np.int32))
        return batch

    # --- a changed registry --------------------------------------------------------------------
    def prepare_rebind(self, index: DeviceIndex, *, active: set[tuple[str, str]]) -> Rebind:
        """Everything a swap to `index` needs, built while batches flow (blocking: call in a thread;
        one rebind at a time). `active` are the alarms open in the store, for units starting cold."""
        old_decoder, old_engine = self.decoder, self.engine
        old = old_decoder.index
        decoder = Decoder(
            index,
            prefix="/".join(old_decoder.prefix),
            max_payload=old_decoder.max_payload,
            max_future_s=old_decoder.max_future_s,
            max_past_s=old_decoder.max_past_s,
        )
        engine = Engine(
            index,
            start=self.clock(),
            fusion_window_s=old_engine.fusion.window_s,
            outage=old_engine.liveness.policy,
        )
        old_of_new = [old.dev_of.get(d, -1) for d in index.device_ids]
        # Detector units carry for devices that stay with the same profile (same units, same
        # parameters); a device given another profile starts its detectors afresh.
        warm = [
            d
            for i, d in enumerate(index.device_ids)
            if old_of_new[i] >= 0 and old.profiles[old_of_new[i]].id == index.profiles[i].id
        ]
        carry = engine.carry_from(old_engine, warm=warm, active=active)
        seq_rows: list[tuple[int, int, int, float, bytes | None]] = []
        if any(o < 0 for o in old_of_new):  # a device registered again resumes its de-duplication
            added = {d: i for i, d in enumerate(index.device_ids) if old_of_new[i] < 0}
            seq_rows = [(added[d], m, b, t, f) for d, m, b, t, f in self.telemetry.seq_state() if d in added]
        series = self._bind_series(index)
        sink_tables = self.sink.tables_for(index, self.series_keys) if self.sink is not None else None
        return Rebind(index, decoder, engine, carry, old_of_new, seq_rows, series, sink_tables)

    @property
    def series_keys(self) -> list[tuple[str, str]]:
        """(device, channel) per series slot: what the slots of stored (and sunk) batches name."""
        return list(self._series.keys())

    def _bind_series(self, index: DeviceIndex) -> npt.NDArray[np.int64] | None:
        table, slots = self._series.bound_to(index)
        if table is not self._series:
            self._series = table
            self.telemetry.bind(table.keys())  # appends: slots of stored-to-be batches stay valid
        return None if np.array_equal(slots, np.arange(index.n_slots)) else slots

    def rebind(self, r: Rebind, *, also: Callable[[], None] = lambda: None) -> None:
        """Swap `r` in between two batches: detector state and de-duplication carried over by
        device id, `also` run under the same lock (others holding the index swap theirs)."""
        with self._lock:
            # The alarm writes submitted before are recorded (or deferred) with the old index.
            self._writes_settled()
            r.carry.apply()
            seq = self.decoder.seq.remapped(r.old_of_new)
            seq.restore(r.seq_rows)
            r.decoder.seq = seq
            self.decoder, self.engine = r.decoder, r.engine
            self._slot_series = r.series
            if r.sink_tables is not None and self.sink is not None:
                self.sink.send_tables(r.sink_tables)  # an enqueue: the worker rebuilds its tables
            also()

    def save_snapshot(self) -> None:
        """Save detector state now (at stop), unless batches were left unstored: then the last
        periodic snapshot stands, and their redelivery is detected again from it."""
        if not self._snapshot_safe:
            logger.warning("detector snapshot not saved at stop: batches were left unstored")
            return
        if self.config.snapshot_path is not None:
            with self._lock:
                self.engine.save(self.config.snapshot_path)

    def raise_alarms(self, events: list[DetectorEvent], first_received: float | None = None) -> None:
        """Record events in the state store now (blocking; raises if it cannot): for callers that
        retry on their own. The pipeline's own path is `_submit_alarms`."""
        transitions, tickets = self.alarms.apply(events)
        if transitions:
            self._observe_latency(first_received)
        self.publish(transitions, tickets)

    def take_alarm_latency_max(self) -> float:
        """The longest receipt-to-alarm time since the last call (0 when no alarm was raised)."""
        with self._stats_lock:
            latency, self._latency_max = self._latency_max, 0.0
        return latency

    def publish(self, transitions: list[Transition], tickets: list[TicketChange]) -> None:
        with self._stats_lock:
            self.transitions += len(transitions)
        for t in transitions:
            self.metrics.transitions.labels(t.action.value, str(t.after["category"])).inc()
        self.metrics.tickets_opened.inc(sum(1 for t in tickets if t.action == "opened"))
        for listener in self.listeners:
            try:
                listener(transitions, tickets)
            except Exception:  # a broken consumer must not stop the alarm path
                logger.exception("alarm listener %r failed", listener)

    def _reject_records(self, rejects: list[Reject]) -> list[RejectRecord]:
        return [
            RejectRecord(r.received, r.topic, r.payload, r.reason.value, r.detail, r.device_id)
            for r in rejects
        ]

    def _unknown(self, batch: DecodedBatch) -> list[tuple[str, str, float]]:
        now = self.clock()
        # A device registered since its batch was decoded is no longer one to discover.
        return [
            (site, dev, now) for site, dev in batch.unknown_devices if dev not in self.decoder.index.dev_of
        ]

    def store_rejects(self, batch: DecodedBatch) -> None:
        """Keep the batch's rejected messages and unknown devices in the state store (blocking)."""
        if batch.rejects or batch.unknown_devices:
            self.rejects.add(self._reject_records(batch.rejects), self._unknown(batch))

    def store_telemetry(self, batch: DecodedBatch, journal: list[tuple[str, bytes]] | None = None) -> None:
        """Persist the batch's samples with its seq state and its journal entries, in one
        transaction (blocking)."""
        self.telemetry.write(
            batch.sample_slot,
            batch.sample_ts,
            batch.sample_value,
            batch.seq_state,
            journal,
            self.clock(),
            events=_event_log(batch),
        )
        self.stored_samples += batch.n_samples

    def watermark(self) -> float:
        """The time up to which every received message has been through detection: now, or the
        arrival of the oldest message still waiting. Silence is judged against it, so a backlog in
        the pipeline (a burst, a slow disk, a redelivered session) never reads as devices gone
        quiet; their messages are there, only not yet counted."""
        now = self.clock()
        waiting = [t for t in (self._detecting_since, self._queue_oldest()) if t is not None]
        return min([now, *waiting])

    def _queue_oldest(self) -> float | None:
        return self._queue.oldest_received() if self._queue is not None else None

    def check_liveness(self) -> list[DetectorEvent]:
        """Offline alarms for devices gone quiet; returns those left for the journal."""
        with self._lock:
            now = self.watermark()
            if self.connection() is None:  # not listening: silence says nothing now
                if self._down_since is None:
                    self._down_since = now
                return []
            if self._down_since is not None:  # listening again: the time deaf is nobody's silence
                self.engine.pause(max(0.0, now - self._down_since))
                self._down_since = None
            events = self.engine.check(now)
        # Devices silent together are one outage alarm (detectors/liveness.py); offline alarms of
        # devices silent alone can still come many at once (e.g. an outage ending with some still
        # silent). Written in small transactions, so a fire alarm from the next batch waits for one
        # chunk at most, not for all of them (a fire alarm is never delayed behind maintenance work).
        deferred: list[DetectorEvent] = []
        for i in range(0, len(events), LIVENESS_CHUNK):
            deferred += self.submit_events(events[i : i + LIVENESS_CHUNK])
        return deferred

    # --- health, for readiness and the service's fault alarms -------------------------------------
    def oldest_unacknowledged(self) -> float | None:
        """When the longest-waiting message not yet acknowledged arrived (None: none waits)."""
        waiting = [t for t in (self._detecting_since, self._queue_oldest()) if t is not None]
        waiting += [s.oldest for s in self._unsettled if s.oldest is not None]
        if self._handoff is not None and (oldest := self._handoff.oldest()) is not None:
            waiting.append(oldest)
        return min(waiting) if waiting else None

    def backlog(self) -> int:
        """Messages received and not yet acknowledged, in the queue and in the hand-off."""
        queued = len(self._queue) if self._queue is not None else 0
        queued += sum(len(s.messages) for s in self._unsettled)
        return queued + (self._handoff.messages if self._handoff is not None else 0)

    # --- the asynchronous loop -----------------------------------------------------------------
    async def run(
        self, queue: BoundedQueue, ack: Callable[[list[Message]], int], stop: asyncio.Event
    ) -> None:
        """Drain the queue until `stop`; every message is acknowledged only after its batch is stored."""
        self._queue = queue
        self._loop = asyncio.get_running_loop()
        handoff = self._handoff = _Handoff(self.config.handoff_max)
        self._recorder_wake = asyncio.Event()
        writer = asyncio.create_task(self._writer(handoff, ack, stop), name="telemetry-writer")
        ticker = asyncio.create_task(self._liveness(stop), name="liveness")
        recorder = asyncio.create_task(self._recording(stop), name="journal-recorder")
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                getter = asyncio.ensure_future(
                    queue.get_batch(self.config.batch_max, self.config.batch_wait_s)
                )
                done, _ = await asyncio.wait({getter, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    break
                messages = getter.result()
                self.metrics.queue_depth.set(len(queue))
                self.metrics.queue_dropped.set(queue.dropped)
                self.metrics.queue_overflow.set(queue.overflow)
                self._detecting_since = min(map(_received, messages))
                self._taken = time.time()
                try:
                    parts = await self._detect_isolating(messages)
                finally:
                    self._detecting_since = self._taken = None
                # The batch's alarm write runs while the next batch is received and detected; the
                # batch reaches the telemetry writer (and so its acknowledgement) once the write is
                # settled. At most one batch's write overlaps detection: the one before is settled
                # before the next is detected.
                previous = self._settle_then_hand_off(parts, handoff)
                if previous is not None:
                    await previous
                if handoff.full():  # storage stalled: wait for room (or stop) before detecting more
                    self.metrics.handoff_waits.inc()
                    room = asyncio.ensure_future(handoff.room())
                    done, _ = await asyncio.wait({room, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    if room not in done:
                        room.cancel()
                        break
        finally:
            # The last batches' alarm writes settle (within their deadline) and reach the writer.
            if (settling := self._settling) is not None:
                await asyncio.wait({settling})  # its outcome is its own: it never raises here
            self._settling = None
            # A healthy writer drains what is handed off and then sees the end; a writer stuck
            # retrying sees `stop` and returns, leaving its batches unacknowledged (the broker
            # redelivers them).
            handoff.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(writer, 15)
            for task in (ticker, recorder):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            stopping.cancel()
            # Whatever is still handed off was not stored (and is not acknowledged): a snapshot now
            # would hold detector state whose alarms are neither recorded nor journaled.
            self._snapshot_safe = handoff.empty()
            self._handoff = None
            self._alarm_writer.shutdown()

    async def _detect_isolating(self, messages: list[Message]) -> list[_Stored]:
        """Detect a batch; one that fails twice is split in halves until the message that fails
        it is found, which becomes a reject with its bytes (poison isolation)."""
        error: BaseException | None = None
        for _ in range(2):
            try:
                batch, write = await asyncio.to_thread(self.detect_submitting, messages)
            except Exception as exc:
                error = exc
                continue
            return [_Stored(batch, messages, [], min(map(_received, messages)), write)]
        assert error is not None
        if len(messages) == 1:
            self.isolated += 1
            self.metrics.isolated.inc()
            m = messages[0]
            logger.error(
                "message on %s failed its batch twice (%s: %s): rejected on its own",
                m.topic[:200],
                type(error).__name__,
                error,
            )
            detail = f"processing failed: {type(error).__name__}: {str(error)[:200]}"
            reject = Reject(m.received, m.topic, m.payload, RejectReason.UNPROCESSABLE, detail, None)
            self.rejected += 1
            self.metrics.rejects.labels(RejectReason.UNPROCESSABLE.value).inc()
            return [_Stored(empty_batch(rejects=[reject]), messages, [], m.received)]
        logger.warning(
            "a batch of %d messages failed twice (%s: %s): splitting it to find the cause",
            len(messages),
            type(error).__name__,
            error,
        )
        half = len(messages) // 2
        return [
            *await self._detect_isolating(messages[:half]),
            *await self._detect_isolating(messages[half:]),
        ]

    def _settle_then_hand_off(self, parts: list[_Stored], handoff: _Handoff) -> asyncio.Task[None] | None:
        """Settle `parts`' alarm writes, then hand them to the telemetry writer, after everything
        handed on before (a task); returns the task that settles what came before (None: nothing)."""
        previous = self._settling
        self._unsettled += parts
        self._settling = asyncio.get_running_loop().create_task(
            self._settle_parts(parts, previous, handoff), name="alarm-settle"
        )
        return previous

    async def _settle_parts(
        self, parts: list[_Stored], previous: asyncio.Task[None] | None, handoff: _Handoff
    ) -> None:
        if previous is not None:
            await asyncio.wait({previous})  # its batches go first; only its end matters here
        for part in parts:
            part.deferred += await self._settle_async(part.write)
            part.write = None
            handoff.put(part)
            self._unsettled.remove(part)
            if part.deferred and self._recorder_wake is not None:
                self._recorder_wake.set()
        self.telemetry_pending = handoff.messages
        self.metrics.telemetry_lag.set(handoff.messages)

    async def _writer(
        self, handoff: _Handoff, ack: Callable[[list[Message]], int], stop: asyncio.Event
    ) -> None:
        """Store batches in order and acknowledge each once stored. Rejects the state store cannot
        take join the batch's journal entries; the local store is retried with backoff, never
        skipped: acknowledgements stay in order and nothing unstored is acknowledged. On stop,
        what is not stored stays unacknowledged and the broker redelivers it."""
        while (item := await handoff.get()) is not None:
            journal: list[tuple[str, bytes]] = []
            if item.deferred:
                journal.append((EntryKind.EVENTS.value, encode_events(item.deferred)))
            batch = item.batch
            if batch.rejects or batch.unknown_devices:
                try:
                    if self.storage_failing_since is not None:
                        raise ConnectionError("the state store is failing")
                    # Bounded like an alarm write: a store that hangs must not hold the writer (and
                    # through the hand-off, detection). A write that answers late may then keep
                    # these rejects twice; none is lost.
                    await asyncio.wait_for(
                        asyncio.to_thread(self.store_rejects, batch), self.config.alarm_write_timeout_s
                    )
                except Exception as exc:
                    if not isinstance(exc, ConnectionError):
                        logger.warning("rejects go to the local journal: the state store failed (%r)", exc)
                        with self._lock:
                            self._storage_failed(exc)
                    journal.append(
                        (
                            EntryKind.REJECTS.value,
                            encode_rejects(self._reject_records(batch.rejects), self._unknown(batch)),
                        )
                    )
            if not await self._store_local(batch, journal, stop):
                return
            if journal and self._recorder_wake is not None:
                self._recorder_wake.set()
            handoff.done(item)
            self.telemetry_pending = handoff.messages
            self.metrics.telemetry_lag.set(handoff.messages)
            if item.messages:
                ack(item.messages)
                self.progress_at = self.clock()

    async def _store_local(
        self, batch: DecodedBatch, journal: list[tuple[str, bytes]], stop: asyncio.Event
    ) -> bool:
        """Write to the local store until it succeeds (False: stopped first). A failure that is not
        the store being unavailable, twice, stores the readings one by one and rejects those the
        store refuses."""
        delay = 0.1
        failures = 0
        while True:
            try:
                await asyncio.to_thread(self.store_telemetry, batch, journal)
                if self.local_failing_since is not None:
                    logger.warning("the local telemetry store writes again")
                self.local_failing_since, self.local_error = None, ""
                return True
            except Exception as exc:
                self.store_failures += 1
                if self.local_failing_since is None:
                    self.local_failing_since = self.clock()
                self.local_error = f"{type(exc).__name__}: {str(exc)[:300]}"
                if not is_unavailable(exc):
                    failures += 1
                    if failures >= 2:
                        logger.error(
                            "storing a batch failed twice (%s): storing its readings one by one", exc
                        )
                        await asyncio.to_thread(self._store_one_by_one, batch, journal)
                        self.local_failing_since, self.local_error = None, ""
                        return True
                logger.exception("storing a batch failed; retrying in %.1f s", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return False
            delay = min(delay * 2, self.config.store_retry_max_s)

    def _store_one_by_one(self, batch: DecodedBatch, journal: list[tuple[str, bytes]]) -> None:
        """Poison isolation for the local store: each reading in a transaction of its own; one it
        refuses becomes a reject (`unprocessable`), kept through the journal with its bytes."""
        refused: list[Reject] = []
        for r, m in enumerate(batch.reading_msg):
            mine = batch.sample_reading == r
            try:
                self.telemetry.write(
                    batch.sample_slot[mine],
                    batch.sample_ts[mine],
                    batch.sample_value[mine],
                    [],
                    None,
                    self.clock(),
                )
            except Exception as exc:
                if is_unavailable(exc):
                    raise
                self.isolated += 1
                self.metrics.isolated.inc()
                detail = f"storage refused it: {type(exc).__name__}: {str(exc)[:200]}"
                refused.append(
                    Reject(m.received, m.topic, m.payload, RejectReason.UNPROCESSABLE, detail, None)
                )
        rows: list[tuple[str, int, int, float, bytes]] = []
        for row in batch.seq_state:
            try:
                self.telemetry.write(
                    batch.sample_slot[:0], batch.sample_ts[:0], batch.sample_value[:0], [row]
                )
                rows.append(row)
            except Exception as exc:
                if is_unavailable(exc):
                    raise
                logger.error("de-duplication state of %s refused by the local store: %s", row[0], exc)
        if refused:
            journal = [*journal, (EntryKind.REJECTS.value, encode_rejects(self._reject_records(refused), []))]
        empty = empty_batch()
        self.telemetry.write(
            empty.sample_slot,
            empty.sample_ts,
            empty.sample_value,
            [],
            journal,
            self.clock(),
            events=_event_log(batch),
        )

    async def _liveness(self, stop: asyncio.Event) -> None:
        interval = self.config.liveness_check_s
        while not stop.is_set():
            wall, clock = time.monotonic(), self.clock()
            await asyncio.sleep(interval)
            # Woken late: the event loop itself was held up (a stall of the process, a suspended
            # machine, a long pause of the collector). Messages devices sent meanwhile are still
            # unread in the socket and will be stamped on arrival, so the overrun is nobody's
            # silence, as the time the connection was down is not (check_liveness).
            overrun = time.monotonic() - wall - interval
            if overrun > LOOP_STALL_S:
                rate = (self.clock() - clock) / (overrun + interval)  # clock seconds per wall second
                with self._lock:
                    self.engine.pause(overrun * rate)
                logger.warning("the service was held up %.1f s: not counted as any device's silence", overrun)
            try:
                deferred = await asyncio.to_thread(self.check_liveness)
            except Exception:
                logger.exception("liveness check failed")
                continue
            self.journal_events(deferred)

    async def _recording(self, stop: asyncio.Event) -> None:
        """Record the journal in the state store whenever it holds entries; back off while the store
        fails. When it has caught up, batches record their alarms directly again."""
        wake = self._recorder_wake
        assert wake is not None
        delay = 0.2
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), delay)
            wake.clear()
            if (setup := self.pending_setup) is not None:
                try:
                    await asyncio.to_thread(setup)
                except Exception as exc:
                    with self._lock:
                        self._storage_failed(exc)
                    delay = min(max(delay * 2, 0.5), self.config.store_retry_max_s)
                    continue
                self.pending_setup = None
            if self.telemetry.journal_size()[0] == 0:
                if self._deferred == 0 and self.storage_failing_since is not None:
                    await self._probe_store()
                delay = 1.0
                continue
            try:
                drained = await asyncio.to_thread(self.recorder.drain, 200)
            except Exception as exc:
                partial: Drained = getattr(exc, "drained", Drained())
                with self._lock, self._write_state:
                    self._deferred -= partial.event_entries
                    self._storage_failed(exc)
                self.metrics.journal_pending.set(self.telemetry.journal_size()[0])
                delay = min(max(delay * 2, 0.5), self.config.store_retry_max_s)
                continue
            with self._lock, self._write_state:
                self._deferred -= drained.event_entries
                if drained.entries:
                    self._storage_ok()
            self.metrics.journal_pending.set(self.telemetry.journal_size()[0])
            self.metrics.unrecorded_alarms.set(len(self.unrecorded))
            delay = 0.05 if drained.entries else 1.0

    async def _probe_store(self) -> None:
        """Nothing is journaled, yet the store was failing (a rejects-only hiccup): ask it."""
        try:
            await asyncio.to_thread(self.recorder.probe)
        except Exception as exc:
            self._storage_failed(exc)
        else:
            self._storage_ok()


def _event_log(batch: DecodedBatch) -> list[EventRecord]:
    """The batch's device events for the devices' event logs; heartbeats are left out (they only
    say a device is alive, every 30 s), and so are states restated rather than changed (`log`:
    false in the envelope)."""
    heartbeat = DeviceEventKind.HEARTBEAT
    return [
        (e.device_id, e.ts, e.received, e.event.value, e.code, e.channel, e.frame)
        for e in batch.events
        if e.event is not heartbeat and e.logged
    ]


class _Handoff:
    """Detected batches waiting for the telemetry writer, in order, bounded in messages."""

    def __init__(self, max_messages: int) -> None:
        self.max_messages = max_messages
        self.messages = 0  # handed off and not yet stored
        self._items: deque[_Stored | None] = deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    def put(self, item: _Stored) -> None:
        self._items.append(item)
        self.messages += len(item.messages)
        if self.full():
            self._room.clear()
        self._ready.set()

    def full(self) -> bool:
        return self.messages >= self.max_messages

    def empty(self) -> bool:
        """Nothing handed off is waiting to be stored."""
        return all(item is None for item in self._items)

    def oldest(self) -> float | None:
        """When the longest-waiting message handed off arrived (None: none is waiting)."""
        for item in self._items:
            if item is not None and item.oldest is not None:
                return item.oldest
        return None

    async def room(self) -> None:
        await self._room.wait()

    def close(self) -> None:
        """No more batches: the writer ends after what is queued."""
        self._items.append(None)
        self._ready.set()

    async def get(self) -> _Stored | None:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        item = self._items[0]
        if item is None:
            self._items.popleft()
        return item

    def done(self, item: _Stored) -> None:
        """`item` (the one `get` returned) is stored."""
        if self._items and self._items[0] is item:
            self._items.popleft()
        self.messages -= len(item.messages)
        if not self.full():
            self._room.set()
