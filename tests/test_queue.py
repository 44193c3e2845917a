"""The receive queue is bounded for QoS 0 and never strands a QoS 1 message."""

from __future__ import annotations

import asyncio
import time

from ingest.envelope import Message
from ingest.queue import BoundedQueue


def m(qos: int, mid: int | None = None) -> Message:
    return Message("fw/v1/s/d/telemetry", b"{}", 0.0, qos, mid)


async def test_a_full_queue_drops_and_counts_qos0_but_keeps_qos1() -> None:
    q = BoundedQueue(maxsize=2)
    assert q.put(m(1, 1))
    assert q.put(m(1, 2))
    assert not q.put(m(0))
    assert q.put(m(1, 3))
    assert (q.dropped, q.overflow, q.received, len(q)) == (1, 1, 4, 3)
    batch = await q.get_batch(10, 0)
    assert [x.mid for x in batch] == [1, 2, 3]


async def test_get_batch_takes_at_most_max_items_in_arrival_order() -> None:
    q = BoundedQueue(maxsize=100)
    for i in range(5):
        q.put(m(1, i))
    assert [x.mid for x in await q.get_batch(3, 0)] == [0, 1, 2]
    assert [x.mid for x in await q.get_batch(3, 0)] == [3, 4]


async def test_a_batch_waits_for_more_messages_until_its_oldest_has_waited_the_batch_wait() -> None:
    q = BoundedQueue(maxsize=100)
    loop = asyncio.get_running_loop()
    q.put(m(1, 0))
    loop.call_later(0.05, q.put, m(1, 1))  # arrives within the wait: same batch
    started = time.monotonic()
    batch = await q.get_batch(10, 0.2)
    assert [x.mid for x in batch] == [0, 1]
    assert time.monotonic() - started >= 0.19


async def test_messages_that_waited_during_the_batch_before_are_not_made_to_wait_again() -> None:
    """The batch wait counts from the oldest message's arrival: one that arrived while the batch
    before it was processed (here, 0.3 s) has waited its time; it is taken at once."""
    q = BoundedQueue(maxsize=100)
    q.put(m(1, 0))
    await asyncio.sleep(0.3)  # the batch before is being processed
    started = time.monotonic()
    batch = await q.get_batch(10, 0.25)
    assert [x.mid for x in batch] == [0]
    assert time.monotonic() - started < 0.2
