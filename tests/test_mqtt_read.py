"""The source's own packet reader: QoS 1 PUBLISHes become envelopes straight from the socket's bytes,
everything else reaches gmqtt whole and in order, and an incomplete packet waits for more bytes.

The packets are written out byte by byte from MQTT 3.1.1 §2.2 and §3.3 and MQTT 5 §3.3.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from firewatch.broker import Mosquitto
from ingest.envelope import Message
from ingest.mqtt import BrokerAddress, MqttSource, read_packets
from ingest.mqtt_wire import remaining_length
from ingest.queue import BoundedQueue
from tests.waiting import eventually

TOPIC = "fw/v1/s1/smk-1-1/telemetry"
PINGRESP = bytes([0xD0, 0x00])
CONNACK = bytes([0x20, 0x03, 0x00, 0x00, 0x00])  # MQTT 5: no session, success, no properties


def publish(
    topic: bytes, payload: bytes, mid: int, *, qos: int = 1, dup: bool = False, props: bytes | None = b""
) -> bytes:
    """A PUBLISH packet; `props` is the MQTT 5 property list (None: MQTT 3.1.1, no list at all)."""
    head = 0x30 | qos << 1 | (0x08 if dup else 0)
    body = len(topic).to_bytes(2, "big") + topic + (mid.to_bytes(2, "big") if qos else b"")
    if props is not None:
        body += remaining_length(len(props)) + props
    body += payload
    return bytes([head]) + remaining_length(len(body)) + body


def test_qos1_publishes_become_envelopes_with_their_id_dup_flag_receipt_time_and_connection() -> None:
    data = publish(TOPIC.encode(), b'{"a":1}', 7) + publish(TOPIC.encode(), b"x" * 300, 8, dup=True)
    end, messages, other = read_packets(data, 0, v5=True, received=12.5, epoch=3)
    assert (end, other) == (len(data), None)
    assert messages == [
        Message(TOPIC, b'{"a":1}', 12.5, 1, 7, 3, False),
        Message(TOPIC, b"x" * 300, 12.5, 1, 8, 3, True),  # two-byte remaining length
    ]


def test_mqtt_3_1_1_publishes_have_no_property_list() -> None:
    data = publish(b"t/\xe7\x83\x9f", b"{}", 65535, props=None)  # a UTF-8 topic: t/烟
    assert read_packets(data, 0, v5=False, received=1.0, epoch=1) == (
        len(data),
        [Message("t/烟", b"{}", 1.0, 1, 65535, 1, False)],
        None,
    )


def test_reading_stops_after_any_other_packet_so_gmqtt_handles_it_before_what_follows() -> None:
    """A CONNACK read together with the first PUBLISHes of the session: those are read only after
    gmqtt has handled it, so they carry the new connection's epoch."""
    first, second = publish(TOPIC.encode(), b"1", 1), publish(TOPIC.encode(), b"2", 2)
    data = CONNACK + first + PINGRESP + second
    end, messages, other = read_packets(data, 0, v5=True, received=1.0, epoch=4)
    assert (end, messages, other) == (len(CONNACK), [], (0x20, CONNACK[2:]))
    end, messages, other = read_packets(data, end, v5=True, received=1.0, epoch=5)
    assert [(m.payload, m.epoch) for m in messages] == [(b"1", 5)]
    assert other == (0xD0, b"")
    end, messages, other = read_packets(data, end, v5=True, received=1.0, epoch=5)
    assert (end, [m.payload for m in messages], other) == (len(data), [b"2"], None)


@pytest.mark.parametrize(
    "packet",
    [
        publish(TOPIC.encode(), b"{}", 5, props=bytes([0x02, 0, 0, 0, 60])),  # message expiry: MQTT 5
        publish(b"", b"{}", 5, props=bytes([0x23, 0, 1])),  # a topic alias instead of a topic
        publish(b"fw/\xff", b"{}", 5),  # a topic that is not UTF-8
        publish(TOPIC.encode(), b"{}", 0, qos=0),
        publish(TOPIC.encode(), b"{}", 5, qos=2),
    ],
    ids=["properties", "topic-alias", "not-utf8", "qos0", "qos2"],
)
def test_publishes_it_does_not_read_plainly_go_to_gmqtt_whole(packet: bytes) -> None:
    header = 2 if len(packet) < 130 else 3
    assert read_packets(packet, 0, v5=True, received=1.0, epoch=1) == (
        len(packet),
        [],
        (packet[0], packet[header:]),
    )


def test_an_incomplete_packet_is_left_for_the_next_read() -> None:
    whole = publish(TOPIC.encode(), b"a", 1)
    cut = publish(TOPIC.encode(), b"b" * 200, 2)
    for keep in (1, 2, 10, len(cut) - 1):  # inside the fixed header, the length, or the body
        end, messages, other = read_packets(whole + cut[:keep], 0, v5=True, received=1.0, epoch=1)
        assert (end, [m.payload for m in messages], other) == (len(whole), [b"a"], None)


@pytest.mark.parametrize("length", [127, 128, 16_383, 16_384, 2_097_151, 2_097_152])
def test_remaining_lengths_of_one_to_four_bytes_are_read(length: int) -> None:
    """One byte is read on its own (the usual, a packet of under 128 bytes), longer ones byte by
    byte: each boundary of the variable byte integer (MQTT 3.1.1 §2.2.3)."""
    overhead = len(publish(TOPIC.encode(), b"", 1)) - 2  # topic, packet id, property length
    payload = b"p" * (length - overhead)
    data = publish(TOPIC.encode(), payload, 9) + publish(TOPIC.encode(), b"next", 10)
    end, messages, other = read_packets(data, 0, v5=True, received=1.0, epoch=1)
    assert (end, other) == (len(data), None)
    assert [(len(m.payload), m.mid) for m in messages] == [(len(payload), 9), (4, 10)]
    for cut in range(1, 1 + len(remaining_length(length)) + 1):  # the header or the length cut short
        assert read_packets(data[:cut], 0, v5=True, received=1.0, epoch=1) == (0, [], None)


def test_a_remaining_length_over_four_bytes_is_malformed() -> None:
    assert (
        read_packets(bytes([0x32, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]), 0, v5=True, received=1.0, epoch=1)[0] == -1
    )


@pytest.mark.integration
async def test_messages_with_properties_arrive_through_gmqtt_in_order_among_the_others(
    mosquitto: Mosquitto,
) -> None:
    """A device publishing with MQTT 5 properties: its messages take gmqtt's own path, the others the
    bulk reader, and the queue holds all of them in the order the broker sent them."""
    queue = BoundedQueue(1000)
    source = MqttSource(
        BrokerAddress(mosquitto.host, mosquitto.port),
        client_id=f"fw-read-{uuid.uuid4().hex[:8]}",
        topics=[TOPIC],
        queue=queue,
        clock=time.time,
        protocol=5,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))
    try:
        await asyncio.wait_for(source.connected.wait(), 10)
        await asyncio.sleep(0.2)  # the SUBSCRIBE is sent on connect; let the broker take it first
        await asyncio.to_thread(publish_with_and_without_properties, mosquitto, 60)
        await eventually(lambda: len(queue) >= 60, timeout=30, what="60 messages")
        received = await queue.get_batch(100, 0)
        assert [m.payload for m in received] == [f"r{i}".encode() for i in range(60)]
        assert all(m.qos == 1 and m.mid is not None and m.epoch == source.epoch for m in received)
        assert source.ack(received) == 60
    finally:
        stop.set()
        await task


def publish_with_and_without_properties(broker: Mosquitto, n: int) -> None:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"test-pub-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
    )
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.UserProperty = ("firmware", "2.1")
        infos = [
            client.publish(TOPIC, f"r{i}".encode(), qos=1, properties=props if i % 3 == 0 else None)
            for i in range(n)
        ]
        for info in infos:
            info.wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()
