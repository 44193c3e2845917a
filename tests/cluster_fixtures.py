"""The engine cluster for tests: three private nats-server processes on free loopback ports (never
the machine's NATS on 4222), with the stream FW. Imported by tests/conftest.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from firewatch.cluster.engine import DEFAULT_PARTITIONS, NatsCluster, prepare_stream


@pytest.fixture
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """A started 3-node cluster (R3 stream FW, 12 partitions) for one test, stopped and reaped after.
    Starting one takes well under a second; a test may kill and restart its nodes."""
    cluster = NatsCluster(tmp_path_factory.mktemp("engine"), nodes=3, partitions=DEFAULT_PARTITIONS)
    cluster.start()
    try:
        asyncio.run(prepare_stream(cluster.client_urls, cluster.partitions, replicas=3, max_age_s=3600.0))
        yield cluster
    finally:
        cluster.stop()
