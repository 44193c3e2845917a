"""A lean synchronous MQTT 3.1.1 publisher for the alarm topic: QoS 1 messages, pipelined.

The push dispatcher sends a route's due rows from a worker thread that has nothing else to do while
it waits for the broker. paho's client would bring a network thread of its own (`loop_start`)
taking the GIL for every packet, and a publish + `wait_for_publish` round trip per message. Here
one thread does it all over one blocking socket: all of a batch's PUBLISH packets in one `sendall`,
then the PUBACKs read until every packet id is back, or the timeout. QoS 1 on one connection keeps
the publish order (MQTT 3.1.1 §4.6), so the route's order holds.

Only what that needs: CONNECT (clean session, optional username and password) and CONNACK,
PUBLISH QoS 1, PUBACK; PINGRESP and anything else the broker sends are skipped. There is no thread
to send PINGREQs, so a connection idle for `keepalive_s` is closed by this side and opened again
before the next batch, before the broker would drop it (at 1.5 times the keepalive, §3.1.2.10).
Any failure closes the socket; the next batch connects again.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time
from collections.abc import Sequence

from ingest.mqtt_wire import remaining_length

_CONNECT = 0x10
_CONNACK = 0x20
_PUBLISH_QOS1 = 0x32  # PUBLISH, DUP 0, QoS 1, RETAIN 0 (§3.3.1)
_PUBACK = 0x40
_DISCONNECT = b"\xe0\x00"
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only
_CLEAN_SESSION, _PASSWORD, _USERNAME = 0x02, 0x40, 0x80  # connect flags (§3.1.2.3)
_CONNACK_REFUSED = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class PublishError(RuntimeError):
    """The broker could not be reached, refused the connection, or did not acknowledge in time."""


def _string(s: str | bytes) -> bytes:
    data = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(data)) + data


def connect_packet(client_id: str, username: str | None, password: str | None, keepalive_s: int) -> bytes:
    flags = _CLEAN_SESSION
    payload = _string(client_id)
    if username:
        flags |= _USERNAME
        payload += _string(username)
        if password is not None:
            flags |= _PASSWORD
            payload += _string(password)
    body = _string("MQTT") + struct.pack(">BBH", 4, flags, keepalive_s) + payload
    return bytes([_CONNECT]) + remaining_length(len(body)) + body


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    head = _string(topic) + struct.pack(">H", packet_id)
    return bytes([_PUBLISH_QOS1]) + remaining_length(len(head) + len(payload)) + head + payload


class MqttPublisher:
    """QoS 1 publishes over one connection, batch by batch; not thread-safe (one caller at a time)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
        keepalive_s: int = 60,
    ) -> None:
        self.host, self.port, self.timeout_s, self.keepalive_s = host, port, timeout_s, keepalive_s
        self._connect_packet = connect_packet(client_id, username, password, keepalive_s)
        self._sock: socket.socket | None = None
        self._last_sent = 0.0
        self._next_id = 0
        self._buffer = b""

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> tuple[int, str]:
        """Publish `messages` (topic, payload) in order; returns how many of the leading ones the
        broker acknowledged, and why the next one is not ("" when all are). Never raises for the
        broker's sake: a failure closes the connection, and the caller sends the rest again."""
        if not messages:
            return 0, ""
        ids: list[int] = []
        packets: list[bytes] = []
        for topic, payload in messages:
            self._next_id = self._next_id % 0xFFFF + 1  # 1..65535 (§2.3.1)
            ids.append(self._next_id)
            packets.append(publish_packet(topic, payload, self._next_id))
        acked: set[int] = set()
        try:
            sock = self._ready()
            sock.sendall(b"".join(packets))
            self._last_sent = time.monotonic()
            self._read_acks(sock, set(ids), acked)
        except (OSError, PublishError) as exc:
            self.close(graceful=False)
            done = 0
            while done < len(ids) and ids[done] in acked:
                done += 1
            if isinstance(exc, TimeoutError):
                return done, f"the broker did not acknowledge in {self.timeout_s:g} s"
            return done, str(exc) or type(exc).__name__
        return len(ids), ""

    def _ready(self) -> socket.socket:
        """The open connection, or a new one: after a failure, after the broker closed it, or when it
        has been idle for the keepalive."""
        sock = self._sock
        if sock is not None and time.monotonic() - self._last_sent >= self.keepalive_s:
            self.close()
            sock = None
        elif sock is not None and not self._alive(sock):
            self.close(graceful=False)
            sock = None
        if sock is None:
            sock = self._connect()
        return sock

    def _alive(self, sock: socket.socket) -> bool:
        """False when the broker closed the connection while it was idle (say, it restarted): seen
        before the batch is sent, so the batch goes on a new connection instead of failing."""
        # poll(), not select(): select() refuses a descriptor numbered over 1023, which a service
        # holding many connections (GB/T 26875.3 transmission devices) gives this socket.
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        try:
            if not poller.poll(0):
                return True
            data = sock.recv(65536)  # nothing is owed on an idle connection: anything here is stale
        except OSError:
            return False
        return bool(data)

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        self._buffer = b""
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(self._connect_packet)
            head = self._recv_exact(sock, 4, time.monotonic() + self.timeout_s)
        except BaseException:
            sock.close()
            raise
        if head[0] != _CONNACK or head[1] != 2:
            sock.close()
            raise PublishError(f"not a CONNACK from the broker: {head.hex()}")
        if head[3] != 0:
            sock.close()
            reason = _CONNACK_REFUSED.get(head[3], f"return code {head[3]}")
            raise PublishError(f"the broker refused the connection: {reason}")
        self._sock, self._last_sent = sock, time.monotonic()
        return sock

    def _recv(self, sock: socket.socket, deadline: float) -> bytes:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        if _QUICKACK is not None:
            # Acknowledge what arrives at once. A broker that leaves Nagle's algorithm on (mosquitto
            # by default: `set_tcp_nodelay false`) holds a batch's later PUBACKs until the first is
            # acknowledged, and Linux delays that acknowledgement up to 40 ms: a batch of 10 took
            # 44 ms instead of 0.17 ms. The option does not stick, so it is set before every read.
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        data = sock.recv(65536)
        if not data:
            raise PublishError("the broker closed the connection")
        return data

    def _recv_exact(self, sock: socket.socket, n: int, deadline: float) -> bytes:
        data = b""
        while len(data) < n:
            data += self._recv(sock, deadline)
        self._buffer = data[n:]
        return data[:n]

    def _read_acks(self, sock: socket.socket, owed: set[int], acked: set[int]) -> None:
        """Read packets until every id in `owed` is acknowledged (moved to `acked`)."""
        deadline = time.monotonic() + self.timeout_s
        buf = self._buffer
        try:
            while owed:
                pos = 0
                while len(buf) - pos >= 2:
                    # Remaining length: one byte for every packet a broker sends a publisher
                    # (PUBACK 2, PINGRESP 0); longer ones (a PUBLISH we never subscribed to) read
                    # in full all the same.
                    kind, length, at = buf[pos], 0, pos + 1
                    shift = 0
                    while at < len(buf):
                        byte = buf[at]
                        length |= (byte & 0x7F) << shift
                        shift += 7
                        at += 1
                        if not byte & 0x80:
                            break
                    else:
                        break  # the length is not all here yet
                    if len(buf) - at < length:
                        break
                    if kind == _PUBACK and length == 2:
                        mid = (buf[at] << 8) | buf[at + 1]
                        if mid in owed:
                            owed.discard(mid)
                            acked.add(mid)
                    pos = at + length
                buf = buf[pos:]
                if owed:
                    buf += self._recv(sock, deadline)
        finally:
            self._buffer = buf

    def close(self, graceful: bool = True) -> None:
        """Close the connection; `graceful` says goodbye first (DISCONNECT, §3.14), so the broker
        does not log it as lost."""
        if self._sock is not None:
            sock, self._sock = self._sock, None
            with contextlib.suppress(OSError):
                if graceful:
                    sock.settimeout(1.0)
                    sock.sendall(_DISCONNECT)
                sock.close()
