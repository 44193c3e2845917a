"""The bounded queue between the network and the pipeline.

QoS 0 overflow is dropped *and counted* (aiomqtt's own queue drops silently when bounded). QoS 1 is
never dropped: a dropped QoS 1 message would stay unacknowledged, stranded in the broker's in-flight
window until the next reconnection, and enough of them stall the session. QoS 1 is bounded instead
by that window (MQTT 5 Receive Maximum); whatever still exceeds `maxsize` is kept and counted as
`overflow` so a broker that does not honour the window is visible in the metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from itertools import repeat

from ingest.envelope import Message


class BoundedQueue:
    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: deque[Message] = deque()
        self._ready = asyncio.Event()
        # When the queue last went from empty to not empty (`time.monotonic()`): the oldest waiting
        # message has waited at least since then.
        self._since = 0.0
        self.dropped = 0  # QoS 0 messages dropped because the queue was full
        self.overflow = 0  # QoS 1 messages kept beyond maxsize
        self.received = 0

    def __len__(self) -> int:
        return len(self._items)

    def oldest_received(self) -> float | None:
        """When the longest-waiting message arrived (None when empty): the ingest watermark."""
        items = self._items
        try:
            return items[0].received
        except IndexError:
            return None

    def put(self, message: Message) -> bool:
        """Enqueue without waiting; False (and counted) if a full queue drops it (QoS 0 only)."""
        self.received += 1
        if len(self._items) >= self.maxsize:
            if message.qos == 0:
                self.dropped += 1
                return False
            self.overflow += 1
        if not self._items:
            self._since = time.monotonic()
        self._items.append(message)
        if not self._ready.is_set():
            self._ready.set()
        return True

    def put_acknowledged(self, messages: list[Message]) -> None:
        """Enqueue QoS 1 messages at once, in order: what `put` does for each, in one step (the MQTT
        source's bulk reader hands over every PUBLISH of a socket read together). None is dropped;
        those beyond `maxsize` are counted as overflow, exactly as one `put` each would count them."""
        n = len(messages)
        self.received += n
        beyond = len(self._items) + n - self.maxsize
        if beyond > 0:
            self.overflow += min(n, beyond)
        if n and not self._items:
            self._since = time.monotonic()
        self._items.extend(messages)
        if n and not self._ready.is_set():
            self._ready.set()

    async def get_batch(self, max_items: int, wait_s: float) -> list[Message]:
        """At least one message; more if they arrive before the oldest waiting one has waited
        `wait_s`, at most `max_items`.

        The wait counts from the oldest message's arrival, not from this call: a message that
        arrived while the batch before it was processed has waited already, and a fire reading
        among them must not wait a whole `wait_s` more (once the load keeps the pipeline busy,
        batches follow each other without a pause and grow with the load instead)."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        if len(self._items) < max_items and wait_s > 0:
            left = wait_s - (time.monotonic() - self._since)
            if left > 0:
                await asyncio.sleep(left)
        items = self._items
        if len(items) <= max_items:  # the whole queue: one copy instead of a pop per message
            batch = list(items)
            items.clear()
            return batch
        return list(map(deque.popleft, repeat(items, max_items)))  # no Python-level loop per message
