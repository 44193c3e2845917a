"""The pipeline's telemetry series: append-only, a series per (device, channel) ever bound, kept in
columns. Bound to a changed registry, every slot names the series of its own (device, channel), old
series keep their slots, and new ones follow in slot order."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from core.registry import Device, Registry
from ingest.index import DeviceIndex
from ingest.series import SeriesTable
from tests.conftest import PROFILES, small_registry


def index_of(registry: Registry) -> DeviceIndex:
    return DeviceIndex.build(registry, PROFILES)


def reference_binding(
    keys: list[tuple[str, str]], index: DeviceIndex
) -> tuple[list[tuple[str, str]], list[int]]:
    """The table and the slots as a dictionary by (device, channel) binds them."""
    position = {k: i for i, k in enumerate(keys)}
    wanted = index.series_keys()
    new = [k for k in wanted if k not in position]
    position.update((k, len(keys) + i) for i, k in enumerate(new))
    return [*keys, *new], [position[k] for k in wanted]


def test_at_first_the_series_are_the_index_slots_without_a_copy() -> None:
    index = index_of(small_registry())
    table = SeriesTable.of_index(index)
    assert list(table.keys()) == index.series_keys()
    assert table.device is index.slot_device
    same, slots = table.bound_to(index)
    assert same is table
    assert slots.tolist() == list(range(index.n_slots))


def test_a_changed_registry_appends_its_new_series_and_keeps_every_old_one_in_its_slot() -> None:
    first = small_registry(zones=2, smoke_per_zone=2)
    table = SeriesTable.of_index(index_of(first))
    before = list(table.keys())
    # A device gone, one added (sorting first), one given another profile.
    changed = (
        first.without_device("prs-1")
        .with_device(Device(id="a-new", profile="t-smoke", place="s1/b1/f1/z1"))
        .replacing_device(Device(id="smk-2-1", profile="t-pressure", place="s1/b1/f1/z2"))
    )
    index = index_of(changed)
    bound, slots = table.bound_to(index)
    keys = list(bound.keys())
    assert keys[: len(before)] == before  # old series keep their slots, the gone device's too
    assert [keys[s] for s in slots.tolist()] == index.series_keys()
    assert keys[len(before) :] == [("a-new", "smoke"), ("a-new", "temp"), ("smk-2-1", "pressure")]
    assert list(table.keys()) == before  # the first table is unchanged (stored batches name it)


def test_binding_through_a_series_of_changes_matches_a_dictionary_by_device_and_channel() -> None:
    registry = small_registry(zones=3, smoke_per_zone=3)
    table = SeriesTable.of_index(index_of(registry))
    keys = index_of(registry).series_keys()
    changes: list[Callable[[Registry], Registry]] = [
        lambda r: r.without_device("smk-1-2"),
        lambda r: r.with_device(Device(id="smk-1-2", profile="t-pressure", place="s1/b1/f1/z1")),
        lambda r: r.without_device("prs-1").without_device("smk-3-3"),
        lambda r: r.with_device(Device(id="prs-1", profile="t-pressure", place="s1/b1/f1/z2")),
        lambda r: r.replacing_device(Device(id="smk-1-2", profile="t-smoke", place="s1/b1/f1/z3")),
    ]
    for change in changes:
        registry = change(registry)
        index = index_of(registry)
        table, slots = table.bound_to(index)
        keys, want = reference_binding(keys, index)
        assert list(table.keys()) == keys
        np.testing.assert_array_equal(slots, want)
