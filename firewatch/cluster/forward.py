"""GB/T 26875.3 uploads into the engine, when clustered (docs/scale.md, docs/gb26875.md).

A transmission device keeps its TCP connection to whichever worker it reached; its uploads must
still go to the worker that owns its site's partition, in order. So the listener's messages are
published to the engine on the device's own subject (`fw.v1.<site>.<device>.<kind>`, which the
engine maps to the site's partition like an MQTT device's) instead of onto this worker's queue,
and an upload is confirmed to the device once the stream has stored every message of it (the
JetStream publish acknowledgement) — the same promise as on a single node, where it is confirmed
once stored locally: a device whose upload is not confirmed sends it again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from nats.js import JetStreamContext

from ingest.envelope import Message
from ingest.queue import BoundedQueue

logger = logging.getLogger(__name__)

RETRY_MAX_S = 2.0


def subject_of(topic: str) -> str:
    return topic.replace("/", ".")


class EngineInbox(BoundedQueue):
    """Takes the place of the pipeline's queue for the GB/T 26875.3 listener: what is put here is
    published to the engine, and confirmed through `confirm` once stored there."""

    def __init__(
        self,
        js: Callable[[], JetStreamContext | None],
        confirm: Callable[[Iterable[Message]], int],
    ) -> None:
        super().__init__(maxsize=0)
        self._js = js
        self._confirm = confirm
        self._tail: asyncio.Task[None] | None = None
        self.forwarded = 0
        self.failures = 0

    def put(self, message: Message) -> bool:
        self.put_acknowledged([message])
        return True

    def put_acknowledged(self, messages: list[Message]) -> None:
        """Publish in order (each batch after the one before), confirm when stored."""
        if not messages:
            return
        previous = self._tail
        self._tail = asyncio.get_running_loop().create_task(self._forward(list(messages), previous))

    async def _forward(self, messages: list[Message], previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.wait({previous})
        delay = 0.1
        i = 0
        while i < len(messages):
            js = self._js()
            try:
                if js is None:
                    raise ConnectionError("not connected to the engine yet")
                await js.publish(subject_of(messages[i].topic), messages[i].payload, timeout=2.0)
                i += 1
                delay = 0.1
            except Exception as exc:  # the engine is failing over: the device waits for its confirm
                self.failures += 1
                logger.warning("forwarding a GB/T 26875.3 upload to the engine failed (%r); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        self.forwarded += len(messages)
        self._confirm(messages)
