"""The vectorised `scan` path of sequential detectors equals the round-by-round definition.

A batch holding many readings of the same units (replay, a backlog) goes through `scan`, one numpy
pass along each unit's run; `update_by_rounds` feeds the same batch one reading per unit per round.
For random batches (interleaved units, several units on one slot, random walks with repeated values,
warm-up straddling batches, readings past `ignore_beyond`, resets and warm starts between batches)
both must raise and clear at the same readings, in the same order, with the same evidence, and leave
the same state: bit for bit, as tests/test_detector_conformance.py asks of any two ways of batching.
"""

from __future__ import annotations

from collections.abc import Callable
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.anomaly import Anomaly
from detectors.base import Hits, SequentialDetector, restarted_sums
from detectors.drift import Drift
from detectors.health import OutOfRange, Stuck
from detectors.samples import Samples

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Factory = Callable[[np.ndarray, np.random.Generator], SequentialDetector]


def out_of_range(slots: np.ndarray, rng: np.random.Generator) -> SequentialDetector:
    lo = rng.uniform(-1.0, 0.0, slots.size)
    return OutOfRange(slots, lo=lo, hi=lo + rng.uniform(0.0, 2.0, slots.size))


def stuck(slots: np.ndarray, rng: np.random.Generator) -> SequentialDetector:
    return Stuck(
        slots,
        stuck_s=rng.choice([0.0, 5.0, 40.0, 300.0], slots.size),
        tolerance=rng.choice([0.0, 0.01, 0.02, 0.05], slots.size),
    )


def drift(slots: np.ndarray, rng: np.random.Generator) -> SequentialDetector:
    n = slots.size
    sign = rng.choice([1.0, -1.0], n)
    return Drift(
        slots,
        sign=sign,
        reference=np.where(rng.random(n) < 0.5, np.nan, rng.uniform(-0.05, 0.05, n)),
        warmup=rng.integers(0, 40, n),
        slack=rng.choice([0.0, 0.005, 0.01, 0.02], n),
        limit=rng.choice([0.05, 0.2, 0.5], n),
        ignore_beyond=np.where(rng.random(n) < 0.3, np.inf * sign, sign * rng.uniform(0.0, 0.3, n)),
    )


def anomaly(slots: np.ndarray, rng: np.random.Generator) -> SequentialDetector:
    n = slots.size
    z_off = rng.uniform(0.5, 3.0, n)
    return Anomaly(
        slots,
        alpha=rng.choice([0.01, 0.05, 0.3], n),
        z_on=z_off + rng.uniform(0.0, 5.0, n),
        z_off=z_off,
        warmup=rng.integers(0, 40, n),
        min_std=rng.choice([0.002, 0.01, 0.05], n),
    )


FACTORIES: dict[str, Factory] = {
    "out_of_range": out_of_range,
    "stuck": stuck,
    "drift": drift,
    "anomaly": anomaly,
}


def batch(rng: np.random.Generator, n: int, n_slots: int, t0: float, level: np.ndarray) -> Samples:
    """`n` readings of random slots, each slot a random walk quantised to 0.01 (so values repeat)."""
    slot = rng.integers(0, n_slots, n).astype(np.int32)
    if rng.random() < 0.3:  # runs of one slot, as a recording's chunk or a gateway's backlog
        slot = np.sort(slot, kind="stable")
    step = rng.choice([0.0, 0.01, -0.01, 0.0], n) + np.where(rng.random(n) < 0.2, rng.normal(0, 0.05, n), 0.0)
    step += np.where(rng.random(n) < 0.02, rng.choice([-1.0, 1.0], n), 0.0)  # an occasional alarm-level jump
    x = np.empty(n)
    for s in range(n_slots):
        mine = slot == s
        x[mine] = level[s] + np.cumsum(step[mine])
        if mine.any():
            level[s] = x[mine][-1]
    x = np.round(x, 2)
    t = t0 + np.cumsum(rng.choice([0.0, 1.0, 5.0, 30.0], n))
    return Samples(slot, t, x)


def assert_same_hits(fast: Hits, slow: Hits) -> None:
    assert fast.unit.tolist() == slow.unit.tolist()
    assert fast.ts.tolist() == slow.ts.tolist()
    assert fast.raised.tolist() == slow.raised.tolist()
    assert fast.value.tolist() == slow.value.tolist()


def assert_same_state(fast: SequentialDetector, slow: SequentialDetector) -> None:
    a, b = fast.snapshot(), slow.snapshot()
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name], b[name], equal_nan=True), name


@pytest.mark.parametrize("name", sorted(FACTORIES))
@PROPERTY
@given(
    seed=st.integers(0, 2**32 - 1),
    n_slots=st.integers(1, 4),
    units_per_slot=st.integers(1, 2),
    sizes=st.lists(st.integers(1, 300), min_size=1, max_size=4),
)
def test_scan_equals_rounds(
    name: str, seed: int, n_slots: int, units_per_slot: int, sizes: list[int]
) -> None:
    rng = np.random.default_rng(seed)
    slots = np.repeat(np.arange(n_slots), units_per_slot)
    fast = FACTORIES[name](slots, rng)
    slow = fast.clone()
    level = rng.uniform(-0.05, 0.05, n_slots)
    t0 = 0.0
    for n in sizes:
        samples = batch(rng, n, n_slots, t0, level)
        t0 = float(samples.ts[-1]) + 1.0
        assert_same_hits(fast.update(samples), slow.update_by_rounds(samples))
        assert_same_state(fast, slow)
        if rng.random() < 0.3:  # a person cleared an alarm, or the store warm-starts one
            units = rng.choice(fast.n_units, size=rng.integers(1, fast.n_units + 1), replace=False)
            clear = rng.random() < 0.5
            for bank in (fast, slow):
                bank.reset(units) if clear else bank.set_active(units)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_a_long_benign_run_takes_the_scan(name: str) -> None:
    """After warm-up, a chunk of a quiet recording never falls back to rounds."""
    rng = np.random.default_rng(3)
    bank = FACTORIES[name](np.array([0, 1]), rng)
    if isinstance(bank, Anomaly):
        bank = Anomaly([0, 1], alpha=0.002, z_on=8.0, z_off=4.0, warmup=60, min_std=0.5)
    if isinstance(bank, Drift):
        bank = Drift([0, 1], sign=1.0, reference=np.nan, warmup=30, slack=0.01, limit=0.5, ignore_beyond=0.08)
    n = 2000
    t = np.repeat(np.arange(n, dtype=np.float64), 2)
    x = 0.02 + rng.normal(0, 0.002, 2 * n)
    warm = Samples(np.tile(np.arange(2, dtype=np.int32), 40), t[:80], x[:80])
    bank.update(warm)
    rest = Samples(np.tile(np.arange(2, dtype=np.int32), n - 40), t[80:], x[80:])
    with mock.patch.object(type(bank), "update_by_rounds", side_effect=AssertionError("fell back to rounds")):
        bank.update(rest)


@PROPERTY
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 400),
    restart_p=st.sampled_from([0.0, 0.05, 0.5, 1.0]),
    n_terms=st.integers(1, 3),
)
def test_restarted_sums_add_as_a_loop_does(seed: int, n: int, restart_p: float, n_terms: int) -> None:
    rng = np.random.default_rng(seed)
    begins = rng.random(n) < restart_p
    if n:
        begins[0] = True
    init = rng.normal(0, 1e3, int(begins.sum())) * (rng.random(int(begins.sum())) < 0.5)
    terms = [rng.normal(0, 10.0 ** rng.integers(-8, 8), n) for _ in range(n_terms)]
    expected = []
    value, which = 0.0, -1
    for i in range(n):
        if begins[i]:
            which += 1
            value = float(init[which])
        for term in terms:
            value = value + float(term[i])
        expected.append(value)
    assert restarted_sums(init, begins, *terms).tolist() == expected


@pytest.mark.parametrize("name", sorted(FACTORIES))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), backlog=st.integers(300, 1500), n_batches=st.integers(1, 3))
def test_a_backlog_among_live_devices_equals_rounds(
    name: str, seed: int, backlog: int, n_batches: int
) -> None:
    """One slot's long run among 200 slots of a reading or two: the runs are scanned in groups of
    similar length (one grid would be mostly padding), and a group that declines sends the whole
    batch, already scanned groups undone, to rounds."""
    rng = np.random.default_rng(seed)
    n_slots = 200
    fast = FACTORIES[name](np.arange(n_slots), rng)
    slow = fast.clone()
    level = rng.uniform(-0.05, 0.05, n_slots)
    t0 = 0.0
    for _ in range(n_batches):
        live = batch(rng, 300, n_slots, t0, level)
        long = batch(rng, backlog, 1, t0, level[:1].copy())
        slot = np.concatenate([live.slot, long.slot])
        order = rng.permutation(slot.size)
        samples = Samples(
            slot[order],
            np.concatenate([live.ts, long.ts])[order],
            np.concatenate([live.value, long.value])[order],
        )
        t0 = float(samples.ts.max()) + 1.0
        assert_same_hits(fast.update(samples), slow.update_by_rounds(samples))
        assert_same_state(fast, slow)


def test_a_group_that_declines_undoes_the_groups_scanned_before_it() -> None:
    """Drift: 199 warm units with a reading or two are scanned first, then the backlog's unit, still
    learning its reference, declines; the batch goes by rounds from the state before it."""
    rng = np.random.default_rng(11)
    n_slots = 200
    warmup = np.r_[5000, np.zeros(n_slots - 1, dtype=np.int64)]
    fast = Drift(
        np.arange(n_slots),
        sign=1.0,
        reference=np.nan,
        warmup=warmup,
        slack=0.0,
        limit=0.05,
        ignore_beyond=1.0,
    )
    slow = fast.clone()
    level = np.zeros(n_slots)
    for t0 in (0.0, 1e6):
        live = batch(rng, 300, n_slots, t0, level)
        long = batch(rng, 1500, 1, t0, level[:1].copy())
        samples = Samples(
            np.concatenate([live.slot, long.slot]),
            np.concatenate([live.ts, long.ts]),
            np.concatenate([live.value, long.value]),
        )
        with mock.patch.object(Drift, "restore", autospec=True, side_effect=Drift.restore) as restore:
            assert_same_hits(fast.update(samples), slow.update_by_rounds(samples))
        assert restore.called
        assert_same_state(fast, slow)
