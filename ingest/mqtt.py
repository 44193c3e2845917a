"""The MQTT source: a persistent QoS 1 session whose acknowledgements wait for the batch commit.

Built on gmqtt, chosen by measurement (docs/decisions/0001-mqtt-client.md). gmqtt acknowledges a
QoS 1 message as soon as it arrives, or after an async callback per message; neither fits "ack only
once durable, in batches". So the source replaces gmqtt's QoS 1 handler on its package handler to
enqueue (mid, topic, payload), and sends the PUBACKs itself after the batch commits. Both hooks are
private to gmqtt, hence the pinned version; this module is the only place that knows.

The PUBACKs of a batch go out in one write on the connection's transport, encoded here (a PUBACK is
four fixed bytes), instead of one `_send_puback` per message, each of which is a system call.

A crash between receipt and commit leaves the messages unacknowledged: the broker redelivers them
to the persistent session, and ingest's (device, seq) de-duplication drops any already stored.

gmqtt reconnects by itself, but some of its paths end that loop for good: a CONNACK refusal it
deems permanent (`not authorised`, `bad user name or password`, ...) stops all reconnects, even
after the broker is fixed (gmqtt/mqtt/handler.py:414-425 and 319-322), and a connection attempt
has no timeout of its own. So a watchdog in `run()` replaces the gmqtt client when its reconnect
loop has shown no sign of life for longer than its backoff allows: same client id, same
subscriptions, clean start off, so the broker resumes the session and delivers what it queued. The
third private hook, on `Client._create_connection`, is how the watchdog sees attempts and how a
discarded client is kept from ever connecting again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import gmqtt
from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from gmqtt.mqtt.handler import MQTTConnectError

from ingest.envelope import Message
from ingest.queue import BoundedQueue

logger = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600  # keep our queue a week while the service is down

# A PUBACK's first two bytes as the high half of a big-endian 32-bit word: fixed header 0x40 (packet
# type 4, flags 0) and remaining length 2 (MQTT 3.1.1 §3.4.1); the packet id is the low half (§3.4.2).
_PUBACK_HEAD = 0x4002 << 16


def encode_pubacks(mids: Sequence[int]) -> bytes:
    """The PUBACK packets acknowledging `mids` (each 1..65535), back to back, in the given order.

    The same four bytes per packet serve MQTT 3.1.1 (§3.4) and MQTT 5: a PUBACK whose reason is
    Success (0x00) and that has no properties may omit both the reason code and the property length,
    leaving a remaining length of 2 (MQTT 5 §3.4.2.1)."""
    if mids and not (min(mids) > 0 and max(mids) <= 0xFFFF):  # else they would corrupt the headers
        bad = sorted({mid for mid in mids if not 0 < mid <= 0xFFFF})
        raise ValueError(f"a packet identifier is 1..65535 (MQTT 3.1.1 §2.3.1, MQTT 5 §2.2.1): {bad}")
    return struct.pack(f">{len(mids)}I", *[_PUBACK_HEAD | mid for mid in mids])


class MqttSourceError(RuntimeError):
    pass


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None = None
    password: str | None = None


class MqttSource:
    """Subscribe, feed the queue, acknowledge on request; reconnect with backoff on its own, and
    replace the gmqtt client if its reconnect loop stops (see the module doc)."""

    def __init__(
        self,
        address: BrokerAddress,
        *,
        client_id: str,
        topics: Iterable[str],
        queue: BoundedQueue,
        clock: Callable[[], float],
        protocol: int = 5,
        receive_maximum: int = 20_000,
        keepalive: int = 30,
        max_backoff_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        watchdog_every_s: float = 1.0,
    ) -> None:
        self.address = address
        self.client_id = client_id
        self.topics = list(topics)
        self.queue = queue
        self.clock = clock
        self.protocol = protocol
        self.receive_maximum = receive_maximum
        self.keepalive = keepalive
        self.max_backoff_s = max_backoff_s
        # How long one attempt (TCP connect to CONNACK) may take; gmqtt's own attempts have no limit.
        self.connect_timeout_s = connect_timeout_s
        self.watchdog_every_s = watchdog_every_s
        self.epoch = 0  # bumped on every (re)connection: acks never cross connections
        self.connected = asyncio.Event()
        self.connects = 0
        self.rebuilds = 0  # gmqtt clients discarded because their reconnect loop had stopped
        self._client: Any = None
        self._alive_at = 0.0  # monotonic: the current client's last connect, disconnect or attempt
        self._retiring: set[asyncio.Task[None]] = set()

    # --- receive -------------------------------------------------------------------------------
    # Every callback gets the gmqtt client it came from. A discarded client is never the current
    # one: what it receives is dropped unacknowledged (the broker redelivers it to the session's
    # next connection), so it can neither be acknowledged on the wrong connection nor processed twice.
    def _on_qos1(self, client: Any, mid: int, payload: bytes, topic: str, properties: Any) -> None:
        if client is self._client:
            dup = bool(properties.get("dup")) if isinstance(properties, dict) else False
            self.queue.put(Message(topic, payload, self.clock(), 1, mid, self.epoch, dup))

    def _on_message(self, client: Any, topic: str, payload: bytes, qos: int, _properties: Any) -> int:
        if client is self._client:
            self.queue.put(Message(topic, payload, self.clock(), qos, None, self.epoch))
        return 0

    def _on_connect(self, client: Any, _flags: int, _rc: int, _properties: Any) -> None:
        if client is not self._client:  # an attempt of a discarded client got through: end it
            self._retire(client)
            return
        self.epoch += 1
        self.connects += 1
        self._alive_at = time.monotonic()
        client.reconnect_delay = 1
        self.connected.set()
        for topic in self.topics:
            client.subscribe(topic, qos=1)
        logger.info(
            "connected to mqtt://%s:%d (connection %d)", self.address.host, self.address.port, self.epoch
        )

    def _on_disconnect(self, client: Any, _packet: Any, _exc: BaseException | None = None) -> None:
        if client is not self._client:
            return
        self.connected.clear()
        self.epoch += 1  # anything received before this can no longer be acknowledged
        self._alive_at = time.monotonic()
        # gmqtt reconnects by itself; we stretch its delay (backoff)
        client.reconnect_delay = min(max(1, client.reconnect_delay) * 2, self.max_backoff_s)
        logger.warning("disconnected from mqtt://%s:%d", self.address.host, self.address.port)

    # --- acknowledge ---------------------------------------------------------------------------
    def ack(self, messages: Iterable[Message]) -> int:
        """PUBACK each QoS 1 message received on the current connection, in receipt order, all in
        one transport write; the number acknowledged. Messages of an earlier connection are skipped:
        their packet ids mean nothing on this one, and the broker redelivers them (MQTT 3.1.1 §4.4,
        MQTT 5 §4.4)."""
        client = self._client
        if client is None or not self.connected.is_set():
            return 0
        # What gmqtt's `_send_puback` does besides encoding: `MQTTConnection.send_package` stamps the
        # connection's last outgoing data (its keepalive then skips a PINGREQ) and writes to the
        # transport; there is no inbound in-flight counter to release on the client side (the
        # broker counts its own Receive Maximum quota, MQTT 5 §4.9, and a PUBACK returns it).
        connection = client._connection
        if connection is None or connection.is_closing():
            return 0
        epoch = self.epoch
        mids = [m.mid for m in messages if m.mid is not None and m.epoch == epoch]
        if mids:
            connection.send_package(encode_pubacks(mids))
        return len(mids)

    # --- lifecycle -----------------------------------------------------------------------------
    def _watch_attempts(self, client: Any) -> None:
        """Wrap the client's `_create_connection`, which both `connect()` and gmqtt's reconnect loop
        call for every attempt: note each attempt of the current client, and refuse any of a
        discarded one (gmqtt takes the OSError as a failed attempt, and `disconnect()` has already
        told it not to try again)."""
        create = client._create_connection

        async def attempt(*args: Any, **kwargs: Any) -> Any:
            if client is not self._client:
                raise OSError("this gmqtt client was discarded by MqttSource")
            self._alive_at = time.monotonic()
            connection = await create(*args, **kwargs)
            if client is not self._client:  # discarded while connecting: never send its CONNECT
                with contextlib.suppress(Exception):
                    await connection.close()
                raise OSError("this gmqtt client was discarded by MqttSource")
            return connection

        client._create_connection = attempt

    def _make_client(self) -> Any:
        props: dict[str, Any] = {}
        if self.protocol == 5:
            props = {"receive_maximum": self.receive_maximum, "session_expiry_interval": SESSION_EXPIRY_S}
        client = gmqtt.Client(self.client_id, clean_session=False, optimistic_acknowledgement=False, **props)
        if self.address.username:
            client.set_auth_credentials(self.address.username, self.address.password)
        client.on_message = self._on_message
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        handler = client._package_handler
        # deferred PUBACK (see module doc)
        handler._handle_qos_1_publish_packet = functools.partial(self._on_qos1, client)
        self._watch_attempts(client)
        return client

    def _retire(self, client: Any) -> None:
        """Disconnect a client that is no longer current, in the background. `disconnect()` also
        marks it inactive, which ends gmqtt's reconnect loop for it (gmqtt/client.py:401)."""
        if client is self._client:
            self._client = None
        task = asyncio.ensure_future(self._disconnect(client))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    @staticmethod
    async def _disconnect(client: Any) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), 5)

    async def _connect(self, stop: asyncio.Event) -> bool:
        """Connect a fresh client, retrying with backoff until the broker accepts it; False if
        `stop` was set first."""
        delay = 0.5
        version = MQTTv50 if self.protocol == 5 else MQTTv311
        while not stop.is_set():
            client = self._client = self._make_client()
            try:
                await asyncio.wait_for(
                    client.connect(
                        self.address.host, self.address.port, keepalive=self.keepalive, version=version
                    ),
                    self.connect_timeout_s,
                )
                return True
            except (TimeoutError, OSError, MQTTConnectError) as exc:
                logger.warning(
                    "cannot reach mqtt://%s:%d (%s); retrying in %.1f s",
                    self.address.host,
                    self.address.port,
                    exc or type(exc).__name__,
                    delay,
                )
                self._retire(client)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, self.max_backoff_s)
        return False

    async def _reconnect_loop_stopped(self, stop: asyncio.Event) -> bool:
        """Wait until `stop` is set (False) or the current client, disconnected, has shown no sign of
        reconnecting for longer than its backoff delay plus one attempt (True)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.watchdog_every_s)
            client = self._client
            if stop.is_set() or client is None or self.connected.is_set():
                continue
            if time.monotonic() - self._alive_at > client.reconnect_delay + self.connect_timeout_s:
                return True
        return False

    async def run(self, stop: asyncio.Event) -> None:
        """Connect (retrying with backoff until the broker answers), then run until `stop` is set,
        replacing the client whenever its own reconnect loop has stopped."""
        while await self._connect(stop):
            if not await self._reconnect_loop_stopped(stop):
                break
            self.rebuilds += 1
            logger.warning(
                "the MQTT client for mqtt://%s:%d stopped reconnecting (disconnected, no sign of a "
                "reconnection attempt for %.0f s); replacing it with a fresh one, same client id %r "
                "(rebuild %d). Check the broker's log for refused connections (credentials, ACL, "
                "client id) and the gmqtt lines above; the broker keeps the session, so what it "
                "queued meanwhile still arrives",
                self.address.host,
                self.address.port,
                time.monotonic() - self._alive_at,
                self.client_id,
                self.rebuilds,
            )
            self.epoch += 1  # nothing the old client received may be acknowledged by the new one
            if self._client is not None:
                self._retire(self._client)
        if self._client is not None:
            await self._disconnect(self._client)
            self._client = None
        self.connected.clear()
        if self._retiring:
            await asyncio.wait(self._retiring)
