"""The MQTT alarm topic as a push route, against a real private mosquitto: a batch of rows published
pipelined (firewatch/mqtt_publish.py) arrives once each and in order; rows the broker has not
acknowledged when it goes away stay owed and arrive, in order, after it is back; a row the channel
cannot send holds the rows after it.

The broker is reached through a relay on loopback that can hold back the broker's PUBACKs: a
broker that stops after taking a batch but before acknowledging all of it, which a live broker
does too fast to catch otherwise.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from firewatch.broker import Mosquitto, free_port
from firewatch.dispatch import DeliveryError, Dispatcher, MqttAlarmChannel
from firewatch.mqtt_publish import MqttPublisher
from storage.models import DeliveryRow, OutboxRow
from tests.test_dispatch import T0, store

ROUTE = "mqtt-alarm-topic"


def transition(n: int) -> dict[str, Any]:
    return {"transition": {"seq": n, "action": "raised", "after": {"site": "s1", "device_id": f"d{n}"}}}


def owe_all(sessions: sessionmaker[Session], alarm_id: int, payloads: list[dict[str, Any]]) -> list[int]:
    with sessions.begin() as s:
        rows = [
            OutboxRow(
                route=ROUTE,
                alarm_id=alarm_id,
                incident_id=None,
                replaceable=False,
                created_ts=T0,
                payload=p,
                attempts=0,
                next_ts=T0,
                delivered_ts=None,
                last_error="",
            )
            for p in payloads
        ]
        s.add_all(rows)
        s.flush()
        return [r.id for r in rows]


class Subscriber:
    """The integration on the other end: a persistent session (QoS 1), so what is published while
    the broker restarts reaches it afterwards, as it would a real integration."""

    def __init__(self, broker: Mosquitto) -> None:
        self.seqs: list[int] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}", clean_session=False
        )
        self.client.on_connect = lambda c, *_: c.subscribe("fw/v1/+/alarms", qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = lambda _c, _u, msg: self.seqs.append(orjson.loads(msg.payload)["seq"])
        self.client.reconnect_delay_set(1, 1)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Relay:
    """A TCP relay to the broker that passes everything, except that once `hold_after` PUBACKs
    have passed towards the client it holds the rest back (counted in `held`)."""

    def __init__(self, broker: Mosquitto) -> None:
        self.broker = broker
        self.hold_after: int | None = None
        self.held = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection((self.broker.host, self.broker.port))
            except OSError:  # the broker is down: so is the relay
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, from_broker: bool) -> None:
        passed, partial = 0, b""
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if from_broker and self.hold_after is not None:
                    # The broker's packets to a publisher are 4 bytes each (CONNACK, PUBACK).
                    data, partial, keep = partial + data, b"", b""
                    whole = len(data) - len(data) % 4
                    data, partial = data[:whole], data[whole:]
                    for i in range(0, len(data), 4):
                        packet = data[i : i + 4]
                        if packet[0] != 0x40 or passed < self.hold_after:
                            passed += packet[0] == 0x40
                            keep += packet
                        else:
                            self.held += 1
                    data = keep
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def subscriber(mosquitto: Mosquitto) -> Iterator[Subscriber]:
    sub = Subscriber(mosquitto)
    yield sub
    sub.close()


def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def channel(port: int, timeout_s: float = 10.0) -> MqttAlarmChannel:
    return MqttAlarmChannel(
        "127.0.0.1", port, prefix="fw/v1", client_id=f"fw-alarms-{uuid.uuid4().hex[:8]}", timeout_s=timeout_s
    )


def owed(sessions: sessionmaker[Session]) -> list[tuple[int, int]]:
    """(attempts, id) of the rows still owed, in id order."""
    with sessions() as s:
        return [
            (r.attempts, r.id)
            for r in s.scalars(
                select(OutboxRow).where(OutboxRow.delivered_ts.is_(None)).order_by(OutboxRow.id)
            )
        ]


def test_a_batch_arrives_once_each_in_order_in_one_round(
    tmp_path: Path, store_url: str, mosquitto: Mosquitto, subscriber: Subscriber
) -> None:
    sessions, alarm = store(tmp_path, store_url)
    ids = owe_all(sessions, alarm, [transition(n) for n in range(300)])
    topic = channel(mosquitto.port)
    d = Dispatcher(sessions, {ROUTE: topic}, clock=lambda: T0 + 1, batch=300)
    try:
        assert d._round() == 300  # one read, one batch of 300 publishes, one record
        assert d._round() == 0
        until(lambda: len(subscriber.seqs) >= 300)
        time.sleep(0.2)  # nothing more comes
        assert subscriber.seqs == list(range(300))
        with sessions() as s:
            log = s.execute(select(DeliveryRow.outbox_id, DeliveryRow.ok).order_by(DeliveryRow.id)).all()
        assert [tuple(r) for r in log] == [(i, True) for i in ids]
    finally:
        d.close()


def test_rows_not_acknowledged_when_the_broker_stops_stay_owed_and_follow_in_order_after_its_restart(
    tmp_path: Path, mosquitto: Mosquitto, subscriber: Subscriber
) -> None:
    sessions, alarm = store(tmp_path)
    ids = owe_all(sessions, alarm, [transition(n) for n in range(50)])
    relay = Relay(mosquitto)
    relay.hold_after = 20  # the broker takes all 50, but only 20 PUBACKs reach the dispatcher
    now = [T0 + 1]
    d = Dispatcher(
        sessions, {ROUTE: channel(relay.port, timeout_s=30.0)}, clock=lambda: now[0], backoff_s=5.0
    )
    delivered: list[int] = []
    try:
        sending = threading.Thread(target=lambda: delivered.append(d._round()))
        sending.start()
        until(lambda: relay.held == 30 and len(subscriber.seqs) == 50)
        mosquitto.stop()  # before it acknowledged the last 30
        sending.join(10)
        assert delivered == [20]
        # The first row not acknowledged failed (and waits for its backoff); the ones after it wait
        # behind it, not attempted.
        assert owed(sessions) == [(1, ids[20])] + [(0, i) for i in ids[21:]]
        with sessions() as s:
            error = s.get(OutboxRow, ids[20]).last_error  # type: ignore[union-attr]
        assert "fw/v1/s1/alarms" in error
        assert "closed" in error

        mosquitto.start()  # same port, same data directory: the subscriber's session is kept
        relay.hold_after = None
        assert d._round() == 0  # still backing off
        now[0] += 5.0
        assert d._round() == 30
        assert owed(sessions) == []
        # At least once, in order: all 50 before the stop, then the 30 not acknowledged again.
        # (The broker may first hand the subscriber again what it had not acknowledged to the
        # broker at the stop: its own at-least-once, between broker and subscriber.)
        until(lambda: subscriber.seqs[-30:] == list(range(20, 50)))
        time.sleep(0.2)
        assert subscriber.seqs[:50] == list(range(50))
        assert subscriber.seqs[-30:] == list(range(20, 50))
        assert len(subscriber.seqs) < 50 + 30 + 30  # nothing sent a third time
    finally:
        d.close()
        relay.close()


def test_a_row_the_channel_cannot_send_holds_the_rows_after_it(
    tmp_path: Path, mosquitto: Mosquitto, subscriber: Subscriber
) -> None:
    sessions, alarm = store(tmp_path)
    payloads = [transition(0), transition(1), {"transition": {"seq": 2}}, transition(3), transition(4)]
    ids = owe_all(sessions, alarm, payloads)
    d = Dispatcher(sessions, {ROUTE: channel(mosquitto.port)}, clock=lambda: T0 + 1)
    try:
        assert d._round() == 2
        until(lambda: len(subscriber.seqs) >= 2)
        time.sleep(0.2)
        assert subscriber.seqs == [0, 1]
        assert owed(sessions) == [(1, ids[2]), (0, ids[3]), (0, ids[4])]
        with sessions() as s:
            error = s.get(OutboxRow, ids[2]).last_error  # type: ignore[union-attr]
        assert "not a transition or an incident step" in error
    finally:
        d.close()


def test_a_broker_that_is_down_fails_the_push_and_it_goes_once_the_broker_is_back(
    mosquitto: Mosquitto, subscriber: Subscriber
) -> None:
    """The single-row path (the unrecorded-alarm relay): an error while the broker is down, a
    delivery on a new connection once it is back."""
    topic = channel(mosquitto.port, timeout_s=2.0)
    try:
        topic.deliver(transition(0))
        mosquitto.stop()
        with pytest.raises(DeliveryError, match="fw/v1/s1/alarms"):
            topic.deliver(transition(1))
        mosquitto.start()
        topic.deliver(transition(2))
        until(lambda: 2 in subscriber.seqs)
        time.sleep(0.2)
        # (0 may come twice: the broker's own redelivery to the subscriber after its restart.)
        assert list(dict.fromkeys(subscriber.seqs)) == [0, 2]
    finally:
        topic.close()


def test_a_connection_idle_for_the_keepalive_is_opened_again_before_a_batch(
    mosquitto: Mosquitto, subscriber: Subscriber
) -> None:
    publisher = MqttPublisher(
        mosquitto.host, mosquitto.port, client_id=f"p-{uuid.uuid4().hex[:8]}", keepalive_s=1
    )
    try:
        assert publisher.publish_many([("fw/v1/s1/alarms", b'{"seq": 0}')]) == (1, "")
        first = publisher._sock
        time.sleep(1.1)  # no PINGREQ is sent: the broker would drop it at 1.5 s
        assert publisher.publish_many([("fw/v1/s1/alarms", b'{"seq": 1}')]) == (1, "")
        assert publisher._sock is not first
        until(lambda: len(subscriber.seqs) >= 2)
        assert subscriber.seqs == [0, 1]
    finally:
        publisher.close()


def test_nothing_listening_is_an_error_not_an_exception() -> None:
    publisher = MqttPublisher("127.0.0.1", free_port(), client_id="p", timeout_s=1.0)
    done, reason = publisher.publish_many([("fw/v1/s1/alarms", b"{}")] * 3)
    assert done == 0
    assert reason
    assert not publisher.connected


def test_a_batch_is_not_held_up_by_the_brokers_nagle_and_our_delayed_ack(mosquitto: Mosquitto) -> None:
    """mosquitto leaves Nagle's algorithm on: a batch's PUBACKs after the first wait for our TCP
    acknowledgement of it, which Linux delays up to 40 ms unless told to acknowledge at once
    (TCP_QUICKACK). 50 batches of 10 take about 10 ms with it, over 2 s without."""
    publisher = MqttPublisher(mosquitto.host, mosquitto.port, client_id=f"p-{uuid.uuid4().hex[:8]}")
    batch = [("fw/v1/s1/alarms", b"x" * 800)] * 10
    try:
        assert publisher.publish_many(batch) == (10, "")
        started = time.monotonic()
        for _ in range(50):
            assert publisher.publish_many(batch) == (10, "")
        assert time.monotonic() - started < 1.0
    finally:
        publisher.close()


def test_a_connection_the_broker_closed_while_idle_is_opened_again_without_failing_the_batch(
    mosquitto: Mosquitto, subscriber: Subscriber
) -> None:
    publisher = MqttPublisher(mosquitto.host, mosquitto.port, client_id=f"p-{uuid.uuid4().hex[:8]}")
    try:
        assert publisher.publish_many([("fw/v1/s1/alarms", b'{"seq": 0}')]) == (1, "")
        mosquitto.restart()  # the connection is closed under the publisher while it is idle
        assert publisher.publish_many([("fw/v1/s1/alarms", b'{"seq": 1}')]) == (1, "")
        until(lambda: 1 in subscriber.seqs)
        assert list(dict.fromkeys(subscriber.seqs)) == [0, 1]
    finally:
        publisher.close()


def test_the_publisher_works_when_the_process_holds_over_a_thousand_descriptors(
    mosquitto: Mosquitto, subscriber: Subscriber
) -> None:
    """A service with thousands of GB/T 26875.3 device connections gives the publisher's socket a
    descriptor over 1023, which select() refuses; the idle check must not use it."""
    held = [os.pipe() for _ in range(600)]  # 1,200 descriptors
    publisher = MqttPublisher(mosquitto.host, mosquitto.port, client_id=f"p-{uuid.uuid4().hex[:8]}")
    try:
        assert publisher.publish_many([("fw/v1/s1/alarms", b'{"seq": 0}')]) == (1, "")
        assert publisher._sock is not None
        assert publisher._sock.fileno() > 1023
        assert publisher.publish_many([("fw/v1/s1/alarms", b'{"seq": 1}')]) == (1, "")
        until(lambda: len(subscriber.seqs) >= 2)
        assert subscriber.seqs == [0, 1]
    finally:
        publisher.close()
        for r, w in held:
            os.close(r)
            os.close(w)
