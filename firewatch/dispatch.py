"""The push dispatcher: delivers the outbox at least once, with retries, backoff and a delivery log.

Rows come from `alarms.outbox.enqueue`, committed with the alarm transition they belong to. Here
each due row is sent on its route's channel; success marks it delivered, failure schedules the next
attempt (1 s doubling to 5 min) and is logged. Nothing is ever dropped: a channel that is down is
retried until it comes back, and after a restart the dispatcher simply reads the rows still owed.
Each route is worked in its own task, in order, so a hanging channel delays only its own pushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from alarms.model import Transition
from core.settings import PushRoute
from storage.db import IMMEDIATE
from storage.models import DeliveryRow, OutboxRow

logger = logging.getLogger(__name__)


class DeliveryError(RuntimeError):
    """A channel could not deliver; the message says why (never the route's secret URL)."""


class Channel(Protocol):
    def deliver(self, payload: dict[str, Any]) -> None:
        """Send one push or raise DeliveryError. Blocking; run in a worker thread."""


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
        asset_ok = self._apprise.add(route.url)
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

    A paho client of its own (the ingest connection only subscribes), connected on first use and
    reconnected after a failure; a publish counts as delivered once the broker acknowledged it.
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
        self._client: Any = None

    def _connect(self) -> Any:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id)
        if self.username:
            client.username_pw_set(self.username, self.password)
        client.connect(self.host, self.port, keepalive=30)
        client.loop_start()
        return client

    def deliver(self, payload: dict[str, Any]) -> None:
        import orjson

        if "incident" in payload:  # an incident step (alarms/outbox.py enqueue_incident)
            message = payload["incident"]
            topic = f"{self.prefix}/{message['incident']['site']}/incidents"
        else:
            message = payload["transition"]
            topic = f"{self.prefix}/{message['after']['site']}/alarms"
        try:
            if self._client is None:
                self._client = self._connect()
            info = self._client.publish(topic, orjson.dumps(message), qos=1)
            info.wait_for_publish(timeout=self.timeout_s)
            if not info.is_published():
                raise DeliveryError(
                    f"the broker did not acknowledge the alarm on {topic} in {self.timeout_s:g} s"
                )
        except (OSError, RuntimeError, ValueError) as exc:
            self.close()
            raise DeliveryError(f"alarm topic {topic}: {exc}") from exc

    def close(self) -> None:
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()
            self._client = None


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


def backoff(attempts: int, base_s: float, cap_s: float) -> float:
    return float(min(cap_s, base_s * 2 ** max(0, attempts - 1)))


class Dispatcher:
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
        self.delivered = 0
        self.failed_attempts = 0
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def wake(self) -> None:
        """Deliver now (called from any thread after transitions are committed)."""
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        while not stop.is_set():
            self._wake.clear()
            try:
                await self.deliver_due()
            except Exception:  # the database is down, say: keep the loop, rows stay owed
                logger.exception("push dispatch failed; retrying")
            waiter = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, stopper}, timeout=self.poll_s, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()

    def _due(self) -> dict[str, list[int]]:
        now = self.clock()
        with self.sessions() as s:
            rows = s.execute(
                select(OutboxRow.id, OutboxRow.route)
                .where(OutboxRow.delivered_ts.is_(None), OutboxRow.next_ts <= now)
                .order_by(OutboxRow.id)
                .limit(self.batch)
            ).all()
        by_route: dict[str, list[int]] = {}
        for row_id, route in rows:
            by_route.setdefault(route, []).append(row_id)
        return by_route

    async def deliver_due(self) -> int:
        due = await asyncio.to_thread(self._due)
        if not due:
            return 0
        done = await asyncio.gather(*(self._work_route(route, ids) for route, ids in due.items()))
        return sum(done)

    async def _work_route(self, route: str, ids: list[int]) -> int:
        delivered = 0
        for row_id in ids:
            ok = await asyncio.to_thread(self._deliver_one, route, row_id)
            if not ok:
                break  # keep the route's order: later pushes wait for this one
            delivered += 1
        return delivered

    def _deliver_one(self, route: str, row_id: int) -> bool:
        with self.sessions() as s:
            row = s.get(OutboxRow, row_id)
            if row is None or row.delivered_ts is not None:
                return True
            payload = dict(row.payload)
        channel = self.channels.get(route)
        started = time.perf_counter()
        error = ""
        try:
            if channel is None:
                raise DeliveryError(f"route {route!r} is not configured any more; kept until it is")
            channel.deliver(payload)
        except Exception as exc:  # any channel failure is retried, never fatal
            error = str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - started
        now = self.clock()
        with self.sessions.begin() as s:
            s.connection(execution_options=IMMEDIATE)  # read-modify-write: take the write lock at BEGIN
            row = s.get(OutboxRow, row_id)
            assert row is not None
            row.attempts += 1
            s.add(DeliveryRow(outbox_id=row_id, ts=now, ok=not error, seconds=seconds, detail=error))
            if error:
                row.last_error = error
                row.next_ts = now + backoff(row.attempts, self.backoff_s, self.backoff_cap_s)
                self.failed_attempts += 1
                logger.warning(
                    "push %d on route %r failed (attempt %d): %s", row_id, route, row.attempts, error
                )
                return False
            row.delivered_ts = now
            self.delivered += 1
            return True

    def close(self) -> None:
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
