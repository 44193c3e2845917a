"""One conformance suite for every registered detector type (detectors.catalog.DETECTOR_TYPES).

A new detector registered there gets these tests without new code (STYLE.md, river's checks):
snapshot round trip, batch path equals one-reading-at-a-time path, no aliasing of inputs, bounded
memory, safe before warm-up, clones independent — plus that its own example behaves: benign data
raises nothing, the incident raises every unit.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from detectors.base import Detector, Example, Hits
from detectors.catalog import DETECTOR_TYPES
from detectors.samples import Samples

ROUNDS = 120


def as_samples(t: np.ndarray, x: np.ndarray) -> Samples:
    """(rounds, units) readings as one batch in time order: round by round, every unit in turn."""
    rounds, units = t.shape
    slot = np.tile(np.arange(units, dtype=np.int32), rounds)
    return Samples(slot, t.reshape(-1).copy(), x.reshape(-1).copy())


def rows(hits: Hits) -> list[tuple[int, float, bool, float]]:
    return sorted(
        zip(hits.unit.tolist(), hits.ts.tolist(), hits.raised.tolist(), hits.value.tolist(), strict=True)
    )


def same_state(a: Detector, b: Detector) -> bool:
    sa, sb = a.snapshot(), b.snapshot()
    return sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k], equal_nan=True) for k in sa)


def example(cls: type[Detector]) -> Example:
    return cls.example()


@pytest.fixture(params=DETECTOR_TYPES, ids=lambda c: c.type_name)
def ex(request: pytest.FixtureRequest) -> Example:
    return example(request.param)


def test_benign_readings_raise_nothing(ex: Example) -> None:
    rng = np.random.default_rng(1)
    hits = ex.detector.update(as_samples(*ex.normal(ROUNDS, rng)))
    assert len(hits) == 0, rows(hits)[:5]


def test_the_incident_raises_every_unit(ex: Example) -> None:
    rng = np.random.default_rng(2)
    hits = ex.detector.update(as_samples(*ex.incident(ROUNDS, rng)))
    raised = set(hits.unit[hits.raised].tolist())
    assert raised == set(range(ex.detector.n_units))
    assert np.isfinite(hits.value).all()


def test_a_batch_gives_the_same_transitions_and_state_as_one_reading_at_a_time(ex: Example) -> None:
    t, x = ex.incident(ROUNDS, np.random.default_rng(3))
    whole = as_samples(t, x)
    batched = ex.detector.clone()
    single = ex.detector.clone()
    batch_hits = batched.update(whole)
    one_by_one = Hits.concat(
        [
            single.update(Samples(whole.slot[i : i + 1], whole.ts[i : i + 1], whole.value[i : i + 1]))
            for i in range(len(whole))
        ]
    )
    assert rows(batch_hits) == rows(one_by_one)
    assert same_state(batched, single)


def test_uneven_batches_give_the_same_result_as_one_batch(ex: Example) -> None:
    whole = as_samples(*ex.incident(ROUNDS, np.random.default_rng(4)))
    one = ex.detector.clone()
    pieces = ex.detector.clone()
    expected = rows(one.update(whole))
    cuts = [0, 1, 7, 50, 51, 200, len(whole)]
    got = Hits.concat(
        [
            pieces.update(Samples(whole.slot[a:b], whole.ts[a:b], whole.value[a:b]))
            for a, b in itertools.pairwise(cuts)
        ]
    )
    assert rows(got) == expected
    assert same_state(one, pieces)


def test_a_snapshot_restored_into_a_clone_continues_identically(ex: Example) -> None:
    rng = np.random.default_rng(5)
    t, x = ex.incident(ROUNDS, rng)
    first, rest = (
        as_samples(t[: ROUNDS // 2], x[: ROUNDS // 2]),
        as_samples(t[ROUNDS // 2 :], x[ROUNDS // 2 :]),
    )
    original = ex.detector.clone()
    original.update(first)
    restored = ex.detector.clone()
    restored.restore(original.snapshot())
    assert rows(original.update(rest)) == rows(restored.update(rest))
    assert same_state(original, restored)


def test_a_snapshot_is_a_copy_not_a_view(ex: Example) -> None:
    det = ex.detector.clone()
    snap = det.snapshot()
    det.update(as_samples(*ex.incident(ROUNDS, np.random.default_rng(6))))
    fresh = ex.detector.clone()
    assert all(np.array_equal(snap[k], fresh.snapshot()[k], equal_nan=True) for k in snap)


def test_a_mismatched_snapshot_is_refused(ex: Example) -> None:
    det = ex.detector.clone()
    snap = det.snapshot()
    name = next(iter(snap))
    snap[name] = np.concatenate([snap[name], snap[name]])
    with pytest.raises(ValueError, match="snapshot"):
        det.restore(snap)


def test_inputs_are_neither_modified_nor_kept(ex: Example) -> None:
    whole = as_samples(*ex.incident(ROUNDS, np.random.default_rng(7)))
    slot, ts, value = whole.slot.copy(), whole.ts.copy(), whole.value.copy()
    det = ex.detector.clone()
    det.update(whole)
    assert np.array_equal(slot, whole.slot)
    assert np.array_equal(ts, whole.ts)
    assert np.array_equal(value, whole.value)
    after = det.snapshot()
    whole.value[:] = 1e6
    whole.ts[:] = -1.0
    assert all(np.array_equal(after[k], det.snapshot()[k], equal_nan=True) for k in after)


def test_memory_is_bounded_by_the_units_not_the_readings(ex: Example) -> None:
    det = ex.detector.clone()
    size = det.state_bytes()
    rng = np.random.default_rng(8)
    for _ in range(5):
        det.update(as_samples(*ex.normal(ROUNDS, rng)))
    assert det.state_bytes() == size
    assert sum(a.nbytes for a in det.state.values()) == size


def test_safe_before_warm_up(ex: Example) -> None:
    det = ex.detector.clone()
    assert len(det.update(Samples(np.zeros(0, np.int32), np.zeros(0), np.zeros(0)))) == 0
    t, x = ex.normal(1, np.random.default_rng(9))
    assert len(det.update(as_samples(t, x))) == 0
    other_slots = Samples(np.array([10_000], np.int32), np.array([0.0]), np.array([1.0]))
    assert len(det.update(other_slots)) == 0  # a slot with no unit is ignored


def test_clones_are_independent_and_parameter_identical(ex: Example) -> None:
    original = ex.detector.clone()
    clone = original.clone()
    assert repr(clone) == repr(original)
    original.update(as_samples(*ex.incident(ROUNDS, np.random.default_rng(10))))
    assert same_state(clone, ex.detector.clone())
    for name, value in clone.params.items():
        assert value is not original.params[name]
        assert np.array_equal(value, original.params[name], equal_nan=True)


def test_reset_returns_units_to_their_initial_state(ex: Example) -> None:
    det = ex.detector.clone()
    det.update(as_samples(*ex.incident(ROUNDS, np.random.default_rng(11))))
    det.reset(np.arange(det.n_units))
    assert same_state(det, ex.detector.clone())


def test_every_detector_type_has_a_unique_name() -> None:
    names = [c.type_name for c in DETECTOR_TYPES]
    assert len(names) == len(set(names))
