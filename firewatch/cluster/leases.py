"""Which worker owns which partition: leases in PostgreSQL, renewed by a heartbeat.

Rules (docs/scale.md, "Leases and takeover"):

- Every worker heartbeats every ttl/3 or so. A heartbeat is one short transaction: the worker's
  `cluster_workers` row gets seen_at = the server's now; workers seen within ttl are live; the leases
  it holds are renewed to now + ttl; partitions that `assign` gives it and whose lease is free or
  expired are claimed. All times are the PostgreSQL server's clock (`clock_timestamp()`), so no
  worker's clock decides who owns what.
- A claim is a conditional UPDATE (free, expired, or a row of this worker id left by an earlier run)
  and raises the partition's epoch; a renewal is a conditional UPDATE on (owner = me, epoch = the
  epoch I claimed). PostgreSQL re-checks an UPDATE's WHERE on the newest row version after waiting
  for a concurrent writer's row lock (READ COMMITTED, "EvalPlanQual"), so of two keepers claiming a
  free partition at once exactly one matches; the other sees the winner's unexpired lease. Every
  heartbeat touches its rows in ascending partition order, so two heartbeats never wait on each
  other in a cycle (no deadlock).
- A partition that `assign` moves away from a live owner goes in two steps: the owner sees it in
  `to_release`, keeps renewing it while it stops consuming it and saves its state, then calls
  `release`; only then is it free for the new owner to claim.
- `assign` is pure and deterministic: every worker reading the same table computes the same target,
  so workers agree without talking to each other.
- The duties lease (partition -1, not a partition of the stream) makes exactly one live worker run
  the cluster-wide clocks (alarm policy tick, ticket tick, registry mirror). It follows the same
  claim, expiry and epoch rules, and stays with its holder until that one stops heartbeating.

Fencing. A worker consumes its partitions only while its own `valid_until` has not passed: the
local monotonic time at which its last successful heartbeat *began*, plus ttl, minus a margin. The
server's expiry of those leases is the server's now, read inside that transaction (so after it
began), plus ttl. So, with clocks that run at the same rate, a worker stops acting on a partition
(margin) seconds before anyone else may claim it, whether its heartbeats fail, PostgreSQL is out of
reach or the process is paused; a worker that is paused and wakes up sees its deadline passed before
it touches the stream again. What is left is a bounded overlap: a batch already in progress when the
deadline passes finishes (the worker checks between batches), and clock rate error over one ttl
(parts per million). Such an overlap is harmless here: readings and device events are stored by
their key (device, channel, ts), so storing one twice is a no-op; alarms are upserted by their open
key (device, alarm type), so a second raise of an open alarm is a repetition, not a second alarm;
and the per-partition alarm mark (partition_state.record_marks) lets the new owner skip alarm events
of messages already recorded. The epoch tells a former owner that it lost a partition (`lost`).

A worker id names one running process: a process restarted with the same id takes its own earlier
leases back at once (a new epoch), without waiting for them to expire.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from storage.cluster_models import ClusterWorkerRow, PartitionLeaseRow

DUTIES = -1  # the partition_leases row of the duties lease: not a partition of the stream

# Workers unseen for this many ttls are deleted from cluster_workers by the duties holder, so ids of
# workers long gone (each run may have a new one) do not pile up. Far beyond any lease's life.
PRUNE_AFTER_TTLS = 100

SERVER_NOW = text("SELECT extract(epoch FROM clock_timestamp())::float8")


def assign(partitions: int, workers: Sequence[str], current: Mapping[int, str | None]) -> dict[int, str]:
    """The target owner of each of `partitions` partitions among the live `workers`.

    Balanced: each worker gets floor or ceil of P/W. Sticky: the ceil shares go to the workers that
    hold the most now (ties by id), and each worker keeps its lowest-numbered current partitions up
    to its share, so the fewest partitions leave a live owner (only a worker over its share loses
    any). Deterministic: the same inputs give the same answer, whatever their order. Owners in
    `current` that are not among `workers` count as none. No workers: no owners.
    """
    live = sorted(set(workers))
    if not live:
        return {}
    held: dict[str, list[int]] = {w: [] for w in live}
    for p in range(partitions):
        owner = current.get(p)
        if owner in held:
            held[owner].append(p)
    base, extra = divmod(partitions, len(live))
    by_holding = sorted(live, key=lambda w: (-len(held[w]), w))
    share = {w: base + (1 if rank < extra else 0) for rank, w in enumerate(by_holding)}
    target: dict[int, str] = {}
    for w in live:
        for p in held[w][: share[w]]:
            target[p] = w
    free = iter(p for p in range(partitions) if p not in target)
    for w in live:
        for _ in range(share[w] - min(len(held[w]), share[w])):
            target[next(free)] = w
    return target


@dataclass(frozen=True)
class _Lease:
    owner: str | None
    expires_at: float


@dataclass(frozen=True)
class LeaseView:
    """What one heartbeat found and did."""

    now: float  # the server's clock at the heartbeat (epoch seconds)
    valid_until: float  # local time.monotonic() after which the owned leases may have expired
    owned: dict[int, int]  # partition -> epoch, every lease held after this heartbeat (to_release too)
    gained: dict[int, int]  # partition -> epoch, claimed by this heartbeat
    lost: frozenset[int]  # held before, taken by another after expiring: stop consuming at once
    to_release: frozenset[int]  # held, but another live worker's now: stop, save, then release()
    duties: bool  # this worker runs the cluster-wide clocks
    workers: dict[str, str] = field(default_factory=dict)  # live worker id -> its API URL


class LeaseKeeper:
    """One worker's leases. Thread-safe: heartbeat, release and leave may come from any thread."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        worker_id: str,
        partitions: int,
        ttl_s: float = 6.0,
        api_url: str = "",
        margin_s: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if partitions < 1 or ttl_s <= 0:
            raise ValueError("a lease keeper needs at least one partition and a positive ttl")
        self.sessions = sessions
        self.worker_id = worker_id
        self.partitions = partitions
        self.ttl_s = ttl_s
        self.api_url = api_url
        # The margin covers a batch finishing after the deadline (checked between batches) and clock
        # rate error; a sixth of the ttl (1 s of the default 6 s) leaves most of the lease to work in.
        # A worker whose batches can take longer must give a larger margin.
        self.margin_s = ttl_s / 6 if margin_s is None else margin_s
        self._monotonic = monotonic
        # Serialises heartbeat, release and leave. Readers (owned, duties, valid) do not take it, so
        # a heartbeat stuck on an unreachable database never blocks them: the dict is replaced,
        # never changed in place, and valid_until is one float.
        self._lock = threading.Lock()
        self._left = False  # leave() ran: a heartbeat late from its thread claims nothing again
        self._held: dict[int, int] = {}  # partition -> epoch, duties (-1) included
        self.valid_until = float("-inf")

    @property
    def owned(self) -> dict[int, int]:
        """partition -> epoch of every lease held (those to release included)."""
        return {p: e for p, e in self._held.items() if p != DUTIES}

    @property
    def duties(self) -> bool:
        """Whether this worker holds the duties lease (and its leases are still valid)."""
        return DUTIES in self._held and self.valid()

    @property
    def interval_s(self) -> float:
        """How often to heartbeat: three tries within a ttl, so one slow or failed heartbeat does
        not lose the leases. A dead worker's partitions are claimed within ttl + interval."""
        return self.ttl_s / 3

    def valid(self) -> bool:
        """Whether the leases held may still be acted on (see the module's fencing argument)."""
        return self._monotonic() < self.valid_until

    def heartbeat(self) -> LeaseView:
        """Renew, claim and report, in one transaction. Raises if the database fails; the keeper's
        state then stays as after its last successful heartbeat (and `valid_until` with it)."""
        with self._lock:
            if self._left:
                raise RuntimeError(f"worker {self.worker_id} has left the cluster: no more heartbeats")
            started = self._monotonic()
            with self.sessions.begin() as s:
                # A statement that waits longer than a ttl (on a lock, on a busy server) is of no
                # use: the leases would have expired meanwhile. It gives up rather than keep others
                # waiting for the row locks it holds. (An unreachable server is the client's
                # connection timeout's business: storage.db.make_engine.)
                s.execute(text(f"SET LOCAL statement_timeout = {max(1, int(self.ttl_s * 1000))}"))
                now = float(s.execute(SERVER_NOW).scalar_one())
                self._upsert_worker(s, now)
                workers = self._live_workers(s, now)
                rows = self._leases(s)
                if any(p not in rows for p in range(DUTIES, self.partitions)):  # first use
                    self._make_rows(s)
                    rows = self._leases(s)
                current = {
                    p: (r.owner if r.owner in workers else None)
                    for p, r in rows.items()
                    if 0 <= p < self.partitions
                }
                target = assign(self.partitions, sorted(workers), current)
                wanted = {p for p, w in target.items() if w == self.worker_id}
                duties_row = rows.get(DUTIES)
                if DUTIES not in self._held and (duties_row is None or self._claimable(duties_row, now)):
                    wanted.add(DUTIES)
                held, gained, lost = dict(self._held), {}, set()
                for p in sorted(set(held) | wanted):  # ascending: no lock cycles between keepers
                    if p in held:
                        if not self._renew(s, p, held[p], now):
                            lost.add(p)
                            del held[p]
                    elif (row := rows.get(p)) is not None and self._claimable(row, now):
                        epoch = self._claim(s, p, now)
                        if epoch is not None:
                            held[p] = gained[p] = epoch
                if DUTIES in held:
                    self._prune_workers(s, now)
            self._held = held
            self.valid_until = started + self.ttl_s - self.margin_s
            to_release = {p for p in held if p != DUTIES and target.get(p, self.worker_id) != self.worker_id}
            return LeaseView(
                now=now,
                valid_until=self.valid_until,
                owned={p: e for p, e in held.items() if p != DUTIES},
                gained={p: e for p, e in gained.items() if p != DUTIES},
                lost=frozenset(p for p in lost if p != DUTIES),
                to_release=frozenset(to_release),
                duties=DUTIES in held,
                workers=workers,
            )

    def release(self, partitions: Iterable[int]) -> None:
        """Give up these partitions (the caller has stopped consuming them and saved their state):
        free at once for their new owner. Partitions not held are ignored."""
        with self._lock:
            mine = {p: self._held[p] for p in sorted(set(partitions)) if p in self._held and p != DUTIES}
            with self.sessions.begin() as s:
                self._free(s, mine)
            self._held = {p: e for p, e in self._held.items() if p not in mine}

    def leave(self) -> None:
        """A graceful stop: free every lease (duties included) and delete this worker's row, so the
        others take over at their next heartbeat instead of after a ttl."""
        with self._lock:
            with self.sessions.begin() as s:
                self._free(s, self._held)
                s.execute(delete(ClusterWorkerRow).where(ClusterWorkerRow.worker_id == self.worker_id))
            self._held = {}
            self.valid_until = float("-inf")
            self._left = True

    # --- statements ----------------------------------------------------------------------------

    def _make_rows(self, s: Session) -> None:
        rows = [
            {"partition": p, "owner": None, "epoch": 0, "expires_at": 0.0}
            for p in range(DUTIES, self.partitions)
        ]
        s.execute(insert(PartitionLeaseRow).values(rows).on_conflict_do_nothing(index_elements=["partition"]))

    def _upsert_worker(self, s: Session, now: float) -> None:
        stmt = insert(ClusterWorkerRow).values(
            worker_id=self.worker_id, api_url=self.api_url, started_at=now, seen_at=now
        )
        s.execute(
            stmt.on_conflict_do_update(
                index_elements=["worker_id"], set_={"seen_at": now, "api_url": self.api_url}
            )
        )

    def _live_workers(self, s: Session, now: float) -> dict[str, str]:
        rows = s.execute(
            select(ClusterWorkerRow.worker_id, ClusterWorkerRow.api_url).where(
                ClusterWorkerRow.seen_at > now - self.ttl_s
            )
        )
        return {w: url for w, url in rows}

    def _leases(self, s: Session) -> dict[int, _Lease]:
        cols = (PartitionLeaseRow.partition, PartitionLeaseRow.owner, PartitionLeaseRow.expires_at)
        return {p: _Lease(owner, expires_at) for p, owner, expires_at in s.execute(select(*cols))}

    def _claimable(self, row: _Lease, now: float) -> bool:
        return row.owner is None or row.expires_at <= now or row.owner == self.worker_id

    def _renew(self, s: Session, p: int, epoch: int, now: float) -> bool:
        stmt = (
            update(PartitionLeaseRow)
            .where(
                PartitionLeaseRow.partition == p,
                PartitionLeaseRow.owner == self.worker_id,
                PartitionLeaseRow.epoch == epoch,
            )
            .values(expires_at=now + self.ttl_s)
            .returning(PartitionLeaseRow.partition)
            .execution_options(synchronize_session=False)
        )
        return s.execute(stmt).first() is not None

    def _claim(self, s: Session, p: int, now: float) -> int | None:
        free = (
            (PartitionLeaseRow.owner.is_(None))
            | (PartitionLeaseRow.expires_at <= now)
            | (PartitionLeaseRow.owner == self.worker_id)
        )
        stmt = (
            update(PartitionLeaseRow)
            .where(PartitionLeaseRow.partition == p, free)
            .values(owner=self.worker_id, epoch=PartitionLeaseRow.epoch + 1, expires_at=now + self.ttl_s)
            .returning(PartitionLeaseRow.epoch)
            .execution_options(synchronize_session=False)
        )
        epoch: Any = s.execute(stmt).scalar_one_or_none()
        return None if epoch is None else int(epoch)

    def _free(self, s: Session, leases: Mapping[int, int]) -> None:
        for p in sorted(leases):
            s.execute(
                update(PartitionLeaseRow)
                .where(
                    PartitionLeaseRow.partition == p,
                    PartitionLeaseRow.owner == self.worker_id,
                    PartitionLeaseRow.epoch == leases[p],
                )
                .values(owner=None, expires_at=0.0)
                .execution_options(synchronize_session=False)
            )

    def _prune_workers(self, s: Session, now: float) -> None:
        s.execute(
            delete(ClusterWorkerRow).where(ClusterWorkerRow.seen_at < now - PRUNE_AFTER_TTLS * self.ttl_s)
        )
