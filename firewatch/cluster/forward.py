"""GB/T 26875.3 uploads into the engine, when clustered (docs/scale.md, docs/gb26875.md).

A transmission device keeps its TCP connection to whichever worker it reached; its uploads must
still go to the worker that owns its site's partition, in order. So the listener's messages are
published to the engine on the device's own subject (`fw.v1.<site>.<device>.<kind>`, which the
engine maps to the site's partition like an MQTT device's) instead of onto this worker's queue,
and an upload is confirmed to the device once the stream has stored every message of it (the
JetStream publish acknowledgement) — the same promise as on a single node, where it is confirmed
once stored locally: a device whose upload is not confirmed sends it again.

One task publishes, one message at a time in the order the listener handed them over, so a
device's messages reach its partition in the order it sent them. While the engine does not answer
(failing over, unreachable) the task retries the message it is at, and nothing after it is
confirmed. A retry carries the same `Nats-Msg-Id` as the first try: a publish the stream stored but
whose acknowledgement was lost is not stored twice (the stream's duplicate window, 2 min by
default, is far longer than a retry's wait). The backlog is bounded: beyond `backlog_max` messages
an upload is refused (counted, never confirmed, so the device sends it again later).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable

from nats.js import JetStreamContext

from ingest.envelope import Message
from ingest.queue import BoundedQueue

logger = logging.getLogger(__name__)

RETRY_MAX_S = 2.0
PUBLISH_TIMEOUT_S = 2.0
BACKLOG_MAX = 10_000  # messages waiting to be forwarded; more are refused (the devices resend)


def subject_of(topic: str) -> str:
    return topic.replace("/", ".")


class EngineInbox(BoundedQueue):
    """Takes the place of the pipeline's queue for the GB/T 26875.3 listener: what is put here is
    published to the engine, and confirmed through `confirm` once stored there."""

    def __init__(
        self,
        js: Callable[[], JetStreamContext | None],
        confirm: Callable[[Iterable[Message]], int],
        *,
        name: str,
        backlog_max: int = BACKLOG_MAX,
    ) -> None:
        super().__init__(maxsize=backlog_max)
        self._js = js
        self._confirm = confirm
        # Message ids unique to this process: the worker's name and a per-start nonce, then a count.
        self._id_prefix = f"gb-{name}-{uuid.uuid4().hex[:12]}-"
        self._ids = itertools.count(1)
        self._batches: deque[list[tuple[Message, str]]] = deque()
        self._waiting = 0  # messages handed over and not yet stored in the engine
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._refusing = False
        self.forwarded = 0  # messages stored in the engine
        self.failures = 0  # publishes that failed (each retried)
        self.refused = 0  # messages refused because the backlog was full or the inbox closed
        self.failing_since: float | None = None  # monotonic time of the first failure in a row

    def __len__(self) -> int:
        return self._waiting

    def put(self, message: Message) -> bool:
        return self._accept([message])

    def put_acknowledged(self, messages: list[Message]) -> None:
        """Forward in order (each batch after the one before); confirm once stored."""
        self._accept(messages)

    def _accept(self, messages: list[Message]) -> bool:
        if not messages:
            return True
        self.received += len(messages)
        if self._closed or self._waiting + len(messages) > self.maxsize:
            if not self._refusing:  # logged once per run of refusals
                self._refusing = True
                logger.warning(
                    "GB/T 26875.3 uploads not forwarded to the engine (%d waiting%s): left unconfirmed, "
                    "the devices send them again",
                    self._waiting,
                    ", stopping" if self._closed else "",
                )
            self.refused += len(messages)
            return False
        self._refusing = False
        self._batches.append([(m, f"{self._id_prefix}{next(self._ids)}") for m in messages])
        self._waiting += len(messages)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="gb26875-forward")
        self._wake.set()
        return True

    async def close(self) -> int:
        """Stop forwarding; returns how many messages were left unforwarded (their uploads are not
        confirmed: the devices send them again, to whichever worker they reach)."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        left = self._waiting
        if left:
            logger.info("stopping: %d GB/T 26875.3 messages not forwarded, their uploads unconfirmed", left)
        return left

    async def _run(self) -> None:
        while True:
            while not self._batches:
                self._wake.clear()
                await self._wake.wait()
            batch = self._batches[0]
            for message, msg_id in batch:
                await self._publish(message, msg_id)
            self._batches.popleft()
            self._waiting -= len(batch)
            self.forwarded += len(batch)
            try:
                self._confirm([m for m, _ in batch])
            except Exception:  # a confirm that cannot be sent is the device's resend; go on
                logger.exception("confirming a forwarded GB/T 26875.3 upload failed")

    async def _publish(self, message: Message, msg_id: str) -> None:
        """Until the stream has stored it (retried with the same id while the engine fails)."""
        delay = 0.1
        while True:
            js = self._js()
            try:
                if js is None:
                    raise ConnectionError("not connected to the engine yet")
                await js.publish(
                    subject_of(message.topic),
                    message.payload,
                    timeout=PUBLISH_TIMEOUT_S,
                    headers={"Nats-Msg-Id": msg_id},
                )
            except Exception as exc:  # the engine is failing over or unreachable: the device waits
                self.failures += 1
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                    logger.warning(
                        "forwarding GB/T 26875.3 uploads to the engine failed (%r); retrying, nothing "
                        "confirmed to the devices meanwhile",
                        exc,
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            if self.failing_since is not None:
                logger.info(
                    "forwarding GB/T 26875.3 uploads to the engine again after %.1f s",
                    time.monotonic() - self.failing_since,
                )
                self.failing_since = None
            return
