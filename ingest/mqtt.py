"""The MQTT source: a persistent QoS 1 session whose acknowledgements wait for the batch commit.

Built on gmqtt, chosen by measurement (docs/decisions/0001-mqtt-client.md). gmqtt acknowledges a
QoS 1 message as soon as it arrives, or after an async callback per message; neither fits "ack only
once durable, in batches". So the source replaces gmqtt's QoS 1 handler on its package handler to
enqueue (mid, topic, payload), and sends the PUBACKs itself after the batch commits. Both hooks are
private to gmqtt, hence the pinned version; this module is the only place that knows.

The PUBACKs of a batch go out in one write on the connection's transport, encoded here (a PUBACK is
four fixed bytes), instead of one `_send_puback` per message, each of which is a system call.

gmqtt's receive path costs more than the rest of ingest's per-message work: per packet it builds a
`Package`, logs at debug level twice (formatting `hex(cmd)` whether or not debug is on), unpacks the
PUBLISH with `struct` formats built per packet, parses the (usually empty) MQTT 5 properties into a
dict, and calls back with them. So the source also replaces the protocol's `_read_packet` (which
splits a socket read into packets) on each connection with `read_packets`: every QoS 1 PUBLISH it
can read plainly (a UTF-8 topic, no MQTT 5 properties, so no topic alias) becomes an envelope right
there, all of one read stamped with one receipt time and enqueued in one step; every other packet
goes whole, in order, to gmqtt's own handler as before (docs/decisions/0001-mqtt-client.md).

A crash between receipt and commit leaves the messages unacknowledged: the broker redelivers them
to the persistent session, and ingest's (device, seq) de-duplication drops any already stored.

gmqtt reconnects by itself, but some of its paths end that loop for good: a CONNACK refusal it
deems permanent (`not authorised`, `bad user name or password`, ...) stops all reconnects, even
after the broker is fixed (gmqtt/mqtt/handler.py:414-425 and 319-322), and a connection attempt
has no timeout of its own. So a watchdog in `run()` replaces the gmqtt client when its reconnect
loop has shown no sign of life for longer than its backoff allows: same client id, same
subscriptions, clean start off, so the broker resumes the session and delivers what it queued. The
third private hook, on `Client._create_connection`, is how the watchdog sees attempts and how a
discarded client is kept from ever connecting again, and where each new connection gets the bulk
reader.
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
from gmqtt.mqtt.package import Package

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


# PUBLISH (packet type 3) at QoS 1, once the DUP (0x08) and RETAIN (0x01) flags are masked off
# (MQTT 3.1.1 §3.3.1, MQTT 5 §3.3.1).
_QOS1_PUBLISH = 0x32
_QOS1_PUBLISH_MASK = 0xF6
_DUP = 0x08
_LENGTH_MULT_MAX = 128**3  # a remaining length has at most four bytes (MQTT 3.1.1 §2.2.3)
# A NamedTuple's own constructor is a Python function (made by `namedtuple` from source text); the
# tuple's, given every field in order, builds the same envelope without that call per message.
_new_message = tuple.__new__


def read_packets(
    data: bytes, start: int, *, v5: bool, received: float, epoch: int
) -> tuple[int, list[Message], tuple[int, bytes] | None]:
    """Read whole MQTT packets from `data[start:]`: the QoS 1 PUBLISHes, as envelopes, up to the
    first packet of any other kind, which is returned as (fixed header byte, body) for gmqtt's
    handler. Returns the offset after the last packet read (-1: a malformed remaining length, on
    which the connection is to be dropped, as gmqtt does), the envelopes, and that other packet.

    Stopping at the other packet lets the caller hand it to gmqtt before reading on, so receipt
    order holds and what follows a CONNACK is stamped with the new connection's `epoch`. A QoS 1
    PUBLISH is read here only when that is plain: a topic of one or more bytes of UTF-8 and, in
    MQTT 5, an empty property list (§3.3.2.3: so no topic alias either); any other goes to gmqtt.
    """
    messages: list[Message] = []
    append = messages.append
    size = len(data)
    pos = start
    while size - pos >= 2:
        cmd = data[pos]
        length = data[pos + 1]
        i = pos + 2
        if length >= 0x80:  # else the usual: a packet of under 128 bytes, its length in one byte
            length &= 0x7F
            mult = 128
            while True:  # the remaining length, a variable byte integer (MQTT 3.1.1 §2.2.3)
                if i >= size:
                    return pos, messages, None  # the header is not all here yet
                byte = data[i]
                length += (byte & 0x7F) * mult
                i += 1
                if byte < 0x80:
                    break
                mult *= 128
                if mult > _LENGTH_MULT_MAX:
                    return -1, messages, None
        end = i + length
        if end > size:
            break  # the packet is not all here yet
        if cmd & _QOS1_PUBLISH_MASK == _QOS1_PUBLISH and length >= 4:
            topic_end = i + 2 + (data[i] << 8 | data[i + 1])
            at = topic_end + 2  # after the packet id: the properties (MQTT 5) or the payload
            if topic_end > i + 2 and at <= end and (not v5 or (at < end and data[at] == 0)):
                try:
                    topic = data[i + 2 : topic_end].decode()
                except UnicodeDecodeError:
                    pass
                else:
                    mid = data[topic_end] << 8 | data[topic_end + 1]
                    payload = data[at + v5 : end]
                    dup = cmd & _DUP != 0
                    append(_new_message(Message, (topic, payload, received, 1, mid, epoch, dup, -1)))
                    pos = end
                    continue
        return end, messages, (cmd, data[i:end])
    return pos, messages, None


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
        receive_maximum: int = 65_535,
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

    def _read_packets(self, client: Any, connection: Any, data: bytes) -> int:
        """The connection's `MQTTProtocol._read_packet`, replaced (see the module doc): how many
        bytes of `data` were whole packets (-1: malformed). What gmqtt's `put_package` does per
        packet besides handling it is done here once: the keepalive's last inbound data, and
        dropping what a connection the handler no longer serves still delivers."""
        v5 = connection._protocol.proto_ver >= MQTTv50
        received = self.clock()
        handler = client._package_handler
        pos = 0
        while True:
            pos, messages, other = read_packets(data, pos, v5=v5, received=received, epoch=self.epoch)
            if messages and client is self._client and handler.current_connection is connection:
                self.queue.put_acknowledged(messages)
            if other is None:
                break
            connection.put_package(Package(*other))  # gmqtt's own path, which may change the epoch
        if pos > 0:
            connection._last_data_in = time.monotonic()
        return pos

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
            # Before the CONNECT is sent, so before anything can be read: the bulk reader.
            connection._protocol._read_packet = functools.partial(self._read_packets, client, connection)
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
