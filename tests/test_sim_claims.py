"""A simulated fleet already on the broker (the demo's hospital) yields the devices a scenario run
claims, and takes them back when the run releases them or dies: over a real mosquitto."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core.registry import load_registry
from device_profiles.loader import load_profiles
from firewatch.broker import Mosquitto
from simulators.claims import DeviceClaim
from simulators.fleet import Fleet
from simulators.hospital import DEMO_HOSPITAL
from simulators.live import LiveFleet

pytestmark = pytest.mark.integration

DEVICE = "b2-f3-z1-r303-smk"
STATUS = f"fw/v1/+/{DEVICE}/status"
TELEMETRY = f"fw/v1/+/{DEVICE}/telemetry"


class Listener:
    """What the broker delivers for one device: its status and telemetry messages, in order."""

    def __init__(self, mosquitto: Mosquitto) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.arrived = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"listen-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.client.connect(mosquitto.host, mosquitto.port)
        self.client.loop_start()
        self.client.subscribe([(STATUS, 1), (TELEMETRY, 1)])

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.arrived:
            self.messages.append((msg.topic.rsplit("/", 1)[1], bytes(msg.payload)))
            self.arrived.notify_all()

    def wait_for(self, what: Callable[[list[tuple[str, bytes]]], bool], timeout: float = 20.0) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: what(self.messages), timeout), self.messages[-5:]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def telemetry_after(index: int) -> Callable[[list[tuple[str, bytes]]], bool]:
    return lambda messages: any(kind == "telemetry" for kind, _ in messages[index:])


@pytest.fixture
async def hospital(mosquitto: Mosquitto) -> AsyncIterator[LiveFleet]:
    """The demo hospital publishing at 20 times real time (a report every few seconds)."""
    start = time.time()
    sim = LiveFleet(
        Fleet(load_registry(DEMO_HOSPITAL), load_profiles(), impairments=False),
        lambda: start + (time.time() - start) * 20,
        name="demo",
    )
    task = asyncio.create_task(sim.run(mosquitto.host, mosquitto.port))
    listener = Listener(mosquitto)
    try:
        # Its telemetry flows once it has announced itself to scenario runs.
        await asyncio.to_thread(listener.wait_for, telemetry_after(0))
        listener.close()
        yield sim
    finally:
        sim.stop()
        await asyncio.wait_for(task, 10)


async def test_a_claimed_device_falls_quiet_and_reports_online_again_when_released(
    mosquitto: Mosquitto, hospital: LiveFleet
) -> None:
    listener = Listener(mosquitto)
    try:
        claim = DeviceClaim(mosquitto.host, mosquitto.port, [DEVICE, "not-in-this-hospital"], "test")
        answers = await asyncio.to_thread(claim.take)
        assert list(answers.values()) == [1]  # the hospital has one of the two
        assert hospital.fleet.yielded == frozenset({DEVICE})
        stopped_at = len(listener.messages)
        await asyncio.to_thread(claim.release)
        # Released: the device says it is online again, then reports.
        await asyncio.to_thread(listener.wait_for, lambda m: ("status", b"online") in m[stopped_at:])
        await asyncio.to_thread(listener.wait_for, telemetry_after(stopped_at))
        assert hospital.fleet.yielded == frozenset()
    finally:
        listener.close()


async def test_a_scenario_run_that_dies_releases_its_devices_by_its_will(
    mosquitto: Mosquitto, hospital: LiveFleet
) -> None:
    claim = DeviceClaim(mosquitto.host, mosquitto.port, [DEVICE], "test")
    assert list((await asyncio.to_thread(claim.take)).values()) == [1]
    client = claim._client
    assert client is not None
    client.loop_stop()  # the runner's process dies: no goodbye, the broker sends its will
    sock = client.socket()
    assert sock is not None
    sock.close()
    while hospital.fleet.yielded:  # noqa: ASYNC110 - the fleet offers no event; bounded by the test's timeout
        await asyncio.sleep(0.05)


async def test_with_no_simulated_fleet_on_the_broker_a_claim_is_answered_by_nobody_at_once(
    mosquitto: Mosquitto,
) -> None:
    claim = DeviceClaim(mosquitto.host, mosquitto.port, [DEVICE], "test")
    try:
        assert await asyncio.to_thread(claim.take) == {}
        assert claim.fleets == set()
    finally:
        await asyncio.to_thread(claim.release)
