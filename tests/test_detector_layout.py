"""How a bank lays out its units: parameters as a table of rows with a row per unit, and the slot
routing sized to what the bank covers. Neither may change what a bank decides."""

from __future__ import annotations

import numpy as np
import pytest

from core.registry import BuildingSpec, Device, FloorSpec, Registry, SiteSpec, ZoneSpec
from detectors.base import Detector
from detectors.catalog import DETECTOR_TYPES
from detectors.engine import Engine
from detectors.samples import Samples
from detectors.threshold import Threshold
from device_profiles.loader import load_profiles
from ingest.index import DeviceIndex

T0 = 1_800_000_000.0


def reference_route(unit_slot: np.ndarray, slot: np.ndarray) -> list[tuple[int, int]]:
    """(unit, sample) pairs by sample in arrival order, a slot's units in ascending unit order."""
    return [(u, j) for j, s in enumerate(slot.tolist()) for u in np.flatnonzero(unit_slot == s).tolist()]


@pytest.mark.parametrize(
    ("unit_slot", "mode"),
    [
        (np.array([5, 3, 4, 9, 7]), "direct"),  # one unit per slot, most slots of the span covered
        (np.array([5, 3, 5, 9, 3, 3, 7]), "csr"),  # several units on a slot (threshold levels)
        (np.array([40_000, 7, 900, 7, 123_456]), "search"),  # a few units over a wide span
        (np.array([2_000_000_000, 2_000_000_001]), "direct"),  # high slots: sized to the span only
    ],
)
def test_routing_finds_every_unit_of_a_slot_in_every_layout(unit_slot: np.ndarray, mode: str) -> None:
    bank = Threshold(unit_slot, sign=1.0, at=57.0, clear=50.0, for_s=0.0, repeat=1)
    assert bank._mode == mode
    rng = np.random.default_rng(7)
    candidates = np.concatenate([unit_slot, unit_slot + 1, unit_slot - 1, [-1, 0, 2**31 - 1]])
    for _ in range(20):
        slot = rng.choice(candidates, size=rng.integers(0, 12)).astype(np.int32)
        samples = Samples(slot, np.zeros(slot.size), np.zeros(slot.size))
        unit, j = bank.route(samples)
        assert unit.dtype == np.int64
        assert j.dtype == np.int64
        assert list(zip(unit.tolist(), j.tolist(), strict=True)) == reference_route(unit_slot, slot)


def test_a_bank_holds_no_entry_per_slot_below_the_lowest_it_covers() -> None:
    bank = Threshold(np.arange(1_000_000, 1_000_010), sign=1.0, at=57.0, clear=50.0, for_s=0.0, repeat=1)
    assert bank._unit_at.size == 10


@pytest.mark.parametrize("cls", DETECTOR_TYPES, ids=lambda c: c.type_name)
def test_parameters_as_rows_decide_exactly_as_parameters_per_unit(cls: type[Detector]) -> None:
    """A bank whose units share rows of a parameter table (as compiled from profiles) gives the same
    transitions and state, bit for bit, as the same parameters given per unit."""
    ex = cls.example()
    per_unit = ex.detector
    n = per_unit.n_units
    # Rows in another order than the units, one unused row: the table is not the per-unit arrays.
    row = np.arange(n)[::-1].copy()
    tables = {k: np.concatenate([v[::-1], v[:1]]) for k, v in per_unit.params.items()}
    by_row = cls(per_unit.unit_slot, row=row, **tables)
    assert all(by_row.params[k].size == n for k in tables)  # the unused row is dropped
    for k in tables:
        np.testing.assert_array_equal(by_row.unit_params(k), per_unit.unit_params(k))
    rng = np.random.default_rng(11)
    for readings in (ex.normal(40, rng), ex.incident(60, rng)):
        t, x = readings
        slot = np.broadcast_to(per_unit.unit_slot, t.shape).ravel()
        samples = Samples(slot.astype(np.int32), t.ravel(), x.ravel())
        a, b = per_unit.update(samples), by_row.update(samples)
        for field in ("unit", "ts", "value", "raised"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        for name, state in per_unit.state.items():
            np.testing.assert_array_equal(state, by_row.state[name])


@pytest.mark.parametrize("row", [[0, 2], [0, -1]])
def test_a_row_past_the_tables_is_refused(row: list[int]) -> None:
    with pytest.raises(ValueError, match="past the parameter tables"):
        Threshold(
            [0, 1],
            row=row,
            sign=[1.0, 1.0],
            at=[57.0, 60.0],
            clear=[50.0, 50.0],
            for_s=[0.0, 0.0],
            repeat=[1, 1],
        )


def shipped_index(per_profile: int = 3) -> DeviceIndex:
    profiles = load_profiles()
    zone = ZoneSpec(id="z1", name="1区")
    site = SiteSpec(
        id="s",
        name="s",
        buildings=[BuildingSpec(id="b", name="b", floors=[FloorSpec(id="f1", name="1F", zones=[zone])])],
    )
    devices = [
        Device(id=f"{p}-{i}", profile=p, place="s/b/f1/z1")
        for p in sorted(profiles)
        for i in range(per_profile)
    ]
    return DeviceIndex.build(Registry([site], devices), profiles)


def test_an_engine_compiled_to_rows_decides_as_one_with_parameters_per_unit() -> None:
    """Every shipped profile's detectors, compiled to parameter rows, against the same banks given
    their parameters per unit: the same events, in the same order, over readings that cross levels."""
    index = shipped_index()
    by_rows = Engine(index, start=T0)
    per_unit = Engine(index, start=T0)
    for bank in per_unit.banks:
        d = bank.detector
        bank.detector = type(d)(d.unit_slot, **{k: d.unit_params(k) for k in d.params})
        assert all(t.size == d.n_units for t in bank.detector.params.values())
    rng = np.random.default_rng(3)
    lo, hi = index.slot_lo, index.slot_hi
    seen = 0
    for k in range(120):
        # Most readings mid-range, a few near or past either end; some slots twice in a batch.
        slot = rng.choice(index.n_slots, size=2 * index.n_slots).astype(np.int32)
        where = rng.choice([0.5, 0.02, 0.98, 1.0, 0.0], size=slot.size, p=[0.6, 0.1, 0.1, 0.1, 0.1])
        value = lo[slot] + where * (hi[slot] - lo[slot]) + rng.normal(0, 0.01, slot.size)
        samples = Samples.of(slot, T0 + 10.0 * k + rng.uniform(0, 5, slot.size), value, index.n_slots)
        a, b = by_rows.process_samples(samples), per_unit.process_samples(samples)
        assert a == b
        seen += len(a)
    assert seen > 100  # the readings did cross levels both ways


def test_a_snapshot_saved_with_64_bit_unit_devices_resumes_every_unit_warm() -> None:
    """Snapshots written before unit devices were int32 (format 2 all the same) are read as they are."""
    index = shipped_index()
    engine = Engine(index, start=T0)
    state = engine.snapshot()
    for key in [k for k in state if k.endswith("/dev")]:
        assert state[key].dtype == np.int32
        state[key] = state[key].astype(np.int64)
    assert Engine(index, start=T0).restore(state) == engine.n_units
