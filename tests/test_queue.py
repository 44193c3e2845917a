"""The receive queue is bounded for QoS 0 and never strands a QoS 1 message."""

from __future__ import annotations

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
