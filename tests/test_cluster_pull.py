"""The lean pull consumer a worker reads its partitions with (firewatch/cluster/pull.py), on a real
three-node engine: batches in stream order from a chosen sequence, at once when messages are
there, the first new one when they are not, a timeout when none comes, and an error when the
consumer is gone (so the reader makes it again)."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from firewatch.cluster.engine import STREAM, NatsCluster, partition_of, partition_subject
from firewatch.cluster.pull import PullConsumer, Pulled, PullError, stream_seq

pytestmark = pytest.mark.integration


def test_the_stream_sequence_is_read_from_either_form_of_the_reply_subject() -> None:
    assert stream_seq("$JS.ACK.FW.c1.1.4711.12.1733450000000000000.3") == 4711
    assert stream_seq("$JS.ACK.hub.ACC123.FW.c1.1.4712.12.1733450000000000000.3.rnd") == 4712
    with pytest.raises(ValueError, match="reply subject"):
        stream_seq("_INBOX.abc")


def config(partition: int, start_seq: int) -> ConsumerConfig:
    return ConsumerConfig(
        filter_subject=partition_subject(partition),
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start_seq,
        ack_policy=AckPolicy.NONE,
        num_replicas=1,
        mem_storage=True,
    )


async def test_batches_come_in_stream_order_from_the_chosen_sequence_then_new_ones_as_they_come(
    nats_cluster: NatsCluster,
) -> None:
    site = "s1"
    p = partition_of(site, nats_cluster.partitions)
    nc = await nats.connect(nats_cluster.client_urls[0])
    try:
        js = nc.jetstream()
        seqs = [
            (await js.publish(f"fw.v1.{site}.smk-{n % 7}.telemetry", f"#{n}".encode())).seq
            for n in range(2_500)
        ]
        consumer = await PullConsumer.create(nc, js, STREAM, config(p, seqs[100]))
        got: list[Pulled] = []
        while len(got) < 2_400:
            batch = await consumer.fetch(1_000, wait_s=1.0)
            assert len(batch) <= 1_000
            got.extend(batch)
        assert [m.seq for m in got] == seqs[100:]
        assert [m.data for m in got] == [f"#{n}".encode() for n in range(100, 2_500)]
        assert got[0].subject == f"fwp.{p}.fw.v1.{site}.smk-2.telemetry"

        # Nothing left: a timeout after the wait, not an empty batch.
        with pytest.raises(TimeoutError):
            await consumer.fetch(1_000, wait_s=0.3)

        # A message published while a fetch waits is its answer, at once.
        async def later() -> int:
            await asyncio.sleep(0.2)
            return int((await js.publish(f"fw.v1.{site}.smk-1.telemetry", b"late")).seq)

        waiting = asyncio.ensure_future(consumer.fetch(1_000, wait_s=5.0))
        late_seq = await later()
        batch = await asyncio.wait_for(waiting, 2.0)
        assert [(m.seq, m.data) for m in batch] == [(late_seq, b"late")]
        await consumer.unsubscribe()
    finally:
        await nc.close()


async def test_a_consumer_that_is_gone_is_a_pull_error_so_the_reader_makes_a_new_one(
    nats_cluster: NatsCluster,
) -> None:
    p = partition_of("s2", nats_cluster.partitions)
    nc = await nats.connect(nats_cluster.client_urls[1])
    try:
        js = nc.jetstream()
        await js.publish("fw.v1.s2.smk-1.telemetry", b"x")
        consumer = await PullConsumer.create(nc, js, STREAM, config(p, 1))
        await js.delete_consumer(STREAM, consumer.name)
        with pytest.raises(PullError):
            await consumer.fetch(10, wait_s=0.5)
        await consumer.unsubscribe()
    finally:
        await nc.close()
