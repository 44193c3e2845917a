"""Live alarm streams: fan-out of committed transitions to WebSocket and SSE subscribers (DESIGN §4).

The alarm service hands over each write's transitions as it commits them, from whichever thread
wrote them (firewatch/service.py wires `AlarmService.on_commit` to `LiveHub.publish`, called under
its write lock, so in event id order); `publish` hands the batch to the event loop and returns at
once, and the loop offers it to every subscriber.
A subscriber owns a bounded queue: one that falls behind is disconnected with a reason instead of
blocking the publisher or growing without bound. Nothing is lost by that: every transition is a row
of the alarm event log, and a client resumes after the last event id it saw (`read_backlog`).

Gapless resume: a stream subscribes first and reads the backlog second, so a transition committed
in between is both in the backlog and in the queue; `Backlog.already_sent` drops the second copy.

Several writers (clustered workers, firewatch/cluster/live_bus.py) take event ids from one sequence
but commit in their own order: an event may commit, and reach a stream, after one with a higher id.
A client resuming after the highest id it saw would then miss it. A hub fed by other writers has a
resume window (`LiveHub.resume_window_s`): the backlog also re-reads the events below the resume
point logged within that many seconds of it, and a live event in that window is sent even though
its id is below the resume point (docs/scale.md, "One control room").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, sessionmaker

from alarms.model import IncidentUpdate, Transition
from core.domain import AlarmAction, AlarmCategory
from storage.models import AlarmEventRow, AlarmRow

logger = logging.getLogger(__name__)

# What a stream carries: alarm transitions (resumable by event id) and incident steps (each with the
# whole incident; a reconnecting client reads GET /api/v1/incidents for the current state).
Item = Transition | IncidentUpdate

QUEUE_MAX = 1_000  # transitions a subscriber may have waiting before it is disconnected
REPLAY_MAX = 5_000  # events one (re)connection replays from the event log; the rest on the next
# Ids below the resume point a resume window looks back over at most: an index range on the event
# log's primary key (its `ts` has no index), and a bound on what one resume sends again.
WINDOW_IDS = 10_000
HEARTBEAT_S = 15.0  # idle streams send a keep-alive this often (proxies close silent connections)


class CloseReason(StrEnum):
    """Why the server ended a stream; each says how the client goes on."""

    LAGGED = "lagged"  # the subscriber fell behind: reconnect and resume after the last event id
    BACKLOG = "backlog"  # more events were missed than one replay holds: reconnect for the rest
    STOPPING = "stopping"  # the service is stopping: reconnect when it is back
    # Live events from another worker were lost on the way (cluster/live_bus.py): reconnect and
    # resume after the last event id, from the event log that has them.
    RESYNC = "resync"


class StreamClosedError(Exception):
    def __init__(self, reason: CloseReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class StreamFilter:
    """Which transitions a subscriber wants; an empty set means all."""

    sites: frozenset[str] = frozenset()
    categories: frozenset[AlarmCategory] = frozenset()

    def wants(self, t: Item) -> bool:
        return (not self.sites or t.after.get("site") in self.sites) and (
            not self.categories or t.after.get("category") in self.categories
        )


class Subscription:
    """One stream's queue. Filled on the event loop by the hub, drained by the stream's task."""

    def __init__(self, hub: LiveHub, flt: StreamFilter, maxsize: int) -> None:
        self.filter = flt
        self.maxsize = maxsize
        self._hub = hub
        self._items: deque[Item] = deque()
        self._ready = asyncio.Event()
        self._closed: StreamClosedError | None = None

    @property
    def closed(self) -> StreamClosedError | None:
        return self._closed

    def offer(self, t: Item) -> None:
        """Queue `t` if wanted; a full queue disconnects the subscriber (loop thread only)."""
        if self._closed is not None or not self.filter.wants(t):
            return
        if len(self._items) >= self.maxsize:
            self.close(
                CloseReason.LAGGED,
                f"fell behind: {self.maxsize} transitions were waiting; reconnect with the last event id",
            )
            return
        self._items.append(t)
        self._ready.set()

    async def get(self, idle_s: float) -> Item | None:
        """The next transition, or None if none came within `idle_s` (time for a keep-alive).

        Raises StreamClosedError once the subscription is closed; what was queued is dropped then,
        since the client resumes from the event log anyway.
        """
        if not self._items and self._closed is None:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), idle_s)
            except TimeoutError:
                return None
        if self._closed is not None:
            raise self._closed
        return self._items.popleft()

    def close(self, reason: CloseReason, detail: str) -> None:
        """End the subscription (idempotent); a waiting `get` raises at once."""
        if self._closed is None:
            self._closed = StreamClosedError(reason, detail)
            self._items.clear()
            if reason is CloseReason.LAGGED:
                self._hub.lagged += 1
                logger.warning("live stream subscriber disconnected: %s", detail)
        self._ready.set()
        self._hub.discard(self)


class LiveHub:
    """Fan-out of committed transitions to the live streams of one event loop.

    `publish` may be called from any thread; subscriptions are made and served on the loop that
    made the first one (the API's loop).
    """

    def __init__(
        self,
        *,
        queue_max: int = QUEUE_MAX,
        replay_max: int = REPLAY_MAX,
        heartbeat_s: float = HEARTBEAT_S,
        resume_window_s: float | None = None,
    ) -> None:
        self.queue_max = queue_max
        self.replay_max = replay_max
        self.heartbeat_s = heartbeat_s
        # None for one writer, whose commit order is event id order (AlarmService's write lock);
        # seconds when other writers' events reach this hub too (see the module's docstring).
        self.resume_window_s = resume_window_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subs: set[Subscription] = set()
        self._stopping = False
        self.delivered = 0  # transitions offered to the subscribers
        self.lagged = 0  # subscribers disconnected for falling behind
        self.resynced = 0  # times every stream was told to resume (live events lost on the way)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def subscribe(self, flt: StreamFilter | None = None) -> Subscription:
        """A new subscription on the running loop. Subscribe before reading a backlog."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._subs:
                raise RuntimeError("this LiveHub serves another event loop")
            self._loop = loop
        sub = Subscription(self, flt or StreamFilter(), self.queue_max)
        if self._stopping:
            sub.close(CloseReason.STOPPING, "firewatch is stopping")
        else:
            self._subs.add(sub)
        return sub

    def discard(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def publish(self, transitions: Sequence[Item]) -> None:
        """Hand committed transitions to the subscribers; returns at once, from any thread."""
        if not transitions or not self._subs:
            # Nobody to tell. A stream subscribing now reads its backlog after this commit.
            return
        loop = self._loop  # set once on the loop thread before any subscriber exists
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed in between: its streams went with it
            loop.call_soon_threadsafe(self._deliver, tuple(transitions))

    def resync(self, detail: str) -> None:
        """End every stream with `CloseReason.RESYNC` so its client resumes from the event log (some
        live events never reached this hub); from any thread, returns at once. Later subscriptions
        are served as usual."""
        loop = self._loop
        if loop is None or loop.is_closed() or not self._subs:
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._resync, detail)

    def _resync(self, detail: str) -> None:
        for sub in list(self._subs):
            sub.close(CloseReason.RESYNC, detail)
        self.resynced += 1

    def _deliver(self, batch: tuple[Item, ...]) -> None:
        for sub in list(self._subs):
            for t in batch:
                sub.offer(t)
        self.delivered += len(batch)

    def close(self, detail: str = "firewatch is stopping") -> None:
        """End every stream (on the loop thread); later subscriptions end at once."""
        self._stopping = True
        for sub in list(self._subs):
            sub.close(CloseReason.STOPPING, detail)


# --- resume from the alarm event log -----------------------------------------------------------


def transition_from_row(row: AlarmEventRow) -> Transition:
    """The transition an event-log row records: `.to_json()` has the live stream's shape exactly."""
    return Transition(
        event_id=row.id,
        alarm_id=row.alarm_id,
        action=AlarmAction(row.action),
        before=row.before,
        after=row.after,
        actor=row.actor,
        ts=row.ts,
        note=row.note or "",
        targets=tuple(row.targets or ()),
        held=row.held or "",
    )


class Backlog:
    """What a resuming client missed: events after `after`, oldest first, at most one replay's worth.

    With a resume window (`window_from` set), also the events with an id at or below `after` logged
    at or after `window_from`: one of them may have committed after the client saw `after`. The
    client may have some of those already; each comes again with its event id, in id order, so a
    client applying them ends with every alarm's latest state (an alarm's events are written under
    its row lock, so its own ids follow its commits).
    """

    def __init__(
        self,
        after: int | None,
        transitions: Iterable[Transition] = (),
        more: bool = False,
        window_from: float | None = None,
    ) -> None:
        self.after = after
        self.transitions = list(transitions)
        self.more = more  # more events were missed than `transitions` holds
        self.window_from = window_from
        self._ids = frozenset(t.event_id for t in self.transitions)

    def already_sent(self, t: Transition) -> bool:
        """True for a queued transition the client has (it resumed after it) or was just replayed.

        In a resume window, an id at or below `after` that was not replayed committed after the
        backlog was read: the client has not seen it."""
        if self.after is None:
            return False
        if t.event_id in self._ids:
            return True
        return t.event_id <= self.after and (self.window_from is None or t.ts < self.window_from)


def _filtered(q: Select[AlarmEventRow], flt: StreamFilter) -> Select[AlarmEventRow]:
    if flt.sites or flt.categories:
        # An alarm's site and category never change, so the alarm row filters its events.
        q = q.join(AlarmRow, AlarmRow.id == AlarmEventRow.alarm_id)
        if flt.sites:
            q = q.where(AlarmRow.site.in_(sorted(flt.sites)))
        if flt.categories:
            q = q.where(AlarmRow.category.in_(sorted(c.value for c in flt.categories)))
    return q


def read_backlog(
    sessions: sessionmaker[Session],
    after: int | None,
    flt: StreamFilter,
    limit: int,
    window_s: float | None = None,
) -> Backlog:
    """Events with id > `after` that the filter wants, oldest first, at most `limit` (blocking).

    With `window_s`, first the events at or below `after` logged within `window_s` seconds before
    the event `after` (at most WINDOW_IDS ids back): those another writer may have committed late.
    """
    if after is None:
        return Backlog(None)
    q = _filtered(select(AlarmEventRow).where(AlarmEventRow.id > after), flt)
    with sessions() as s:
        window: list[Transition] = []
        window_from: float | None = None
        if window_s is not None:
            # The resume point's own time (or the nearest logged before it: retention may have
            # removed it); an event committed after it was logged at most `window_s` before it.
            latest = select(AlarmEventRow.ts).where(AlarmEventRow.id <= after)
            anchor = s.scalar(latest.order_by(AlarmEventRow.id.desc()).limit(1))
            if anchor is not None:
                window_from = anchor - window_s
                wq = select(AlarmEventRow).where(
                    AlarmEventRow.id <= after,
                    AlarmEventRow.id > after - WINDOW_IDS,
                    AlarmEventRow.ts >= window_from,
                )
                rows = s.scalars(_filtered(wq, flt).order_by(AlarmEventRow.id)).all()
                window = [transition_from_row(r) for r in rows]
        rows = s.scalars(q.order_by(AlarmEventRow.id).limit(limit + 1)).all()
        transitions = [transition_from_row(r) for r in rows[:limit]]
    return Backlog(after, window + transitions, more=len(rows) > limit, window_from=window_from)


async def follow(sub: Subscription, backlog: Backlog, heartbeat_s: float) -> AsyncIterator[Item | None]:
    """The backlog, then live transitions, without gaps or duplicates; None when a keep-alive is due.

    Ends with StreamClosedError: when the subscription is closed, or after a full replay when more
    events were missed than one replay holds (the client reconnects for the rest).
    """
    for t in backlog.transitions:
        yield t
    if backlog.more:
        n = len(backlog.transitions)
        raise StreamClosedError(
            CloseReason.BACKLOG, f"more than {n} events were missed: reconnect for the rest"
        )
    while True:
        live = await sub.get(heartbeat_s)
        # An unrecorded alarm has no event id and is in no backlog, and an incident step is
        # numbered in its own log: both always go out.
        if (
            live is None
            or isinstance(live, IncidentUpdate)
            or not live.recorded
            or not backlog.already_sent(live)
        ):
            yield live
