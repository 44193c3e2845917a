"""Three workers on a three-node engine, under load, losing a worker and then an engine node
(docs/scale.md): no reading lost or stored twice, every fire alarm raised exactly once, the dead
worker's partitions taken over within 10 s, and a console on any worker told of every fire.

Real components throughout: three nats-server processes clustered on loopback (JetStream, the MQTT
listener, the site-partitioning subject mapping), a private PostgreSQL database, three `firewatch
serve` processes, and a fleet of MQTT devices that fails over between engine nodes.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from core.registry import write_registry_text
from firewatch.cluster.engine import NatsCluster, partition_of
from firewatch.cluster.local import ClusterState, WorkerProcess, start_worker
from simulators.city import CityFleet, city_registry, device_ids

pytestmark = pytest.mark.xdist_group("cluster")

PARTITIONS = 12
SITES = 24
PER_SITE = 8
ROUND_S = 0.5  # every device publishes a reading this often: 384 messages/s in all
TAKEOVER_MAX_S = 10.0  # the bar


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[NatsCluster]:
    cluster = NatsCluster(tmp_path / "engine", nodes=3, partitions=PARTITIONS)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


class Load:
    """The fleet publishing a round every ROUND_S on a thread of its own, devices set on fire
    staying on fire (smoke keeps rising: a latched fire alarm stays raised)."""

    def __init__(self, fleets: list[CityFleet]) -> None:
        self.fleets = fleets
        self.smoky: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="city-load", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def fire(self, devices: tuple[str, ...]) -> None:
        self.smoky |= set(devices)

    def run_for(self, seconds: float) -> None:
        time.sleep(seconds)
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                began = time.monotonic()
                for fleet in self.fleets:
                    fleet.round(time.time(), smoky=tuple(self.smoky))
                self._stop.wait(max(0.0, ROUND_S - (time.monotonic() - began)))
        except BaseException as exc:
            self.error = exc


class Console:
    """A control-room console on one worker: its SSE alarm stream, read on a thread; keeps which
    devices' fire alarms it was told were raised."""

    def __init__(self, worker: WorkerProcess, password: str) -> None:
        api = f"http://127.0.0.1:{worker.port}/api/v1"
        login = httpx.post(f"{api}/auth/login", json={"username": "admin", "password": password}, timeout=10)
        self.headers = {"Authorization": f"Bearer {login.raise_for_status().json()['token']}"}
        self.url = f"{api}/stream/alarms"
        self.raised: set[str] = set()
        self.opened = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self.opened.wait(20), "the alarm stream did not open"

    def _read(self) -> None:
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.stream("GET", self.url, headers=self.headers, timeout=httpx.Timeout(10, read=None)) as r,
        ):
            self.opened.set()
            for line in r.iter_lines():
                if self._stop:
                    return
                if line.startswith("data: "):
                    t = orjson.loads(line[6:])
                    after = t.get("after") or {}
                    if t.get("action") == "raised" and after.get("category") == "fire":
                        self.raised.add(str(after.get("device_id")))

    def close(self) -> None:
        self._stop = True


def smoke_in(site: str) -> tuple[str, ...]:
    return (f"{site}-smk-00", f"{site}-smk-01")


def sites_of(partition: int) -> list[str]:
    return [f"c{s:04d}" for s in range(SITES) if partition_of(f"c{s:04d}", PARTITIONS) == partition]


def test_a_worker_and_an_engine_node_killed_under_load_lose_nothing_and_raise_every_fire_once(
    tmp_path: Path, engine: NatsCluster, postgres_url: str
) -> None:
    registry = tmp_path / "city.yaml"
    write_registry_text(registry, city_registry(SITES, PER_SITE))
    password = f"cluster-{uuid.uuid4().hex}"
    workers: dict[str, WorkerProcess] = {}
    state = ClusterState(postgres_url)
    devices = device_ids(SITES, PER_SITE)
    fleets: list[CityFleet] = []
    load: Load | None = None
    consoles: list[Console] = []
    try:

        def add(name: str) -> None:
            workers[name] = start_worker(
                name,
                engine=engine.client_urls,
                database_url=postgres_url,
                registry=registry,
                data_dir=tmp_path / name,
                partitions=PARTITIONS,
                admin_password=password,
            )

        # Two workers first; the third joins under load and the partitions rebalance (each one
        # handed on stored and snapshotted, then taken over from there).
        add("w1")
        add("w2")
        state.wait_owned(set(workers), PARTITIONS, timeout_s=90)
        # Half the devices on the node leading the stream, half on another: when the leader is
        # killed below, the first half must fail over, and the second half keeps publishing
        # through a node that acknowledges what the leaderless stream cannot take.
        leader = engine.stream_leader()
        other = (leader + 1) % len(engine.mqtt_ports)
        for node, half in ((leader, devices[0::2]), (other, devices[1::2])):
            ports = engine.mqtt_ports[node:] + engine.mqtt_ports[:node]
            fleets.append(CityFleet(ports, half, client_id=f"city-{node}"))
            fleets[-1].connect()
        load = Load(fleets)
        load.start()
        load.run_for(2.0)
        add("w3")
        state.wait_owned(set(workers), PARTITIONS, timeout_s=90)

        # Load, and a first fire on a partition of a worker that stays.
        owners = state.owners()
        victim = owners[0]
        assert victim is not None
        survivor_partition = next(p for p, o in owners.items() if o != victim and sites_of(p))
        victim_partition = next(p for p, o in owners.items() if o == victim and sites_of(p))
        fire_1 = smoke_in(sites_of(survivor_partition)[0])
        # A console on each worker that stays: each must hear of every fire, whichever worker
        # raised it (the live bus), the one raised after the takeover included.
        consoles = [Console(w, password) for name, w in workers.items() if name != victim]
        load.run_for(3.0)
        load.fire(fire_1)
        load.run_for(3.0)

        # kill -9 a worker; a fire starts at once in a site it owned. Takeover: until every
        # partition has a live owner again.
        killed_at = time.monotonic()
        workers[victim].kill()
        fire_2 = smoke_in(sites_of(victim_partition)[0])
        load.fire(fire_2)
        takeover_s = state.wait_owned(set(workers) - {victim}, PARTITIONS, timeout_s=30)
        takeover_s = time.monotonic() - killed_at
        load.run_for(3.0)

        # kill -9 the engine node leading the stream (and holding half the devices' connections).
        assert engine.stream_leader() == leader, "the stream's leader moved"
        engine.kill(leader)
        fire_3 = smoke_in(
            next(
                site
                for p, o in owners.items()
                if o != victim and p != survivor_partition
                for site in sites_of(p)
            )
        )
        load.fire(fire_3)
        load.run_for(5.0)
        load.stop()
        load = None
        for fleet in fleets:
            assert fleet.drain(30), (
                f"{fleet.unacked()} readings never acknowledged by the engine: {fleet.stats}, "
                f"on port {fleet.node_port} of {engine.mqtt_ports}"
            )
        published = sum(f.stats.published for f in fleets)

        # Everything published is stored exactly once (two channels per reading).
        expected = 2 * published
        deadline = time.monotonic() + 60
        while state.readings() < expected and time.monotonic() < deadline:
            time.sleep(0.5)
        stored = state.readings()
        raises = state.fire_raises()
        fired = set(fire_1 + fire_2 + fire_3)
        deadline = time.monotonic() + 30
        while set(raises) < fired and time.monotonic() < deadline:
            time.sleep(0.5)
            raises = state.fire_raises()
        print(
            f"\npublished {published} readings ({sum(f.stats.resent for f in fleets)} resent after "
            f"{sum(f.stats.failovers for f in fleets)} failovers); stored {stored // 2}; "
            f"takeover {takeover_s:.1f} s; "
            f"fire raises {raises}"
        )
        assert stored == expected, "readings lost" if stored < expected else "readings stored twice"
        assert {d: raises.get(d, 0) for d in fired} == dict.fromkeys(fired, 1)
        assert set(raises) == fired, f"fire alarms nobody set off: {set(raises) - fired}"
        assert takeover_s <= TAKEOVER_MAX_S
        deadline = time.monotonic() + 20
        while any(c.raised < fired for c in consoles) and time.monotonic() < deadline:
            time.sleep(0.2)
        for c in consoles:
            assert c.raised == fired, f"a console missed fires: {fired - c.raised}"
        for w, proc in workers.items():
            if w != victim:
                assert proc.alive, f"{w} died:\n{proc.tail()}"
    except BaseException:
        for w, proc in workers.items():
            print(f"--- {w}\n{proc.tail(60)}")
        raise
    finally:
        # Every step, whatever the one before raised: a worker left running outlives the test.
        with contextlib.ExitStack() as cleanup:
            cleanup.callback(state.close)
            for proc in workers.values():
                cleanup.callback(proc.stop)
            for fleet in fleets:
                cleanup.callback(fleet.close)
            if load is not None:
                cleanup.callback(load.stop)
            for c in consoles:
                cleanup.callback(c.close)
