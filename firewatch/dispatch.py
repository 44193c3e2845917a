"""The push dispatcher: delivers the outbox at least once, with retries, backoff and a delivery log.

Rows come from `alarms.outbox.enqueue`, committed with the alarm transition they belong to. Here
each due row is sent on its route's channel; success marks it delivered, failure schedules the next
attempt (1 s doubling to 5 min) and is logged. Nothing is ever dropped: a channel that is down is
retried until it comes back, and after a restart the dispatcher simply reads the rows still owed.
Each route is worked in its own thread, in order, so a hanging channel delays only its own pushes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, cast

import orjson
from sqlalchemy import Engine, Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from alarms.model import Transition
from core.settings import PushRoute
from firewatch.mqtt_publish import MqttPublisher
from firewatch.workers import DaemonWorker
from storage.advisory import Space, try_lock_session, unlock_session
from storage.db import IMMEDIATE
from storage.models import DeliveryRow, OutboxRow

logger = logging.getLogger(__name__)

_OUTBOX = cast(Table, OutboxRow.__table__)
_DELIVERIES = cast(Table, DeliveryRow.__table__)


class DeliveryError(RuntimeError):
    """A channel could not deliver; the message says why (never the route's secret URL)."""


@dataclass(frozen=True)
class DeliveryNote:
    """What a channel says about a push it delivered, for the delivery log: a line in Chinese (the
    people on duty it went to) and, for a roster route, each recipient (firewatch/roster_channel.py)."""

    detail: str
    recipients: list[dict[str, Any]]


class Channel(Protocol):
    def deliver(self, payload: dict[str, Any]) -> DeliveryNote | None:
        """Send one push or raise DeliveryError. Blocking; run in a worker thread."""


class BatchChannel(Channel, Protocol):
    """A channel that sends a route's rows together (the MQTT alarm topic: pipelined publishes)."""

    def deliver_many(self, payloads: Sequence[dict[str, Any]]) -> list[str | None]:
        """Send `payloads` in order; returns one entry per payload: None once it is delivered, else
        why not. Blocking; run in a worker thread. The dispatcher counts the rows up to the first
        error as delivered, and keeps that row and all after it owed."""


class AppriseChannel:
    """Any Apprise URL: json:// webhooks, mailto:// email, dingtalk://, wecombot:// and many more.

    Apprise spaces consecutive sends of one service apart by that service's own interval (5.5 s for
    email, DingTalk, WeCom and most others; none for json://, form://, xml://). The route's
    `min_interval_s` (default 0) or the `min_interval_s` argument overrides it; None keeps Apprise's.
    """

    def __init__(
        self, route: PushRoute, timeout_s: float = 10.0, min_interval_s: float | None = None
    ) -> None:
        import apprise

        self.name = route.name
        # The rendered message is plain text: say so, or Apprise hands it as HTML to services that
        # prefer HTML (email), where its line breaks collapse and a "<" in a detail reads as markup.
        self._text = apprise.NotifyFormat.TEXT
        self._apprise = apprise.Apprise()
        asset_ok = route.url is not None and self._apprise.add(route.url)
        if not asset_ok:
            raise ValueError(f"push route {route.name!r}: its url is not a URL Apprise understands")
        interval = min_interval_s if min_interval_s is not None else route.min_interval_s
        for server in self._apprise:
            server.socket_connect_timeout = timeout_s
            server.socket_read_timeout = timeout_s
            if interval is not None:
                server.request_rate_per_sec = interval  # Apprise's name; it is seconds per send

    def deliver(self, payload: dict[str, Any]) -> None:
        ok = self._apprise.notify(
            title=str(payload["title"]), body=str(payload["body"]), body_format=self._text
        )
        if not ok:
            raise DeliveryError(f"route {self.name!r}: the notification service did not accept the push")


class MqttAlarmChannel:
    """The alarm topic `{prefix}/{site}/alarms`: each transition as JSON, QoS 1, for integrations;
    incident steps likewise on `{prefix}/{site}/incidents`.

    A connection of its own (the ingest connection only subscribes), opened on first use and again
    after a failure; a publish counts as delivered once the broker acknowledged it. A batch of rows
    goes out pipelined (`deliver_many`): every PUBLISH at once, then their PUBACKs together, on a
    synchronous publisher without a network thread (firewatch/mqtt_publish.py).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        prefix: str,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.host, self.port, self.prefix, self.timeout_s = host, port, prefix, timeout_s
        self.client_id, self.username, self.password = client_id, username, password
        self._publisher = MqttPublisher(
            host, port, client_id=client_id, username=username, password=password, timeout_s=timeout_s
        )

    def _message(self, payload: dict[str, Any]) -> tuple[str, bytes]:
        if "incident" in payload:  # an incident step (alarms/outbox.py enqueue_incident)
            message = payload["incident"]
            topic = f"{self.prefix}/{message['incident']['site']}/incidents"
        else:
            message = payload["transition"]
            topic = f"{self.prefix}/{message['after']['site']}/alarms"
        return topic, orjson.dumps(message)

    def deliver(self, payload: dict[str, Any]) -> None:
        (error,) = self.deliver_many([payload])
        if error is not None:
            raise DeliveryError(error)

    def deliver_many(self, payloads: Sequence[dict[str, Any]]) -> list[str | None]:
        """Publish `payloads` in order; per payload None (acknowledged by the broker) or why not.
        From the first one not acknowledged on, none counts as delivered: the route's order."""
        messages: list[tuple[str, bytes]] = []
        unusable = ""
        for payload in payloads:
            try:
                messages.append(self._message(payload))
            except (KeyError, TypeError, orjson.JSONEncodeError) as exc:  # a payload of no shape we know
                unusable = f"alarm topic: not a transition or an incident step: {type(exc).__name__}: {exc}"
                break
        done, reason = self._publisher.publish_many(messages)
        if done < len(messages):
            unusable = f"alarm topic {messages[done][0]}: {reason}"
        return [None] * done + [unusable] * (len(payloads) - done)

    def close(self) -> None:
        self._publisher.close()


class AlarmTopicRelay:
    """Unrecorded alarms (alarms/unrecorded.py) to the MQTT alarm topic, at once and without the
    outbox: the outbox lives in the state store, which is what is failing. A thread of its own with
    a bounded queue, so the pipeline never waits for the broker; one publish retried a few times,
    and dropped (counted, logged) after that: the recorded transition follows through the outbox."""

    QUEUE_MAX = 10_000
    ATTEMPTS = 3

    def __init__(self, channel: MqttAlarmChannel) -> None:
        self.channel = channel
        self.sent = 0
        self.dropped = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(self.QUEUE_MAX)
        self._thread = threading.Thread(target=self._run, name="alarm-topic-relay", daemon=True)
        self._thread.start()

    def offer(self, transitions: list[Transition]) -> None:
        for t in transitions:
            try:
                self._queue.put_nowait({"transition": t.to_json()})
            except queue.Full:
                self.dropped += 1

    def _run(self) -> None:
        while (payload := self._queue.get()) is not None:
            for attempt in range(1, self.ATTEMPTS + 1):
                try:
                    self.channel.deliver(payload)
                    self.sent += 1
                    break
                except DeliveryError as exc:
                    if attempt == self.ATTEMPTS:
                        self.dropped += 1
                        logger.warning("unrecorded alarm not published on the alarm topic: %s", exc)
                    else:
                        time.sleep(0.5 * attempt)

    def close(self, timeout_s: float = 2.0) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(timeout_s)
        self.channel.close()


def _describe(exc: Exception) -> str:
    return str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"


def _by_route(rows: list[_Owed]) -> dict[str, list[_Owed]]:
    by_route: dict[str, list[_Owed]] = {}
    for row in rows:
        by_route.setdefault(row.route, []).append(row)
    return by_route


def backoff(attempts: int, base_s: float, cap_s: float) -> float:
    return float(min(cap_s, base_s * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True)
class _Owed:
    """A due outbox row as read for delivery."""

    id: int
    route: str
    payload: dict[str, Any]
    attempts: int
    claimed: bool  # it was replaceable: claimed before its send (`Dispatcher._claim`)


@dataclass(frozen=True)
class _Attempt:
    """One send of a row: when it ended, how long it took, and the error (empty: delivered)."""

    row: _Owed
    ts: float
    seconds: float
    error: str
    note: DeliveryNote | None = None  # who a roster route's push went to


class Dispatcher:
    """Delivers the outbox from threads of its own, not from the event loop.

    Each route has a worker thread of its own, which sends the route's rows in order (a batch at
    once where the channel can: `BatchChannel`) and records all their attempts in one write
    transaction. `wake` (the alarm writer calls it right after a commit) hands each configured
    route straight to its worker, which reads that route's due rows itself; the dispatcher's own
    thread polls, reading every route's due rows in one query and handing them out. So a fresh
    alarm's push waits for one read, not for hops through the busy event loop or through another
    thread, and a route's next row is sent without first queueing for the state store's write lock
    (which on SQLite the alarm writer holds for its whole transaction). A route is read by one
    thread at a time, and again only once its batch is recorded: each row goes to one send at a
    time, in id order per route, and a hanging channel delays only its own route.
    """

    # At stop, how long batches in flight may still take to be recorded: within the 4 s the service
    # gives its tasks to end (docs/architecture.md). One not recorded by then is sent again later.
    STOP_WAIT_S = 3.0

    def __init__(
        self,
        sessions: sessionmaker[Session],
        channels: dict[str, Channel],
        *,
        clock: Callable[[], float] = time.time,
        poll_s: float = 1.0,
        backoff_s: float = 1.0,
        backoff_cap_s: float = 300.0,
        batch: int = 100,
    ) -> None:
        self.sessions = sessions
        self.channels = channels
        self.clock = clock
        self.poll_s = poll_s
        self.backoff_s = backoff_s
        self.backoff_cap_s = backoff_cap_s
        self.batch = batch
        self._engine: Engine = sessions.kw["bind"]
        # Other dispatchers may poll the same outbox (several workers on PostgreSQL): each route is
        # then worked under its lock (`_serve_route`).
        self._shared = self._engine.dialect.name == "postgresql"
        # The statements of every round, built once: one built per call costs its construction and
        # its cache key each time, more than SQLite takes to run it.
        outbox = _OUTBOX
        # A row that failed waits for its backoff, and the rows after it on its route wait for it.
        held = outbox.alias("held")
        behind_a_failure = (
            select(held.c.id)
            .where(
                held.c.route == outbox.c.route,
                held.c.id < outbox.c.id,
                held.c.delivered_ts.is_(None),
                held.c.next_ts > bindparam("now"),
                held.c.attempts > 0,
            )
            .exists()
        )
        self._due_all = (
            select(outbox.c.id, outbox.c.route, outbox.c.payload, outbox.c.attempts, outbox.c.replaceable)
            .where(outbox.c.delivered_ts.is_(None), outbox.c.next_ts <= bindparam("now"), ~behind_a_failure)
            .order_by(outbox.c.id)
            .limit(batch)
        )
        self._due_not_busy = self._due_all.where(outbox.c.route.not_in(bindparam("busy", expanding=True)))
        self._due_route = self._due_all.where(outbox.c.route == bindparam("route"))
        self._mark = (
            update(outbox)
            .where(outbox.c.id == bindparam("b_id"))
            .values(
                attempts=outbox.c.attempts + 1,
                delivered_ts=bindparam("b_done"),
                next_ts=func.coalesce(bindparam("b_next"), outbox.c.next_ts),
                last_error=func.coalesce(bindparam("b_error"), outbox.c.last_error),
            )
        )
        self._log = insert(_DELIVERIES)
        self.delivered = 0
        self.failed_attempts = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._workers: dict[str, DaemonWorker] = {}
        # Routes taken by their worker (a batch read and not yet recorded, or about to be read by
        # it): nobody else reads them until the worker lets go.
        self._busy: dict[str, concurrent.futures.Future[int]] = {}
        self._taken: dict[str, int] = {}  # how often each route was taken: a read's rows go stale
        self._again: set[str] = set()  # routes woken while busy: their worker reads once more
        self._running = False  # `run` is serving: `wake` hands configured routes to their workers
        # The above and the counters, between the threads. Re-entrant: `_take` adds `_done` to a
        # future under it, and a future already done (its read failed at once) calls it right there.
        self._lock = threading.RLock()
        self._reading = threading.Lock()  # one round reads and hands out at a time

    def wake(self) -> None:
        """Deliver now (called from any thread after transitions are committed).

        While `run` serves, each configured route goes straight to its own worker, which reads its
        own due rows: one thread hop after the commit, not two (this dispatcher's thread reading
        for every route, then the hand-off), and no read for routes still busy (their worker reads
        again when its batch is recorded). Otherwise the next round reads."""
        if not self._running:
            self._wake.set()
            return
        with self._lock:
            for route in self.channels:
                if route in self._busy:
                    self._again.add(route)
                else:
                    self._take(route, None)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop`; then let the batches in flight be recorded (bounded)."""
        self._stopping.clear()
        thread = threading.Thread(target=self._serve, name="push-dispatcher", daemon=True)
        thread.start()
        self._running = True
        try:
            await stop.wait()
        finally:
            self._running = False
            self._stopping.set()
            self._wake.set()
            await asyncio.to_thread(thread.join, self.STOP_WAIT_S)

    def _serve(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                self._start()
            except Exception:  # the database is down, say: keep the loop, rows stay owed
                logger.exception("push dispatch failed; retrying")
            self._wake.wait(self.poll_s)
        with self._lock:
            flying = list(self._busy.values())
        concurrent.futures.wait(flying, self.STOP_WAIT_S)

    async def deliver_due(self) -> int:
        """One round now: every row due, each route's in order; returns how many were delivered."""
        return await asyncio.to_thread(self._round)

    def _round(self) -> int:
        return sum(f.result() for f in self._start())

    def _start(self) -> list[concurrent.futures.Future[int]]:
        """Read what is due on the routes not busy and hand each route's rows to its worker."""
        # One round reads at a time (`deliver_due` may run beside `run`): a route marked busy by
        # one round is never read by another before its batch is recorded.
        with self._reading:
            with self._lock:
                busy = set(self._busy)
                taken = dict(self._taken)
            # Shared: the read only tells which routes have rows due; each route's worker reads
            # (and claims) its rows again under the route's lock.
            due = _by_route(self._read(busy)) if self._shared else self._due(busy)
            started = []
            with self._lock:
                for route, rows in due.items():
                    # Taken by a wake since the read (`wake`): its worker reads for itself, and
                    # these rows may already be sent and recorded by it.
                    if route in self._busy or self._taken.get(route, 0) != taken.get(route, 0):
                        continue
                    if self._shared and route not in self.channels:
                        # Another worker may have its channel (a drill's URL it knows of already):
                        # left to it, not locked here to record a failure.
                        continue
                    started.append(self._take(route, None if self._shared else rows))
        return started

    def _take(self, route: str, rows: list[_Owed] | None) -> concurrent.futures.Future[int]:
        """The route busy, and its worker on it: `rows` (None: it reads them). Under `_lock`."""
        if (worker := self._workers.get(route)) is None:
            worker = self._workers[route] = DaemonWorker(f"push-{route}"[:15])
        self._taken[route] = self._taken.get(route, 0) + 1
        future = self._busy[route] = worker.submit(self._serve_route, route, rows)
        future.add_done_callback(functools.partial(self._done, route))
        return future

    def _serve_route(self, route: str, rows: list[_Owed] | None) -> int:
        """On the route's worker: deliver `rows` (None: read them first), and read again for as long
        as the route was woken meanwhile or, while `run` serves, the read was full (more may be
        due); then let go of the route.

        On PostgreSQL several workers' dispatchers poll one outbox (docs/scale.md): the route is
        worked under its advisory lock (storage/advisory.py), held from before the read until its
        attempts are recorded, so each row is sent by one dispatcher, and a route's rows in order.
        A dispatcher that finds the route taken leaves it: rows committed after the holder's last
        read go at the next poll (`poll_s`) of whichever dispatcher then takes the route."""
        if not self._shared:
            return self._work_route(route, rows)
        with self._engine.connect() as lock:
            if not try_lock_session(lock, Space.PUSH_ROUTE, route):
                lock.rollback()
                self._let_go(route)
                return 0
            lock.commit()  # the lock is the session's: no transaction left open while sending
            try:
                return self._work_route(route, None)  # read under the lock: `rows` may be stale
            finally:
                try:
                    unlock_session(lock, Space.PUSH_ROUTE, route)
                    lock.commit()
                except Exception:  # the connection broke: the server let go of the lock with it
                    lock.invalidate()

    def _let_go(self, route: str) -> None:
        with self._lock:
            self._again.discard(route)
            self._busy.pop(route, None)

    def _work_route(self, route: str, rows: list[_Owed] | None) -> int:
        delivered = 0
        while True:
            if rows is None:
                rows = self._due(set(), route).get(route, [])
            if rows:
                delivered += self._deliver(route, rows)
            with self._lock:
                if route in self._again or (self._running and len(rows) >= self.batch):
                    self._again.discard(route)
                    rows = None
                    continue
                self._busy.pop(route, None)  # with the check above, under one lock: no wake lost
                return delivered

    def _done(self, route: str, future: concurrent.futures.Future[int]) -> None:
        with self._lock:
            if self._busy.get(route) is future:  # it failed; a route let go may be taken again
                del self._busy[route]
                self._again.discard(route)
        if (exc := future.exception()) is not None:
            logger.error("push dispatch on route %r failed; retrying: %r", route, exc)

    def _due(self, busy: set[str], route: str | None = None) -> dict[str, list[_Owed]]:
        """The due rows of the routes not `busy` (or of `route` alone), oldest first, grouped by
        route, up to the first that waits for its backoff after a failure: one read, and a claim
        of those still replaceable."""
        rows = self._read(busy, route)
        if any(r.claimed for r in rows):
            rows = self._claim(rows)
        return _by_route(rows)

    def _read(self, busy: set[str], route: str | None = None) -> list[_Owed]:
        with self._engine.connect() as c:
            if route is not None:
                result = c.execute(self._due_route, {"now": self.clock(), "route": route})
            elif busy:
                result = c.execute(self._due_not_busy, {"now": self.clock(), "busy": sorted(busy)})
            else:
                result = c.execute(self._due_all, {"now": self.clock()})
            return [
                _Owed(row_id, route, payload, attempts, bool(replaceable))
                for row_id, route, payload, attempts, replaceable in result.all()
            ]

    def _claim(self, rows: list[_Owed]) -> list[_Owed]:
        """A replaceable row (a rate-limited incident update) may be replaced by a newer update
        while it waits (alarms/outbox.py `enqueue_incident`: a new payload in place, or the row
        deleted for an urgent one). Claimed (no longer replaceable) before it is sent, so a newer
        update becomes a row of its own after it; and read again in the claiming transaction, so
        what is sent is the latest content, and a row deleted meanwhile is not sent at all."""
        outbox = _OUTBOX
        ids = [r.id for r in rows if r.claimed]
        with self.sessions.begin() as s:
            s.connection(execution_options=IMMEDIATE)  # read-modify-write: take the write lock at BEGIN
            s.execute(
                update(outbox)
                .where(outbox.c.id.in_(ids), outbox.c.delivered_ts.is_(None))
                .values(replaceable=False)
            )
            fresh = {
                row_id: dict(payload)
                for row_id, payload in s.execute(
                    select(outbox.c.id, outbox.c.payload).where(
                        outbox.c.id.in_(ids), outbox.c.delivered_ts.is_(None)
                    )
                ).all()
            }
        return [
            replace(r, payload=fresh[r.id]) if r.claimed else r
            for r in rows
            if not r.claimed or r.id in fresh
        ]

    def _deliver(self, route: str, rows: list[_Owed]) -> int:
        """Send `rows` in order on the route's channel until one fails (later ones wait for it,
        keeping the route's order), then record every attempt in one transaction."""
        channel = self.channels.get(route)
        if channel is not None and hasattr(channel, "deliver_many"):
            return self._record(route, self._send_batch(cast(BatchChannel, channel), rows))
        attempts: list[_Attempt] = []
        for row in rows:
            started = time.perf_counter()
            error = ""
            note: DeliveryNote | None = None
            try:
                if channel is None:
                    raise DeliveryError(f"route {route!r} is not configured any more; kept until it is")
                note = channel.deliver(dict(row.payload))
            except Exception as exc:  # any channel failure is retried, never fatal
                error = _describe(exc)
            attempts.append(_Attempt(row, self.clock(), time.perf_counter() - started, error, note))
            if error:
                break
        return self._record(route, attempts)

    def _send_batch(self, channel: BatchChannel, rows: list[_Owed]) -> list[_Attempt]:
        """All of `rows` in one `deliver_many`: the attempts up to the first failed row, each with
        the batch's end and its whole time (a row of a batch is acknowledged with the others)."""
        started = time.perf_counter()
        try:
            errors = channel.deliver_many([dict(row.payload) for row in rows])
            if len(errors) != len(rows):
                raise DeliveryError(f"the channel answered for {len(errors)} of {len(rows)} pushes")
        except Exception as exc:  # any channel failure is retried, never fatal
            errors = [_describe(exc)] * len(rows)
        ts, seconds = self.clock(), time.perf_counter() - started
        attempts: list[_Attempt] = []
        for row, error in zip(rows, errors, strict=True):
            attempts.append(_Attempt(row, ts, seconds, error or ""))
            if error:
                break
        return attempts

    def _record(self, route: str, attempts: list[_Attempt]) -> int:
        """Each attempt in the delivery log, its row delivered or due again after a backoff; returns
        how many were delivered. A claimed row whose content changed while in flight (a newer
        update written in place before the claim took) stays owed: its latest content goes next."""
        outbox = _OUTBOX
        claimed = [a.row.id for a in attempts if a.row.claimed]
        with self._engine.connect().execution_options(**IMMEDIATE) as c, c.begin():
            # read-modify-write: IMMEDIATE takes the write lock at BEGIN. Only a replaceable row
            # can be deleted while it waits (alarms/outbox.py), and a claimed row is replaceable
            # no more: one deleted before its claim was not sent. Looked up all the same, for the
            # claimed rows only: present, and with what content now.
            now_payload = (
                dict(c.execute(select(outbox.c.id, outbox.c.payload).where(outbox.c.id.in_(claimed))).all())
                if claimed
                else {}
            )
            updates: list[dict[str, Any]] = []
            entries: list[dict[str, Any]] = []
            delivered = 0
            for a in attempts:
                row = a.row
                if row.claimed and row.id not in now_payload:  # deleted: nothing to mark or log against
                    continue
                detail = a.error or (a.note.detail if a.note is not None else "")
                done: float | None = a.ts
                next_ts: float | None = None
                if a.error:
                    done, next_ts = None, a.ts + backoff(row.attempts + 1, self.backoff_s, self.backoff_cap_s)
                    n = row.attempts + 1
                    logger.warning("push %d on route %r failed (attempt %d): %s", row.id, route, n, a.error)
                elif row.claimed and now_payload[row.id] != row.payload:
                    done, detail = None, "replaced by a newer update while it was sent: sent again"
                else:
                    delivered += 1
                updates.append(
                    {"b_id": row.id, "b_done": done, "b_next": next_ts, "b_error": a.error or None}
                )
                entries.append(
                    {
                        "outbox_id": row.id,
                        "ts": a.ts,
                        "ok": not a.error,
                        "seconds": a.seconds,
                        "detail": detail,
                        "recipients": a.note.recipients if a.note is not None else None,
                    }
                )
            if updates:
                c.execute(self._mark, updates)
                c.execute(self._log, entries)
        with self._lock:
            self.delivered += delivered
            self.failed_attempts += sum(1 for a in attempts if a.error)
        return delivered

    def close(self) -> None:
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.shutdown()
        for channel in self.channels.values():
            close = getattr(channel, "close", None)
            if close is not None:
                close()

    def pending(self) -> int:
        with self.sessions() as s:
            owed = s.scalar(
                select(func.count()).select_from(OutboxRow).where(OutboxRow.delivered_ts.is_(None))
            )
            return int(owed or 0)
