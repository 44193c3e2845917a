"""The bounded queue between the network and the pipeline.

Overflow is dropped *and counted* (aiomqtt's own queue drops silently when bounded). A dropped QoS 1
message is never acknowledged, so the broker redelivers it on the next session; with the broker's
in-flight window (MQTT 5 Receive Maximum) set below the queue size, QoS 1 traffic cannot overflow.
"""

from __future__ import annotations

import asyncio
from collections import deque

from ingest.envelope import Message


class BoundedQueue:
    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: deque[Message] = deque()
        self._ready = asyncio.Event()
        self.dropped = 0
        self.received = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, message: Message) -> bool:
        """Enqueue without waiting; False (and counted) when full. Called from the network callback."""
        self.received += 1
        if len(self._items) >= self.maxsize:
            self.dropped += 1
            return False
        self._items.append(message)
        if not self._ready.is_set():
            self._ready.set()
        return True

    async def get_batch(self, max_items: int, wait_s: float) -> list[Message]:
        """At least one message; more if they arrive within `wait_s`, at most `max_items`."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        if len(self._items) < max_items and wait_s > 0:
            await asyncio.sleep(wait_s)
        n = min(max_items, len(self._items))
        items = self._items
        return [items.popleft() for _ in range(n)]
