"""The registry as a document: CSV and YAML out and back in, and every import problem on its line."""

from __future__ import annotations

import doctest
from datetime import date

import pytest

import core.registry_io
from core.registry import Device, DuplicateDeviceError, Registry, UnknownDeviceError
from core.registry_io import (
    BOM,
    CSV_COLUMNS,
    RegistryImportError,
    decode_text,
    devices_from_csv,
    diff_registries,
    registry_from_csv,
    registry_from_yaml,
    registry_to_csv,
)
from tests.conftest import PROFILES, small_registry

KNOWN = set(PROFILES)


def chinese_registry() -> Registry:
    base = small_registry(zones=2, smoke_per_zone=1)
    return base.with_devices(
        [
            *base.specs.values(),
            Device(
                id="smk-icu-1",
                profile="t-smoke",
                place="s1/b1/f1/z2/r201",
                name="重症监护室 吸顶感烟, 北侧",  # a comma: the field must be quoted
                department="重症医学科",
                responsible="王五",
                installed=date(2024, 3, 1),
                position=(12.5, 3.25),
                tags=["icu", "夜间巡检"],
            ),
        ]
    )


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(core.registry_io, optionflags=doctest.ELLIPSIS).failed == 0


def test_csv_export_opens_in_excel_with_chinese_intact_and_re_imports_identically() -> None:
    registry = chinese_registry()
    text = registry_to_csv(registry)
    data = text.encode("utf-8")
    assert data.startswith(b"\xef\xbb\xbf")  # the BOM that makes Excel read UTF-8
    assert text.removeprefix(BOM).splitlines()[0] == ",".join(CSV_COLUMNS)
    assert '"重症监护室 吸顶感烟, 北侧",重症医学科,王五,2024-03-01,12.5,3.25,icu;夜间巡检' in text

    again = registry_from_csv(decode_text(data), base=registry, profiles=KNOWN)
    assert list(again.specs.values()) == list(registry.specs.values())
    assert again.to_yaml() == registry.to_yaml()
    # An inherited department stays inherited (empty in the sheet), not frozen into the row.
    assert again.specs["smk-1-1"].department == ""
    assert again.devices["smk-1-1"].department == "心内科"


def test_csv_columns_may_come_in_any_order_and_optional_ones_may_be_left_out() -> None:
    text = "place,id,profile,tags\ns1/b1/f1/z1,smk-new,t-smoke,a; b\n\ns1/b1/f1/z2,prs-2,t-pressure,\n"
    rows = devices_from_csv(text)
    assert [(line, d.id, d.tags) for line, d in rows] == [(2, "smk-new", ["a", "b"]), (4, "prs-2", [])]


def test_every_bad_csv_row_is_reported_with_its_line_and_nothing_is_returned() -> None:
    base = small_registry()
    text = (
        "id,profile,place,name,installed,position_x,position_y\n"
        "ok-1,t-smoke,s1/b1/f1/z1,fine,,,\n"  # line 2: fine
        'bad id,t-smoke,s1/b1/f1/z1,"two\nlines",,,\n'  # line 3 (its quoted name spans line 4)
        "ok-2,t-smoke,s1/b1/f1/z1,,2024-13-01,,\n"  # line 5: no 13th month
        "ok-3,t-smoke,s1/b1/f1/z1,,,1.5,\n"  # line 6: half a position
        "ok-1,t-smoke,s1/b1/f1/z1,,,,\n"  # line 7: a repeated id
        "ok-4,t-heat,s1/b1/f1/z1,,,,\n"  # line 8: no such profile
        "ok-5,t-smoke,s1/b9/f1/z1,,,,\n"  # line 9: no such place
        "ok-6,t-smoke,s1/b1/f1,,,,\n"  # line 10: a floor, not a zone or room
    )
    with pytest.raises(RegistryImportError) as caught:
        registry_from_csv(text, base=base, profiles=KNOWN)
    # Row syntax is checked first, for the whole document; references once every row parses.
    assert [i.line for i in caught.value.lines] == [3, 5, 6, 7]
    assert "id:" in caught.value.lines[0].message
    assert "installed:" in caught.value.lines[1].message
    assert "position_x and position_y" in caught.value.lines[2].message
    assert "already on line 2" in caught.value.lines[3].message

    references = "\n".join(line for i, line in enumerate(text.splitlines()) if i not in (2, 3, 4, 5, 6))
    with pytest.raises(RegistryImportError) as caught:
        registry_from_csv(references + "\n", base=base, profiles=KNOWN)
    assert [(i.line, i.message.split(":")[0]) for i in caught.value.lines] == [
        (3, "unknown profile 't-heat' (known"),
        (4, "device 'ok-5'"),
        (5, "device 'ok-6'"),
    ]
    assert "place 's1/b9/f1/z1' is not in the place tree" in caught.value.lines[1].message


def test_a_csv_header_that_is_not_ours_is_refused_on_line_1() -> None:
    with pytest.raises(RegistryImportError, match="line 1: missing column 'place'"):
        devices_from_csv("id,profile\nd1,t-smoke\n")
    with pytest.raises(RegistryImportError, match="line 1: empty"):
        devices_from_csv("")


def test_a_spreadsheet_saved_in_gbk_is_refused_with_the_line_and_what_to_do() -> None:
    data = "id,profile,place,name\nd1,t-smoke,s1/b1/f1/z1,走廊\n".encode("gbk")
    with pytest.raises(RegistryImportError, match=r"line 2: not UTF-8.*CSV UTF-8"):
        decode_text(data)


def test_yaml_export_re_imports_identically() -> None:
    registry = chinese_registry()
    text = registry.to_yaml()
    again = registry_from_yaml(text, profiles=KNOWN)
    assert again.to_yaml() == text
    assert again.sites == registry.sites
    assert again.devices == registry.devices


def test_yaml_import_problems_point_at_their_lines() -> None:
    text = (
        "sites:\n"  # 1
        "- id: s1\n"  # 2
        "  name: 医院\n"  # 3
        "  buildings: []\n"  # 4
        "devices:\n"  # 5
        "- id: d1\n"  # 6
        "  profile: t-heat\n"  # 7
        "  place: s1\n"  # 8
        "- id: d2\n"  # 9
        "  profile: t-smoke\n"  # 10
        "  place: s1/b1/f1/z1\n"  # 11
    )
    with pytest.raises(RegistryImportError) as caught:
        registry_from_yaml(text, profiles=KNOWN)
    assert [i.line for i in caught.value.lines] == [6, 6, 9]
    assert "unknown profile 't-heat'" in caught.value.lines[0].message
    with pytest.raises(
        RegistryImportError,
        match=r"line 6: devices\.0\.profile: Field required; line 7: devices\.0\.colour: Extra inputs",
    ):
        registry_from_yaml(text.replace("  profile: t-heat\n", "  colour: red\n"), profiles=KNOWN)
    with pytest.raises(RegistryImportError, match="line 3: not YAML"):
        registry_from_yaml("sites:\n- [\n", profiles=KNOWN)


def test_the_diff_names_added_removed_and_changed_devices() -> None:
    old = small_registry(zones=2, smoke_per_zone=2)
    moved = old.specs["smk-1-2"].model_copy(update={"place": "s1/b1/f1/z2"})
    new = old.without_device("prs-1").replacing_device(moved)
    new = new.with_device(Device(id="smk-9", profile="t-smoke", place="s1/b1/f1/z1"))
    diff = diff_registries(old, new)
    assert (diff.added, diff.removed, diff.changed, diff.places_changed) == (
        ["smk-9"],
        ["prs-1"],
        ["smk-1-2"],
        False,
    )
    assert diff_registries(old, small_registry(zones=3, smoke_per_zone=2)).places_changed


def test_a_device_is_added_once_and_only_registered_devices_are_replaced_or_removed() -> None:
    registry = small_registry()
    with pytest.raises(DuplicateDeviceError):
        registry.with_device(registry.specs["prs-1"])
    with pytest.raises(UnknownDeviceError):
        registry.without_device("nope")
    with pytest.raises(UnknownDeviceError):
        registry.replacing_device(Device(id="nope", profile="t-smoke", place="s1/b1/f1/z1"))
