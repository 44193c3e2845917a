"""The shared PostgreSQL lost for longer than a lease, under load, in a cluster of two workers
(docs/scale.md, "When PostgreSQL is down"): a fire that starts meanwhile reaches every console at
once, unrecorded, and is recorded exactly once when the store is back; every reading published is
stored exactly once; both workers stay up and every partition has an owner again.

Real components: a one-node engine (nats-server with JetStream and its MQTT listener), a private
PostgreSQL server of this test's own (stopped with `pg_ctl -m immediate` and started again, so
nothing else of the session depends on it), two `firewatch serve` processes and a fleet of MQTT
devices.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.registry import write_registry_text
from firewatch.cluster.engine import NatsCluster
from firewatch.cluster.local import ClusterState, WorkerProcess, start_worker
from simulators.city import CityFleet, city_registry, device_ids
from tests.postgres import PrivatePostgres
from tests.test_cluster import Console, Load, smoke_in

pytestmark = pytest.mark.xdist_group("cluster")

PARTITIONS = 6
SITES = 6
PER_SITE = 4
OUTAGE_S = 12.0  # after the fire starts; longer than a lease (5 s): every lease lapses meanwhile


def spool_batches(worker: WorkerProcess) -> int:
    """The worker's `fw_pg_spool_batches` metric: batches of readings waiting for PostgreSQL."""
    text = httpx.get(f"http://127.0.0.1:{worker.port}/metrics", timeout=10).raise_for_status().text
    [line] = [ln for ln in text.splitlines() if ln.startswith("fw_pg_spool_batches ")]
    return int(float(line.split()[1]))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[NatsCluster]:
    cluster = NatsCluster(tmp_path / "engine", nodes=1, partitions=PARTITIONS)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def test_a_fire_during_a_store_outage_is_shown_at_once_and_recorded_once_and_no_reading_is_lost(
    tmp_path: Path, engine: NatsCluster
) -> None:
    pg = PrivatePostgres(durable=True).start()  # what it committed survives the stop
    url = pg.url(pg.create_database())
    registry = tmp_path / "city.yaml"
    write_registry_text(registry, city_registry(SITES, PER_SITE))
    password = f"outage-{uuid.uuid4().hex}"
    workers: dict[str, WorkerProcess] = {}
    fleets: list[CityFleet] = []
    load: Load | None = None
    consoles: list[Console] = []
    state: ClusterState | None = ClusterState(url)
    try:
        for name in ("w1", "w2"):
            workers[name] = start_worker(
                name,
                engine=engine.client_urls,
                database_url=url,
                registry=registry,
                data_dir=tmp_path / name,
                partitions=PARTITIONS,
                admin_password=password,
                # A hand-off this small fills within a second or two of the outage: were readings
                # to wait for PostgreSQL in it, detection would wait too, and the fire go unseen.
                env={"FIREWATCH_CLUSTER__STREAM_REPLICAS": "1", "FIREWATCH_INGEST__HANDOFF_MAX": "100"},
            )
        assert state is not None
        state.wait_owned(set(workers), PARTITIONS, timeout_s=90)
        fleets.append(CityFleet(engine.mqtt_ports, device_ids(SITES, PER_SITE), client_id="city"))
        fleets[-1].connect()
        load = Load(fleets)
        load.start()
        load.run_for(2.0)
        consoles = [Console(w, password) for w in workers.values()]
        state.close()
        state = None

        pg.halt()
        load.run_for(5.0)  # 240 messages: a hand-off that kept readings for PostgreSQL is full now
        fire = smoke_in("c0001")
        load.fire(fire)
        # Told to every console while the store is still down: unrecorded, never held back.
        deadline = time.monotonic() + OUTAGE_S - 2.0
        while any(not set(fire) <= c.raised for c in consoles) and time.monotonic() < deadline:
            time.sleep(0.2)
        told_during_outage = [set(fire) <= c.raised for c in consoles]
        load.run_for(max(0.0, deadline + 2.0 - time.monotonic()))
        spooled_during_outage = [spool_batches(w) for w in workers.values()]
        pg.resume()

        state = ClusterState(url)
        load.run_for(6.0)
        load.stop()
        load = None
        for fleet in fleets:
            assert fleet.drain(30), f"{fleet.unacked()} readings never acknowledged by the engine"
        expected = 2 * sum(f.stats.published for f in fleets)  # two channels per reading
        deadline = time.monotonic() + 60
        while state.readings() < expected and time.monotonic() < deadline:
            time.sleep(0.5)
        stored = state.readings()
        deadline = time.monotonic() + 30
        while set(state.fire_raises()) < set(fire) and time.monotonic() < deadline:
            time.sleep(0.5)
        raises = state.fire_raises()
        state.wait_owned(set(workers), PARTITIONS, timeout_s=30)  # raises if a partition has no owner
        deadline = time.monotonic() + 30
        while any(spool_batches(w) for w in workers.values()) and time.monotonic() < deadline:
            time.sleep(0.5)
        spooled_after = [spool_batches(w) for w in workers.values()]

        assert told_during_outage == [True, True], "a console was not told of the fire during the outage"
        assert stored == expected, "readings lost" if stored < expected else "readings stored twice"
        assert raises == dict.fromkeys(fire, 1)
        # What an operator watches (docs/scale.md): readings waiting for PostgreSQL, then none.
        assert all(n > 0 for n in spooled_during_outage), spooled_during_outage
        assert spooled_after == [0, 0]
        for name, proc in workers.items():
            assert proc.alive, f"{name} died:\n{proc.tail()}"
    except BaseException:
        for name, proc in workers.items():
            print(f"--- {name}\n{proc.tail(60)}")
        raise
    finally:
        with contextlib.ExitStack() as cleanup:
            cleanup.callback(pg.close)
            if state is not None:
                cleanup.callback(state.close)
            for proc in workers.values():
                cleanup.callback(proc.stop)
            for fleet in fleets:
                cleanup.callback(fleet.close)
            if load is not None:
                cleanup.callback(load.stop)
            for c in consoles:
                cleanup.callback(c.close)
