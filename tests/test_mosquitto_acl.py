"""The production broker against a real mosquitto: who may sign in where, the access rules, the
queue across a broker crash, and the device credentials.

The broker runs the repository's own deploy/mosquitto/mosquitto.conf and deploy/mosquitto/acl,
changed only where a test must: the two listeners' ports (free loopback ports), the /mosquitto/
paths (a temporary folder) and, when the tests run as root, `user root` (mosquitto would otherwise
drop to its own user, which cannot read the temporary folder). The password files are the ones the
compose file's own mosquitto-init script makes: the devices' from what `firewatch broker passwords`
writes for deploy/firewatch/registry.yaml, the service's with mosquitto_passwd.
"""

from __future__ import annotations

import csv
import os
import pwd
import shutil
import signal
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from typer.testing import CliRunner

from core.registry import load_registry
from firewatch.broker import BrokerError, free_port, mosquitto_binary, wait_for_port
from firewatch.broker_auth import (
    format_password_file,
    hash_password,
    parse_password_file,
    plan_passwords,
    verify_password,
)
from firewatch.cli import app

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
REGISTRY = DEPLOY / "firewatch" / "registry.yaml"
SERVICE_PASSWORD = "0f3c9d1e7a5b2c4d6e8f0a1b3c5d7e9f"
NOT_AUTHORIZED = 0x87  # MQTT 5 reason code "Not authorized"
QUIET_S = 0.5  # how long "nothing arrives" is watched for, after a later message did arrive


# --- the broker ------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    return data


def run_init_script(deploy: Path, auth: Path, service_password: str) -> None:
    """The compose file's mosquitto-init command, run here with its two folders moved."""
    script = compose()["services"]["mosquitto-init"]["command"][0]
    script = (
        script.replace("$$", "$").replace("/deploy/", f"{deploy}/").replace("/mosquitto/auth/", f"{auth}/")
    )
    try:
        pwd.getpwnam("mosquitto")
        can_chown = os.geteuid() == 0
    except KeyError:
        can_chown = False
    if not can_chown:  # only root can give files away; the rest of the script runs as it is
        script = "\n".join(line for line in script.splitlines() if not line.startswith("chown "))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MQTT_FIREWATCH_PASSWORD": service_password}
    result = subprocess.run(["/bin/sh", "-euc", script], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@dataclass
class StackBroker:
    device_port: int
    service_port: int
    passwords: dict[str, str]  # device id -> password, from the secrets CSV
    sites: dict[str, str]
    folder: Path
    proc: subprocess.Popen[bytes] | None = None

    def device(self, index: int) -> tuple[str, str, str]:
        """(device id, site, password) of the registry's index-th device."""
        device_id = sorted(self.passwords)[index]
        return device_id, self.sites[device_id], self.passwords[device_id]

    def start(self) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise BrokerError("mosquitto is not installed: install it (apt-get install -y mosquitto)")
        with (self.folder / "broker.log").open("ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(
                [binary, "-c", str(self.folder / "mosquitto.conf")], stdout=log, stderr=log
            )
        wait_for_port("127.0.0.1", self.device_port)
        wait_for_port("127.0.0.1", self.service_port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def kill(self) -> None:
        """A crash: SIGKILL, so mosquitto cannot write its database on the way out."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None


def prepare_broker(folder: Path) -> StackBroker:
    """The deploy config, ACL and password files in `folder`, on two free ports; not started."""
    deploy, auth = folder / "deploy", folder / "auth"
    for sub in (deploy, auth, folder / "data", folder / "log"):
        sub.mkdir()
    shutil.copy(DEPLOY / "mosquitto" / "acl", deploy / "acl")
    result = CliRunner().invoke(
        app,
        [
            "broker",
            "passwords",
            "--registry",
            str(REGISTRY),
            "--out",
            str(deploy / "passwd"),
            "--secrets",
            str(folder / "devices.csv"),
        ],
    )
    assert result.exit_code == 0, result.output
    run_init_script(deploy, auth, SERVICE_PASSWORD)

    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text(encoding="utf-8")
    device_port, service_port = free_port(), free_port()
    for line, port in (("listener 1883\n", device_port), ("listener 1884\n", service_port)):
        assert conf.count(line) == 1, f"deploy/mosquitto/mosquitto.conf should have one '{line.strip()}'"
        conf = conf.replace(line, f"listener {port} 127.0.0.1\n")
    conf = conf.replace("/mosquitto/", f"{folder}/")
    if os.geteuid() == 0:
        conf += "\nuser root\n"
    (folder / "mosquitto.conf").write_text(conf, encoding="utf-8")

    with (folder / "devices.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return StackBroker(
        device_port,
        service_port,
        {r["device_id"]: r["mqtt_password"] for r in rows},
        {r["device_id"]: r["site"] for r in rows},
        folder,
    )


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackBroker]:
    stack = prepare_broker(tmp_path_factory.mktemp("stack-mosquitto"))
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


# --- MQTT clients ----------------------------------------------------------------------------------


@dataclass
class Client:
    """A paho MQTT 5 client with blocking helpers."""

    port: int
    username: str | None
    password: str | None
    client_id: str = field(default_factory=lambda: f"t-{uuid.uuid4().hex[:10]}")
    # The service's way (ingest/mqtt.py): clean_start False with a session expiry keeps its session,
    # and what is queued for it, while it is away.
    clean_start: bool = True
    session_expiry_s: int = 0
    received: list[tuple[str, bytes]] = field(default_factory=list)
    connack: ReasonCode | None = None
    session_present: bool | None = None

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._acks: dict[int, int] = {}
        self._subacks: dict[int, list[int]] = {}
        self.connected = False
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        c.reconnect_delay_set(5, 5)  # a refused client should not hammer the broker while we look
        if self.username is not None:
            c.username_pw_set(self.username, self.password)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        self.client = c

    def _on_connect(
        self, _c: mqtt.Client, _u: object, flags: mqtt.ConnectFlags, rc: ReasonCode, _p: object
    ) -> None:
        with self._cond:
            self.connack, self.connected = rc, not rc.is_failure
            self.session_present = flags.session_present
            self._cond.notify_all()

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, _rc: object, _p: object) -> None:
        with self._cond:
            self.connected = False
            self._cond.notify_all()

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, rc: ReasonCode, _p: object) -> None:
        with self._cond:
            self._acks[mid] = rc.value
            self._cond.notify_all()

    def _on_subscribe(self, _c: mqtt.Client, _u: object, mid: int, rcs: list[ReasonCode], _p: object) -> None:
        with self._cond:
            self._subacks[mid] = [rc.value for rc in rcs]
            self._cond.notify_all()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.received.append((msg.topic, bytes(msg.payload)))
            self._cond.notify_all()

    def _wait(self, check: Callable[[], bool], timeout: float = 5.0) -> None:
        with self._cond:
            assert self._cond.wait_for(check, timeout), "no answer from the broker"

    def connect(self) -> ReasonCode:
        properties = None
        if self.session_expiry_s:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self.session_expiry_s
        self.client.connect("127.0.0.1", self.port, clean_start=self.clean_start, properties=properties)
        self.client.loop_start()
        self._wait(lambda: self.connack is not None)
        assert self.connack is not None
        return self.connack

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> int:
        """Publish with QoS 1; the PUBACK's reason code."""
        mid = self.client.publish(topic, payload, qos=1, retain=retain).mid
        self._wait(lambda: mid in self._acks)
        return self._acks[mid]

    def subscribe(self, *topics: str) -> list[int]:
        _, mid = self.client.subscribe([(t, 1) for t in topics])
        assert mid is not None
        self._wait(lambda: mid in self._subacks)
        return self._subacks[mid]

    def wait_for(self, topic: str, payload: bytes, timeout: float = 5.0) -> None:
        self._wait(lambda: (topic, payload) in self.received, timeout)

    def wait_for_count(self, count: int, timeout: float, quiet_s: float = 2.0) -> None:
        """Until `count` messages have arrived, nothing more has come for `quiet_s`, or `timeout`
        has passed; the caller then counts what did arrive."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.received) < count and time.monotonic() < deadline:
                before = len(self.received)
                self._cond.wait(min(quiet_s, max(0.0, deadline - time.monotonic())))
                if len(self.received) == before:
                    return

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        c.close()


def connected(
    made: list[Client], port: int, user: str | None, password: str | None, client_id: str | None = None
) -> Client:
    c = Client(port, user, password) if client_id is None else Client(port, user, password, client_id)
    made.append(c)
    rc = c.connect()
    assert not rc.is_failure, f"{user} could not connect: {rc}"
    return c


def service(broker: StackBroker, made: list[Client], client_id: str | None = None) -> Client:
    """The firewatch service's user on its own listener, subscribed like the ingest."""
    fw = connected(made, broker.service_port, "firewatch", SERVICE_PASSWORD, client_id)
    assert fw.subscribe("fw/v1/#") == [1]
    return fw


def marker() -> bytes:
    return uuid.uuid4().hex.encode()


# --- who may connect -------------------------------------------------------------------------------


@pytest.mark.parametrize("listener", ["device", "service"])
def test_a_client_without_credentials_is_refused(broker: StackBroker, listener: str) -> None:
    port = broker.device_port if listener == "device" else broker.service_port
    c = Client(port, None, None)
    try:
        assert c.connect().is_failure
        assert not c.connected
    finally:
        c.close()


def test_a_wrong_password_is_refused(broker: StackBroker) -> None:
    (a, _, a_password), (_b, _, b_password) = broker.device(0), broker.device(1)
    for user, password in ((a, "not-the-password"), (a, b_password), ("firewatch", a_password)):
        c = Client(broker.device_port, user, password)
        try:
            assert c.connect().is_failure, f"{user} signed in with a wrong password"
        finally:
            c.close()


def test_only_the_service_signs_in_on_the_services_listener(broker: StackBroker) -> None:
    """A device password opens the devices' listener only, and the service's password the service's
    listener only: each listener has a password file of its own (per_listener_settings)."""
    device_id, _, password = broker.device(0)
    for port, user, secret in (
        (broker.service_port, device_id, password),
        (broker.device_port, "firewatch", SERVICE_PASSWORD),
    ):
        c = Client(port, user, secret)
        try:
            assert c.connect().is_failure, f"{user} signed in on port {port}"
            assert not c.connected
        finally:
            c.close()
    for port, user, secret in (
        (broker.service_port, "firewatch", SERVICE_PASSWORD),
        (broker.device_port, device_id, password),
    ):
        c = Client(port, user, secret)
        try:
            assert not c.connect().is_failure, f"{user} could not sign in on port {port}"
        finally:
            c.close()


def test_every_device_of_the_registry_can_sign_in(broker: StackBroker, clients: list[Client]) -> None:
    """The hashes written by `firewatch broker passwords` are ones mosquitto accepts."""
    assert set(broker.passwords) == set(load_registry(REGISTRY).devices)
    for device_id, password in broker.passwords.items():
        c = connected(clients, broker.device_port, device_id, password)
        c.close()


# --- what devices may do -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["telemetry", "event", "status"])
def test_a_device_publishes_its_own_topics_and_the_service_receives_them(
    broker: StackBroker, clients: list[Client], kind: str
) -> None:
    device_id, site, password = broker.device(0)
    fw = service(broker, clients)
    dev = connected(clients, broker.device_port, device_id, password)
    topic, payload = f"fw/v1/{site}/{device_id}/{kind}", marker()
    assert dev.publish(topic, payload, retain=kind == "status") == 0
    fw.wait_for(topic, payload)


def test_a_device_cannot_publish_as_another_device(broker: StackBroker, clients: list[Client]) -> None:
    (a, site, a_password), (b, _, _) = broker.device(0), broker.device(1)
    fw = service(broker, clients)
    dev = connected(clients, broker.device_port, a, a_password)
    forged = marker()
    for kind in ("telemetry", "event", "status"):
        assert dev.publish(f"fw/v1/{site}/{b}/{kind}", forged) == NOT_AUTHORIZED
    # Messages from one client reach a subscriber in order: once the next one has arrived, the
    # forged ones are known not to have been delivered.
    after = marker()
    assert dev.publish(f"fw/v1/{site}/{a}/telemetry", after) == 0
    fw.wait_for(f"fw/v1/{site}/{a}/telemetry", after)
    assert all(payload != forged for _, payload in fw.received)


def test_a_device_cannot_publish_alarms_tickets_or_outside_its_topics(
    broker: StackBroker, clients: list[Client]
) -> None:
    a, site, password = broker.device(0)
    fw = service(broker, clients)
    dev = connected(clients, broker.device_port, a, password)
    forged = marker()
    for topic in (
        f"fw/v1/{site}/alarms",
        f"fw/v1/{site}/tickets",
        f"fw/v1/{site}/{a}/cmd",  # not one of the three kinds
        f"fw/v1/{site}/{a}",
        "fw/v1/other",
        f"$SYS/broker/{a}",
    ):
        assert dev.publish(topic, forged) == NOT_AUTHORIZED, topic
    after = marker()
    assert dev.publish(f"fw/v1/{site}/{a}/event", after) == 0
    fw.wait_for(f"fw/v1/{site}/{a}/event", after)
    assert all(payload != forged for _, payload in fw.received)


def test_a_device_reads_nothing(broker: StackBroker, clients: list[Client]) -> None:
    """Not other devices' readings, not the alarms, not even its own topics. (mosquitto 2.0 grants
    the subscription and filters each message at delivery, so what counts is what arrives.)"""
    (a, site, a_password), (b, _, b_password) = broker.device(0), broker.device(1)
    fw = service(broker, clients)
    spy = connected(clients, broker.device_port, a, a_password)
    spy.subscribe("fw/v1/#", f"fw/v1/{site}/{b}/telemetry", f"fw/v1/{site}/alarms", "#", "$SYS/#")
    other = connected(clients, broker.device_port, b, b_password)
    reading, alarm = marker(), marker()
    assert other.publish(f"fw/v1/{site}/{b}/telemetry", reading) == 0
    assert fw.publish(f"fw/v1/{site}/alarms", alarm) == 0
    assert spy.publish(f"fw/v1/{site}/{a}/telemetry", marker()) == 0
    fw.wait_for(f"fw/v1/{site}/alarms", alarm)
    fw.wait_for(f"fw/v1/{site}/{b}/telemetry", reading)
    time.sleep(QUIET_S)
    assert spy.received == []


def test_no_device_can_push_the_service_or_another_device_off_the_broker(
    broker: StackBroker, clients: list[Client]
) -> None:
    """A second connection with a client id in use takes it over. On the devices' listener the
    client id is the user name, so a device cannot take the service's id or another device's."""
    (a, _, a_password), (b, _, b_password) = broker.device(0), broker.device(1)
    fw = service(broker, clients, client_id="firewatch-ingest")
    dev_a = connected(clients, broker.device_port, a, a_password)
    connected(clients, broker.device_port, b, b_password, client_id="firewatch-ingest")
    connected(clients, broker.device_port, b, b_password, client_id=a)
    time.sleep(QUIET_S)
    assert fw.connected
    assert dev_a.connected


SERVICE_CLIENT_ID = "firewatch-ingest"  # core/settings.py; the alarm publisher adds "-alarms"


def away_service(broker: StackBroker, made: list[Client]) -> Client:
    """The service's ingest session as ingest/mqtt.py holds it, subscribed, then gone (a restart):
    the broker now queues for it."""
    fw = Client(broker.service_port, "firewatch", SERVICE_PASSWORD, SERVICE_CLIENT_ID, False, 3600)
    made.append(fw)
    assert not fw.connect().is_failure
    assert fw.subscribe("fw/v1/#") == [1]
    fw.close()
    return fw


def back_service(broker: StackBroker, made: list[Client]) -> Client:
    fw = Client(broker.service_port, "firewatch", SERVICE_PASSWORD, SERVICE_CLIENT_ID, False, 3600)
    made.append(fw)
    assert not fw.connect().is_failure
    return fw


@pytest.mark.parametrize("clean_start", [True, False])
def test_no_device_can_take_the_services_client_id_and_its_queue_survives_the_attempt(
    broker: StackBroker, clients: list[Client], clean_start: bool
) -> None:
    """On the service's listener a device password is refused; on the devices' listener the client
    id becomes the device id. Either way the service's queued session is untouched: connecting
    with its client id and a clean start would otherwise have wiped it."""
    device_id, site, password = broker.device(0)
    away_service(broker, clients)
    dev = connected(clients, broker.device_port, device_id, password)
    topic, queued = f"fw/v1/{site}/{device_id}/telemetry", marker()
    assert dev.publish(topic, queued) == 0

    on_service = Client(broker.service_port, device_id, password, SERVICE_CLIENT_ID, clean_start)
    try:
        assert on_service.connect().is_failure
    finally:
        on_service.close()
    on_devices = connected(clients, broker.device_port, device_id, password, SERVICE_CLIENT_ID)
    on_devices.close()

    fw = back_service(broker, clients)
    assert fw.session_present, "the service's session was wiped"
    fw.wait_for(topic, queued)


# --- what the service may do -------------------------------------------------------------------------


def test_the_service_publishes_alarms_and_tickets(broker: StackBroker, clients: list[Client]) -> None:
    _, site, _ = broker.device(0)
    fw = service(broker, clients)
    follower = service(broker, clients)  # e.g. the service's other connection
    for kind in ("alarms", "incidents", "tickets"):
        payload = marker()
        assert fw.publish(f"fw/v1/{site}/{kind}", payload) == 0
        follower.wait_for(f"fw/v1/{site}/{kind}", payload)


def test_the_service_cannot_forge_device_readings(broker: StackBroker, clients: list[Client]) -> None:
    a, site, _ = broker.device(0)
    fw = service(broker, clients)
    assert fw.publish(f"fw/v1/{site}/{a}/telemetry", marker()) == NOT_AUTHORIZED


# --- the compose health check -----------------------------------------------------------------------


def healthcheck(broker: StackBroker, password: str) -> subprocess.CompletedProcess[str]:
    kind, command = compose()["services"]["mosquitto"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    assert "-p 1884" in command
    command = command.replace("$$", "$").replace("-p 1884", f"-p {broker.service_port}")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MQTT_FIREWATCH_PASSWORD": password}
    return subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=20)


def test_the_compose_health_check_passes_on_a_working_broker(broker: StackBroker) -> None:
    result = healthcheck(broker, SERVICE_PASSWORD)
    assert result.returncode == 0, result.stderr


def test_the_compose_health_check_fails_when_sign_in_fails(broker: StackBroker) -> None:
    assert healthcheck(broker, "wrong").returncode != 0


# --- device credentials: the password file -----------------------------------------------------------


def test_hashes_of_mosquitto_passwd_verify_and_ours_have_its_format(tmp_path: Path) -> None:
    """Two-way compatibility with mosquitto 2: a line written by mosquitto_passwd verifies here,
    and ours has the same shape (the broker fixture shows mosquitto accepts ours)."""
    passwd = shutil.which("mosquitto_passwd")
    assert passwd is not None, "mosquitto_passwd is not installed (package mosquitto)"
    file = tmp_path / "passwd"
    file.touch(mode=0o600)
    subprocess.run([passwd, "-b", str(file), "dev-1", "s3cret-Pw"], check=True, capture_output=True)
    theirs = parse_password_file(file.read_text())["dev-1"]
    assert verify_password("s3cret-Pw", theirs)
    assert not verify_password("s3cret-pw", theirs)
    ours = hash_password("s3cret-Pw")
    assert [len(p) for p in ours.split("$")[:3]] == [len(p) for p in theirs.split("$")[:3]]
    assert ours.split("$")[1:3] == theirs.split("$")[1:3] == ["7", "101"]
    assert len(ours) == len(theirs)
    assert verify_password("s3cret-Pw", ours)
    assert ours != hash_password("s3cret-Pw")  # a fresh salt each time


def test_existing_entries_are_kept_new_devices_added_and_only_asked_rotations_made() -> None:
    first = plan_passwords({}, ["a", "b"])
    assert sorted(first.issued) == ["a", "b"]
    assert first.added == ["a", "b"]
    for device, password in first.issued.items():
        assert verify_password(password, first.entries[device])
        assert len(password) == 32
        assert password.isalnum()

    again = plan_passwords(first.entries, ["a", "b", "c"])
    assert again.issued.keys() == {"c"}
    assert again.entries["a"] == first.entries["a"]
    assert again.entries["b"] == first.entries["b"]

    rotated = plan_passwords(again.entries, ["a", "b", "c"], rotate=["b"])
    assert rotated.issued.keys() == {"b"}
    assert rotated.rotated == ["b"]
    assert rotated.entries["b"] != again.entries["b"]
    assert rotated.entries["a"] == again.entries["a"]
    assert plan_passwords(again.entries, ["a", "b", "c"], rotate_all=True).issued.keys() == {"a", "b", "c"}


def test_users_not_in_the_registry_are_kept_unless_pruned_and_the_service_always_stays() -> None:
    existing = {"old": hash_password("x"), "firewatch": hash_password("y"), "a": hash_password("z")}
    kept = plan_passwords(existing, ["a"])
    assert kept.stale == ["old"]
    assert set(kept.entries) == {"old", "firewatch", "a"}
    pruned = plan_passwords(existing, ["a"], prune=True)
    assert pruned.removed == ["old"]
    assert set(pruned.entries) == {"firewatch", "a"}


@pytest.mark.parametrize("device_id", ["firewatch", "firewatch-ingest", "firewatch-ingest-alarms"])
def test_no_device_may_carry_the_services_name_or_client_ids(device_id: str) -> None:
    with pytest.raises(ValueError, match="firewatch"):
        plan_passwords({}, ["a", device_id])


def test_the_password_file_round_trips_and_bad_lines_are_reported() -> None:
    entries = {"a": hash_password("1"), "b": hash_password("2")}
    assert parse_password_file("# comment\n\n" + format_password_file(entries)) == entries
    with pytest.raises(ValueError, match="passwd:2"):
        parse_password_file("a:$7$1$x$y\nnot a line\n", "passwd")


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["broker", "passwords", "--registry", str(REGISTRY), *args])
    return result.exit_code, result.output


def test_the_command_writes_private_files_and_never_overwrites_secrets(tmp_path: Path) -> None:
    out, secrets = tmp_path / "passwd", tmp_path / "devices.csv"
    code, output = invoke("--out", str(out), "--secrets", str(secrets))
    assert code == 0, output
    for path in (out, secrets):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = out.read_text()
    with secrets.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(load_registry(REGISTRY).devices)
    row = rows[0]
    assert row["mqtt_username"] == row["device_id"]
    assert row["publish_topics"] == f"fw/v1/{row['site']}/{row['device_id']}/telemetry|event|status"
    assert verify_password(row["mqtt_password"], parse_password_file(first)[row["device_id"]])

    # Run again: nothing new, nothing changed, the secrets file untouched.
    code, output = invoke("--out", str(out), "--secrets", str(secrets))
    assert code == 0, output
    assert out.read_text() == first

    # A rotation needs a new secrets file: the old one may hold passwords not yet delivered.
    code, output = invoke("--out", str(out), "--secrets", str(secrets), "--rotate", row["device_id"])
    assert code == 2
    assert "exists" in output
    assert out.read_text() == first
    new_secrets = tmp_path / "rotated.csv"
    code, output = invoke("--out", str(out), "--secrets", str(new_secrets), "--rotate", row["device_id"])
    assert code == 0, output
    changed = {
        user
        for user, h in parse_password_file(out.read_text()).items()
        if parse_password_file(first)[user] != h
    }
    assert changed == {row["device_id"]}


def test_the_command_refuses_an_unknown_device_to_rotate(tmp_path: Path) -> None:
    code, output = invoke(
        "--out", str(tmp_path / "p"), "--secrets", str(tmp_path / "s.csv"), "--rotate", "nope"
    )
    assert code == 2
    assert "nope" in output
    assert not (tmp_path / "p").exists()
    assert not (tmp_path / "s.csv").exists()


# --- a broker crash ------------------------------------------------------------------------------------

CRASH_READINGS = 5000
CRASH_PUBLISHERS = 10  # devices publishing at once, each over its own connection
BURST_TIMEOUT_S = 120.0


def publish_burst(broker: StackBroker, count: int, publishers: int, tag: str) -> set[bytes]:
    """`count` QoS 1 readings from `publishers` registry devices at once, each connection keeping
    up to 100 unacknowledged; the payloads the broker acknowledged (PUBACK with success)."""
    cond = threading.Condition()
    answers: dict[tuple[int, int], bool] = {}  # (publisher, mid) -> acknowledged with success
    payloads: dict[tuple[int, int], bytes] = {}
    made: list[mqtt.Client] = []

    def on_publish(index: int) -> Callable[[mqtt.Client, object, int, ReasonCode, object], None]:
        def handler(_c: mqtt.Client, _u: object, mid: int, rc: ReasonCode, _p: object) -> None:
            with cond:
                answers[(index, mid)] = not rc.is_failure
                cond.notify_all()

        return handler

    try:
        for index in range(publishers):
            device_id, _, password = broker.device(index)
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5)
            c.username_pw_set(device_id, password)
            c.max_inflight_messages_set(100)
            c.max_queued_messages_set(0)  # paho holds the rest until a slot frees
            c.on_publish = on_publish(index)
            c.connect("127.0.0.1", broker.device_port, clean_start=True)
            c.loop_start()
            made.append(c)
        for n in range(count):
            index = n % publishers
            device_id, site, _ = broker.device(index)
            payload = f'{{"tag":"{tag}","device":"{device_id}","seq":{n},"value":{n % 97}}}'.encode()
            # Not under `cond`: paho may hold its own lock while it calls on_publish.
            mid = made[index].publish(f"fw/v1/{site}/{device_id}/telemetry", payload, qos=1).mid
            payloads[(index, mid)] = payload  # fewer than 65,535 per connection: mids stay unique
        with cond:
            cond.wait_for(lambda: len(answers) >= count, BURST_TIMEOUT_S)
            return {payloads[key] for key, ok in answers.items() if ok}
    finally:
        for c in made:
            c.disconnect()
            c.loop_stop()


@pytest.mark.parametrize("kill_at", ["after_a_round_trip", "right_after_the_last_puback"])
def test_a_broker_crash_keeps_the_services_queue(
    tmp_path: Path, clients: list[Client], kill_at: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """kill -9 of the broker while it holds a queue for the (stopped) service, then a restart on the
    same data: the restored session gets every acknowledged reading, and what devices publish
    before the service is back.

    mosquitto acknowledges a message before it writes its database, which it does at the end of
    each pass of its event loop (autosave_on_changes, autosave_interval 1). A crash after a later
    pass (here: another client's connection is answered after the last PUBACK) loses nothing; a
    crash right at the last PUBACK may lose what that pass acknowledged, at most one message per
    publishing connection."""
    stack = prepare_broker(tmp_path)
    stack.start()
    try:
        away_service(stack, clients)
        started = time.monotonic()
        sent = publish_burst(stack, CRASH_READINGS, CRASH_PUBLISHERS, "before")
        publish_s = time.monotonic() - started
        assert len(sent) == CRASH_READINGS
        if kill_at == "after_a_round_trip":
            device_id, _, password = stack.device(CRASH_PUBLISHERS)
            connected(clients, stack.device_port, device_id, password).close()
        stack.kill()
        stack.start()

        # The service is still away: the restored session must go on queueing.
        after = publish_burst(stack, 100, 1, "after")
        assert len(after) == 100
        fw = back_service(stack, clients)
        fw.wait_for_count(len(sent) + len(after), timeout=60)
        time.sleep(QUIET_S)  # anything beyond the expected count (a duplicate) has time to arrive
        got = [payload for _, payload in fw.received]
        lost = sent - set(got)
        with capsys.disabled():
            print(
                f"\n[broker crash, kill {kill_at}] {len(sent)} readings acknowledged in {publish_s:.1f} s by "
                f"{CRASH_PUBLISHERS} connections; after kill -9 and restart the service received "
                f"{len(set(got) & sent)}, lost {len(lost)}, duplicates {len(got) - len(set(got))}; "
                f"published after the restart: {len(after & set(got))} of {len(after)} received"
            )
        assert fw.session_present, "the service's session did not survive the crash"
        assert len(got) == len(set(got)), "duplicates"
        assert set(got) <= sent | after
        assert after <= set(got)
        if kill_at == "after_a_round_trip":
            assert lost == set()
        else:
            assert len(lost) <= CRASH_PUBLISHERS
    finally:
        stack.stop()


def test_the_alarm_topic_publisher_signs_in_as_the_service_and_a_wrong_password_is_refused(
    broker: StackBroker, clients: list[Client]
) -> None:
    """The dispatcher's own publisher (firewatch/mqtt_publish.py) on the services' listener: the
    CONNECT carries user name and password; a refusal is an error for the batch, not an exception."""
    from firewatch.mqtt_publish import MqttPublisher

    _, site, _ = broker.device(0)
    follower = service(broker, clients)
    ok = MqttPublisher(
        "127.0.0.1",
        broker.service_port,
        client_id=f"fw-alarms-{marker().decode()[:8]}",
        username="firewatch",
        password=SERVICE_PASSWORD,
        timeout_s=5.0,
    )
    wrong = MqttPublisher(
        "127.0.0.1",
        broker.service_port,
        client_id=f"fw-alarms-{marker().decode()[:8]}",
        username="firewatch",
        password="not-the-password",
        timeout_s=5.0,
    )
    try:
        payload = marker()
        assert ok.publish_many([(f"fw/v1/{site}/alarms", payload)]) == (1, "")
        follower.wait_for(f"fw/v1/{site}/alarms", payload)
        done, reason = wrong.publish_many([(f"fw/v1/{site}/alarms", marker())])
        assert done == 0
        assert "refused the connection" in reason
    finally:
        ok.close()
        wrong.close()
