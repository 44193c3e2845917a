"""A lean pull consumer: one partition's messages from the stream, a batch per request.

The client library's `PullSubscription.fetch` takes each message of a batch with `next_msg`, which
makes an asyncio task named by a fresh `uuid4` and waits on it: per message, that was a quarter of a
worker's receive path under a backlog (py-spy, bench/scale_out.py). Here a batch request goes to
the consumer (`$JS.API.CONSUMER.MSG.NEXT`, JetStream's pull protocol:
https://docs.nats.io/reference/reference-protocols/nats_api_reference), its messages arrive on an
inbox subscription's callback that only appends them, and the request is over when the batch is
full or the server says so with a status message (404 no messages, 408 the request expired).
Each message's stream sequence is read from its reply subject, without building its metadata.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js import api as js_api

# Status messages that end a pull request without an error: nothing to send (no_wait), or the
# request's `expires` passed. 100 is an idle heartbeat (not asked for here, ignored if it comes).
_OVER = frozenset({"404", "408"})
_HEARTBEAT = "100"
ANSWER_MARGIN_S = 1.0  # a request's answer later than this past its `expires`: the consumer is gone


class PullError(RuntimeError):
    """The consumer answered a pull request with an error status (409: deleted, leadership
    changed, too many waiting requests; 503: nobody answers, its node is gone): make it again."""


def stream_seq(reply: str) -> int:
    """The stream sequence of a message from its reply subject, JetStream's acknowledgement subject:
    `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ts>.<pending>`, or with
    a domain and an account hash after `ACK` (12 tokens and more, nats-server 2.9+)."""
    tokens = reply.split(".")
    if len(tokens) == 9:
        return int(tokens[5])
    if len(tokens) >= 12:
        return int(tokens[7])
    raise ValueError(f"not a JetStream message's reply subject: {reply!r}")


@dataclass
class Pulled:
    """A message read: its stream sequence, subject and payload."""

    seq: int
    subject: str
    data: bytes


class PullConsumer:
    """An ephemeral pull consumer and the inbox its batches arrive on."""

    def __init__(self, nc: Client, js: JetStreamContext, stream: str, name: str) -> None:
        self.nc = nc
        self.js = js
        self.stream = stream
        self.name = name
        self.inbox = nc.new_inbox()
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}"
        self._sub: Subscription | None = None
        self._got: list[Msg] = []  # arrived, not yet fetched
        self._count = 0  # messages the open request brought so far
        self._want = 0
        self._over = asyncio.Event()
        self._error: str | None = None

    @classmethod
    async def create(
        cls, nc: Client, js: JetStreamContext, stream: str, config: js_api.ConsumerConfig
    ) -> PullConsumer:
        """Make the consumer (named here: one name per consumer made) and subscribe its inbox."""
        config.name = uuid.uuid4().hex
        await js.add_consumer(stream, config=config)
        consumer = cls(nc, js, stream, config.name)
        consumer._sub = await nc.subscribe(consumer.inbox, cb=consumer._on_msg, pending_msgs_limit=100_000)
        return consumer

    async def _on_msg(self, msg: Msg) -> None:
        status = msg.headers.get(js_api.Header.STATUS) if msg.headers else None
        if status is None:
            self._got.append(msg)
            self._count += 1
            if self._count >= self._want:
                self._over.set()
        elif status in _OVER:
            self._over.set()
        elif status != _HEARTBEAT:
            description = msg.headers.get(js_api.Header.DESCRIPTION, "") if msg.headers else ""
            self._error = f"{status} {description}".strip()
            self._over.set()

    def _begin(self, batch: int) -> None:
        self._count, self._want, self._error = 0, batch, None
        self._over.clear()

    async def _request(self, batch: int, *, wait_s: float) -> None:
        """One pull request, waited for until it is over: `batch` messages came, or the server
        ended it (404 with nothing more now, when `wait_s` is 0; 408 once `wait_s` passed)."""
        self._begin(batch)
        request: dict[str, object] = {"batch": batch}
        if wait_s > 0:
            request["expires"] = int(wait_s * 1e9)
        else:
            request["no_wait"] = True
        await self.nc.publish(self._next, orjson.dumps(request), reply=self.inbox)
        # The server answers every request by itself (messages, or a status at once for `no_wait`
        # and at `expires` otherwise). No answer at all within the margin: the consumer went with
        # its node, and the reader makes a new one.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._over.wait(), wait_s + ANSWER_MARGIN_S)
        if self._error is not None and not self._got:
            raise PullError(f"pull request on consumer {self.name} refused: {self._error}")
        if self._count == 0 and not self._over.is_set():
            raise PullError(f"no answer from consumer {self.name} in {wait_s + ANSWER_MARGIN_S:g} s")

    async def fetch(self, batch: int, wait_s: float) -> list[Pulled]:
        """Up to `batch` messages in stream order: those the consumer has now, else the first to
        come within `wait_s`. Raises TimeoutError when none came, PullError on an error status.

        As the client library does: first a request answered at once (`no_wait`), then, with
        nothing there, one for a single message that waits; so no request is left open between
        two fetches (a message arriving late, from a request whose answer timed out, is kept for
        the next)."""
        if not self._got:
            await self._request(batch, wait_s=0.0)
        if not self._got:
            await self._request(1, wait_s=wait_s)
        if not self._got:
            raise TimeoutError
        got, self._got = self._got, []
        return [Pulled(stream_seq(m.reply), m.subject, m.data) for m in got]

    async def consumer_info(self) -> js_api.ConsumerInfo:
        info: js_api.ConsumerInfo = await self.js.consumer_info(self.stream, self.name)
        return info

    async def unsubscribe(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()
