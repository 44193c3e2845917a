"""A registry file may be JSON (named `.json`): the same document as the YAML, much faster to load
at hospital scale. Both read to the same registry; a change to a running service is written back
in the file's own format."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from core.registry import Device, Registry, RegistryError, load_registry, write_registry_text
from core.settings import MqttSettings, Settings
from firewatch.service import Service
from simulators.hospital import hospital_for_devices, write_registry
from tests.conftest import PROFILES, small_registry


def same(a: Registry, b: Registry) -> None:
    assert list(a.specs) == list(b.specs)
    assert a.specs == b.specs
    assert a.devices == b.devices
    assert a.locations == b.locations
    assert a.places == b.places


@pytest.fixture(scope="module")
def hospital(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated hospital of about 5,000 devices, as YAML."""
    h = hospital_for_devices(5_000).generate()
    path = tmp_path_factory.mktemp("hospital") / "registry.yaml"
    write_registry(path, h.sites, h.devices)
    return path


@pytest.fixture(scope="module")
def from_yaml(hospital: Path) -> Registry:
    """The generated hospital as read from its YAML (once: it takes seconds; the tests only read it)."""
    return load_registry(hospital)


def test_a_large_generated_registry_reads_the_same_from_yaml_and_from_json(
    hospital: Path, from_yaml: Registry
) -> None:
    assert len(from_yaml.devices) > 4_500
    json_path = hospital.with_suffix(".json")
    write_registry_text(json_path, from_yaml)
    assert json.loads(json_path.read_text(encoding="utf-8"))["devices"][0]["id"] == next(
        iter(from_yaml.specs)
    )
    same(load_registry(json_path), from_yaml)


def test_departments_and_locations_are_filled_in_per_place(from_yaml: Registry) -> None:
    reg = from_yaml
    for device_id, spec in list(reg.specs.items())[:2_000]:
        device = reg.devices[device_id]
        assert device.department == (spec.department or reg.department_of(spec.place))
        loc = reg.locations[device_id]
        assert "/".join(p for p in (loc.site, loc.building, loc.floor, loc.zone, loc.room) if p) == spec.place


def test_a_bad_json_registry_names_the_file_and_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    path.write_text('{"sites": [{"id": "s1", "name": "x"}], "devices": [{"id": "d/1"}]}', encoding="utf-8")
    with pytest.raises(RegistryError, match=r"(?s)registry\.json.*devices\.0"):
        load_registry(path)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(RegistryError, match=r"registry\.json"):
        load_registry(path)


def test_a_service_reading_a_json_registry_writes_a_change_back_as_json(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    path.write_text(small_registry().to_json(), encoding="utf-8")
    settings = Settings(
        data_dir=tmp_path / "data",
        registry=path,
        mqtt=MqttSettings(url="mqtt://127.0.0.1:9", client_id="fw-json"),  # never dialled
    )
    service = Service(settings, profiles=PROFILES)
    try:
        assert service.registry.devices == small_registry().devices
        added = Device(id="smk-new", profile="t-smoke", place="s1/b1/f1/z1/r101", name="新装")
        change = service.apply_registry(lambda current: current.with_device(added))
        assert change.persisted_to == path
        document = json.loads(path.read_text(encoding="utf-8"))
        assert document["devices"][-1] == {
            "id": "smk-new",
            "profile": "t-smoke",
            "place": "s1/b1/f1/z1/r101",
            "name": "新装",
        }
        assert load_registry(path).devices == service.registry.devices
    finally:
        service.telemetry.close()
        service.db.dispose()


def test_an_id_holding_a_line_break_is_refused_as_the_models_refuse_it(tmp_path: Path) -> None:
    # The columns check a whole id column in one match of the ids one per line: an id with a line
    # break of its own must not pass as two good lines (it would become an MQTT topic level).
    site = {
        "id": "s1",
        "name": "院区",
        "buildings": [
            {
                "id": "b1",
                "name": "楼",
                "floors": [{"id": "f1", "name": "1F", "zones": [{"id": "z1", "name": "区"}]}],
            }
        ],
    }
    for devices, where in (
        ([{"id": "ab\ncd", "profile": "smoke-photoelectric", "place": "s1/b1/f1/z1"}], r"devices\.0"),
        (
            [{"id": "d1", "profile": "smoke-photoelectric", "place": "s1/b1/f1/z1", "gateway": "g\n1"}],
            r"devices\.0",
        ),
    ):
        path = tmp_path / "registry.json"
        path.write_text(orjson.dumps({"sites": [site], "devices": devices}).decode(), encoding="utf-8")
        with pytest.raises(RegistryError, match=rf"(?s)registry\.json.*{where}"):
            load_registry(path)
    bad_zone = orjson.loads(orjson.dumps(site).replace(b'"z1"', b'"z\\n1"'))
    path.write_text(orjson.dumps({"sites": [bad_zone], "devices": []}).decode(), encoding="utf-8")
    with pytest.raises(RegistryError, match=r"registry\.json"):
        load_registry(path)
