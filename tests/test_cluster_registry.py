"""A registry change made through one worker's API reaches every worker (docs/scale.md, "Registry
changes"): a device added through worker A is detected by worker B, which owns its site; a device
removed through A is no longer watched by B; each worker's own registry file follows.

Real components: a three-node engine (nats_cluster), a private PostgreSQL database, two `firewatch
serve` processes with a registry file each, and a device publishing over MQTT to the engine. A
worker restarted after a change it missed takes the cluster's registry over its older file.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from core.registry import load_registry, write_registry_text
from firewatch.cluster.engine import NatsCluster, partition_of
from firewatch.cluster.local import ClusterState, WorkerProcess, start_worker
from firewatch.cluster.registry_share import AtStart, at_start
from simulators.city import PROFILE, CityFleet, city_registry, site_id
from storage.shared_registry import Head

pytestmark = pytest.mark.xdist_group("cluster")

SITES = 8
PER_SITE = 2


def wait_for(what: str, condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


class Api:
    """A worker's API, signed in as admin."""

    def __init__(self, worker: WorkerProcess, password: str) -> None:
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{worker.port}/api/v1", timeout=20)
        login = self.client.post("/auth/login", json={"username": "admin", "password": password})
        self.client.headers["Authorization"] = f"Bearer {login.raise_for_status().json()['token']}"

    def runs(self, device_id: str) -> bool:
        """Whether the worker's running registry has the device (its export is made from it)."""
        csv = self.client.get("/registry", params={"format": "csv"}).raise_for_status().text
        return any(line.split(",", 1)[0] == device_id for line in csv.splitlines())


def rejects_of(state: ClusterState, device_id: str) -> list[str]:
    with state.db.connect() as c:
        rows = c.execute(text("SELECT reason FROM rejects WHERE device_id = :d"), {"d": device_id})
        return [str(r) for (r,) in rows]


def readings_of(state: ClusterState, device_id: str) -> int:
    with state.db.connect() as c:
        n = c.execute(text("SELECT count(*) FROM readings WHERE device_id = :d"), {"d": device_id})
        return int(n.scalar_one())


def test_a_device_added_or_removed_through_one_worker_is_watched_or_dropped_by_the_owner_of_its_site(
    tmp_path: Path, nats_cluster: NatsCluster, postgres_url: str
) -> None:
    password = f"registry-{uuid.uuid4().hex}"
    state = ClusterState(postgres_url)
    workers: dict[str, WorkerProcess] = {}
    files: dict[str, Path] = {}
    fleet: CityFleet | None = None
    try:

        def start(name: str) -> None:
            workers[name] = start_worker(
                name,
                engine=nats_cluster.client_urls,
                database_url=postgres_url,
                registry=files[name],
                data_dir=tmp_path / name,
                partitions=nats_cluster.partitions,
                admin_password=password,
            )

        for name in ("wa", "wb"):  # a registry file each, as on two machines
            files[name] = tmp_path / name / "registry.yaml"
            files[name].parent.mkdir()
            write_registry_text(files[name], city_registry(SITES, PER_SITE))
            start(name)
        state.wait_owned(set(workers), nats_cluster.partitions, timeout_s=60)
        owners = state.owners()
        site = next(
            s
            for s in map(site_id, range(SITES))
            if owners[partition_of(s, nats_cluster.partitions)] == "wb"
        )
        a, b = Api(workers["wa"], password), Api(workers["wb"], password)

        # Added through A; B, which owns the site, runs it (and its file has it).
        new = f"{site}-smk-new"
        added = a.client.post(
            "/devices", json={"id": new, "profile": PROFILE, "place": f"{site}/b1/f1/z1/r101"}
        )
        assert added.status_code == 201, added.text
        wait_for("worker B runs the added device", lambda: b.runs(new))
        assert new in load_registry(files["wb"]).devices

        # Its smoke reaches B: stored and detected, one fire raised, nothing rejected.
        fleet = CityFleet(nats_cluster.mqtt_ports, [(site, new)], client_id="registry-test")
        fleet.connect()

        def fire_raised() -> bool:
            assert fleet is not None
            fleet.round(time.time(), smoky=(new,))
            return state.fire_raises().get(new, 0) > 0

        wait_for("a fire raised for the added device", fire_raised)
        assert fleet.drain(20)
        assert state.fire_raises()[new] == 1
        assert readings_of(state, new) > 0
        assert rejects_of(state, new) == []

        # Removed through A; B no longer watches it: its smoke is refused as from an unknown device.
        gone = f"{site}-smk-00"
        assert a.client.delete(f"/devices/{gone}").status_code == 204
        wait_for("worker B drops the removed device", lambda: not b.runs(gone))
        assert gone not in load_registry(files["wb"]).devices
        fleet.close()
        fleet = CityFleet(nats_cluster.mqtt_ports, [(site, gone)], client_id="registry-test-gone")
        fleet.connect()
        fleet.round(time.time(), smoky=(gone,))
        assert fleet.drain(20)
        wait_for("the removed device's reading refused", lambda: bool(rejects_of(state, gone)))
        assert set(rejects_of(state, gone)) == {"unknown_device"}
        assert gone not in state.fire_raises()

        # A change made while B is stopped: B starts with its older file and takes the cluster's.
        workers["wb"].stop()
        late = f"{site}-smk-late"
        added = a.client.post(
            "/devices", json={"id": late, "profile": PROFILE, "place": f"{site}/b1/f1/z2/r201"}
        )
        assert added.status_code == 201, added.text
        start("wb")
        state.wait_owned(set(workers), nats_cluster.partitions, timeout_s=60)
        b = Api(workers["wb"], password)
        assert b.runs(late)
        assert b.runs(new)
        assert not b.runs(gone)
        assert late in load_registry(files["wb"]).devices
        for name, proc in workers.items():
            assert proc.alive, f"{name} died:\n{proc.tail()}"
    except BaseException:
        for name, proc in workers.items():
            print(f"--- {name}\n{proc.tail(60)}")
        raise
    finally:
        if fleet is not None:
            fleet.close()
        for proc in workers.values():
            proc.stop()
        state.close()


def head(changed_at: float, fingerprint: str = "shared") -> Head:
    return Head(version=3, fingerprint=fingerprint, changed_at=changed_at, changed_by="wa")


def test_a_starting_worker_takes_the_shared_registry_unless_its_file_changed_since() -> None:
    assert at_start(None, "file", 100.0) is AtStart.PUBLISH  # the first worker ever
    assert at_start(head(100.0, "file"), "file", 50.0) is AtStart.SAME
    assert at_start(head(100.0), "file", 50.0) is AtStart.ADOPT  # changed while it was away
    assert at_start(head(100.0), "file", None) is AtStart.ADOPT  # the built-in demo registry
    assert at_start(head(100.0), "file", 150.0) is AtStart.PUBLISH  # a new file deployed since
