"""The registry holds its place tree as columns and makes a `Place` or `SiteSpec` when one is asked
for: what it gives back is what pydantic would have validated; a tree the columns do not take is
validated by pydantic, whose messages name the field; and the registry is exported from the columns
to exactly the text the pydantic models dump."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import core.registry
from core.registry import (
    Device,
    Place,
    PlaceKind,
    Registry,
    RegistryError,
    SiteSpec,
    dump_registry,
    dump_registry_json,
    load_registry,
)
from simulators.hospital import hospital_for_devices
from tests.registry_documents import validated, written

ROOM = {"id": "r101", "name": "101 病房", "tags": ["ward", "night"]}
LAB = {"id": "lab", "name": "检验科实验室", "department": "检验科", "tags": []}
BARE_ROOM = {"id": "r102", "name": ""}
ZONE = {"id": "z1", "name": "东区", "department": "心内科", "rooms": [ROOM, LAB, BARE_ROOM]}
SITES: list[dict[str, Any]] = [
    {
        "id": "s1",
        "name": "医院",
        "buildings": [
            {
                "id": "b1",
                "name": "住院楼",
                "floors": [
                    {"id": "f1", "name": "1F", "zones": [ZONE, {"id": "z2", "name": "西区"}]},
                    {"id": "f2", "name": "2F", "zones": []},
                ],
            },
            {"id": "b2", "name": "门诊楼"},
        ],
    },
    {
        "id": "s2",
        "name": "分院",
        "buildings": [{"id": "b1", "name": "住院楼", "floors": [{"id": "f1", "name": "1F"}]}],
    },
]
DEVICES = [
    {"id": "smk-1", "profile": "t-smoke", "place": "s1/b1/f1/z1/r101"},
    {"id": "smk-2", "profile": "t-smoke", "place": "s1/b1/f1/z1/lab", "department": "急诊科"},
    {"id": "smk-3", "profile": "t-smoke", "place": "s1/b1/f1/z2"},
]


def document(sites: list[dict[str, Any]] = SITES) -> dict[str, Any]:
    return {"sites": sites, "devices": DEVICES}


def models(sites: list[SiteSpec]) -> list[tuple[BaseModel, set[str]]]:
    """Every model of a tree with the fields it was given, in walk order."""
    found: list[tuple[BaseModel, set[str]]] = []

    def walk(spec: BaseModel) -> None:
        found.append((spec, set(spec.model_fields_set)))
        for key in ("buildings", "floors", "zones", "rooms"):
            for child in getattr(spec, key, []):
                walk(child)

    for site in sites:
        walk(site)
    return found


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_tree_read_into_columns_gives_the_places_and_sites_pydantic_would(
    tmp_path: Path, suffix: str
) -> None:
    loaded = load_registry(written(tmp_path, document(), suffix))
    reference = validated(document())
    assert loaded.sites == reference.sites
    assert models(loaded.sites) == models(reference.sites)  # the same fields given, place by place
    assert dict(loaded.places.items()) == dict(reference.places.items())
    assert list(loaded.places) == list(reference.places)  # in walk order
    assert loaded.places == reference.places
    assert loaded.devices == reference.devices


def test_places_are_made_with_their_kind_parent_and_department_in_effect() -> None:
    registry = validated(document())
    assert registry.places["s1/b1/f1/z1/r101"] == Place(
        "s1/b1/f1/z1/r101", PlaceKind.ROOM, "r101", "101 病房", "s1/b1/f1/z1", "心内科"
    )
    assert registry.places["s1/b1/f1/z1/lab"].department == "检验科"
    assert registry.places["s1"] == Place("s1", PlaceKind.SITE, "s1", "医院", None, "")
    assert registry.places["s2/b1/f1"].parent == "s2/b1"
    assert "s1/b2" in registry.places
    assert "s1/b3" not in registry.places
    assert 7 not in registry.places  # type: ignore[comparison-overlap]  # any key, as a dict
    assert len(registry.places) == 13
    with pytest.raises(KeyError):
        registry.places["s1/b9"]
    assert [p.path for p in registry.ancestors("s1/b1/f1/z1/lab")] == [
        "s1/b1/f1/z1/lab",
        "s1/b1/f1/z1",
        "s1/b1/f1",
        "s1/b1",
        "s1",
    ]
    assert list(registry.ancestors("s9")) == []
    assert list(registry.places.values()) == [registry.places[path] for path in registry.places]
    assert list(registry.places.items()) == [(path, registry.places[path]) for path in registry.places]
    assert registry.places["s1/b1/f1/z2"] in registry.places.values()
    assert ("s1", registry.places["s1"]) in registry.places.items()
    fields = registry.places.fields()
    assert [Place(*values) for values in zip(*fields, strict=True)] == list(registry.places.values())
    assert fields.department[fields.path.index("s1/b1/f1/z1/r101")] == "心内科"
    assert registry.place_names == {path: place.name for path, place in registry.places.items()}
    assert registry.place_names.get("s1/b1/f1/z1/lab") == "检验科实验室"
    assert registry.place_names.get("s1/b9") is None
    assert registry.place_names.get("s1/b9", "b9") == "b9"
    assert registry.department_of("s1/b1/f1/z1/r101") == "心内科"
    assert registry.department_of("s1/b1/f1/z1/lab") == "检验科"
    assert registry.department_of("s1/b1/f1/z2") == ""
    assert registry.department_of("s1/b1") == ""
    assert registry.department_of("s9") == ""
    assert registry.devices["smk-1"].department == "心内科"  # inherited from its zone
    assert registry.devices["smk-2"].department == "急诊科"  # its own


def test_place_trees_compare_by_their_places() -> None:
    registry = validated(document())
    assert registry.places == validated(document()).places
    assert registry.places == dict(registry.places.items())
    assert (
        registry.with_device(Device(id="smk-9", profile="t-smoke", place="s1/b1/f1/z2")).places
        == registry.places
    )
    renamed = json.loads(json.dumps(SITES, ensure_ascii=False).replace("西区", "北区"))
    assert validated(document(renamed)).places != registry.places
    moved_department = json.loads(json.dumps(SITES, ensure_ascii=False).replace("检验科", "病理科"))
    assert validated(document(moved_department)).places != registry.places
    fewer = [SITES[0]]
    assert validated({"sites": fewer, "devices": DEVICES}).places != registry.places


def with_rooms(rooms: list[Any]) -> list[dict[str, Any]]:
    """The first site with one building, floor and zone holding `rooms` (a room's fields wrong)."""
    floor = {"id": "f1", "name": "1F", "zones": [{**ZONE, "rooms": rooms}]}
    return [{**SITES[0], "buildings": [{"id": "b1", "name": "y", "floors": [floor]}]}]


@pytest.mark.parametrize(
    ("sites", "problem"),
    [
        ([{"id": "s/1", "name": "x"}], r"sites\.0\.id"),
        ([{"id": "s1", "name": 7}], r"sites\.0\.name"),
        ([{"id": "s1"}], r"sites\.0\.name"),
        ([{"id": "s1", "name": "x", "colour": "red"}], r"sites\.0\.colour"),
        ([{"id": "s1", "name": "x", "buildings": None}], r"sites\.0\.buildings"),
        (
            [{"id": "s1", "name": "x", "buildings": [{"id": "b1", "name": "y", "department": "z"}]}],
            r"buildings\.0\.department",
        ),
        (with_rooms([{**ROOM, "tags": "ward"}]), r"rooms\.0\.tags"),
        (with_rooms([{**ROOM, "tags": [1]}]), r"rooms\.0\.tags\.0"),
        (with_rooms([{**ROOM, "department": None}]), r"rooms\.0\.department"),
        (with_rooms(["r1"]), r"rooms\.0"),
        ([], r"sites"),
        ("s1", r"sites"),
    ],
)
@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_tree_the_columns_do_not_take_is_reported_by_pydantic(
    tmp_path: Path, suffix: str, sites: Any, problem: str
) -> None:
    with pytest.raises(RegistryError, match=rf"(?s)registry{suffix}.*{problem}"):
        load_registry(written(tmp_path, {"sites": sites}, suffix))


def test_a_tree_values_pydantic_reads_leniently_still_loads(tmp_path: Path) -> None:
    """Tags as a YAML set are not the columns' form; pydantic reads them as before."""
    path = tmp_path / "registry.yaml"
    path.write_text(
        "sites:\n- id: s1\n  name: x\n  buildings:\n  - id: b1\n    name: y\n    floors:\n"
        "    - id: f1\n      name: 1F\n      zones:\n      - id: z1\n        name: z\n        rooms:\n"
        "        - id: r1\n          name: r\n          tags: !!set {ward: null}\n",
        encoding="utf-8",
    )
    assert load_registry(path).sites[0].buildings[0].floors[0].zones[0].rooms[0].tags == ["ward"]


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_place_defined_twice_is_named_first_in_walk_order(tmp_path: Path, suffix: str) -> None:
    twice = json.loads(json.dumps(SITES))
    zone = twice[0]["buildings"][0]["floors"][0]["zones"][0]
    zone["rooms"].append({"id": "r101", "name": "again"})
    twice.append({"id": "s2", "name": "again"})  # a second duplicate, later in the walk
    path = written(tmp_path, document(twice), suffix)
    with pytest.raises(RegistryError, match=r"registry.*: place 's1/b1/f1/z1/r101' is defined twice$"):
        load_registry(path)
    with pytest.raises(RegistryError, match=r"^place 's1/b1/f1/z1/r101' is defined twice$"):
        validated(document(twice))


def odd_registry() -> Registry:
    """Values whose dumping could differ: escapes, non-ASCII, empty names, floats, dates, tags."""
    sites = json.loads(json.dumps(SITES))
    sites[0]["buildings"][0]["floors"][0]["zones"][0]["rooms"].append(
        {
            "id": "q",
            "name": 'a "quoted" \\ name\n\t\x01 \u2028 😀 ' + "很长的名字" * 40,
            "tags": ["x y", "", "- dash", "yes", "1.5"],
        }
    )
    devices = [
        *DEVICES,
        {
            "id": "odd-1",
            "profile": "t-smoke",
            "place": "s1/b1/f1/z1/q",
            "name": "走廊: 烟感 #1 'quoted'",
            "department": "null",
            "responsible": "~",
            "installed": "2024-02-29",
            "position": [1e-7, 123456789.125],
            "tags": ["on", "no", "0x1F"],
            "gateway": "gw-1.a_b",
        },
        {"id": "odd-2", "profile": "t-smoke", "place": "s1/b1/f1/z1/q", "position": [0, -0.0], "tags": []},
        {"id": "odd-3", "profile": "t-smoke", "place": "s1/b1/f1/z1/q", "name": "", "installed": None},
    ]
    return validated({"sites": sites, "devices": devices})


def exported_by_models(registry: Registry) -> tuple[str, str]:
    """The JSON and YAML text the pydantic models dump (the export before columns)."""
    specs = list(registry.specs.values())
    return dump_registry_json(registry.sites, specs), dump_registry(registry.sites, specs)


@pytest.mark.parametrize("chunk", [20_000, 2])
def test_export_from_the_columns_is_the_text_the_models_dump(
    monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(core.registry, "_DUMP_CHUNK", chunk)  # and devices dumped a few at a time
    # Not a registry that loads back (JSON has no infinity), but one the API could hold: dumped alike.
    infinite = validated(document()).with_device(
        Device(id="inf-1", profile="t-smoke", place="s1/b1/f1/z2", position=(float("inf"), float("nan")))
    )
    for registry in (odd_registry(), validated({"sites": SITES}), validated(document()), infinite):
        as_json, as_yaml = exported_by_models(registry)
        assert registry.to_json() == as_json
        assert registry.to_yaml() == as_yaml


def test_a_generated_hospital_exports_as_the_models_dump_it_and_loads_back_equal(tmp_path: Path) -> None:
    h = hospital_for_devices(3_000).generate()
    registry = Registry(h.sites, h.devices)
    as_json, as_yaml = exported_by_models(registry)
    assert registry.to_json() == as_json
    assert registry.to_yaml() == as_yaml
    for suffix, text in ((".json", as_json), (".yaml", as_yaml)):
        path = tmp_path / f"registry{suffix}"
        path.write_text(text, encoding="utf-8")
        again = load_registry(path)
        assert again.sites == registry.sites
        assert again.places == registry.places
        assert again.specs == registry.specs
        assert list(again.specs) == list(registry.specs)
        assert again.to_json() == as_json


def test_an_odd_registry_round_trips_through_its_export(tmp_path: Path) -> None:
    registry = odd_registry()
    for suffix in (".json", ".yaml"):
        path = tmp_path / f"registry{suffix}"
        path.write_text(registry.to_text(path), encoding="utf-8")
        again = load_registry(path)
        assert again.sites == registry.sites
        assert again.specs == registry.specs
        assert again.devices["odd-1"].installed == date(2024, 2, 29)
        assert again.to_text(path) == registry.to_text(path)
