"""Settings are validated at start with errors that say how to fix them; registries likewise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.registry import RegistryError, load_registry
from core.settings import SettingsError, load_settings
from ingest.index import DeviceIndex, UnknownProfileError
from tests.conftest import PROFILES, small_registry


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in (
        "FIREWATCH_CONFIG",
        "FIREWATCH_MQTT__URL",
        "FIREWATCH_INGEST__QUEUE_MAX",
        "FIREWATCH_DATA_DIR",
    ):
        monkeypatch.delenv(key, raising=False)


def test_defaults_need_no_configuration() -> None:
    s = load_settings()
    assert s.resolved_database_url == "sqlite:///data/firewatch.sqlite"
    assert s.mqtt.url is None


def test_a_config_file_is_read_and_the_environment_wins_over_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "fw.toml"
    config.write_text(
        'data_dir = "/srv/fw"\n[mqtt]\nurl = "mqtt://broker:1883"\n[ingest]\nqueue_max = 1000\n'
    )
    monkeypatch.setenv("FIREWATCH_INGEST__QUEUE_MAX", "2000")
    s = load_settings(config)
    assert s.mqtt.url == "mqtt://broker:1883"
    assert s.data_dir == Path("/srv/fw")
    assert s.ingest.queue_max == 2000


def test_a_config_file_given_once_is_not_read_by_the_next_load(tmp_path: Path) -> None:
    config = tmp_path / "fw.toml"
    config.write_text('data_dir = "/srv/fw"\n')
    assert load_settings(config).data_dir == Path("/srv/fw")
    assert "FIREWATCH_CONFIG" not in os.environ
    config.unlink()  # a later load (another command, another test) must not look for it
    assert load_settings().data_dir == Path("data")


def test_a_bad_value_names_the_setting_and_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIREWATCH_INGEST__QUEUE_MAX", "ten")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "ingest.queue_max" in str(err.value)
    assert "FIREWATCH_INGEST__QUEUE_MAX" in str(err.value)


def test_unknown_keys_in_the_config_file_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "fw.toml"
    config.write_text("[mqtt]\nurll = 'mqtt://x:1'\n")
    with pytest.raises(SettingsError, match=r"mqtt\.urll"):
        load_settings(config)


def test_a_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_a_non_mqtt_broker_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIREWATCH_MQTT__URL", "http://broker")
    with pytest.raises(SettingsError, match="mqtt://host:port"):
        load_settings()


def test_a_cluster_worker_keeps_the_engines_topic_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIREWATCH_CLUSTER__ENABLED", "true")
    monkeypatch.setenv("FIREWATCH_DATABASE_URL", "postgresql+psycopg://fw@127.0.0.1/fw")
    assert load_settings().mqtt.topic_prefix == "fw/v1"
    monkeypatch.setenv("FIREWATCH_MQTT__TOPIC_PREFIX", "acme/v2")
    with pytest.raises(SettingsError, match=r"mqtt\.topic_prefix 'fw/v1'"):
        load_settings()


def test_registry_devices_resolve_their_place_and_department() -> None:
    registry = small_registry()
    loc = registry.locations["smk-1-1"]
    assert (loc.site, loc.building, loc.floor, loc.zone, loc.room) == ("s1", "b1", "f1", "z1", "r101")
    assert registry.devices["smk-1-1"].department == "心内科"
    assert [p.kind.value for p in registry.ancestors("s1/b1/f1/z1/r101")] == [
        "room",
        "zone",
        "floor",
        "building",
        "site",
    ]


def test_registry_errors_name_the_file_and_the_device(tmp_path: Path) -> None:
    path = tmp_path / "reg.yaml"
    path.write_text(
        "sites:\n- id: s1\n  name: x\n  buildings: []\n"
        "devices:\n- {id: d1, profile: t-smoke, place: s1/b9/f1/z1}\n"
    )
    with pytest.raises(RegistryError, match=r"reg\.yaml.*d1.*s1/b9/f1/z1"):
        load_registry(path)
    path.write_text("sites: [")
    with pytest.raises(RegistryError, match="cannot read"):
        load_registry(path)


def test_a_device_with_an_unknown_profile_is_refused_at_start() -> None:
    with pytest.raises(UnknownProfileError, match="t-smoke"):
        DeviceIndex.build(small_registry(), {"t-pressure": PROFILES["t-pressure"]})
