"""Reading the partitions a worker owns from the engine's stream (docs/scale.md).

Each owned partition has a reader: an ephemeral pull consumer on `fwp.<partition>.>` of the
stream, started at a chosen stream sequence. The stream is the durable log and PostgreSQL keeps
each partition's progress, so the consumer acknowledges nothing (AckNone) and is disposable: when
it fails (its engine node died, the connection dropped) the reader makes a new one from the next
sequence it has not yet read. Messages arrive in stream order per partition, which is each
device's order (a device's messages all go to one partition).

A partition taken over is read from before where the worker before got to, and its first messages
are sorted by sequence (firewatch/cluster/worker.py decides the bounds):
- up to `store_upto` they are in the restored snapshot's state: stored again only;
- up to `silent_upto` their alarm events are recorded already: detected with the events dropped;
- the rest is live: onto the pipeline's queue like any message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js import api as js_api

from firewatch.cluster.engine import STREAM, mqtt_topic_of, partition_subject
from firewatch.cluster.pull import PullConsumer, Pulled
from firewatch.pipeline import Pipeline
from ingest.envelope import Message
from ingest.queue import BoundedQueue

logger = logging.getLogger(__name__)

FETCH_MAX = 1_000  # messages per fetch: one round trip per this many
FETCH_WAIT_S = 1.0  # a fetch waits this long for messages before asking again
RETRY_MAX_S = 2.0  # a reader whose consumer failed tries again at most this far apart
# An idle reader's consumer is removed by the engine after this long: one left behind by a worker
# that died costs nothing for long.
CONSUMER_IDLE_S = 30.0
TOPICS_MAX = 200_000  # subjects whose MQTT topic is remembered (a few per device)
PASSED_MAX = 20_000  # live messages remembered to drop the other connection's copy
STOP_WAIT_S = 2.0  # a dropped partition's reader gets this long to end
CONSUMER_CHECK_EVERY = 3  # quiet fetches (FETCH_WAIT_S each) between two checks that the consumer exists


@dataclass
class Feed:
    """One owned partition being read."""

    partition: int
    store_upto: int  # sequences up to here: stored again only
    silent_upto: int  # up to here: detected, events dropped
    next_seq: int  # the next sequence to read
    put_seq: int = 0  # the last sequence handed to the pipeline
    stored_seq: int = 0  # the last sequence stored (acknowledged by the pipeline)
    live_since: float | None = None  # when it first handed a live message over (or caught up)
    stopped: bool = False  # dropped: nothing more goes to the pipeline
    fast: list[Subscription] = field(default_factory=list, repr=False)  # its live subjects
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class ClusterSource:
    """The worker's ingest: NATS connection, one reader per owned partition, progress per partition."""

    def __init__(
        self,
        servers: list[str],
        *,
        queue: BoundedQueue,
        pipeline: Pipeline,
        clock: Callable[[], float],
        name: str,
        stream: str = STREAM,
        fetch_max: int = FETCH_MAX,
        ensure: Callable[[JetStreamContext], Awaitable[None]] | None = None,
    ) -> None:
        self.servers = servers
        self.queue = queue
        self.pipeline = pipeline
        self.clock = clock
        self.name = name
        self.stream = stream
        self.fetch_max = fetch_max
        self.ensure = ensure  # makes (or checks) the stream once connected
        self.feeds: dict[int, Feed] = {}
        # The last sequence stored per partition, also for partitions since handed on (the worker
        # writes them to PostgreSQL every heartbeat).
        self.stored: dict[int, int] = {}
        self.connected = asyncio.Event()
        self.epoch = 0  # connection generation, for the pipeline's "is ingest listening"
        self.nc: Client | None = None
        self.nc2: Client | None = None  # a second connection, through another node, for the live subjects
        self._passed: dict[tuple[str, bytes], None] = {}  # recent live messages, oldest first
        self._topics: dict[str, str] = {}  # stream subject -> MQTT topic
        self.js: JetStreamContext | None = None
        self.read = 0  # messages read from the engine
        self.passing = 0  # messages taken as they passed (the live subscription)
        self.reader_failures = 0

    @property
    def rebuilds(self) -> int:
        """Readers made again after their consumer failed (as MqttSource counts its rebuilds)."""
        return self.reader_failures

    # --- connection ------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Connect (retrying until the engine answers), hold the connection until `stop`, close."""
        delay = 0.5
        while not stop.is_set():
            try:
                await self.connect()
                break
            except Exception as exc:
                logger.warning("cannot reach the engine at %s (%r); retrying", ", ".join(self.servers), exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 5.0)
        await stop.wait()
        await self.close()

    async def connect(self) -> None:
        async def disconnected() -> None:
            self.connected.clear()

        async def reconnected() -> None:
            self.epoch += 1
            self.connected.set()

        async def error(exc: Exception) -> None:
            logger.warning("engine connection: %s", exc)

        self.nc = await nats.connect(
            servers=self.servers,
            name=self.name,
            max_reconnect_attempts=-1,  # forever: the engine is the only way in
            reconnect_time_wait=0.5,
            connect_timeout=2,
            dont_randomize=True,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            error_cb=error,
        )
        if len(self.servers) > 1:
            # The live subjects also through a second node: when the node this worker is connected
            # to dies it may have led the stream, and until this worker has reconnected nothing
            # would carry the messages the other nodes acknowledge meanwhile (see _go_live).
            self.nc2 = await nats.connect(
                servers=self.servers[1:] + self.servers[:1],
                name=f"{self.name} (live)",
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                connect_timeout=2,
                dont_randomize=True,
                error_cb=error,
            )
        self.js = self.nc.jetstream()
        if self.ensure is not None:
            await self.ensure(self.js)
        self.epoch += 1
        self.connected.set()

    async def close(self) -> None:
        for p in list(self.feeds):
            await self.drop(p, wait_s=0.0)
        for nc in (self.nc, self.nc2):
            if nc is not None:
                with contextlib.suppress(Exception):
                    await nc.close()
        self.connected.clear()

    # --- partitions ------------------------------------------------------------------------------
    def take(self, partition: int, *, start: int, store_upto: int, silent_upto: int) -> Feed:
        """Start reading `partition` at sequence `start` (on the event loop)."""
        if partition in self.feeds:
            raise ValueError(f"partition {partition} is read already")
        feed = Feed(partition, store_upto, silent_upto, next_seq=max(1, start))
        feed.stored_seq = feed.put_seq = feed.next_seq - 1
        self.feeds[partition] = feed
        feed.task = asyncio.get_running_loop().create_task(self._read(feed), name=f"partition-{partition}")
        return feed

    async def drop(self, partition: int, *, wait_s: float) -> int:
        """Stop reading `partition`; wait up to `wait_s` until what was handed over is stored.
        Returns the last sequence stored."""
        feed = self.feeds.pop(partition, None)
        if feed is None:
            return self.stored.get(partition, 0)
        feed.stopped = True  # whatever its reader still fetches is dropped, never queued
        for sub in feed.fast:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        feed.fast = []
        if feed.task is not None:
            feed.task.cancel()
            # Not awaited without bound: a reader inside the client library's fetch may take a
            # while to see its cancellation; it queues nothing more either way.
            await asyncio.wait({feed.task}, timeout=STOP_WAIT_S)
        deadline = asyncio.get_running_loop().time() + wait_s
        # Polled: stored progress comes from the pipeline's writer, 20 ms at a time for a few seconds
        # at most, once per partition handed on.
        while feed.stored_seq < feed.put_seq and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        return feed.stored_seq

    def ack(self, messages: Iterable[Message]) -> int:
        """The pipeline stored these: the partitions' progress moves on (nothing goes to the engine)."""
        n = 0
        stored = self.stored
        for m in messages:
            if m.partition >= 0:
                seq = m.mid or 0
                if seq > stored.get(m.partition, 0):
                    stored[m.partition] = seq
                n += 1
        for p, seq in stored.items():
            if (feed := self.feeds.get(p)) is not None and seq > feed.stored_seq:
                feed.stored_seq = seq
        return n

    # --- reading ---------------------------------------------------------------------------------
    async def _read(self, feed: Feed) -> None:
        delay = 0.1
        while not feed.stopped:
            sub: PullConsumer | None = None
            try:
                await self.connected.wait()
                assert self.js is not None
                assert self.nc is not None
                sub = await PullConsumer.create(
                    self.nc,
                    self.js,
                    self.stream,
                    js_api.ConsumerConfig(
                        filter_subject=partition_subject(feed.partition),
                        deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE,
                        opt_start_seq=feed.next_seq,
                        ack_policy=js_api.AckPolicy.NONE,
                        inactive_threshold=CONSUMER_IDLE_S,
                        num_replicas=1,  # disposable: made again from `next_seq` when lost
                        mem_storage=True,
                    ),
                )
                epoch, idle = self.epoch, 0
                while not feed.stopped:
                    await self._room()
                    try:
                        msgs = await sub.fetch(self.fetch_max, wait_s=FETCH_WAIT_S)
                    except TimeoutError:  # nothing new (nats-py raises the builtin or its subclass)
                        if feed.live_since is None and feed.next_seq > feed.silent_upto:
                            feed.live_since = self.clock()
                            await self._go_live(feed)
                        # A consumer lost with its engine node answers no fetch: it looks like
                        # a quiet partition. After a reconnection, and every few quiet seconds,
                        # ask whether it still exists (made again if not).
                        idle += 1
                        if self.epoch != epoch:
                            raise ConnectionResetError("reconnected to the engine") from None
                        if idle % CONSUMER_CHECK_EVERY == 0:
                            await sub.consumer_info()
                        continue
                    idle = 0
                    await self._deliver(feed, msgs)
                    delay = 0.1
            except asyncio.CancelledError:
                if sub is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(sub.unsubscribe(), 1.0)
                raise
            except Exception as exc:
                self.reader_failures += 1
                logger.warning(
                    "reading partition %d from sequence %d failed (%r); trying again in %.1f s",
                    feed.partition,
                    feed.next_seq,
                    exc,
                    delay,
                )
                if sub is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(sub.unsubscribe(), 1.0)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    async def _go_live(self, feed: Feed) -> None:
        """Once a partition is caught up, also take its messages as they pass through the engine
        (a core subscription to the same subjects), beside the stream.

        An MQTT PUBACK from the engine's listener does not mean the stream stored the message
        (docs/decisions/0015-engine.md): while the stream has no leader — seconds after its
        leader's node dies — messages devices publish through the other nodes are acknowledged
        and dropped. The subjects still carry them to this subscription, so the worker detects
        and stores them all the same. Each message thus usually arrives twice: the copy from the
        stream (which carries the sequence the marks and takeovers use) is then a duplicate by
        (device, seq) and payload (ingest/dedupe.py), counted and dropped, and storing is by key
        either way. QoS 0 on the queue: when it is full this copy is dropped, the stream's stays.
        Only once caught up: during a replay the live messages would run ahead of the replayed."""
        if feed.stopped or feed.fast or self.nc is None:
            return
        p = feed.partition
        queue, clock, topic = self.queue, self.clock, self._topic

        async def passing(msg: Msg) -> None:
            if feed.stopped:
                return
            # Both connections deliver it: the second copy is dropped here, before any decoding.
            key = (msg.subject, msg.data)
            if key in self._passed:
                return
            self._passed[key] = None
            if len(self._passed) > PASSED_MAX:
                del self._passed[next(iter(self._passed))]
            queue.put(Message(topic(msg.subject), msg.data, clock(), 0, None, 0, False, -1))
            self.passing += 1

        for nc in (self.nc, self.nc2):
            if nc is None:
                continue
            try:
                feed.fast.append(
                    await nc.subscribe(partition_subject(p), cb=passing, pending_msgs_limit=100_000)
                )
            except Exception as exc:  # the stream's copy still comes; only the leaderless window is open
                logger.warning("cannot subscribe to partition %d's live subjects (%r)", p, exc)

    def _topic(self, subject: str) -> str:
        """`mqtt_topic_of`, remembered: a device's subjects are the same message after message."""
        topic = self._topics.get(subject)
        if topic is None:
            if len(self._topics) >= TOPICS_MAX:
                self._topics.clear()
            topic = self._topics[subject] = mqtt_topic_of(subject)
        return topic

    async def _room(self) -> None:
        """Read no further ahead than the queue holds: the engine keeps the rest."""
        # Polled: the queue has no "room again" event, and this only runs while it is full.
        while len(self.queue) >= self.queue.maxsize:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    async def _deliver(self, feed: Feed, msgs: list[Pulled]) -> None:
        if feed.stopped:
            return
        topic = self._topic
        now = self.clock()
        p = feed.partition
        store_only: list[Message] = []
        silent: list[Message] = []
        live: list[Message] = []
        for msg in msgs:
            seq = msg.seq
            if seq < feed.next_seq:  # read before the consumer was made again
                continue
            m = Message(topic(msg.subject), msg.data, now, 1, seq, 0, False, p)
            if seq <= feed.store_upto:
                store_only.append(m)
            elif seq <= feed.silent_upto:
                silent.append(m)
            else:
                live.append(m)
            feed.next_seq = seq + 1
        self.read += len(store_only) + len(silent) + len(live)
        if store_only or silent:
            await asyncio.shield(self.pipeline.catch_up(store_only, silent))
            feed.put_seq = max(feed.put_seq, (silent or store_only)[-1].mid or 0)
        if live and not feed.stopped:
            if feed.live_since is None:
                feed.live_since = now
                await self._go_live(feed)
            self.queue.put_acknowledged(live)
            feed.put_seq = live[-1].mid or 0
