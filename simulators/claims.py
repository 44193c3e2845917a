"""A scenario's claim on the devices it plays, so that a simulated fleet already publishing them
(the demo's hospital, `firewatch simulate devices`) falls quiet for them while it runs.

Without it, two simulations publish as the same devices at once: the service sees one device
whose readings alternate between a calm room and a burning one, whose counter jumps back and
forth (taken for a reboot at every jump, or, where the numbers meet, for a redelivery and dropped
as a duplicate), and a device a scenario silences keeps reporting through the other fleet, so it
never goes offline. The scenario's verdict would then be about the mixture, not the scenario.

The protocol, over the service's broker, outside the device topics (the service never reads it):
- a fleet announces itself, retained, on `firewatch/sim/fleets/<fleet>` (cleared by its will);
- a scenario run claims its devices, retained, on `firewatch/sim/claims/<run>`: JSON
  `{"scenario": name, "devices": [ids]}` (cleared by its will, so a run that dies releases them);
- each fleet stops publishing the claimed devices and answers on `firewatch/sim/yielded/<run>`
  (`{"fleet": id, "devices": n}`); the run waits for every announced fleet, at most CLAIM_WAIT_S;
- the run releases its claim (an empty retained message) after its own devices said goodbye; the
  fleets then report the devices `online` again and resume their schedule.
Only simulations take part: a real device never reads these topics, and the service does not
either, so nothing here can hold back a real alarm.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

logger = logging.getLogger(__name__)

ROOT = "firewatch/sim"
FLEETS = f"{ROOT}/fleets"
CLAIMS = f"{ROOT}/claims"
YIELDED = f"{ROOT}/yielded"
PING = f"{ROOT}/ping"
CLAIM_WAIT_S = 5.0  # for the fleets' answers; a fleet that never answers is named in a warning
CONNECT_WAIT_S = 5.0


def _client(prefix: str) -> mqtt.Client:
    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{prefix}-{uuid.uuid4().hex[:8]}")


class DeviceClaim:
    """A scenario run's claim (the runner's side)."""

    def __init__(self, host: str, port: int, devices: list[str], scenario: str) -> None:
        self.run_id = uuid.uuid4().hex[:12]
        self.host, self.port = host, port
        self.devices = devices
        self.scenario = scenario
        self.topic = f"{CLAIMS}/{self.run_id}"
        self.fleets: set[str] = set()  # fleets announced on the broker
        self.answers: dict[str, int] = {}  # fleet -> devices it yielded
        self._pinged = threading.Event()
        self._changed = threading.Condition()
        self._client: mqtt.Client | None = None

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._changed:
            if msg.topic == f"{PING}/{self.run_id}":
                self._pinged.set()
            elif msg.topic.startswith(f"{FLEETS}/") and msg.payload:
                self.fleets.add(msg.topic.rsplit("/", 1)[1])
            elif msg.topic == f"{YIELDED}/{self.run_id}":
                try:
                    answer = json.loads(msg.payload)
                    self.answers[str(answer["fleet"])] = int(answer["devices"])
                except (ValueError, KeyError, TypeError):
                    logger.warning("an unreadable answer to the device claim: %r", msg.payload[:200])
            self._changed.notify_all()

    def take(self, wait_s: float = CLAIM_WAIT_S) -> dict[str, int]:
        """Claim the devices and wait until every fleet on the broker has yielded them (at most
        `wait_s`); returns each answering fleet's count of devices yielded."""
        client = _client("fw-claim")
        client.will_set(self.topic, b"", qos=1, retain=True)
        client.on_message = self._on_message
        client.connect(self.host, self.port, keepalive=15)
        client.loop_start()
        self._client = client
        client.subscribe([(f"{FLEETS}/+", 1), (f"{YIELDED}/{self.run_id}", 1), (f"{PING}/{self.run_id}", 1)])
        # The broker sends the retained announcements on subscribing; our own ping comes back
        # after them, so by then every fleet on the broker is known.
        client.publish(f"{PING}/{self.run_id}", b"1", qos=1)
        if not self._pinged.wait(CONNECT_WAIT_S):
            logger.warning("the broker did not echo the claim's ping: fleets may not be known")
        body = json.dumps({"scenario": self.scenario, "devices": self.devices}).encode()
        client.publish(self.topic, body, qos=1, retain=True)
        deadline = time.monotonic() + wait_s
        with self._changed:
            while not self.fleets <= set(self.answers) and time.monotonic() < deadline:
                self._changed.wait(max(0.0, deadline - time.monotonic()))
            silent = sorted(self.fleets - set(self.answers))
            answers = dict(self.answers)
        if silent:
            logger.warning("simulated fleet(s) %s did not yield the scenario's devices", ", ".join(silent))
        return answers

    def release(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        client.publish(self.topic, b"", qos=1, retain=True).wait_for_publish(CONNECT_WAIT_S)
        client.disconnect()
        client.loop_stop()


class ClaimWatch:
    """A simulated fleet's side: which of its devices scenario runs have claimed."""

    def __init__(self, host: str, port: int, fleet_name: str = "fleet") -> None:
        self.fleet_id = f"{fleet_name}-{uuid.uuid4().hex[:8]}"
        self.host, self.port = host, port
        self._lock = threading.Lock()
        self._claims: dict[str, frozenset[str]] = {}  # run -> its devices
        self._applied: set[str] = set()  # runs whose claim the fleet has acted on
        self._client: mqtt.Client | None = None

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        run = msg.topic.rsplit("/", 1)[1]
        with self._lock:
            if not msg.payload:
                self._claims.pop(run, None)
                self._applied.discard(run)
                return
            try:
                devices = frozenset(str(d) for d in json.loads(msg.payload)["devices"])
            except (ValueError, KeyError, TypeError):
                logger.warning("an unreadable device claim on %s", msg.topic)
                return
            self._claims[run] = devices
            self._applied.discard(run)

    def start(self) -> None:
        client = _client("fw-fleet")
        announce = f"{FLEETS}/{self.fleet_id}"
        client.will_set(announce, b"", qos=1, retain=True)
        client.on_message = self._on_message
        client.connect(self.host, self.port, keepalive=15)
        client.loop_start()
        client.subscribe(f"{CLAIMS}/+", qos=1)
        client.publish(announce, b"1", qos=1, retain=True)
        self._client = client

    def claimed(self) -> tuple[frozenset[str], list[str]]:
        """Every device claimed now, and the runs whose claims are new since the last call."""
        with self._lock:
            fresh = [run for run in self._claims if run not in self._applied]
            self._applied.update(fresh)
            devices: frozenset[str] = frozenset().union(*self._claims.values())
        return devices, fresh

    def answer(self, run: str, yielded: int) -> None:
        if self._client is not None:
            body = json.dumps({"fleet": self.fleet_id, "devices": yielded}).encode()
            self._client.publish(f"{YIELDED}/{run}", body, qos=1)

    def stop(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        client.publish(f"{FLEETS}/{self.fleet_id}", b"", qos=1, retain=True).wait_for_publish(2.0)
        client.disconnect()
        client.loop_stop()
