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

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import yaml
from sqlalchemy import inspect

from core.registry import load_registry
from core.settings import Settings
from storage.db import open_store
from tests.compose_stack import (
    ROOT,
    MissingVariableError,
    Stack,
    check_a_missing_secret_stops_compose,
    check_bind_mounted_configuration_exists,
    check_env_example_documents_exactly_the_variables_used,
    check_env_example_holds_no_secret_value,
    check_every_dependency_waits_for_a_condition_that_can_be_met,
    check_every_long_running_service_has_a_health_check,
    check_no_secret_is_written,
    check_state_lives_in_named_volumes,
    check_the_registry_seed,
    environment,
    interpolate,
    load_service_settings,
    mounts,
    published_ports,
    schema_errors,
)
from tests.postgres import PrivatePostgres

# Secrets with a fallback: tokens of less power than the admin token, optional.
OPTIONAL_SECRETS = frozenset({"INFLUXDB_FIREWATCH_TOKEN", "INFLUXDB_GRAFANA_TOKEN"})
MAIN = Stack(ROOT / "docker-compose.yml", ROOT / ".env.example", OPTIONAL_SECRETS)
raw_compose, compose, filled_env, host_path = MAIN.raw, MAIN.compose, MAIN.filled_env, MAIN.host_path


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


def test_env_example_holds_no_secret_value() -> None:
    check_env_example_holds_no_secret_value(MAIN)


def test_a_missing_secret_stops_compose_with_a_message_naming_it() -> None:
    check_a_missing_secret_stops_compose(MAIN)
    for name in sorted(OPTIONAL_SECRETS):
        env = filled_env()
        del env[name]
        stack = compose(env)  # falls back to the admin token
        tokens = [environment(s).get(k) for s in stack["services"].values() for k in ("INFLUXDB_TOKEN",
                  "FIREWATCH_INFLUX__TOKEN")]  # fmt: skip
        assert env["INFLUXDB_ADMIN_TOKEN"] in tokens


def test_env_example_documents_exactly_the_variables_the_compose_file_uses() -> None:
    check_env_example_documents_exactly_the_variables_used(MAIN)


def test_no_secret_is_written_in_the_compose_file() -> None:
    """Every password, token or credential in a URL comes from a variable."""
    check_no_secret_is_written(MAIN)


# --- operation: health checks, start order, state, ports ------------------------------------------------


def test_every_long_running_service_has_a_health_check() -> None:
    check_every_long_running_service_has_a_health_check(MAIN)


def test_every_dependency_waits_for_a_condition_that_can_be_met() -> None:
    check_every_dependency_waits_for_a_condition_that_can_be_met(MAIN)
    services = compose()["services"]
    # The alarm path waits for its broker and database, never for the telemetry archive.
    fw = services["firewatch"]["depends_on"]
    assert fw["mosquitto"]["condition"] == fw["postgres"]["condition"] == "service_healthy"
    assert fw["influxdb"]["condition"] == "service_started"
    assert (
        services["mosquitto"]["depends_on"]["mosquitto-init"]["condition"] == "service_completed_successfully"
    )


def test_all_state_lives_in_named_volumes() -> None:
    services = compose()["services"]
    fw_data = environment(services["firewatch"])["FIREWATCH_DATA_DIR"]
    check_state_lives_in_named_volumes(
        MAIN,
        {
            "mosquitto": ["/mosquitto/data", "/mosquitto/log"],
            "influxdb": ["/var/lib/influxdb2", "/etc/influxdb2"],
            "postgres": ["/var/lib/postgresql/data"],
            "grafana": ["/var/lib/grafana"],
            "firewatch": [fw_data],
        },
    )
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
    published = published_ports(compose(env)["services"])
    assert published.pop(("mosquitto", "1883")) == "0.0.0.0"  # devices must reach it
    assert published.pop(("firewatch", "26875")) == "0.0.0.0"  # so must the panels' transmission devices
    assert published, "the API, Grafana and InfluxDB should be published on this host"
    assert set(published.values()) == {"127.0.0.1"}, published
    assert not any(name == "postgres" for name, _ in published)
    assert ("mosquitto", "1884") not in published  # the service's listener stays inside the stack


def test_bind_mounted_configuration_exists_in_the_repository() -> None:
    check_bind_mounted_configuration_exists(MAIN)


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


def test_firewatch_environment_names_real_settings_and_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    env = filled_env()
    services = compose(env)["services"]
    settings = load_service_settings(MAIN, services["firewatch"], monkeypatch)

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
    seed_file = check_the_registry_seed(MAIN, "firewatch-init", "firewatch", tmp_path)
    assert load_registry(seed_file).devices


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
    for path in (".env", ".env.example", "deploy/cluster/.env", "deploy/mosquitto/passwd",
                 "deploy/device-passwords.csv", "devices.csv", "data/demo/firewatch.sqlite", ".git/config",
                 "tests/conftest.py", "core/__pycache__/settings.cpython-311.pyc",
                 "api/x.sqlite-wal"):  # fmt: skip
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
