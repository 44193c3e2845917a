"""One control room over every worker: each worker's committed alarm transitions and incident steps
(and its unrecorded alarms) go to the live streams of every other worker (docs/scale.md).

A worker's own live hub (api/live.py) is fed by its own alarm service. The bus publishes the same
items on NATS core pub/sub, one subject for the cluster, and feeds what other workers published
into this worker's hub. Core pub/sub and not JetStream: the alarm event log in PostgreSQL is the
durable record, and a stream that missed a live item resumes from it. So the bus never waits and
never retries: what it cannot send is counted and dropped.

Nothing lost goes unnoticed, though. Every item a worker publishes (or drops) takes the next number
of that worker's sequence, and each message says where its items start; an idle worker sends an
empty message with its next number every `HEARTBEAT_S`. A receiver that sees a worker's numbers
jump (the sender dropped items while NATS was away, or this worker was cut off from NATS) tells
its hub to resync: every stream ends with `reason: "resync"` and its client resumes from the event
log, where the recorded transitions are (the console re-reads incidents and unrecorded alarms when
it reconnects). Within one connection NATS delivers one publisher's messages in order.

Wire format (compact JSON, one object per message, at most the server's max_payload):
`{"w": worker id, "b": boot id, "s": first item's number, "items": [...]}`; an item is
`Transition.to_json()` or `IncidentUpdate.to_json()` (`"type": "incident"`) with `recorded`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from alarms.model import IncidentUpdate, Transition
from api.live import Item, LiveHub

logger = logging.getLogger(__name__)

SUBJECT = "fw.live"
# Items waiting to be sent at most; past it they are dropped and counted. A storm's bulk write hands
# over thousands at once; both ends of the bus together cost ~15-20 µs of CPU per item
# (bench/live_bus.py, docs/benchmarks.md), so this is seconds of work, not a standing backlog.
PENDING_MAX = 100_000
COALESCE_MAX = 10_000  # waiting items sent in one go at most (then cut to fit max_payload)
HEARTBEAT_S = 2.0  # an idle worker's empty message: a receiver notices lost items this soon
# How far below a resume point a clustered stream re-reads the event log (api/live.py). An event is
# logged with its writer's clock as its write begins, and reaches another worker's streams after its
# write (10-11 ms at the median, 56-75 ms at the p99 for a write that raises a fire, on SQLite:
# docs/benchmarks.md, "Alarm latency under load"), the commit-to-stream hop (single milliseconds
# there) and the bus, give or take the clock difference of two NTP-synchronised hosts
# (milliseconds): 10 s is a wide margin for a slow or briefly stalled database.
RESUME_WINDOW_S = 10.0
ENVELOPE_BYTES = 512  # room for a message's envelope next to its items


def encode_item(item: Item) -> bytes:
    if isinstance(item, IncidentUpdate):
        return orjson.dumps({**item.to_json(), "recorded": item.recorded})
    return orjson.dumps(item.to_json())


def decode_item(d: dict[str, Any]) -> Item:
    if d.get("type") == "incident":
        return IncidentUpdate.from_json(d)
    return Transition.from_json(d)


def runs(numbered: Sequence[tuple[int, bytes]], limit: int) -> Iterator[list[tuple[int, bytes]]]:
    """`numbered` (item number, encoded item) cut into consecutive runs whose JSON array fits
    `limit` bytes and whose numbers follow one another (a number left out ends a run)."""
    run: list[tuple[int, bytes]] = []
    size = 2
    for n, e in numbered:
        if run and (size + len(e) + 1 > limit or n != run[-1][0] + 1):
            yield run
            run, size = [], 2
        run.append((n, e))
        size += len(e) + 1
    if run:
        yield run


class LiveBus:
    """This worker's items out to the other workers' live streams, theirs into `hub`.

    `publish` may be called from any thread (the alarm writer's, the pipeline's) and returns at
    once; `start` and `stop` run on the event loop that serves `hub` (the API's).
    """

    def __init__(
        self,
        nc: Client,
        worker_id: str,
        hub: LiveHub,
        subject: str = SUBJECT,
        on_remote: Callable[[Sequence[Item]], None] | None = None,
    ) -> None:
        self.nc = nc
        self.worker_id = worker_id
        self.hub = hub
        self.subject = subject
        # Told of other workers' items too (on the loop): the owner of a device hears a person's
        # reset made through another worker's API (firewatch/forget.py).
        self.on_remote = on_remote
        # Streams on this hub carry other workers' events, committed in their own order: resume
        # re-reads a window below the resume point (api/live.py, Backlog).
        hub.resume_window_s = max(hub.resume_window_s or 0.0, RESUME_WINDOW_S)
        self.boot = secrets.token_hex(4)  # a restarted worker numbers its items afresh
        self._lock = threading.Lock()  # the item numbers and counters, from any thread
        self._next = 0  # the number the next item published takes
        # Items below this number were sent or dropped once the queue is empty (the loop's view):
        # the heartbeat's number.
        self._sent_to = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: deque[tuple[int, tuple[Item, ...]]] | None = None  # (first number, batch)
        self._pending_items = 0
        self._wake = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._sub: Subscription | None = None
        self._expected: dict[tuple[str, str], int] = {}  # (worker, boot) -> its next item number
        self._outage = False
        self._outage_unsent = 0
        self.sent = 0  # items published
        self.unsent = 0  # items that could not be published (NATS away, queue full, too large)
        self.received = 0  # items from other workers handed to the hub
        self.malformed = 0  # messages on the subject that could not be read
        self.gaps = 0  # times another worker's items were found missing (the hub resynced)

    # --- out -------------------------------------------------------------------------------------

    def publish(self, items: Sequence[Item]) -> None:
        """Send `items` to the other workers; never blocks or raises (from any thread)."""
        if not items:
            return
        batch = tuple(items)
        with self._lock:
            first = self._next
            self._next += len(batch)
            loop = self._loop
            # Scheduled under the lock: batches reach the loop in the order of their numbers.
            if loop is not None and not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(self._enqueue, first, batch)
                    return
                except RuntimeError:  # the loop closed in between
                    pass
            self.unsent += len(batch)

    def _enqueue(self, first: int, batch: tuple[Item, ...]) -> None:
        if self._pending is None:  # stopped
            self._count_unsent(len(batch), "the live bus is stopped")
            return
        if self._pending_items + len(batch) > PENDING_MAX:
            self._count_unsent(len(batch), f"{self._pending_items} items are waiting to be sent")
            # Every batch numbered below it is waiting (the loop runs callbacks in order): once
            # they are sent, the heartbeat's number shows receivers this one is missing.
            self._sent_to = max(self._sent_to, first + len(batch))
            return
        self._pending.append((first, batch))
        self._pending_items += len(batch)
        self._wake.set()

    async def _run(self) -> None:
        pending = self._pending
        assert pending is not None
        while True:
            if not pending:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), HEARTBEAT_S)
                except TimeoutError:
                    await self._send(self._sent_to, [])
                    continue
            # Everything waiting goes in as few messages as fit: commits of one transition each
            # (a person's acknowledgement, the policy clock) share messages.
            batches: list[tuple[int, tuple[Item, ...]]] = []
            taken = 0
            while pending and taken < COALESCE_MAX:
                first, batch = pending.popleft()
                batches.append((first, batch))
                taken += len(batch)
            self._pending_items -= taken
            await self._publish_batches(batches)
            last_first, last = batches[-1]
            self._sent_to = max(self._sent_to, last_first + len(last))

    async def _publish_batches(self, batches: list[tuple[int, tuple[Item, ...]]]) -> None:
        """Publish `batches` in as few messages as fit. An item that cannot be encoded, or is
        larger than a message, is counted unsent and its number left out: receivers see the gap."""
        limit = self.nc.max_payload - ENVELOPE_BYTES
        numbered: list[tuple[int, bytes]] = []
        for first, batch in batches:
            for i, item in enumerate(batch):
                try:
                    encoded = encode_item(item)
                except (TypeError, orjson.JSONEncodeError) as exc:
                    logger.error("live bus: an item cannot be encoded (%s): %r", exc, item)
                    self._count_unsent(1, "an item cannot be encoded")
                    continue
                if len(encoded) + 2 > limit:
                    self._count_unsent(1, f"an item of {len(encoded)} bytes exceeds NATS's max_payload")
                    continue
                numbered.append((first + i, encoded))
        for run in runs(numbered, limit):
            await self._send(run[0][0], [e for _, e in run])

    async def _send(self, first: int, run: list[bytes]) -> None:
        head = b'{"w":%s,"b":"%s","s":%d,"items":[' % (
            orjson.dumps(self.worker_id),
            self.boot.encode(),
            first,
        )
        payload = head + b",".join(run) + b"]}"
        if not self.nc.is_connected:
            self._count_unsent(len(run), "not connected to NATS")
            return
        try:
            await self.nc.publish(self.subject, payload)
        except Exception as exc:  # closed, buffer full, too large: the event log has the items
            self._count_unsent(len(run), f"{type(exc).__name__}: {exc}")
            return
        with self._lock:
            self.sent += len(run)
        if self._outage:
            self._outage = False
            logger.info(
                "live bus: publishing again; %d items could not be sent meanwhile (streams resume)",
                self._outage_unsent,
            )

    def _count_unsent(self, n: int, why: str) -> None:
        with self._lock:
            self.unsent += n
        if n == 0:
            return
        if not self._outage:
            self._outage = True
            self._outage_unsent = 0
            logger.warning(
                "live bus: cannot publish to other workers (%s); their streams resume from the "
                "event log once it is back",
                why,
            )
        self._outage_unsent += n

    # --- in --------------------------------------------------------------------------------------

    async def _on_msg(self, msg: Msg) -> None:
        try:
            body = orjson.loads(msg.data)
            worker, boot, first = str(body["w"]), str(body["b"]), int(body["s"])
            if worker == self.worker_id:
                return  # this worker's hub has its own items already
            items = [decode_item(d) for d in body["items"]]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            self.malformed += 1
            if self.malformed == 1 or self.malformed % 1000 == 0:
                logger.warning("live bus: %d unreadable messages so far (%s)", self.malformed, exc)
            return
        key = (worker, boot)
        expected = self._expected.get(key)
        self._expected[key] = max(expected or 0, first + len(items))
        if items:
            self.received += len(items)
            self.hub.publish(items)
            if self.on_remote is not None:
                try:
                    self.on_remote(items)
                except Exception:
                    logger.exception("live bus: handling another worker's items failed")
        if expected is not None and first > expected:
            # Items numbered expected..first-1 never arrived: tell every stream to resume from the
            # event log (after this batch reached the hub, so nothing is left between the two).
            self.gaps += 1
            logger.warning(
                "live bus: %d live items from worker %s were lost; streams resume from the event log",
                first - expected,
                worker,
            )
            self.hub.resync(f"live events from worker {worker} were lost on the way: resume")

    # --- lifetime --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to the other workers and begin sending (on the hub's event loop)."""
        self._pending = deque()
        self._pending_items = 0
        self._wake = asyncio.Event()
        self._sub = await self.nc.subscribe(self.subject, cb=self._on_msg)
        self._sender = asyncio.create_task(self._run(), name="live-bus-sender")
        with self._lock:
            self._loop = asyncio.get_running_loop()

    async def stop(self) -> None:
        """Stop receiving and sending; what is still queued is counted as unsent."""
        with self._lock:
            self._loop = None
        if self._sub is not None:
            with contextlib.suppress(Exception):  # NATS may be gone: nothing to unsubscribe from
                await self._sub.unsubscribe()
            self._sub = None
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
            self._sender = None
        if self._pending is not None:
            for _, batch in self._pending:
                self._count_unsent(len(batch), "the live bus stopped")
            self._pending = None
