"""Partition leases: a balanced, sticky, deterministic target, and keepers on a real PostgreSQL that
share the partitions out, take a silent worker's over once its lease has expired, hand partitions to
a worker that joins in two steps, and never let two workers consume one partition at once."""

from __future__ import annotations

import contextlib
import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from firewatch.cluster.leases import DUTIES, LeaseKeeper, assign
from storage.cluster_models import PartitionLeaseRow
from storage.db import make_engine, open_store
from tests.postgres import PrivatePostgres

P = 12
DEADLINE_S = 60.0  # generous: conditions are waited on, never timed

# --- the target: pure -----------------------------------------------------------------------------

WORKER_IDS = st.sampled_from([f"w{i}" for i in range(8)])


@st.composite
def situations(draw: st.DrawFn) -> tuple[int, list[str], dict[int, str | None]]:
    partitions = draw(st.integers(1, 40))
    workers = draw(st.lists(WORKER_IDS, min_size=1, max_size=6, unique=True))
    owners = st.one_of(st.none(), WORKER_IDS)  # owners not among the workers are dead ones
    current = {p: draw(owners) for p in range(partitions)}
    return partitions, workers, current


def fewest_moves(partitions: int, workers: list[str], current: dict[int, str | None]) -> int:
    """By brute force: the fewest partitions that must leave a live owner in any balanced split."""
    held = [sum(1 for o in current.values() if o == w) for w in workers]
    base, extra = divmod(partitions, len(workers))
    return min(
        sum(max(0, h - base - (1 if i in ceil else 0)) for i, h in enumerate(held))
        for ceil in itertools.combinations(range(len(workers)), extra)
    )


@given(situations())
@settings(max_examples=300, deadline=None)
def test_every_partition_goes_to_a_live_worker_each_getting_floor_or_ceil(
    case: tuple[int, list[str], dict[int, str | None]],
) -> None:
    partitions, workers, current = case
    target = assign(partitions, workers, current)
    assert sorted(target) == list(range(partitions))
    counts = [sum(1 for w in target.values() if w == worker) for worker in workers]
    assert set(target.values()) <= set(workers)
    assert all(partitions // len(workers) <= c <= -(-partitions // len(workers)) for c in counts)


@given(situations())
@settings(max_examples=300, deadline=None)
def test_as_few_partitions_as_possible_leave_a_live_owner(
    case: tuple[int, list[str], dict[int, str | None]],
) -> None:
    partitions, workers, current = case
    target = assign(partitions, workers, current)
    moved = sum(1 for p, owner in current.items() if owner in workers and target[p] != owner)
    assert moved == fewest_moves(partitions, workers, current)


@given(situations(), st.randoms(use_true_random=False))
@settings(max_examples=300, deadline=None)
def test_every_worker_computes_the_same_target_whatever_the_order_it_reads_in(
    case: tuple[int, list[str], dict[int, str | None]], rnd: random.Random
) -> None:
    partitions, workers, current = case
    shuffled_workers = list(workers)
    rnd.shuffle(shuffled_workers)
    shuffled_current = dict(sorted(current.items(), key=lambda _: rnd.random()))
    assert assign(partitions, shuffled_workers, shuffled_current) == assign(partitions, workers, current)


def test_no_live_worker_owns_nothing_and_a_stable_split_stays_as_it_is() -> None:
    assert assign(4, [], {0: "w1"}) == {}
    split = assign(P, ["a", "b", "c"], {})
    assert assign(P, ["c", "a", "b"], split) == split


# --- keepers on PostgreSQL -------------------------------------------------------------------------


@pytest.fixture
def sessions(postgres_url: str) -> sessionmaker[Session]:
    _, made = open_store(postgres_url)
    return made


def wait_for(condition: Callable[[], bool], step: Callable[[], None], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        step()


def beat(keepers: list[LeaseKeeper], pause_s: float = 0.05) -> None:
    """One heartbeat of each keeper, releasing at once what it is asked to (as a worker does once it
    has stopped consuming and saved the state)."""
    for k in keepers:
        view = k.heartbeat()
        if view.to_release:
            k.release(view.to_release)
    time.sleep(pause_s)


def shares(keepers: list[LeaseKeeper]) -> list[int]:
    return [len(k.owned) for k in keepers]


def split_evenly(keepers: list[LeaseKeeper]) -> bool:
    owned = [set(k.owned) for k in keepers]
    share = P // len(keepers)
    return all(len(o) == share for o in owned) and set().union(*owned) == set(range(P))


def duty_holders(keepers: list[LeaseKeeper]) -> list[str]:
    return [k.worker_id for k in keepers if k.duties]


@pytest.mark.integration
def test_three_keepers_split_twelve_partitions_four_each_and_one_has_the_duties(
    sessions: sessionmaker[Session],
) -> None:
    keepers = [LeaseKeeper(sessions, f"w{i}", P, ttl_s=5.0) for i in range(3)]
    wait_for(lambda: split_evenly(keepers), lambda: beat(keepers), "a 4/4/4 split")
    assert shares(keepers) == [4, 4, 4]
    assert len(duty_holders(keepers)) == 1
    with sessions() as s:
        rows = {r.partition: r for r in s.scalars(select(PartitionLeaseRow))}
    for k in keepers:
        for p, epoch in k.owned.items():
            assert (rows[p].owner, rows[p].epoch) == (k.worker_id, epoch)
    assert rows[DUTIES].owner == duty_holders(keepers)[0]


@pytest.mark.integration
def test_a_silent_keepers_partitions_and_duties_go_to_the_others_once_its_lease_expires(
    sessions: sessionmaker[Session],
) -> None:
    keepers = [LeaseKeeper(sessions, f"w{i}", P, ttl_s=1.0) for i in range(3)]
    wait_for(lambda: split_evenly(keepers), lambda: beat(keepers), "a 4/4/4 split")
    # The duties holder falls silent (a kill -9, a lost network): it no longer heartbeats.
    silent = next(k for k in keepers if k.duties)
    others = [k for k in keepers if k is not silent]
    before = silent.owned
    wait_for(lambda: split_evenly(others), lambda: beat(others), "the others to take its share")
    # Fencing: by the time anyone could claim its partitions, the silent keeper's own deadline had
    # passed, so it had stopped acting on them.
    assert not silent.valid()
    assert len(duty_holders(others)) == 1
    taken = {p: e for k in others for p, e in k.owned.items() if p in before}
    assert set(taken) == set(before)
    assert all(taken[p] > before[p] for p in before)  # a new owner, a new epoch
    # When it wakes up, its first heartbeat tells it what it lost.
    view = silent.heartbeat()
    assert view.lost == frozenset(before)
    assert not view.duties
    assert not set(view.gained) & set(before)


class Consumers:
    """What the workers consume, as a worker driving a keeper would: from a partition's gain until
    it stops to release it. Records every moment two valid keepers consume one partition."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by: dict[int, LeaseKeeper] = {}
        self.overlaps: list[str] = []

    def start(self, p: int, k: LeaseKeeper) -> None:
        with self.lock:
            other = self.by.get(p)
            if other is not None and other is not k and other.valid():
                self.overlaps.append(f"partition {p}: {k.worker_id} while {other.worker_id}")
            self.by[p] = k

    def stop(self, p: int, k: LeaseKeeper) -> None:
        with self.lock:
            if self.by.get(p) is k:
                del self.by[p]


def drive(k: LeaseKeeper, consumers: Consumers, stop: threading.Event, errors: list[BaseException]) -> None:
    try:
        while not stop.is_set():
            view = k.heartbeat()
            for p in view.lost:
                consumers.stop(p, k)
            for p in view.gained:
                consumers.start(p, k)
            if view.to_release:
                for p in view.to_release:
                    consumers.stop(p, k)
                k.release(view.to_release)
            stop.wait(0.05)
    except BaseException as exc:
        errors.append(exc)


@pytest.mark.integration
def test_a_fourth_keeper_gets_three_partitions_handed_over_in_two_steps_never_to_two_at_once(
    sessions: sessionmaker[Session],
) -> None:
    keepers = [LeaseKeeper(sessions, f"w{i}", P, ttl_s=2.0) for i in range(4)]
    consumers, stop = Consumers(), threading.Event()
    errors: list[BaseException] = []
    table_faults: list[str] = []

    def observe() -> None:
        # The table's own rules, throughout: an epoch never falls, and an owner never changes
        # without a new epoch.
        seen: dict[int, tuple[str | None, int]] = {}
        while not stop.is_set():
            with sessions() as s:
                rows = s.execute(
                    select(PartitionLeaseRow.partition, PartitionLeaseRow.owner, PartitionLeaseRow.epoch)
                )
                for p, owner, epoch in rows:
                    was = seen.get(p)
                    if was is not None and (
                        epoch < was[1] or (owner not in (None, was[0]) and epoch == was[1])
                    ):
                        table_faults.append(f"partition {p}: {was} -> {(owner, epoch)}")
                    seen[p] = (owner, epoch)
            stop.wait(0.01)

    threads = [threading.Thread(target=observe)]
    threads += [threading.Thread(target=drive, args=(k, consumers, stop, errors)) for k in keepers[:3]]
    try:
        for t in threads:
            t.start()
        wait_for(lambda: split_evenly(keepers[:3]), lambda: time.sleep(0.05), "a 4/4/4 split")
        joiner = threading.Thread(target=drive, args=(keepers[3], consumers, stop, errors))
        threads.append(joiner)
        joiner.start()
        wait_for(lambda: split_evenly(keepers), lambda: time.sleep(0.05), "a 3/3/3/3 split")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors
    assert shares(keepers) == [3, 3, 3, 3]
    assert consumers.overlaps == []
    assert table_faults == []
    assert {p: k.worker_id for p, k in consumers.by.items()} == {
        p: k.worker_id for k in keepers for p in k.owned
    }


@pytest.mark.integration
def test_of_keepers_starting_at_once_exactly_one_claims_a_free_partition_and_the_duties(
    sessions: sessionmaker[Session], postgres_url: str
) -> None:
    n = 8
    setup = LeaseKeeper(sessions, "setup", 1)
    setup.heartbeat()  # the lease rows exist
    setup.leave()  # and are free
    for round_ in range(3):
        # Each keeper has its own connection pool, as a worker process would.
        keepers = [
            LeaseKeeper(sessionmaker(make_engine(postgres_url)), f"r{round_}k{i}", 1) for i in range(n)
        ]
        start = threading.Barrier(n)
        gained: dict[str, dict[int, int]] = {}
        duties: dict[str, bool] = {}

        def first_beat(
            k: LeaseKeeper,
            start: threading.Barrier = start,
            gained: dict[str, dict[int, int]] = gained,
            duties: dict[str, bool] = duties,
        ) -> None:
            start.wait()
            view = k.heartbeat()
            gained[k.worker_id], duties[k.worker_id] = view.gained, view.duties

        threads = [threading.Thread(target=first_beat, args=(k,)) for k in keepers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(gained) == n
        assert sum(1 for g in gained.values() if 0 in g) == 1
        assert sum(duties.values()) == 1
        for k in keepers:
            k.leave()


@pytest.fixture
def own_postgres() -> Iterator[PrivatePostgres]:
    """A cluster of this test's own: it is stopped, which no other test may see."""
    cluster = PrivatePostgres().start()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.mark.integration
def test_a_keeper_cut_off_from_the_database_stops_acting_and_carries_on_when_it_is_back(
    own_postgres: PrivatePostgres,
) -> None:
    _, sessions = open_store(own_postgres.url(own_postgres.create_database()))
    keeper = LeaseKeeper(sessions, "w0", 4, ttl_s=1.0)
    first = keeper.heartbeat()
    assert set(first.owned) == {0, 1, 2, 3}
    assert first.duties

    def failing_heartbeat() -> None:
        with pytest.raises(OperationalError):
            keeper.heartbeat()
        time.sleep(0.05)

    with sessions() as s:
        # The test cluster runs with synchronous_commit off, so a crash could lose the last commits;
        # a checkpoint makes the leases durable, as a production server's commit does.
        s.execute(text("CHECKPOINT"))
    own_postgres.halt()
    try:
        # Its heartbeats fail; it cannot know whether another worker took its partitions, so once
        # its deadline passes it must stop acting on them (and on the duties).
        wait_for(lambda: not keeper.valid(), failing_heartbeat, "the keeper's deadline to pass")
        assert not keeper.duties
        assert keeper.owned == first.owned
        assert keeper.valid_until == first.valid_until
    finally:
        own_postgres.resume()
    views = []

    def try_heartbeat() -> None:
        with contextlib.suppress(OperationalError):
            views.append(keeper.heartbeat())
        time.sleep(0.05)

    wait_for(lambda: bool(views), try_heartbeat, "a heartbeat once the database is back")
    # Nobody claimed them meanwhile (same owner, same epoch): it carries on where it stopped.
    back = views[0]
    assert back.owned == first.owned
    assert back.lost == frozenset()
    assert back.gained == {}
    assert back.duties
    assert back.valid_until > first.valid_until


@pytest.mark.integration
def test_a_keeper_that_left_claims_nothing_again_even_from_a_late_heartbeat(
    sessions: sessionmaker[Session],
) -> None:
    """The heartbeats run on a thread of their own (firewatch/cluster/worker.py): one already on
    its way when the worker leaves must not take the leases it has just given back."""
    a, b = LeaseKeeper(sessions, "a", P, ttl_s=5.0), LeaseKeeper(sessions, "b", P, ttl_s=5.0)
    wait_for(lambda: split_evenly([a, b]), lambda: beat([a, b]), "a 6/6 split")
    a.leave()
    with pytest.raises(RuntimeError, match="left the cluster"):
        a.heartbeat()
    wait_for(lambda: len(b.owned) == P, lambda: beat([b]), "b owning every partition")
    with sessions() as s:
        owners = {r.partition: r.owner for r in s.scalars(select(PartitionLeaseRow))}
    assert set(owners.values()) == {"b"}
