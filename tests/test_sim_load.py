"""Load mode (`firewatch simulate load`): many devices from several processes, every message as a real
device sends it, at most --max-inflight unacknowledged per connection, and a report of what the
broker acknowledged. Against a private mosquitto; no timed performance assertions here (bench/)."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from paho.mqtt.client import Client, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from core.registry import load_registry
from device_profiles.loader import load_profiles
from firewatch.broker import Mosquitto, free_port
from firewatch.cli_load import load
from ingest.decode import Decoder
from ingest.envelope import Message
from ingest.index import DeviceIndex
from simulators.load import LoadConfig, LoadOptionError, registry_layout, run_load

pytestmark = pytest.mark.integration

app = typer.Typer()
app.command("load")(load)


@app.command("noop")
def _noop() -> None:
    """A second command, so `load` keeps its name on the command line as it will under `simulate`."""


class Subscriber:
    """A paho QoS 1 subscriber that keeps every (topic, payload) it receives."""

    def __init__(self, broker: Mosquitto, topic: str) -> None:
        self.received: list[tuple[str, bytes]] = []
        subscribed = threading.Event()
        self.client = Client(CallbackAPIVersion.VERSION2, client_id=f"test-sub-{uuid.uuid4().hex[:8]}")
        self.client.on_message = lambda _c, _u, m: self._keep(m)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        assert subscribed.wait(5), "no SUBACK"

    def _keep(self, m: MQTTMessage) -> None:
        self.received.append((m.topic, bytes(m.payload)))

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        """Until `count` messages are in, then a moment longer, so extra messages would show."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def subscriber(mosquitto: Mosquitto) -> Iterator[Subscriber]:
    sub = Subscriber(mosquitto, "fw/v1/load/#")
    try:
        yield sub
    finally:
        sub.close()


def test_a_bounded_run_delivers_every_message_as_a_registered_device_would_send_it(
    mosquitto: Mosquitto, subscriber: Subscriber, tmp_path: Path
) -> None:
    registry_file = tmp_path / "load-registry.yaml"
    result = CliRunner().invoke(
        app,
        [
            "load",
            "--broker", mosquitto.url,
            "--devices", "2000",
            "--processes", "2",
            "--rate", "2000",
            "--duration", "2",
            "--registry-out", str(registry_file),
            "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["complete"] is True
    assert report["sent"] == report["acked"] > 2000  # every device reported at least once
    assert [p["devices"] for p in report["processes"]] == [1000, 1000]

    subscriber.wait_for(report["acked"])
    assert len(subscriber.received) == report["acked"]

    registry = load_registry(registry_file)
    assert len(registry.devices) == 2000
    assert {m[0] for m in subscriber.received} <= {f"fw/v1/load/{d}/telemetry" for d in registry.devices}
    decoder = Decoder(DeviceIndex.build(registry, load_profiles()))
    now = time.time()
    batch = decoder.decode([Message(t, p, now, 1, 1) for t, p in subscriber.received], now)
    assert batch.rejects == []
    assert batch.duplicates == 0
    assert batch.reading_dev.size == report["acked"]


def test_payloads_carry_increasing_seq_and_values_on_the_channel_resolution(
    mosquitto: Mosquitto, subscriber: Subscriber
) -> None:
    config = LoadConfig(
        host=mosquitto.host, port=mosquitto.port, devices=50, processes=1, duration=2.0, messages=500
    )
    report = run_load(config)
    assert report.complete
    assert report.acked == 500
    subscriber.wait_for(500)

    seqs: dict[str, list[int]] = defaultdict(list)
    for topic, payload in subscriber.received:
        body = json.loads(payload)
        assert set(body) == {"ts", "seq", "v", "rssi"}
        assert abs(body["ts"] - time.time()) < 60
        assert set(body["v"]) == {"smoke", "temp"}  # the smoke-photoelectric profile's channels
        assert 0 <= body["v"]["smoke"] <= 2
        assert -20 <= body["v"]["temp"] <= 120
        # written with exactly the resolution's decimals: 0.001 dB/m and 0.1 °C
        assert re.search(rb'"smoke":\d\.\d{3},"temp":-?\d+\.\d}', payload), payload
        seqs[topic.split("/")[3]].append(body["seq"])
    assert sorted(seqs) == [f"load-{i:06d}" for i in range(1, 51)]  # round-robin: all 50, 10 each
    assert all(len(s) == 10 and s == sorted(set(s)) for s in seqs.values())


def test_at_most_max_inflight_messages_are_unacknowledged_per_connection(mosquitto: Mosquitto) -> None:
    config = LoadConfig(
        host=mosquitto.host,
        port=mosquitto.port,
        devices=200,
        processes=1,
        connections_per_process=2,
        duration=1.0,
        max_inflight=10,
    )
    report = run_load(config)
    assert report.complete
    assert report.sent > 100  # many windows' worth: the window was refilled as PUBACKs came back
    assert 1 <= report.max_inflight_seen <= 10
    assert report.processes[0].connections == 2


class SilentBroker:
    """Completes the MQTT handshake and reads every PUBLISH, but never acknowledges one: a stalled broker."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        self.publishes = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        with conn, reader:
            while first := reader.read(1):
                length, shift = 0, 0
                while (byte := reader.read(1)[0]) & 0x80:
                    length |= (byte & 0x7F) << shift
                    shift += 7
                reader.read(length | (byte << shift))
                kind = first[0] >> 4
                if kind == 1:  # CONNECT
                    conn.sendall(b"\x20\x02\x00\x00")
                elif kind == 3:  # PUBLISH
                    self.publishes += 1

    def close(self) -> None:
        self.server.close()


def test_a_full_window_waits_for_acknowledgements_that_never_come() -> None:
    broker = SilentBroker()
    try:
        config = LoadConfig(
            port=broker.port, devices=100, processes=1, duration=1.0, max_inflight=10, drain_timeout=0.3
        )
        report = run_load(config)
    finally:
        broker.close()
    assert report.sent == 10  # one window, then backpressure for the rest of the second
    assert report.acked == 0
    assert not report.complete
    assert broker.publishes == 10


def test_the_cli_prints_the_achieved_rate_report(mosquitto: Mosquitto) -> None:
    result = CliRunner().invoke(
        app, ["load", "--broker", mosquitto.url, "--devices", "100", "--processes", "2", "--messages", "400"]
    )
    assert result.exit_code == 0, result.output
    for words in ("process", "sent", "acked", "msg/s", "max in-flight", "total"):
        assert words in result.stdout
    assert re.search(r"total\s*│\s*100\s*│\s*400\s*│\s*400\s*│", result.stdout)
    assert "all 400 messages acknowledged" in result.stdout


def test_help_explains_the_command() -> None:
    result = CliRunner().invoke(app, ["load", "--help"])
    assert result.exit_code == 0
    for option in ("--devices", "--rate", "--duration", "--messages", "--max-inflight", "--registry-out"):
        assert option in result.stdout


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--max-inflight", "70000"], 2, "65,535"),
        (["--devices", "0"], 2, "--devices must be at least 1"),
        (["--qos", "2"], 2, "--qos must be 0 or 1"),
        (["--duration", "0"], 2, "--duration must be a positive"),
        (["--devices", "3", "--processes", "4"], 2, "use fewer processes"),
        (["--profile", "nope"], 2, "known: "),
        (["--broker", "http://127.0.0.1:1883"], 2, "--broker must look like mqtt://host:port"),
        (["--registry-only"], 2, "--registry-only needs --registry-out PATH"),
    ],
)
def test_options_that_cannot_work_are_refused_with_what_to_do(args: list[str], code: int, says: str) -> None:
    result = CliRunner().invoke(app, ["load", "--broker", f"mqtt://127.0.0.1:{free_port()}", *args])
    assert result.exit_code == code
    assert says in " ".join(result.stderr.split())


def test_more_than_65535_in_flight_is_refused_because_clients_stall() -> None:
    with pytest.raises(LoadOptionError, match="paho and libmosquitto stall above 65,535"):
        LoadConfig(max_inflight=65_536).check()


def test_an_unreachable_broker_is_named_with_a_hint() -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(app, ["load", "--broker", url, "--devices", "10"])
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert f"cannot reach the MQTT broker at {url}" in message
    assert "check --broker" in message


def test_registry_only_writes_the_registry_without_a_broker(tmp_path: Path) -> None:
    path = tmp_path / "registry.yaml"
    broker = f"mqtt://127.0.0.1:{free_port()}"  # nothing listens there: not needed
    args = ["--broker", broker, "--devices", "120", "--site", "s9", "--registry-out", str(path)]
    result = CliRunner().invoke(app, ["load", *args, "--registry-only"])
    assert result.exit_code == 0, result.output
    registry = load_registry(path)
    assert sorted(registry.devices)[:2] == ["load-000001", "load-000002"]
    assert {loc.site for loc in registry.locations.values()} == {"s9"}
    assert {d.profile for d in registry.devices.values()} == {"smoke-photoelectric"}


def test_the_registry_puts_50_devices_in_each_zone() -> None:
    _sites, devices = registry_layout(LoadConfig(devices=2_120))
    zones: dict[str, int] = defaultdict(int)
    for d in devices:
        zones[d.place] += 1
    assert len(zones) == 43
    assert set(zones.values()) == {50, 20}
    assert devices[0].id == "load-000001"
    assert devices[0].place == "load/b1/f1/z01"
    assert devices[-1].place == "load/b1/f3/z03"  # 20 zones per floor
