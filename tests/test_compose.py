"""The production stack's files: docker-compose.yml, .env.example, the Dockerfile and its build
context, and the PostgreSQL init script.

No Docker daemon runs here, so nothing is built or started. What can be checked without one is:
the compose file against the Compose specification's JSON schema (as written, and after the
variables are filled in from .env.example the way Compose does it); the properties of the stack
that matter in operation (health checks, start order, state in named volumes, no secret in the
file, ports); that firewatch's environment is made of settings that exist; that the build context
holds what `pip install .` needs and no secret; and the database init script, run against a real
PostgreSQL.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import yaml
from pydantic import BaseModel
from sqlalchemy import inspect

from core.registry import load_registry
from core.settings import CONFIG_ENV, Settings, load_settings
from storage.db import open_store
from tests.postgres import PrivatePostgres

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"

# Environment variables firewatch reads that are not Settings fields: the config file's path
# (core/settings.py) and the log level switch (firewatch/cli.py).
NON_SETTINGS = {CONFIG_ENV: ROOT / "core" / "settings.py", "FIREWATCH_LOG": ROOT / "firewatch" / "cli.py"}
# Secrets with a fallback: tokens of less power than the admin token, optional.
OPTIONAL_SECRETS = {"INFLUXDB_FIREWATCH_TOKEN", "INFLUXDB_GRAFANA_TOKEN"}


# --- Compose interpolation, as the specification describes it ---------------------------------------


class MissingVariableError(ValueError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"required variable {name} is missing a value: {message}")
        self.name = name


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _braced_end(text: str, start: int) -> int:
    """Index of the '}' closing the '${' that starts at `start`."""
    depth, i = 0, start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unclosed ${{ in {text!r}")


def interpolate(text: str, env: dict[str, str], used: set[str] | None = None) -> str:
    """${VAR}, $VAR, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, ${VAR:+alt},
    ${VAR+alt}, nested in the default, error or alternative; $$ is a literal $."""
    out, i = [], 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
            continue
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if text.startswith("${", i):
            end = _braced_end(text, i)
            body = text[i + 2 : end]
            match = _NAME.match(body)
            assert match, f"bad variable in {text!r}"
            name, rest = match.group(), body[match.end() :]
            if used is not None:
                used.add(name)
            is_set, value = name in env, env.get(name, "")
            if rest == "":
                out.append(value)
            else:
                op = next(o for o in (":-", ":?", ":+", "-", "?", "+") if rest.startswith(o))
                arg = rest[len(op) :]
                present = is_set and (value != "" or not op.startswith(":"))
                if op.endswith("-"):
                    out.append(value if present else interpolate(arg, env, used))
                elif op.endswith("?"):
                    if not present:
                        raise MissingVariableError(name, interpolate(arg, env, used))
                    interpolate(arg, env, used)  # names in the message count as used
                    out.append(value)
                else:
                    out.append(interpolate(arg, env, used) if present else "")
            i = end + 1
            continue
        match = _NAME.match(text, i + 1)
        if match:
            if used is not None:
                used.add(match.group())
            out.append(env.get(match.group(), ""))
            i = match.end()
        else:
            out.append("$")
            i += 1
    return "".join(out)


def interpolate_all(node: Any, env: dict[str, str], used: set[str] | None = None) -> Any:
    """Every string value of a loaded compose file (keys are not interpolated)."""
    if isinstance(node, dict):
        return {k: interpolate_all(v, env, used) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate_all(v, env, used) for v in node]
    if isinstance(node, str):
        return interpolate(node, env, used)
    return node


def test_the_interpolation_follows_the_specification() -> None:
    env = {"SET": "v", "EMPTY": ""}
    cases = {
        "${SET}/$SET/$$SET": "v/v/$SET",
        "${EMPTY:-d}|${EMPTY-d}|${UNSET-d}": "d||d",
        "${EMPTY:+r}|${EMPTY+r}|${SET:+r}": "|r|r",
        "${UNSET:-${SET}}|${UNSET:-${ALSO:-deep}}": "v|deep",
        "a$ b": "a$ b",
    }
    for text, expected in cases.items():
        assert interpolate(text, env) == expected, text
    with pytest.raises(MissingVariableError, match=r"EMPTY.*say v"):
        interpolate("${EMPTY:?say ${SET}}", env)
    assert interpolate("${EMPTY?fine}", env) == ""


# --- loading the stack -----------------------------------------------------------------------------------


def raw_compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return data


def env_example() -> dict[str, str]:
    env = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: {line!r} is not KEY=VALUE"
            env[key.strip()] = value.strip()
    return env


def filled_env() -> dict[str, str]:
    """.env.example filled in the way the walk-through says: every secret made with openssl rand -hex,
    the optional tokens left empty."""
    return {
        k: v or ("" if k in OPTIONAL_SECRETS else secrets.token_hex(16)) for k, v in env_example().items()
    }


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = interpolate_all(raw_compose(), filled_env() if env is None else env)
    return data


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def compose_schema() -> dict[str, Any]:
    # check-jsonschema ships the Compose specification's schema (a dev dependency, pyproject.toml).
    spec = importlib.util.find_spec("check_jsonschema")
    assert spec is not None, "pip install check-jsonschema (.[dev])"
    assert spec.origin is not None
    path = Path(spec.origin).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def schema_errors(document: dict[str, Any]) -> list[str]:
    jsonschema = importlib.import_module("jsonschema")  # installed with check-jsonschema; no type stubs
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool

    @property
    def named_volume(self) -> bool:
        return not self.source.startswith((".", "/", "~"))


def mounts(service: dict[str, Any]) -> list[Mount]:
    out = []
    for entry in service.get("volumes", []):
        if isinstance(entry, str):
            parts = entry.split(":")
            out.append(Mount(parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
        else:
            out.append(Mount(entry["source"], entry["target"], bool(entry.get("read_only"))))
    return out


def host_path(service: dict[str, Any], container_path: str) -> Path:
    """The file in the repository that a container path of a bind mount shows."""
    path = PurePosixPath(container_path)
    for m in mounts(service):
        if not m.named_volume and (
            path == PurePosixPath(m.target) or PurePosixPath(m.target) in path.parents
        ):
            return ROOT / m.source / path.relative_to(m.target)
    raise AssertionError(f"{container_path} is not on a bind mount")


def one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart") == "no"


# --- the Compose specification --------------------------------------------------------------------------


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    assert schema_errors(raw_compose()) == []


def test_the_compose_file_is_valid_once_its_variables_are_filled_in() -> None:
    assert schema_errors(compose()) == []


def test_the_schema_check_catches_mistakes() -> None:
    """The schema is strict enough to matter: a misspelt key or a bad condition fails it."""
    broken = raw_compose()
    broken["services"]["firewatch"]["healthcheck"]["intervall"] = "5s"
    broken["services"]["grafana"]["depends_on"]["postgres"]["condition"] = "service_ready"
    assert len(schema_errors(broken)) >= 2


def test_no_obsolete_version_key() -> None:
    assert "version" not in raw_compose()


# --- secrets and .env -----------------------------------------------------------------------------------


def secret_names() -> set[str]:
    return {k for k in env_example() if re.search(r"PASSWORD|TOKEN", k)}


def test_env_example_holds_no_secret_value() -> None:
    assert secret_names()  # sanity: the pattern finds them
    assert {k: v for k, v in env_example().items() if k in secret_names() and v} == {}


def test_a_missing_secret_stops_compose_with_a_message_naming_it() -> None:
    with pytest.raises(MissingVariableError) as shipped:
        compose(env_example())  # .env.example copied but not filled in
    assert shipped.value.name in secret_names()
    for name in sorted(secret_names()):
        env = filled_env()
        del env[name]
        if name in OPTIONAL_SECRETS:
            stack = compose(env)  # falls back to the admin token
            tokens = [environment(s).get(k) for s in stack["services"].values() for k in ("INFLUXDB_TOKEN",
                      "FIREWATCH_INFLUX__TOKEN")]  # fmt: skip
            assert env["INFLUXDB_ADMIN_TOKEN"] in tokens
            continue
        with pytest.raises(MissingVariableError) as missing:
            compose(env)
        assert missing.value.name == name
        assert ".env" in str(missing.value), "the message should say where to set it"


def test_env_example_documents_exactly_the_variables_the_compose_file_uses() -> None:
    used: set[str] = set()
    interpolate_all(raw_compose(), filled_env(), used)
    assert used == set(env_example())
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if "=" not in line or line.startswith("#"):
            continue
        above = number - 1
        while above >= 0 and "=" in lines[above] and not lines[above].startswith("#"):
            above -= 1  # a group of related variables under one comment
        assert above >= 0, f".env.example: {line} has no comment"
        assert lines[above].startswith("#"), f".env.example: {line} has no comment"


_CREDENTIALS_IN_URL = re.compile(r"://[^/\s:@]+:([^@\s]+)@")


def test_no_secret_is_written_in_the_compose_file() -> None:
    """Every password, token or credential in a URL comes from a variable."""
    raw = raw_compose()
    for name, service in raw["services"].items():
        for key, value in environment(service).items():
            if re.search(r"PASSWORD|TOKEN|SECRET|_KEY$", key):
                assert re.fullmatch(r"\$\{.*\}", value), f"{name}: {key} is written in the file"
            for password in _CREDENTIALS_IN_URL.findall(value):
                assert password.startswith("${"), f"{name}: {key} has a password written in it"
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    for password in re.findall(r"-P\s+\"?([^\s\"]+)", text):
        assert password.startswith("$$"), "a health check's password must come from the environment"


# --- operation: health checks, start order, state, ports ------------------------------------------------


def test_every_long_running_service_has_a_health_check() -> None:
    for name, service in compose()["services"].items():
        if one_shot(service):
            continue
        check = service.get("healthcheck")
        assert check, f"{name} has no health check"
        assert check.get("test"), f"{name} has no health check"
        assert not check.get("disable"), f"{name}'s health check is disabled"
        assert service.get("restart") in ("always", "unless-stopped"), f"{name} is not restarted"


def test_every_dependency_waits_for_a_condition_that_can_be_met() -> None:
    services = compose()["services"]
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = spec.get("condition")
            if one_shot(services[target]):
                assert condition == "service_completed_successfully", f"{name} -> {target}"
            elif condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}'s missing health check"
            else:
                assert condition == "service_started", f"{name} -> {target}: {condition}"
    # The alarm path waits for its broker and database, never for the telemetry archive.
    fw = services["firewatch"]["depends_on"]
    assert fw["mosquitto"]["condition"] == fw["postgres"]["condition"] == "service_healthy"
    assert fw["influxdb"]["condition"] == "service_started"
    assert (
        services["mosquitto"]["depends_on"]["mosquitto-init"]["condition"] == "service_completed_successfully"
    )


def test_all_state_lives_in_named_volumes() -> None:
    stack = compose()
    services = stack["services"]
    fw_data = environment(services["firewatch"])["FIREWATCH_DATA_DIR"]
    state = {
        "mosquitto": ["/mosquitto/data", "/mosquitto/log"],
        "influxdb": ["/var/lib/influxdb2", "/etc/influxdb2"],
        "postgres": ["/var/lib/postgresql/data"],
        "grafana": ["/var/lib/grafana"],
        "firewatch": [fw_data],
    }
    declared = set(stack["volumes"])
    used = set()
    for name, paths in state.items():
        by_target = {m.target: m for m in mounts(services[name])}
        for path in paths:
            m = by_target.get(path)
            assert m is not None, f"{name}: nothing is mounted at {path}"
            assert m.named_volume, f"{name}: {path} is not on a named volume"
            assert m.source in declared
            assert not m.read_only
    for service in services.values():
        used |= {m.source for m in mounts(service) if m.named_volume}
    assert used == declared, "a volume is declared but not used, or used but not declared"
    # The settings put everything the service writes under data_dir unless told otherwise.
    settings = Settings(data_dir=Path(fw_data))
    for written in (settings.resolved_telemetry_path, settings.detector_snapshot_path):
        assert Path(fw_data) in written.parents


@pytest.mark.parametrize("where", ["compose defaults", ".env.example"])
def test_only_the_devices_listeners_are_published_beyond_this_host_and_postgres_not_at_all(
    where: str,
) -> None:
    env = filled_env()
    if where == "compose defaults":
        env = {k: v for k, v in env.items() if not k.endswith("_PUBLISH")}
    published = {}
    for name, service in compose(env)["services"].items():
        for port in service.get("ports", []):
            host_ip, _host_port, container_port = str(port).rsplit(":", 2)
            published[(name, container_port)] = host_ip
    assert published.pop(("mosquitto", "1883")) == "0.0.0.0"  # devices must reach it
    assert published.pop(("firewatch", "26875")) == "0.0.0.0"  # so must the panels' transmission devices
    assert published, "the API, Grafana and InfluxDB should be published on this host"
    assert set(published.values()) == {"127.0.0.1"}, published
    assert not any(name == "postgres" for name, _ in published)
    assert ("mosquitto", "1884") not in published  # the service's listener stays inside the stack


def test_bind_mounted_configuration_exists_in_the_repository() -> None:
    for name, service in compose()["services"].items():
        for m in mounts(service):
            if not m.named_volume:
                assert (ROOT / m.source).exists(), f"{name} mounts {m.source}, which is not in the repository"
                assert m.read_only, f"{name}: {m.source} should be mounted read-only"


def test_grafana_mounts_its_provisioning_where_grafana_and_the_provisioning_look() -> None:
    grafana = compose()["services"]["grafana"]
    bound = {m.source.rstrip("/"): m.target for m in mounts(grafana) if not m.named_volume}
    assert bound == {
        "./grafana/provisioning": "/etc/grafana/provisioning",  # Grafana's default provisioning path
        "./grafana/dashboards": "/var/lib/grafana/dashboards/firewatch",
    }
    env = environment(grafana)
    provisioning = ROOT / "grafana" / "provisioning"
    for file in sorted(provisioning.rglob("*.y*ml")):
        doc = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        for provider in doc.get("providers", []):
            path = provider.get("options", {}).get("path")
            if path:
                assert path.startswith("/var/lib/grafana/dashboards/firewatch"), f"{file}: {path}"
        text = "\n".join(
            ln for ln in file.read_text(encoding="utf-8").splitlines() if not ln.lstrip().startswith("#")
        )
        for name in re.findall(r"\$\{?([A-Z][A-Z0-9_]*)\}?", text):
            if not name.startswith("GF_"):
                assert name in env, (
                    f"{file.relative_to(ROOT)} reads ${name}, which grafana's environment lacks"
                )
    for name in ("INFLUXDB_URL", "INFLUXDB_BUCKET", "INFLUXDB_TOKEN", "POSTGRES_HOST", "POSTGRES_DB",
                 "POSTGRES_READER_USER", "POSTGRES_READER_PASSWORD"):  # fmt: skip
        assert env.get(name), f"grafana's environment lacks {name}"
    assert env["INFLUXDB_URL"] == "http://influxdb:8086"
    assert env["POSTGRES_HOST"] == "postgres:5432"


# --- firewatch's settings --------------------------------------------------------------------------------


def setting_exists(path: list[str]) -> bool:
    model: type[BaseModel] = Settings
    for i, part in enumerate(path):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if i < len(path) - 1:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return False
            model = annotation
    return True


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith("FIREWATCH_"):
            monkeypatch.delenv(key)
    return monkeypatch


def test_firewatch_environment_names_real_settings_and_loads(clean_environ: pytest.MonkeyPatch) -> None:
    env = filled_env()
    services = compose(env)["services"]
    fw = services["firewatch"]
    fw_env = environment(fw)
    for key in fw_env:
        assert key.startswith("FIREWATCH_"), key
        if key in NON_SETTINGS:
            assert key in NON_SETTINGS[key].read_text(encoding="utf-8"), f"{key} is no longer read"
            continue
        path = key.removeprefix("FIREWATCH_").lower().split("__")
        assert setting_exists(path), f"{key} is not a setting (core/settings.py)"

    # Load the settings as the container would, with its files found through the bind mounts.
    for key, value in fw_env.items():
        clean_environ.setenv(key, value)
    config = host_path(fw, fw_env[CONFIG_ENV])
    clean_environ.setenv(CONFIG_ENV, str(config))
    settings = load_settings()

    assert settings.api.host == "0.0.0.0"
    # The service rewrites its registry file on changes through the API: it must be in the data
    # volume, where firewatch-init seeds it (test below).
    assert settings.registry is not None
    assert settings.data_dir in settings.registry.parents
    mqtt = urlsplit(settings.mqtt.url or "")
    assert (mqtt.hostname, mqtt.port, mqtt.username) == ("mosquitto", 1884, "firewatch")
    assert mqtt.password == env["MQTT_FIREWATCH_PASSWORD"]
    db = urlsplit(settings.resolved_database_url)
    assert db.scheme == "postgresql+psycopg"
    assert db.hostname == "postgres"
    assert db.path == "/firewatch"
    assert (db.username, db.password) == ("firewatch", env["POSTGRES_FIREWATCH_PASSWORD"])
    assert environment(services["postgres"])["FW_DB_OWNER_PASSWORD"] == db.password
    assert settings.influx.url == "http://influxdb:8086"
    assert settings.influx.token is not None
    assert settings.influx.token.get_secret_value() == env["INFLUXDB_ADMIN_TOKEN"]
    assert settings.auth.admin_password is not None
    assert settings.auth.admin_password.get_secret_value() == env["FIREWATCH_ADMIN_PASSWORD"]


def test_firewatch_init_seeds_the_registry_once_and_then_keeps_the_services_copy(tmp_path: Path) -> None:
    services = compose()["services"]
    init, fw = services["firewatch-init"], services["firewatch"]
    assert fw["depends_on"]["firewatch-init"]["condition"] == "service_completed_successfully"
    registry_path = environment(fw)["FIREWATCH_REGISTRY"]
    data = next(m for m in mounts(init) if m.named_volume)
    assert data.source == next(m.source for m in mounts(fw) if m.target == data.target)
    seed = re.search(r"cp (\S+) " + re.escape(registry_path), init["command"][0])
    assert seed, "firewatch-init should copy a seed registry to the service's registry path"
    seed_file = host_path(init, seed.group(1))
    assert load_registry(seed_file).devices

    # Run the script with the two folders moved here: the first run seeds, the second keeps.
    etc, volume = tmp_path / "etc", tmp_path / "volume"
    shutil.copytree(seed_file.parent, etc)
    volume.mkdir()
    conf_dir = next(m.target for m in mounts(init) if not m.named_volume)
    script = init["command"][0].replace(conf_dir + "/", f"{etc}/").replace(data.target + "/", f"{volume}/")

    def run() -> None:
        result = subprocess.run(["/bin/sh", "-euc", script], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr

    run()
    copied = volume / PurePosixPath(registry_path).relative_to(data.target)
    assert copied.read_bytes() == seed_file.read_bytes()
    copied.write_text("# changed through the API\n", encoding="utf-8")
    run()
    assert copied.read_text(encoding="utf-8") == "# changed through the API\n"


def test_the_broker_config_and_the_compose_file_agree() -> None:
    services = compose()["services"]
    conf = (ROOT / "deploy" / "mosquitto" / "mosquitto.conf").read_text(encoding="utf-8")
    listeners = re.findall(r"^listener (\d+)\s*$", conf, re.M)
    assert listeners == ["1883", "1884"]
    assert re.search(r"^allow_anonymous false$", conf, re.M)
    # Sign-in rules per listener: each listener names its own password file and ACL.
    assert re.search(r"^per_listener_settings true$", conf, re.M)
    sections = re.split(r"^listener \d+\s*$", conf, flags=re.M)[1:]
    assert len(sections) == 2
    auth_files = []
    for section in sections:
        assert re.search(r"^allow_anonymous false$", section, re.M)
        for key in ("password_file", "acl_file"):
            found = re.findall(rf"^{key} (\S+)$", section, re.M)
            assert len(found) == 1, f"each listener needs one {key}"
            auth_files.append(found[0])
    device_passwd, service_passwd = auth_files[0], auth_files[2]
    assert device_passwd != service_passwd, "devices and the service need password files of their own"
    broker_mounts = {m.target: m for m in mounts(services["mosquitto"])}
    assert "/mosquitto/auth" in broker_mounts
    assert broker_mounts["/mosquitto/auth"].named_volume
    init = services["mosquitto-init"]
    init_auth = next(m for m in mounts(init) if m.target == "/mosquitto/auth")
    assert init_auth.source == broker_mounts["/mosquitto/auth"].source
    script = init["command"][0]
    for path in auth_files:
        assert path.startswith("/mosquitto/auth/")
        assert f"mv {path}.new {path}" in script
    persistence = re.findall(r"^persistence_location (\S+)$", conf, re.M)
    assert len(persistence) == 1
    assert persistence[0].rstrip("/") in broker_mounts
    assert host_path(services["mosquitto"], "/mosquitto/config/mosquitto.conf").is_file()


def test_the_broker_queues_an_hour_of_a_large_hospital_and_saves_after_every_change() -> None:
    """deploy/mosquitto/mosquitto.conf's promises, as numbers: an hour of 5,000 devices reporting
    every 20 s fits the service's queue (no byte cap), and the database is written after every
    change (the crash itself is tested against a real mosquitto in tests/test_mosquitto_acl.py)."""
    conf = (ROOT / "deploy" / "mosquitto" / "mosquitto.conf").read_text(encoding="utf-8")
    settings = dict(re.findall(r"^(\w+) (\S+)\s*$", conf, re.M))
    assert int(settings["max_queued_messages"]) >= 5000 * 3600 // 20
    assert settings["max_queued_bytes"] == "0"
    assert settings["persistence"] == "true"
    assert settings["autosave_on_changes"] == "true"
    assert settings["autosave_interval"] == "1"


# --- the image ----------------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    joined = re.sub(r"\\\n(\s*#.*\n)*", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_the_image_runs_firewatch_serve_as_an_unprivileged_user() -> None:
    steps = dockerfile()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    final = steps[last_from:]
    assert final[0][1].split()[0] == "python:3.11-slim"
    users = [args for op, args in final if op == "USER"]
    assert users, "the final stage must switch to an unprivileged USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    after_user = final[max(i for i, (op, _) in enumerate(final) if op == "USER") :]
    assert not any(op == "RUN" for op, _ in after_user), "nothing should run as root after USER"
    cmd = json.loads(next(args for op, args in reversed(final) if op == "CMD"))
    assert cmd == ["firewatch", "serve"]
    assert any(op == "HEALTHCHECK" and "/readyz" in args for op, args in final)
    port = environment(compose()["services"]["firewatch"])["FIREWATCH_API__PORT"]
    assert ("EXPOSE", port) in final


def test_the_image_adds_no_secret_and_uses_no_add() -> None:
    for op, args in dockerfile():
        assert op != "ADD", "ADD fetches URLs and unpacks archives: COPY says what it does"
        if op == "COPY":
            assert not re.search(r"\.env|deploy|passwd|\.csv", args), args
    services = compose()["services"]
    assert services["firewatch"]["build"]["context"] == "."
    # .env, the config and the registry reach the container at run time, never the image.
    assert all(not m.source.startswith("./.env") for m in mounts(services["firewatch"]))


def dockerignore_excludes(path: str) -> bool:
    """Whether the build context leaves `path` out: .dockerignore's rules, the last match winning,
    and a path left out with its folder unless a later '!' rule lets it back in."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            pattern = line.lstrip("!").strip("/")
            text = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
            text = text.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
            rules.append((negate, re.compile(f"^{text}$")))
    parts = path.split("/")
    excluded = False
    for negate, regex in rules:
        if any(regex.match("/".join(parts[: n + 1])) for n in range(len(parts))):
            excluded = not negate
    return excluded


def test_the_build_context_holds_what_pip_install_needs_and_no_secret() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    needed = ["pyproject.toml", project["project"]["readme"]]
    for package in project["tool"]["setuptools"]["packages"]:
        needed.append(package.replace(".", "/") + "/__init__.py")
    for package, globs in project["tool"]["setuptools"]["package-data"].items():
        for pattern in globs:
            found = sorted((ROOT / package).glob(pattern))
            needed += [str(p.relative_to(ROOT)) for p in found]
    for path in needed:
        assert not dockerignore_excludes(path), f"{path} is needed by pip install . but left out"
    for path in (".env", ".env.example", "deploy/mosquitto/passwd", "deploy/device-passwords.csv",
                 "devices.csv", "data/demo/firewatch.sqlite", ".git/config", "tests/conftest.py",
                 "core/__pycache__/settings.cpython-311.pyc", "api/x.sqlite-wal"):  # fmt: skip
        assert dockerignore_excludes(path), f"{path} would be sent to the image build"


def test_every_package_of_the_source_goes_into_the_wheel() -> None:
    """pyproject.toml names its packages one by one: a package missing there is missing from
    `pip install .` and the image (api.routes once was), though an editable install still finds it."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(project["tool"]["setuptools"]["packages"])
    source = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in ROOT.rglob("__init__.py")
        if init.parent.relative_to(ROOT).parts[0] not in {"tests", "bench", "build", ".git"}
        and "site-packages" not in init.parts
    }
    assert sorted(source - listed) == [], "add these to [tool.setuptools] packages in pyproject.toml"


# --- the PostgreSQL init script, on a real PostgreSQL ------------------------------------------------


@pytest.mark.integration
def test_the_postgres_init_script_makes_the_owner_and_a_reader_of_current_and_future_tables(
    postgres: PrivatePostgres,
) -> None:
    psql = shutil.which("psql") or str(postgres.bindir / "psql")
    suffix = uuid.uuid4().hex[:8]
    db, owner, reader, outsider = (
        f"fw_{suffix}",
        f"fw_owner_{suffix}",
        f"fw_reader_{suffix}",
        f"fw_x_{suffix}",
    )
    script_env = environment(compose()["services"]["postgres"])
    script_env |= {
        "FW_DB_NAME": db,
        "FW_DB_OWNER": owner,
        "FW_DB_OWNER_PASSWORD": 'it\'s a "quoted"; DROP ROLE postgres; --',
        "POSTGRES_READER_USER": reader,
        # What the image's entrypoint provides, and where the test cluster is.
        "POSTGRES_USER": "postgres",
        "POSTGRES_DB": "postgres",
        "PGHOST": "127.0.0.1",
        "PGPORT": str(postgres.port),
        "PATH": f"{Path(psql).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
    }
    script = ROOT / "deploy" / "postgres" / "initdb" / "10-firewatch.sh"
    assert os.access(script, os.X_OK), "the image runs executable scripts, and sources the others"
    result = subprocess.run(["bash", str(script)], env=script_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    base = f"postgresql://{{}}@127.0.0.1:{postgres.port}/{db}"
    try:
        # firewatch migrates as the owner at start: every table is created after the grants.
        engine, _ = open_store(base.format(owner))
        tables = inspect(engine).get_table_names()
        engine.dispose()
        assert "alarms" in tables
        assert "tickets" in tables

        with psycopg.connect(base.format(reader), autocommit=True) as conn:
            for table in tables:
                conn.execute(f'SELECT count(*) FROM "{table}"')
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("DELETE FROM alarms")
            conn.execute("SET default_transaction_read_only = off")  # any session may; still no right
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("DELETE FROM alarms")
            conn.execute("SET default_transaction_read_only = on")
            with pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction)):
                conn.execute("CREATE TABLE mine (x int)")
            timeout = conn.execute("SHOW statement_timeout").fetchone()
            assert timeout is not None
            assert timeout[0] == "30s"

        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            row = conn.execute(
                "SELECT rolpassword IS NOT NULL, rolsuper FROM pg_authid WHERE rolname = %s", (owner,)
            ).fetchone()
            assert row == (True, False)
            conn.execute(f'CREATE ROLE "{outsider}" LOGIN')
        with pytest.raises(psycopg.OperationalError, match="permission denied"):
            psycopg.connect(base.format(outsider)).close()
    finally:
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            for role in (owner, reader, outsider):
                conn.execute(f'DROP ROLE IF EXISTS "{role}"')
