"""The data path of DESIGN §2 in one process: queue -> decode -> detect -> alarms -> telemetry -> ack.

Alarms are decided and persisted before the batch's telemetry is written, and the telemetry writer
runs beside detection with a hand-off of its own (`PipelineConfig.handoff_max` messages), so storage
never sits on the alarm path. The broker's acknowledgement waits for both (a crash before it means
redelivery), so a writer that stays behind is finally bounded by the broker's in-flight window.

A changed registry is swapped in between two batches (`prepare_rebind`, then `rebind`): everything
costly is built beside the running pipeline, and the swap itself, under the batch lock, only copies
detector state and exchanges references, so no batch sees half the old and half the new index and a
fire alarm waits for no more than those copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from alarms.model import Transition
from alarms.service import AlarmService
from alarms.tickets import TicketChange
from core.domain import DetectorEvent
from detectors.engine import Engine, StateCarry
from firewatch.metrics import Metrics
from ingest.decode import DecodedBatch, Decoder
from ingest.envelope import Message
from ingest.index import DeviceIndex
from ingest.queue import BoundedQueue
from storage.influx import InfluxSink, Tables
from storage.rejects import RejectRecord, RejectStore
from storage.telemetry import TelemetryStore

logger = logging.getLogger(__name__)

LIVENESS_CHUNK = 25  # offline alarms per transaction

Listener = Callable[[list[Transition], list[TicketChange]], None]


@dataclass
class PipelineConfig:
    batch_max: int = 5_000
    batch_wait_s: float = 0.005
    liveness_check_s: float = 1.0
    snapshot_path: Path | None = None  # detector state, saved between batches
    snapshot_every_s: float = 60.0
    # Messages detected but not yet stored, at most: past this, detection waits for storage. Only
    # a storage stall reaches it (the writer sustains over a million samples/s, docs/benchmarks.md).
    handoff_max: int = 50_000


@dataclass
class Rebind:
    """What `rebind` swaps in, prepared beside the running pipeline (`prepare_rebind`)."""

    index: DeviceIndex
    decoder: Decoder
    engine: Engine
    carry: StateCarry
    old_of_new: list[int]  # per new device, its index in the old one (-1: added)
    seq_rows: list[tuple[int, int, int, float]]  # stored de-duplication state of added devices
    series: npt.NDArray[np.int64] | None  # telemetry slot per index slot (None: the same)
    sink_tables: Tables | None = None  # what the InfluxDB sink's tables gain (None: no sink)


class Pipeline:
    def __init__(
        self,
        *,
        decoder: Decoder,
        engine: Engine,
        alarms: AlarmService,
        telemetry: TelemetryStore,
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
        self._stats_lock = threading.Lock()  # `transitions` and `_latency_max` change in several threads
        self._latency_max = 0.0  # the longest receipt-to-alarm time since `take_alarm_latency_max`
        # Detector state is touched by the batch thread and the liveness timer: one at a time.
        self._lock = threading.Lock()
        self._snapshot_at = clock()
        self._queue: BoundedQueue | None = None  # set by run(): its oldest message bounds the watermark
        self._detecting_since: float | None = None  # arrival of the oldest message in detection
        restored = telemetry.seq_state()
        dev_of = decoder.index.dev_of
        decoder.seq.restore([(dev_of[d], m, b, t) for d, m, b, t in restored if d in dev_of])
        # The telemetry store's series, as bound by the service: the index's slots, in order. A
        # registry change only appends to them, so batches detected before it and stored after it
        # still name the right series (`_slot_series` maps the current index's slots onto them).
        self._series_keys = decoder.index.series_keys()
        self._series_pos = {k: i for i, k in enumerate(self._series_keys)}
        self._slot_series: npt.NDArray[np.int64] | None = None

    # --- the synchronous core, also driven directly by tests and benchmarks ------------------------
    def detect(self, messages: list[Message]) -> DecodedBatch:
        """Decode, detect and raise alarms for one batch; returns the batch for storage."""
        started = time.perf_counter()
        # The whole batch, its alarms included, under the lock: a registry swap happens between
        # batches, so the alarms of a batch are recorded with the index it was decoded with.
        with self._lock:
            now = self.clock()
            batch = self.decoder.decode(messages, now)
            events = self.engine.process(batch)
            self._maybe_snapshot(now)
            if events:
                self.raise_alarms(events, first_received=min(msg.received for msg in messages))
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
        self.batches += 1
        if series is not None:  # the registry changed: store under the telemetry store's series slots
            batch = replace(batch, sample_slot=series[batch.sample_slot].astype(np.int32))
        return batch

    def _maybe_snapshot(self, now: float) -> None:
        """Save detector state every `snapshot_every_s` (under the lock, between batches).

        The alarms of every batch detected so far are committed by now, so the snapshot never runs
        ahead of the alarm store; the store is aligned again on start (Engine.resume).
        """
        cfg = self.config
        if (
            cfg.snapshot_path is None
            or cfg.snapshot_every_s <= 0
            or now - self._snapshot_at < cfg.snapshot_every_s
        ):
            return
        self._snapshot_at = now
        try:
            self.engine.save(cfg.snapshot_path)
        except OSError:
            logger.exception("cannot save the detector snapshot to %s; detection goes on", cfg.snapshot_path)

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
        )
        engine = Engine(index, start=self.clock(), fusion_window_s=old_engine.fusion.window_s)
        old_of_new = [old.dev_of.get(d, -1) for d in index.device_ids]
        # Detector units carry for devices that stay with the same profile (same units, same
        # parameters); a device given another profile starts its detectors afresh.
        warm = [
            d
            for i, d in enumerate(index.device_ids)
            if old_of_new[i] >= 0 and old.devices[old_of_new[i]].profile == index.devices[i].profile
        ]
        carry = engine.carry_from(old_engine, warm=warm, active=active)
        seq_rows: list[tuple[int, int, int, float]] = []
        if any(o < 0 for o in old_of_new):  # a device registered again resumes its de-duplication
            added = {d: i for i, d in enumerate(index.device_ids) if old_of_new[i] < 0}
            seq_rows = [(added[d], m, b, t) for d, m, b, t in self.telemetry.seq_state() if d in added]
        series = self._bind_series(index)
        sink_tables = self.sink.tables_for(index, self._series_keys) if self.sink is not None else None
        return Rebind(index, decoder, engine, carry, old_of_new, seq_rows, series, sink_tables)

    @property
    def series_keys(self) -> list[tuple[str, str]]:
        """(device, channel) per series slot: what the slots of stored (and sunk) batches name."""
        return self._series_keys

    def _bind_series(self, index: DeviceIndex) -> npt.NDArray[np.int64] | None:
        keys = index.series_keys()
        new = [k for k in keys if k not in self._series_pos]
        if new:
            self._series_pos.update((k, len(self._series_keys) + i) for i, k in enumerate(new))
            self._series_keys = [*self._series_keys, *new]
            self.telemetry.bind(self._series_keys)  # appends: slots of stored-to-be batches stay valid
        slots = np.array([self._series_pos[k] for k in keys], dtype=np.int64)
        return None if np.array_equal(slots, np.arange(len(keys))) else slots

    def rebind(self, r: Rebind, *, also: Callable[[], None] = lambda: None) -> None:
        """Swap `r` in between two batches: detector state and de-duplication carried over by
        device id, `also` run under the same lock (others holding the index swap theirs)."""
        with self._lock:
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
        if self.config.snapshot_path is not None:
            with self._lock:
                self.engine.save(self.config.snapshot_path)

    def raise_alarms(self, events: list[DetectorEvent], first_received: float | None = None) -> None:
        transitions, tickets = self.alarms.apply(events)
        if first_received is not None and transitions:
            latency = max(0.0, self.clock() - first_received)
            self.metrics.alarm_latency.observe(latency)
            with self._stats_lock:
                self._latency_max = max(self._latency_max, latency)
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

    def store_rejects(self, batch: DecodedBatch) -> None:
        """Keep the batch's rejected messages and unknown devices (blocking)."""
        if batch.rejects or batch.unknown_devices:
            now = self.clock()
            self.rejects.add(
                [
                    RejectRecord(r.received, r.topic, r.payload, r.reason.value, r.detail, r.device_id)
                    for r in batch.rejects
                ],
                # A device registered since its batch was decoded is no longer one to discover.
                [
                    (site, dev, now)
                    for site, dev in batch.unknown_devices
                    if dev not in self.decoder.index.dev_of
                ],
            )

    def store_telemetry(self, batch: DecodedBatch) -> None:
        """Persist the batch's samples with its seq state, in one transaction (blocking)."""
        self.telemetry.write(batch.sample_slot, batch.sample_ts, batch.sample_value, batch.seq_state)
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

    def check_liveness(self) -> None:
        with self._lock:
            events = self.engine.check(self.watermark())
        # A power cut silences a floor at once: hundreds of offline alarms, each opening a ticket.
        # Written in small transactions, so a fire alarm from the next batch waits for one chunk
        # at most, not for all of them (a fire alarm is never delayed behind maintenance work).
        for i in range(0, len(events), LIVENESS_CHUNK):
            self.raise_alarms(events[i : i + LIVENESS_CHUNK])

    # --- the asynchronous loop -----------------------------------------------------------------
    async def run(
        self, queue: BoundedQueue, ack: Callable[[list[Message]], int], stop: asyncio.Event
    ) -> None:
        """Drain the queue until `stop`; every message is acknowledged only after its batch is stored."""
        self._queue = queue
        handoff = _Handoff(self.config.handoff_max)
        writer = asyncio.create_task(self._writer(handoff, ack, stop), name="telemetry-writer")
        ticker = asyncio.create_task(self._liveness(stop), name="liveness")
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
                self._detecting_since = min(m.received for m in messages)
                try:
                    batch = await asyncio.to_thread(self.detect, messages)
                except Exception:  # never expected; keep the pipeline alive, leave messages unacked
                    logger.exception("batch of %d messages failed; they will be redelivered", len(messages))
                    continue
                finally:
                    self._detecting_since = None
                handoff.put(batch, messages)
                self.telemetry_pending = handoff.messages
                self.metrics.telemetry_lag.set(handoff.messages)
                if handoff.full():  # storage stalled: wait for room (or stop) before detecting more
                    self.metrics.handoff_waits.inc()
                    room = asyncio.ensure_future(handoff.room())
                    done, _ = await asyncio.wait({room, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    if room not in done:
                        room.cancel()
                        break
        finally:
            # A healthy writer drains what is handed off and then sees the end; a writer stuck
            # retrying sees `stop` and returns, leaving its batches unacknowledged (the broker
            # redelivers them).
            handoff.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(writer, 15)
            ticker.cancel()
            stopping.cancel()

    async def _writer(
        self, handoff: _Handoff, ack: Callable[[list[Message]], int], stop: asyncio.Event
    ) -> None:
        """Store batches in order and acknowledge each once stored. A failing store is retried with
        backoff, never skipped: acknowledgements stay in order and nothing unstored is acknowledged.
        On stop, what is not stored stays unacknowledged and the broker redelivers it."""
        while (item := await handoff.get()) is not None:
            batch, messages = item
            steps: list[Callable[[DecodedBatch], None]] = [self.store_rejects, self.store_telemetry]
            delay = 0.1
            while steps:
                try:
                    await asyncio.to_thread(steps[0], batch)
                    steps.pop(0)
                except Exception:
                    logger.exception(
                        "storing a batch of %d messages failed; retrying in %.1f s", len(messages), delay
                    )
                    self.store_failures += 1
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    if stop.is_set():
                        return
                    delay = min(delay * 2, 10.0)
            handoff.done(len(messages))
            self.telemetry_pending = handoff.messages
            self.metrics.telemetry_lag.set(handoff.messages)
            ack(messages)

    async def _liveness(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.config.liveness_check_s)
            try:
                await asyncio.to_thread(self.check_liveness)
            except Exception:
                logger.exception("liveness check failed")


class _Handoff:
    """Detected batches waiting for the telemetry writer, in order, bounded in messages."""

    def __init__(self, max_messages: int) -> None:
        self.max_messages = max_messages
        self.messages = 0  # handed off and not yet stored
        self._items: deque[tuple[DecodedBatch, list[Message]] | None] = deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    def put(self, batch: DecodedBatch, messages: list[Message]) -> None:
        self._items.append((batch, messages))
        self.messages += len(messages)
        if self.full():
            self._room.clear()
        self._ready.set()

    def full(self) -> bool:
        return self.messages >= self.max_messages

    async def room(self) -> None:
        await self._room.wait()

    def close(self) -> None:
        """No more batches: the writer ends after what is queued."""
        self._items.append(None)
        self._ready.set()

    async def get(self) -> tuple[DecodedBatch, list[Message]] | None:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def done(self, n: int) -> None:
        self.messages -= n
        if not self.full():
            self._room.set()
