"""The MQTT source: a persistent QoS 1 session whose acknowledgements wait for the batch commit.

Built on gmqtt, chosen by measurement (docs/decisions/0001-mqtt-client.md). gmqtt acknowledges a
QoS 1 message as soon as it arrives, or after an async callback per message; neither fits "ack only
once durable, in batches". So the source replaces gmqtt's QoS 1 handler on its package handler to
enqueue (mid, topic, payload), and sends the PUBACKs itself after the batch commits. Both hooks are
private to gmqtt, hence the pinned version; this module is the only place that knows.

A crash between receipt and commit leaves the messages unacknowledged: the broker redelivers them
to the persistent session, and ingest's (device, seq) de-duplication drops any already stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import gmqtt
from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from gmqtt.mqtt.handler import MQTTConnectError

from ingest.envelope import Message
from ingest.queue import BoundedQueue

logger = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600  # keep our queue a week while the service is down


class MqttSourceError(RuntimeError):
    pass


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None = None
    password: str | None = None


class MqttSource:
    """Subscribe, feed the queue, acknowledge on request; reconnect with backoff on its own."""

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
        self.epoch = 0  # bumped on every (re)connection: acks never cross connections
        self.connected = asyncio.Event()
        self.connects = 0
        self._client: Any = None
        self._handler: Any = None

    # --- receive -------------------------------------------------------------------------------
    def _on_qos1(self, mid: int, payload: bytes, topic: str, _properties: Any) -> None:
        self.queue.put(Message(topic, payload, self.clock(), 1, mid, self.epoch))

    def _on_message(self, _client: Any, topic: str, payload: bytes, qos: int, _properties: Any) -> int:
        self.queue.put(Message(topic, payload, self.clock(), qos, None, self.epoch))
        return 0

    def _on_connect(self, _client: Any, _flags: int, _rc: int, _properties: Any) -> None:
        self.epoch += 1
        self.connects += 1
        self._client.reconnect_delay = 1
        self.connected.set()
        for topic in self.topics:
            self._client.subscribe(topic, qos=1)
        logger.info(
            "connected to mqtt://%s:%d (connection %d)", self.address.host, self.address.port, self.epoch
        )

    def _on_disconnect(self, _client: Any, _packet: Any, _exc: BaseException | None = None) -> None:
        self.connected.clear()
        self.epoch += 1  # anything received before this can no longer be acknowledged
        if self._client is not None:  # gmqtt reconnects by itself; we stretch its delay (backoff)
            self._client.reconnect_delay = min(max(1, self._client.reconnect_delay) * 2, self.max_backoff_s)
        logger.warning("disconnected from mqtt://%s:%d", self.address.host, self.address.port)

    # --- acknowledge ---------------------------------------------------------------------------
    def ack(self, messages: Iterable[Message]) -> int:
        """PUBACK each QoS 1 message received on the current connection, in receipt order."""
        handler = self._handler
        if handler is None or not self.connected.is_set():
            return 0
        epoch = self.epoch
        sent = 0
        for m in messages:
            if m.mid is not None and m.epoch == epoch:
                handler._send_puback(m.mid)
                sent += 1
        return sent

    # --- lifecycle -----------------------------------------------------------------------------
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
        handler._handle_qos_1_publish_packet = self._on_qos1  # deferred PUBACK (see module doc)
        self._handler = handler
        return client

    async def run(self, stop: asyncio.Event) -> None:
        """Connect (retrying with backoff until the broker answers), then run until `stop` is set."""
        delay = 0.5
        version = MQTTv50 if self.protocol == 5 else MQTTv311
        while not stop.is_set():
            self._client = self._make_client()
            try:
                await self._client.connect(
                    self.address.host, self.address.port, keepalive=self.keepalive, version=version
                )
                break
            except (TimeoutError, OSError, MQTTConnectError) as exc:
                logger.warning(
                    "cannot reach mqtt://%s:%d (%s); retrying in %.1f s",
                    self.address.host,
                    self.address.port,
                    exc,
                    delay,
                )
                with contextlib.suppress(Exception):
                    await self._client.disconnect()
                self._client = None
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, self.max_backoff_s)
        await stop.wait()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._client.disconnect(), 5)
        self.connected.clear()
