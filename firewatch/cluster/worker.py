"""One worker of a cluster: which partitions it reads, and taking one over (docs/scale.md).

Every `heartbeat_s` the lease keeper (firewatch/cluster/leases.py) renews this worker's leases in
PostgreSQL and says what changed:
- **gained**: a partition that was free, or whose owner stopped renewing (died, or cut off from
  PostgreSQL for longer than `lease_ttl_s`). Taking it over: load the partition's last detector
  snapshot and restore its devices' units from it; align their active flags with the alarms open in
  the store (the store is the truth about alarms); start their liveness afresh; then read the
  partition from the stream, from just after what the worker before had stored or snapshotted,
  whichever is earlier — the snapshot's messages stored again only, the messages whose alarms are
  recorded (up to the partition's alarm mark) detected with their events dropped, the rest live.
  No reading is lost (everything after the stored mark is read again and stored by key) and no
  alarm raised twice (events up to the alarm mark are not raised again; an open alarm is never
  raised twice anyway: alarms are upserted by key).
- **to_release**: a partition the balance now gives to another worker (one joined). Stop reading
  it, wait until what was read is stored, save a snapshot, then release the lease: the next owner
  starts from there.
- **lost**: a lease another worker holds now (this one was cut off): stop reading at once.

A snapshot of the detector state is saved every `snapshot_every_s`, between two batches, once every
earlier batch's alarms are recorded (Pipeline._maybe_snapshot): one blob for all owned partitions,
with, for each, the last stream sequence in that state.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, sessionmaker

from alarms.service import AlarmService
from core.settings import ClusterSettings
from firewatch.cluster.engine import partition_of
from firewatch.cluster.leases import LeaseKeeper, LeaseView
from firewatch.cluster.partition_state import load_snapshot, save_snapshot
from firewatch.cluster.source import ClusterSource
from firewatch.pipeline import Pipeline
from firewatch.workers import DaemonWorker
from storage.cluster_models import PartitionMarkRow
from storage.pg_telemetry import ClusterTelemetry

logger = logging.getLogger(__name__)

RELEASE_WAIT_S = 5.0  # a partition handed on: how long its read messages get to be stored first


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"[:100]


@dataclass
class PartitionMap:
    """Which partition each device of the registry is in: its site's (a site is one partition, so
    a place's devices, its zones' fusion and its outages are all one worker's)."""

    partitions: int
    of_device: npt.NDArray[np.int32]

    @classmethod
    def of_sites(cls, sites: list[str], partitions: int) -> PartitionMap:
        part_of_site = {s: partition_of(s, partitions) for s in set(sites)}
        return cls(partitions, np.array([part_of_site[s] for s in sites], dtype=np.int32))

    def devices(self, partitions: set[int]) -> npt.NDArray[np.bool_]:
        return np.isin(self.of_device, np.fromiter(partitions, dtype=np.int32, count=len(partitions)))


@dataclass
class _Snapshots:
    """Snapshots are taken under the pipeline's lock (state and sequences together) and saved on a
    thread of their own, one at a time: a slow store never holds a batch."""

    worker: DaemonWorker = field(default_factory=lambda: DaemonWorker("cluster-snapshot"))
    busy: threading.Event = field(default_factory=threading.Event)
    saved: int = 0
    failed: int = 0


class ClusterWorker:
    def __init__(
        self,
        settings: ClusterSettings,
        *,
        sessions: sessionmaker[Session],
        pipeline: Pipeline,
        alarms: AlarmService,
        source: ClusterSource,
        worker_id: str,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.pipeline = pipeline
        self.alarms = alarms
        self.source = source
        self.worker_id = worker_id
        self.clock = clock
        self.keeper = LeaseKeeper(
            sessions, worker_id, settings.partitions, ttl_s=settings.lease_ttl_s, api_url=settings.api_url
        )
        self.map = PartitionMap.of_sites(pipeline.decoder.index.sites, settings.partitions)
        self.owned: set[int] = set()
        self.duties = False  # this worker runs the cluster-wide clocks
        self.peers = 0  # the other live workers at the last heartbeat
        self.heartbeat_failures = 0
        self._snap = _Snapshots()
        self._persisted: dict[int, int] = {}  # stored sequences written to PostgreSQL
        self._handing: asyncio.Task[None] | None = None  # partitions being handed on
        pipeline.partitioned = True
        pipeline.snapshot_hook = self._take_snapshot
        # Until it owns a partition, the worker watches no device's liveness.
        with pipeline._lock:
            pipeline.engine.own(self.map.devices(set()), self.map.devices(set()), clock())

    # --- the heartbeat loop ----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Heartbeats on a thread of their own, every `heartbeat_s`; this loop acts on each one's
        view, in order. On the event loop the renewals waited behind whatever else it ran: a worker
        draining a backlog on a small CPU share renewed late, lost its leases to another worker and
        took them back, over and over (bench/scale_out.py, 0.1 core per worker: dozens of takeovers
        a run). Acting on a view can wait; renewing must not."""
        loop = asyncio.get_running_loop()
        views: queue.SimpleQueue[LeaseView] = queue.SimpleQueue()
        arrived = asyncio.Event()
        halt = threading.Event()

        def beating() -> None:
            every = self.settings.heartbeat_s
            while not halt.is_set():
                began = time.monotonic()
                try:
                    views.put(self.keeper.heartbeat())
                    loop.call_soon_threadsafe(arrived.set)
                except Exception:
                    self.heartbeat_failures += 1
                    logger.exception("cluster heartbeat failed; keeping the partitions read now")
                halt.wait(max(0.0, every - (time.monotonic() - began)))

        thread = threading.Thread(target=beating, name="cluster-heartbeat", daemon=True)
        thread.start()
        waiting_stop = loop.create_task(stop.wait())
        try:
            while not stop.is_set():
                waiting_view = loop.create_task(arrived.wait())
                await asyncio.wait({waiting_view, waiting_stop}, return_when=asyncio.FIRST_COMPLETED)
                waiting_view.cancel()
                arrived.clear()
                while not views.empty() and not stop.is_set():
                    try:
                        await self._act(views.get_nowait())
                    except Exception:
                        logger.exception(
                            "acting on a cluster heartbeat failed; keeping the partitions read now"
                        )
        finally:
            halt.set()  # no heartbeat after this one: leave() releases the leases next
            waiting_stop.cancel()
            await asyncio.to_thread(thread.join, 5.0)

    async def _act(self, view: LeaseView) -> None:
        """What one heartbeat changed: stop reading what was lost, hand on what another worker is
        to have, take over what was gained; then record how far everything is stored."""
        self.duties = view.duties
        self.peers = max(0, len(view.workers) - 1)
        for p in sorted(view.lost):
            if p in self.owned:
                logger.warning("partition %d is another worker's now: stopping reading it", p)
                await self._stop_reading(p)
        handing = sorted(view.to_release & self.owned)
        if handing and (self._handing is None or self._handing.done()):
            # Beside the heartbeats: waiting for what was read to be stored can take seconds
            # under a backlog, and the leases (these included) must be renewed meanwhile.
            self._handing = asyncio.get_running_loop().create_task(self._hand_on(handing), name="hand-on")
        gained = sorted(p for p in view.gained if p not in self.owned)
        if gained:
            # The store's open alarms, read once for every partition this heartbeat brings.
            active = await asyncio.to_thread(self.alarms.active_keys)
            for p in gained:
                await self._take(p, active)
        await asyncio.to_thread(self._persist_stored)

    async def stop_reading(self) -> None:
        """Stopping, first step: read no more (what was read is stored as the pipeline drains)."""
        await asyncio.gather(*(self.source.drop(p, wait_s=0.0) for p in sorted(self.owned)))

    async def leave(self) -> None:
        """Stopping, once the pipeline has drained: say how far everything is stored, snapshot, and
        release every lease, so the others take the partitions over at once instead of after
        `lease_ttl_s`, from this very state."""
        self.owned.clear()
        try:
            await asyncio.to_thread(self._persist_stored)
            await asyncio.to_thread(self._snapshot_now)
        finally:
            await asyncio.to_thread(self.keeper.leave)

    # --- taking over -----------------------------------------------------------------------------
    async def _take(self, p: int, active: set[tuple[str, str]]) -> None:
        snapshot = await asyncio.to_thread(load_snapshot, self.sessions, p)
        alarm_seq, stored_seq = await asyncio.to_thread(self._marks, p)
        snapshot_seq = snapshot[1] if snapshot is not None else 0
        owned = self.owned | {p}

        def restore() -> int:
            pipeline = self.pipeline
            with pipeline._lock:
                # Under the lock: a registry change swaps the map and the engine under it too.
                mine, gained = self.map.devices(owned), self.map.devices({p})
                engine = pipeline.engine
                warm = 0
                if snapshot is not None:
                    ids = pipeline.decoder.index.device_ids
                    warm = engine.restore_bytes(
                        snapshot[0], [ids[i] for i in np.flatnonzero(gained).tolist()]
                    )
                now = self.clock()
                engine.own(mine, gained, now)
                engine.resume_devices(gained, active, now)
                pipeline.detected_seq[p] = snapshot_seq
                return warm

        warm = await asyncio.to_thread(restore)
        self.owned.add(p)
        # Read from the earlier of the two: what follows the stored mark is stored again (by key),
        # what follows the snapshot is detected again.
        start = min(snapshot_seq, stored_seq) + 1
        feed = self.source.take(p, start=start, store_upto=snapshot_seq, silent_upto=alarm_seq)
        logger.info(
            "took partition %d over: snapshot at %d (%d units warm), stored to %d, alarms to %d; "
            "reading from %d",
            p,
            snapshot_seq,
            warm,
            stored_seq,
            alarm_seq,
            feed.next_seq,
        )

    def rebound(self, device_ids: list[str], sites: list[str], added: set[str]) -> None:
        """A changed registry was just swapped in (under the pipeline's lock, its engine the new
        one): the devices' partitions from the new registry, and the new engine told which are
        this worker's (an added device of an owned partition counts its silence from now; the
        rest carried their state over)."""
        self.map = PartitionMap.of_sites(sites, self.settings.partitions)
        mine = self.map.devices(self.owned)
        new = np.fromiter((d in added for d in device_ids), dtype=np.bool_, count=len(device_ids))
        self.pipeline.engine.own(mine, mine & new, self.clock())

    # --- handing on ------------------------------------------------------------------------------
    async def _hand_on(self, partitions: list[int]) -> None:
        """Stop reading them all, give what was read RELEASE_WAIT_S to be stored, snapshot once,
        release. What is not stored by then the next owner reads again (from the stored mark)."""
        try:
            await asyncio.gather(*(self.source.drop(p, wait_s=RELEASE_WAIT_S) for p in partitions))
            await asyncio.to_thread(self._persist_stored)
            await asyncio.to_thread(self._snapshot_now)
            for p in partitions:
                self._unwatch(p)
            await asyncio.to_thread(self.keeper.release, partitions)
            logger.info("handed partitions %s on", ", ".join(map(str, partitions)))
        except Exception:
            logger.exception("handing partitions %s on failed; their leases expire by themselves", partitions)

    async def _stop_reading(self, p: int) -> None:
        await self.source.drop(p, wait_s=0.0)
        self._unwatch(p)

    def _unwatch(self, p: int) -> None:
        self.owned.discard(p)
        with self.pipeline._lock:
            none = self.map.devices(set())
            self.pipeline.engine.own(self.map.devices(self.owned), none, self.clock())
            self.pipeline.detected_seq.pop(p, None)

    # --- progress in PostgreSQL ------------------------------------------------------------------
    def _marks(self, p: int) -> tuple[int, int]:
        with self.sessions() as s:
            row = s.execute(
                select(PartitionMarkRow.alarm_seq, PartitionMarkRow.stored_seq).where(
                    PartitionMarkRow.partition == p
                )
            ).first()
        return (int(row[0]), int(row[1])) if row is not None else (0, 0)

    def _persist_stored(self) -> None:
        """How far each partition's telemetry is stored, for the next owner (it may lag: what
        follows is stored again, by key). Not while readings wait in the local spool for
        PostgreSQL (storage/pg_spool.py): were this worker to die, the next owner must read them
        from the stream again. The progress is read first: any batch it counts is either still
        spooled then (nothing written) or in PostgreSQL."""
        changed = {p: q for p, q in list(self.source.stored.items()) if q > self._persisted.get(p, 0)}
        if not changed:
            return
        telemetry = self.pipeline.telemetry
        if isinstance(telemetry, ClusterTelemetry) and telemetry.spool_pending():
            return
        stmt = pg_insert(PartitionMarkRow).values(
            [{"partition": p, "alarm_seq": 0, "stored_seq": q} for p, q in sorted(changed.items())]
        )
        with self.sessions.begin() as s:
            s.execute(
                stmt.on_conflict_do_update(
                    index_elements=[PartitionMarkRow.partition],
                    set_={"stored_seq": func.greatest(PartitionMarkRow.stored_seq, stmt.excluded.stored_seq)},
                )
            )
        self._persisted.update(changed)

    # --- snapshots -------------------------------------------------------------------------------
    def _take_snapshot(self) -> None:
        """Pipeline.snapshot_hook: under the pipeline's lock, between batches, with every earlier
        batch's alarms recorded. The state and its sequences are taken here; saved on a thread."""
        if self._snap.busy.is_set() or not self.owned:
            return
        seqs = {p: self.pipeline.detected_seq.get(p, 0) for p in self.owned}
        state = self.pipeline.engine.snapshot()
        self._snap.busy.set()
        self._snap.worker.submit(self._save, state, seqs)

    def _snapshot_now(self) -> None:
        """A snapshot at once (handing a partition on, leaving), waiting for the alarm writes."""
        with self.pipeline._lock:
            if not self.pipeline._writes_settled():
                logger.warning("no snapshot: alarm writes are not recorded; the next owner replays more")
                return
            seqs = {p: self.pipeline.detected_seq.get(p, 0) for p in self.pipeline.detected_seq}
            state = self.pipeline.engine.snapshot()
        self._snap.busy.set()
        self._save(state, seqs)

    def _save(self, state: dict[str, npt.NDArray[np.generic]], seqs: dict[int, int]) -> None:
        try:
            buffer = io.BytesIO()
            np.savez(buffer, **state)  # type: ignore[arg-type]  # numpy's stub types kwds as bool
            save_snapshot(self.sessions, self.worker_id, buffer.getvalue(), seqs)
            self._snap.saved += 1
        except Exception:
            self._snap.failed += 1
            logger.exception("could not save the detector snapshot; a takeover replays more")
        finally:
            self._snap.busy.clear()
