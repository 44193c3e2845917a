"""The scale-out stack's files: deploy/cluster/docker-compose.yml, its .env.example and the engine's
configuration, deploy/cluster/nats/nats-server.conf.

No Docker daemon runs here, so no container is built or started. What is checked: the compose file
against the Compose specification's JSON schema and the properties the production stack has too
(tests/compose_stack.py: secrets only from .env, health checks, start order, state in named volumes,
ports, bind mounts); the workers' environment, loaded into the settings; the one-shot migration, on
a real PostgreSQL; and the engine's configuration by a real nats-server: accepted for each node, and
three servers started from it on loopback ports form a cluster whose MQTT listener takes a device's
message onto its partition's subject.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import nats
import paho.mqtt.client as mqtt
import pytest
from alembic.script import ScriptDirectory
from nats.errors import Error as NatsError
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import create_engine, text

import core.settings
from storage.db import alembic_config
from tests.compose_stack import (
    ROOT,
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
    load_service_settings,
    mounts,
    published_ports,
    schema_errors,
)

CLUSTER = Stack(
    ROOT / "deploy" / "cluster" / "docker-compose.yml", ROOT / "deploy" / "cluster" / ".env.example"
)
NODES = ("nats-1", "nats-2", "nats-3")
WORKERS = ("worker-1", "worker-2", "worker-3")
NATS_CONF_IN_CONTAINER = "/etc/nats/nats-server.conf"
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
# Hex passwords, as openssl rand -hex makes them, that nats-server's parser would take for numbers
# were they not quoted: the running engine below signs in with these.
NUMBER_LIKE_PASSWORDS = {"NATS_FIREWATCH_PASSWORD": "0123456789", "MQTT_DEVICE_PASSWORD": "5e30abcdef"}


def services() -> dict[str, Any]:
    stack: dict[str, Any] = CLUSTER.compose()["services"]
    return stack


# --- the Compose specification --------------------------------------------------------------------------


def test_the_cluster_compose_file_is_valid_against_the_compose_specification() -> None:
    assert schema_errors(CLUSTER.raw()) == []
    assert schema_errors(CLUSTER.compose()) == []
    assert "version" not in CLUSTER.raw()


def test_it_is_a_project_of_its_own_next_to_the_single_node_stack() -> None:
    assert CLUSTER.raw()["name"] == "firewatch-cluster"
    assert set(services()) == {
        *NODES,
        "postgres",
        "firewatch-migrate",
        *WORKERS,
        *(f"{w}-init" for w in WORKERS),
    }


# --- secrets and .env -----------------------------------------------------------------------------------


def test_secrets_come_only_from_env() -> None:
    check_env_example_holds_no_secret_value(CLUSTER)
    check_a_missing_secret_stops_compose(CLUSTER)
    check_env_example_documents_exactly_the_variables_used(CLUSTER)
    check_no_secret_is_written(CLUSTER)


# --- operation: health checks, start order, state, ports ------------------------------------------------


def test_every_long_running_service_has_a_health_check() -> None:
    check_every_long_running_service_has_a_health_check(CLUSTER)
    for name in NODES:
        test = " ".join(services()[name]["healthcheck"]["test"])
        assert "http://127.0.0.1:8222/healthz?js-enabled-only=true" in test, name
    for name in WORKERS:
        test = " ".join(services()[name]["healthcheck"]["test"])
        port = environment(services()[name])["FIREWATCH_API__PORT"]
        assert f"http://127.0.0.1:{port}/readyz" in test, name


def test_workers_start_once_the_schema_their_registry_the_database_and_the_engine_are_there() -> None:
    check_every_dependency_waits_for_a_condition_that_can_be_met(CLUSTER)
    for name in WORKERS:
        conditions = {target: spec["condition"] for target, spec in services()[name]["depends_on"].items()}
        assert conditions == {
            "firewatch-migrate": "service_completed_successfully",
            f"{name}-init": "service_completed_successfully",
            "postgres": "service_healthy",
            **dict.fromkeys(NODES, "service_healthy"),
        }
    assert services()["firewatch-migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}


def test_all_state_lives_in_named_volumes_one_per_node_and_per_worker() -> None:
    data_dirs = {name: environment(services()[name])["FIREWATCH_DATA_DIR"] for name in WORKERS}
    check_state_lives_in_named_volumes(
        CLUSTER,
        {
            **{name: ["/data"] for name in NODES},
            "postgres": ["/var/lib/postgresql/data"],
            **{name: [path] for name, path in data_dirs.items()},
        },
    )
    volumes = [
        next(m.source for m in mounts(services()[name]) if m.target == path)
        for name, path in [*((n, "/data") for n in NODES), *data_dirs.items()]
    ]
    assert len(set(volumes)) == len(volumes), "nodes and workers share nothing on disk"
    # JetStream (the stream FW, the MQTT sessions) is kept on the node's volume.
    store_dir = re.search(r"^\s*store_dir:\s*(\S+)", nats_conf(), re.M)
    assert store_dir
    assert Path(store_dir.group(1)).is_relative_to("/data")


@pytest.mark.parametrize("where", ["compose defaults", ".env.example"])
def test_only_the_engines_mqtt_listeners_are_published_beyond_this_host(where: str) -> None:
    env = CLUSTER.filled_env()
    if where == "compose defaults":
        env = {k: v for k, v in env.items() if not k.endswith("_PUBLISH") and "_PUBLISH_" not in k}
    published = published_ports(CLUSTER.compose(env)["services"])
    for name in NODES:  # devices may connect to any node
        assert published.pop((name, "1883")) == "0.0.0.0"
    assert sorted(published) == [(name, "8080") for name in WORKERS]
    assert set(published.values()) == {"127.0.0.1"}
    host_ports = [
        str(p).rsplit(":", 2)[1]
        for s in CLUSTER.compose(env)["services"].values()
        for p in s.get("ports", [])
    ]
    assert len(set(host_ports)) == len(host_ports), "each published port needs a host port of its own"


def test_bind_mounted_configuration_exists_in_the_repository() -> None:
    check_bind_mounted_configuration_exists(CLUSTER)
    postgres = services()["postgres"]
    assert (
        CLUSTER.host_path(postgres, "/docker-entrypoint-initdb.d") == ROOT / "deploy" / "postgres" / "initdb"
    )


def test_the_workers_are_built_from_the_repositorys_image() -> None:
    for name in (*WORKERS, *(f"{w}-init" for w in WORKERS), "firewatch-migrate"):
        build = services()[name]["build"]
        assert (CLUSTER.folder / build["context"]).resolve() == ROOT, name
        assert build["dockerfile"] == "Dockerfile"
        assert services()[name]["image"] == "firewatch:local"
    single_node = Stack(ROOT / "docker-compose.yml", ROOT / ".env.example").raw()["services"]["firewatch"]
    assert single_node["image"] == "firewatch:local", "the same image as the single-node stack"


# --- the workers ----------------------------------------------------------------------------------------


def test_each_worker_seeds_its_own_registry_once(tmp_path: Path) -> None:
    for name in WORKERS:
        check_the_registry_seed(CLUSTER, f"{name}-init", name, tmp_path / name)


def test_the_workers_differ_only_in_their_name_and_published_address() -> None:
    stack = services()  # once: each filling-in makes new secrets
    envs = {name: environment(stack[name]) for name in WORKERS}
    ids = [env.pop("FIREWATCH_CLUSTER__WORKER_ID") for env in envs.values()]
    assert ids == list(WORKERS), "distinct worker ids: each holds leases under its own"
    urls = [env.pop("FIREWATCH_CLUSTER__API_URL") for env in envs.values()]
    assert len(set(urls)) == len(urls)
    first = envs["worker-1"]
    assert all(env == first for env in envs.values())


@pytest.mark.skipif(
    not hasattr(core.settings, "ClusterSettings"),
    reason="the cluster's settings (core/settings.py) are not here yet",
)
def test_the_workers_environment_names_real_settings_and_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    env = CLUSTER.filled_env()
    stack = CLUSTER.compose(env)["services"]
    for name in WORKERS:
        settings = load_service_settings(CLUSTER, stack[name], monkeypatch)
        cluster: Any = getattr(settings, "cluster")  # noqa: B009 (absent until ClusterSettings lands)
        assert cluster.enabled
        assert cluster.worker_id == name
        assert cluster.partitions == mapping_partitions()
        engine = [urlsplit(url) for url in cluster.engine]
        assert [(u.scheme, u.hostname, u.port) for u in engine] == [("nats", node, 4222) for node in NODES]
        assert {(u.username, u.password) for u in engine} == {("firewatch", env["NATS_FIREWATCH_PASSWORD"])}
        db = urlsplit(settings.resolved_database_url)
        assert (db.scheme, db.hostname, db.path) == ("postgresql+psycopg", "postgres", "/firewatch")
        assert (db.username, db.password) == ("firewatch", env["POSTGRES_FIREWATCH_PASSWORD"])
        assert settings.registry is not None
        assert settings.data_dir in settings.registry.parents
        assert settings.api.host == "0.0.0.0"


@pytest.mark.integration
@pytest.mark.fresh_migrations  # postgres_url: an empty database, not a copy of a migrated one
def test_the_one_shot_migration_brings_an_empty_database_to_the_newest_revision(postgres_url: str) -> None:
    migrate = services()["firewatch-migrate"]
    assert migrate["entrypoint"] == ["python", "-c"]
    url = postgres_url.replace("postgresql://", "postgresql+psycopg://", 1)
    env = {"FIREWATCH_DATABASE_URL": url, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for _ in range(2):  # every `docker compose up` runs it again: a no-op once migrated
        result = subprocess.run(
            ["python", "-c", migrate["command"][0]],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
            assert conn.execute(text("SELECT count(*) FROM alarms")).scalar_one() == 0
        assert version == ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    finally:
        engine.dispose()


# --- the engine's configuration --------------------------------------------------------------------------


def nats_conf() -> str:
    node = services()[NODES[0]]
    return CLUSTER.host_path(node, NATS_CONF_IN_CONTAINER).read_text(encoding="utf-8")


def mapping_partitions() -> int:
    """P of the device subjects' `{{partition(P,...)}}` in the configuration's mappings."""
    found = re.findall(r'"fw\.v1\.\*\.\*\.\*"\s*:\s*"[^"]*\{\{partition\((\d+),', nats_conf())
    assert len(found) == 1, "one mapping partitions the devices' subjects"
    return int(found[0])


def engine_module() -> ModuleType | None:
    """firewatch.cluster.engine, whose mapping and hash the configuration must agree with; None
    until it is on this branch (the checks against it are then left out)."""
    try:
        return importlib.import_module("firewatch.cluster.engine")
    except ModuleNotFoundError:
        return None


def node_environment(name: str) -> dict[str, str]:
    """The variables a node's server reads from its environment ($NAME in the configuration)."""
    env = environment(services()[name])
    referenced = set(re.findall(r"^\s*\w+:\s*\$([A-Z][A-Z0-9_]*)\s*$", nats_conf(), re.M))
    assert referenced, "the configuration reads its node's name and the passwords from the environment"
    assert referenced <= set(env), f"{name} lacks {referenced - set(env)}"
    return env


def test_every_node_runs_the_one_configuration_under_its_own_name() -> None:
    for name in NODES:
        node = services()[name]
        assert node["command"] == ["--config", NATS_CONF_IN_CONTAINER]
        assert node_environment(name)["NATS_SERVER_NAME"] == name
        assert re.search(r"^server_name:\s*\$NATS_SERVER_NAME\s*$", nats_conf(), re.M)
    routes = re.findall(r"nats-route://([\w-]+):(\d+)", nats_conf())
    assert routes == [(name, "6222") for name in NODES], "every node routes to every node"


def test_the_nats_server_accepts_the_configuration_of_each_node() -> None:
    filled = CLUSTER.filled_env() | NUMBER_LIKE_PASSWORDS
    for name in NODES:
        node = CLUSTER.compose(filled)["services"][name]
        env = {**environment(node), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        conf = CLUSTER.host_path(services()[name], NATS_CONF_IN_CONTAINER)
        result = subprocess.run([NATS_SERVER, "-c", str(conf), "-t"], env=env, capture_output=True, text=True)
        assert result.returncode == 0, f"{name}: {result.stderr}"


def test_the_nats_server_check_catches_a_missing_variable_and_a_bad_mapping(tmp_path: Path) -> None:
    env = {**node_environment("nats-1"), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    conf = tmp_path / "nats-server.conf"
    conf.write_text(nats_conf().replace("{{partition(", "{{partitio("), encoding="utf-8")
    assert subprocess.run([NATS_SERVER, "-c", str(conf), "-t"], env=env, capture_output=True).returncode != 0
    conf.write_text(nats_conf(), encoding="utf-8")
    del env["NATS_SERVER_NAME"]
    assert subprocess.run([NATS_SERVER, "-c", str(conf), "-t"], env=env, capture_output=True).returncode != 0


def test_the_engine_has_as_many_partitions_as_the_workers_expect() -> None:
    for name in WORKERS:
        assert int(environment(services()[name])["FIREWATCH_CLUSTER__PARTITIONS"]) == mapping_partitions()
    engine = engine_module()
    if engine is not None:
        mappings = dict(re.findall(r'^\s*"([^"]+)"\s*:\s*"([^"]+)"\s*$', nats_conf(), re.M))
        assert mappings == engine.partition_mappings(mapping_partitions())


def test_the_configuration_listens_where_the_compose_file_expects() -> None:
    conf = nats_conf()
    listens = dict(re.findall(r"^(listen|http):\s*0\.0\.0\.0:(\d+)", conf, re.M))  # the top level's
    mqtt_block = re.search(r"^mqtt\s*\{([^}]*)\}", conf, re.M)
    assert mqtt_block
    mqtt_port = re.search(r"listen:\s*0\.0\.0\.0:(\d+)", mqtt_block.group(1))
    assert mqtt_port
    for name in NODES:
        assert any(str(p).endswith(f":{mqtt_port.group(1)}") for p in services()[name]["ports"])
        assert f"127.0.0.1:{listens['http']}/healthz" in " ".join(services()[name]["healthcheck"]["test"])
    engine = json.loads(environment(services()["worker-1"])["FIREWATCH_CLUSTER__ENGINE"])
    assert {urlsplit(url).port for url in engine} == {int(listens["listen"])}
    # Sessions survive a node's loss only when their streams have a replica on another node.
    assert re.search(r"^\s*stream_replicas:\s*3\s*$", mqtt_block.group(1), re.M)
    assert re.search(r"^\s*consumer_replicas:\s*3\s*$", mqtt_block.group(1), re.M)


# --- the engine, running: three nats-servers from the configuration, on loopback ports --------------------


@dataclass(frozen=True)
class Ports:
    client: int
    cluster: int
    mqtt: int
    http: int


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def on_loopback(conf: str, me: Ports, nodes: dict[str, Ports], store_dir: Path) -> str:
    """The configuration with its addresses on loopback ports and its store in a folder of the test;
    each replaced text must be there exactly once, so a change of the file's form fails here."""

    def replace(text: str, old: str, new: str) -> str:
        assert text.count(old) == 1, f"expected {old!r} once in the configuration"
        return text.replace(old, new)

    conf = replace(conf, "listen: 0.0.0.0:4222", f"listen: 127.0.0.1:{me.client}")
    conf = replace(conf, "http: 0.0.0.0:8222", f"http: 127.0.0.1:{me.http}")
    conf = replace(conf, "listen: 0.0.0.0:6222", f"listen: 127.0.0.1:{me.cluster}")
    conf = replace(conf, "listen: 0.0.0.0:1883", f"listen: 127.0.0.1:{me.mqtt}")
    conf = replace(conf, "store_dir: /data/jetstream", f'store_dir: "{store_dir}"')
    for name, ports in nodes.items():
        conf = replace(conf, f"nats-route://{name}:6222", f"nats-route://127.0.0.1:{ports.cluster}")
    return conf


@dataclass(frozen=True)
class Engine:
    nodes: dict[str, Ports]
    env: dict[str, str]


def wait_until(ready: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    """Poll `ready()` until it is true; fail naming `what` after timeout_s (a bound, not a measure)."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert time.monotonic() < deadline, f"{what} within {timeout_s:.0f} s"
        time.sleep(0.2)


def healthy(ports: Ports) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ports.http}/healthz?js-enabled-only=true", timeout=2):
            return True
    except (urllib.error.URLError, ConnectionError):
        return False


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    numbers = free_ports(4 * len(NODES))
    nodes = {name: Ports(*numbers[4 * i : 4 * i + 4]) for i, name in enumerate(NODES)}
    env = CLUSTER.filled_env() | NUMBER_LIKE_PASSWORDS
    processes = []
    try:
        for name, ports in nodes.items():
            folder = tmp_path / name
            folder.mkdir()
            conf = folder / "nats-server.conf"
            conf.write_text(on_loopback(nats_conf(), ports, nodes, folder / "jetstream"), encoding="utf-8")
            node_env = {
                **environment(CLUSTER.compose(env)["services"][name]),
                "PATH": os.environ.get("PATH", ""),
            }
            log = (folder / "server.log").open("wb")
            processes.append(
                subprocess.Popen([NATS_SERVER, "-c", str(conf)], env=node_env, stdout=log, stderr=log)
            )
            log.close()
        for name, ports in nodes.items():
            wait_until(functools.partial(healthy, ports), f"{name} answers its health check")
        yield Engine(nodes, env)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def mqtt_connect(port: int, user: str, password: str) -> mqtt.Client | ReasonCode | None:
    """A connected MQTT 3.1.1 client, the reason the server refused it, or None when it did not
    answer within 10 s."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{uuid.uuid4().hex[:8]}")
    client.username_pw_set(user, password)
    answered = threading.Event()
    codes: list[ReasonCode] = []

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, code: ReasonCode, _p: Any) -> None:
        codes.append(code)
        answered.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    if answered.wait(10) and not codes[0].is_failure:
        return client
    client.loop_stop()
    client.disconnect()
    return codes[0] if codes else None


@pytest.mark.integration
def test_three_servers_from_the_configuration_form_the_engine(engine: Engine) -> None:
    """A device signs in on one node and publishes its reading; a worker on another node sees it on
    its partition's subject; the MQTT sessions are kept with three replicas."""
    nodes, env = engine.nodes, engine.env
    topic = "fw/v1/site-a/smoke-0001/telemetry"

    async def scenario() -> None:
        worker = await nats.connect(
            f"nats://127.0.0.1:{nodes['nats-2'].client}",
            user="firewatch",
            password=env["NATS_FIREWATCH_PASSWORD"],
        )
        try:
            sub = await worker.subscribe("fwp.>")
            await worker.flush()

            def publish() -> None:
                def connected() -> bool:
                    client = mqtt_connect(nodes["nats-1"].mqtt, "device", env["MQTT_DEVICE_PASSWORD"])
                    if not isinstance(client, mqtt.Client):
                        return False  # the MQTT streams are made once the cluster has formed
                    client.publish(topic, b'{"seq": 1}', qos=1).wait_for_publish(10)
                    client.loop_stop()
                    client.disconnect()
                    return True

                wait_until(connected, "a device connects and publishes", 60)

            await asyncio.to_thread(publish)
            message = await sub.next_msg(timeout=30)
            partition = message.subject.split(".")[1]
            assert message.subject == f"fwp.{partition}.fw.v1.site-a.smoke-0001.telemetry"
            assert 0 <= int(partition) < mapping_partitions()
            engine_code = engine_module()
            if engine_code is not None:
                assert int(partition) == engine_code.partition_of("site-a", mapping_partitions())
            js = worker.jetstream()
            sessions = await js.stream_info("$MQTT_sess")
            assert sessions.config.num_replicas == 3
        finally:
            await worker.close()

    asyncio.run(scenario())


@pytest.mark.integration
def test_devices_and_workers_sign_in_only_where_they_belong(engine: Engine) -> None:
    nodes, env = engine.nodes, engine.env
    refused = mqtt_connect(nodes["nats-3"].mqtt, "firewatch", env["NATS_FIREWATCH_PASSWORD"])
    assert isinstance(refused, ReasonCode), "the workers' user is not an MQTT user"
    wrong = mqtt_connect(nodes["nats-3"].mqtt, "device", "not-the-password")
    assert isinstance(wrong, ReasonCode)

    async def as_nats_client() -> None:
        with pytest.raises(NatsError):
            await nats.connect(
                f"nats://127.0.0.1:{nodes['nats-3'].client}",
                user="device",
                password=env["MQTT_DEVICE_PASSWORD"],
                allow_reconnect=False,
                max_reconnect_attempts=0,
            )

    asyncio.run(as_nats_client())
