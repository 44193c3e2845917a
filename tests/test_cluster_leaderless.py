"""Readings a device publishes while the engine's stream has no leader are not lost (docs/scale.md,
"How a worker reads its partitions").

The engine's MQTT listener acknowledges a QoS 1 PUBLISH without waiting for the stream
(docs/decisions/0015-engine.md): while the stream cannot store — here two of its three nodes are
killed, so it has no quorum at all — the devices' messages are acknowledged and not stored. A
caught-up worker also takes its partitions' messages as they pass through the engine (a core
subscription to their subjects), so it detects and stores them all the same. Without that
subscription this test fails: nothing published after the kills is stored.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import nats
import pytest

from core.registry import write_registry_text
from firewatch.cluster.engine import NatsCluster
from firewatch.cluster.local import ClusterState, start_worker
from simulators.city import CLEAN_AIR, CityFleet, city_registry, device_ids, reading

pytestmark = pytest.mark.xdist_group("cluster")

PARTITIONS = 12
SITES = 6
PER_SITE = 4


async def publish_core(url: str, devices: list[tuple[str, str]], rounds: int) -> int:
    nc = await nats.connect(url)
    try:
        for r in range(rounds):
            for n, (site, device) in enumerate(devices):
                await nc.publish(
                    f"fw.v1.{site}.{device}.telemetry", reading(1000 + r, time.time() + n * 1e-3, CLEAN_AIR)
                )
            await nc.flush()
            await asyncio.sleep(0.5)
    finally:
        await nc.close()
    return rounds * len(devices)


def test_readings_published_while_the_stream_cannot_store_are_stored_by_the_worker(
    tmp_path: Path, postgres_url: str
) -> None:
    engine = NatsCluster(tmp_path / "engine", nodes=3, partitions=PARTITIONS)
    engine.start()
    registry = tmp_path / "city.yaml"
    write_registry_text(registry, city_registry(SITES, PER_SITE))
    state = ClusterState(postgres_url)
    # The worker and the devices both on node 3 (the worker knows only that node: it stays there).
    worker = start_worker(
        "w1",
        engine=[engine.client_urls[2]],
        database_url=postgres_url,
        registry=registry,
        data_dir=tmp_path / "w1",
        partitions=PARTITIONS,
        admin_password=f"leaderless-{uuid.uuid4().hex}",
    )
    fleet = CityFleet([engine.mqtt_ports[2]], device_ids(SITES, PER_SITE))
    try:
        state.wait_owned({"w1"}, PARTITIONS, timeout_s=90)
        fleet.connect()
        # Caught up: every partition's reader has seen the end of the stream.
        for _ in range(4):
            fleet.round(time.time())
            time.sleep(0.5)
        assert fleet.drain(20)
        deadline = time.monotonic() + 30
        while state.readings() < 2 * fleet.stats.published and time.monotonic() < deadline:
            time.sleep(0.2)
        before = fleet.stats.published
        assert state.readings() == 2 * before

        engine.kill(0)
        engine.kill(1)  # the stream has lost its quorum: it stores nothing now
        # What the surviving node's MQTT listener does with a device's PUBLISH (it PUBACKs at
        # once): hand it to the subject. MQTT itself is no use here: without a quorum the listener
        # refuses new sessions too.
        sent = asyncio.run(publish_core(engine.client_urls[2], device_ids(SITES, PER_SITE), rounds=3))
        deadline = time.monotonic() + 30
        while state.readings() < 2 * (before + sent) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert state.readings() == 2 * (before + sent)
        assert worker.alive, worker.tail()
    except BaseException:
        print(worker.tail(60))
        raise
    finally:
        fleet.close()
        worker.stop()
        state.close()
        engine.stop()
