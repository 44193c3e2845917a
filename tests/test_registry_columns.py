"""The registry holds devices as columns and makes a `Device` when one is looked up: what it gives
back is what pydantic would have validated, by id (`registry.devices`, `.specs`, `.locations`) and
by device index (`index.devices`, `.locations`); a registry file the columns do not take is
validated by pydantic, whose messages name the device and the field."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.device_columns import Values
from core.registry import Device, RegistryError, load_registry
from ingest.index import DeviceIndex
from storage.registry_sync import device_row, device_rows
from tests.conftest import PROFILES, small_registry
from tests.registry_documents import validated, written

SITES = small_registry().to_json()


def document(*devices: dict[str, Any]) -> dict[str, Any]:
    return {"sites": json.loads(SITES)["sites"], "devices": list(devices)}


FULL = {
    "id": "smk-9",
    "profile": "t-smoke",
    "place": "s1/b1/f1/z2/r201",
    "name": "走廊烟感",
    "department": "急诊科",
    "responsible": "王五",
    "installed": "2024-03-01",
    "position": [1, 2.5],
    "tags": ["corridor", "night"],
    "gateway": "gw-1f",
}
BARE = {"id": "smk-8", "profile": "t-smoke", "place": "s1/b1/f1/z1"}
NULLS = {
    "id": "prs-9",
    "profile": "t-pressure",
    "place": "s1/b1/f1/z1/r101",
    "installed": None,
    "position": None,
}


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_registry_read_into_columns_gives_the_devices_pydantic_would(tmp_path: Path, suffix: str) -> None:
    doc = document(FULL, BARE, NULLS)
    loaded = load_registry(written(tmp_path, doc, suffix))
    reference = validated(doc)
    assert list(loaded.specs) == ["smk-9", "smk-8", "prs-9"]
    assert loaded.specs == reference.specs
    assert loaded.devices == reference.devices
    assert loaded.locations == reference.locations
    for device_id in loaded.specs:
        assert loaded.specs[device_id].model_fields_set == reference.specs[device_id].model_fields_set
    full = loaded.devices["smk-9"]
    assert full.installed == date(2024, 3, 1)
    assert full.position == (1.0, 2.5)
    assert full.tags == ["corridor", "night"]
    assert loaded.devices["smk-8"].department == "心内科"  # inherited from its zone
    assert loaded.specs["smk-8"].department == ""  # as specified
    assert loaded.specs["smk-8"].model_dump(exclude_unset=True) == BARE


def test_the_index_reads_devices_and_locations_by_device_index() -> None:
    registry = validated(document(FULL, BARE, NULLS))
    index = DeviceIndex.build(registry, PROFILES)
    assert index.device_ids == ["prs-9", "smk-8", "smk-9"]
    assert list(index.devices) == [registry.devices[d] for d in index.device_ids]
    assert [index.devices[i] for i in range(3)] == [registry.devices[d] for d in index.device_ids]
    assert list(index.locations) == [registry.locations[d] for d in index.device_ids]
    assert index.locations[2].room == "r201"
    assert index.places == ["s1/b1/f1/z1/r101", "s1/b1/f1/z1", "s1/b1/f1/z2/r201"]
    assert index.gateways == ["", "", "gw-1f"]
    assert index.sites == ["s1", "s1", "s1"]


@pytest.mark.parametrize(
    ("device", "problem"),
    [
        ({**BARE, "id": "smk/8"}, r"devices\.0\.id"),
        ({**BARE, "name": 7}, r"devices\.0\.name"),
        ({**BARE, "colour": "red"}, r"devices\.0\.colour"),
        ({**BARE, "position": [1, 2, 3]}, r"devices\.0\.position"),
        ({**BARE, "installed": "2024-02-30"}, r"devices\.0\.installed"),
        ({**BARE, "tags": "corridor"}, r"devices\.0\.tags"),
        ({**BARE, "gateway": "gw 1"}, r"devices\.0\.gateway"),
        ({"id": "smk-8", "place": "s1/b1/f1/z1"}, r"devices\.0\.profile"),
    ],
)
@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_device_the_columns_do_not_take_is_reported_by_pydantic(
    tmp_path: Path, suffix: str, device: dict[str, Any], problem: str
) -> None:
    with pytest.raises(RegistryError, match=rf"(?s)registry{suffix}.*{problem}"):
        load_registry(written(tmp_path, document(device), suffix))


def test_values_pydantic_reads_leniently_still_load(tmp_path: Path) -> None:
    """A YAML position of two strings is not the columns' form; pydantic reads it as before."""
    doc = document({**BARE, "position": ["1.5", "2"]})
    assert load_registry(written(tmp_path, doc, ".yaml")).devices["smk-8"].position == (1.5, 2.0)


def test_registry_problems_name_the_device(tmp_path: Path) -> None:
    doc = document(BARE, {**BARE, "place": "s1/b1/f1/z9"}, {**FULL, "place": "s1/b1"})
    with pytest.raises(RegistryError) as caught:
        load_registry(written(tmp_path, doc, ".json"))
    assert str(caught.value).startswith(str(tmp_path / "registry.json"))
    assert [(i.device_id, i.message) for i in caught.value.issues] == [
        ("smk-8", "device 'smk-8' is listed twice"),
        ("smk-9", "device 'smk-9': place 's1/b1' is a building, not a zone or room"),
    ]


def test_edits_keep_the_order_and_equal_a_registry_built_from_devices() -> None:
    base = validated(document(FULL, BARE, NULLS))
    added = Device(id="smk-new", profile="t-smoke", place="s1/b1/f1/z1/r101", tags=["新"], position=(3, 4))
    grown = base.with_device(added)
    assert list(grown.specs) == ["smk-9", "smk-8", "prs-9", "smk-new"]
    assert grown.specs == base.with_devices([*base.specs.values(), added]).specs
    moved = base.specs["smk-8"].model_copy(update={"place": "s1/b1/f1/z2"})
    replaced = base.replacing_device(moved)
    assert list(replaced.specs) == ["smk-9", "smk-8", "prs-9"]
    assert replaced.devices["smk-8"].department == "心内科"
    assert replaced.locations["smk-8"].zone == "z2"
    assert base.locations["smk-8"].zone == "z1"  # the registry it came from is unchanged
    shrunk = base.without_device("smk-9")
    assert list(shrunk.specs) == ["smk-8", "prs-9"]
    assert shrunk.devices == {d: base.devices[d] for d in ("smk-8", "prs-9")}


def test_device_keys_are_equal_exactly_when_the_devices_are() -> None:
    base = validated(document(FULL, BARE, NULLS))
    same = validated(document(FULL, BARE, NULLS))
    renamed = base.replacing_device(base.specs["smk-9"].model_copy(update={"name": "另一个"}))
    for device_id in base.devices:
        assert base.device_key(device_id) == same.device_key(device_id)
    assert renamed.device_key("smk-9") != base.device_key("smk-9")
    assert renamed.device_key("smk-8") == base.device_key("smk-8")


def test_mirror_rows_made_from_columns_are_the_rows_of_each_device() -> None:
    registry = validated(document(FULL, BARE, NULLS))
    assert device_rows(registry, PROFILES) == {d: device_row(registry, PROFILES, d) for d in registry.devices}


def test_values_are_coded_in_order_of_first_appearance() -> None:
    table = Values(["a"])
    codes = table.encode(["b", "a", "c", "b"], 4)
    assert codes.tolist() == [1, 0, 2, 1]
    assert codes.dtype == np.int32
    assert table.items == ["a", "b", "c"]
    assert table.encode([("x",), "c"], 2).tolist() == [3, 2]


@pytest.mark.parametrize("made", [False, True])
def test_codes_of_values_are_found_or_added_with_or_without_the_dictionary(made: bool) -> None:
    table = Values(["a", "b", ("t",)])
    if made:
        assert table.code("b") == 1  # makes the dictionary
    assert table.codes_of(["b", "z", ("t",), "z", "a"]) == [1, 3, 2, 3, 0]
    assert table.items == ["a", "b", ("t",), "z"]
    assert table.code("z") == 3
    assert table.encode(["y", "z"], 2).tolist() == [4, 3]


def test_a_yaml_date_reads_as_the_same_installation_date(tmp_path: Path) -> None:
    doc = document({**BARE, "installed": date(2024, 3, 1)})  # YAML writes it unquoted: a YAML date
    path = written(tmp_path, doc, ".yaml")
    assert "installed: 2024-03-01" in path.read_text(encoding="utf-8")
    assert load_registry(path).devices["smk-8"].installed == date(2024, 3, 1)
