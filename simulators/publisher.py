"""Publish simulated devices over MQTT exactly as hardware would, and inject incidents while running."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console
from rich.live import Live

from core.registry import Registry, load_registry
from device_profiles.loader import load_profiles
from device_profiles.schema import Profile
from ingest.topics import MessageKind, device_topic
from simulators.models import DeviceModel, Fire, GasLeak, PressureDrop

logger = logging.getLogger(__name__)

MAX_INFLIGHT = 1000  # bounded well below 65,535 (paho and libmosquitto stall beyond)


class SimulationError(ValueError):
    pass


class Simulation:
    def __init__(
        self,
        registry: Registry,
        profiles: dict[str, Profile],
        *,
        host: str,
        port: int,
        seed: int = 0,
        speed: float = 1.0,
        qos: int = 1,
        report_interval_override: float | None = None,
        prefix: str = "fw/v1",
        quiet: bool = False,
    ) -> None:
        if speed <= 0:
            raise SimulationError("speed must be positive")
        self.registry = registry
        self.host, self.port = host, port
        self.speed = speed
        self.qos = qos
        self.prefix = prefix
        self.quiet = quiet
        rng = random.Random(seed)
        self.models: dict[str, DeviceModel] = {
            d.id: DeviceModel(
                d.id, registry.locations[d.id].site, profiles[d.profile], random.Random(rng.random())
            )
            for d in registry.devices.values()
        }
        self.interval = {
            d: (report_interval_override or m.profile.report_interval_s) / speed
            for d, m in self.models.items()
        }
        # Stagger first reports across one interval so devices do not all publish at once.
        self._due = {d: rng.uniform(0, self.interval[d]) for d in self.models}
        self._events: list[tuple[str, dict[str, object]]] = []
        self._started = time.monotonic()
        self._stop = asyncio.Event()
        self.published = 0
        self._client: mqtt.Client | None = None

    # --- physical time -----------------------------------------------------------------------
    def now(self) -> float:
        """Seconds of simulated time since start (wall time x speed)."""
        return (time.monotonic() - self._started) * self.speed

    # --- incidents -----------------------------------------------------------------------------
    def _in_zone(self, zone_path: str) -> list[str]:
        devices = sorted(d for d, loc in self.registry.locations.items() if loc.zone_path == zone_path)
        if not devices:
            raise SimulationError(f"no devices in zone {zone_path!r}")
        return devices

    def inject_fire(self, zone_path: str) -> str:
        """A fire starting in the zone's first room; returns the device nearest the origin."""
        devices = self._in_zone(zone_path)
        origin = self.registry.devices[devices[0]].place
        rng = random.Random(zone_path)
        delays = {
            d: (0.0 if self.registry.devices[d].place == origin else rng.uniform(8.0, 30.0)) for d in devices
        }
        fire = Fire(start=self.now(), delays=delays)
        for d in devices:
            self.models[d].fires.append(fire)
        return devices[0]

    def inject_pressure_drop(self, device_id: str) -> None:
        self._model(device_id).drops.append(PressureDrop(start=self.now()))

    def inject_gas_leak(self, place_path: str) -> list[str]:
        devices = [
            d
            for d, dev in self.registry.devices.items()
            if (dev.place == place_path or dev.place.startswith(place_path + "/"))
            and "lel" in self.models[d].profile.channels
        ]
        if not devices:
            raise SimulationError(f"no gas detectors at {place_path!r}")
        for d in devices:
            self.models[d].leaks.append(GasLeak(start=self.now()))
        return devices

    def silence(self, device_id: str) -> None:
        self._model(device_id).silent = True

    def fault(self, device_id: str, code: int = 1) -> None:
        model = self._model(device_id)
        self._events.append(
            (device_id, {"ts": time.time(), "seq": model.next_seq(), "event": "fault", "code": code})
        )

    def _model(self, device_id: str) -> DeviceModel:
        model = self.models.get(device_id)
        if model is None:
            raise SimulationError(f"no simulated device {device_id!r}")
        return model

    # --- publishing ----------------------------------------------------------------------------
    def _topic(self, model: DeviceModel, kind: MessageKind) -> str:
        return device_topic(model.site, model.device_id, kind, self.prefix)

    def _publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        assert self._client is not None
        self._client.publish(topic, payload, qos=self.qos, retain=retain)
        self.published += 1

    def _connect(self) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fw-sim-{uuid.uuid4().hex[:8]}")
        client.max_inflight_messages_set(MAX_INFLIGHT)
        client.max_queued_messages_set(0)
        client.connect(self.host, self.port, keepalive=30)
        client.loop_start()
        return client

    def step(self) -> int:
        """Publish whatever is due now; returns how many messages went out."""
        t = self.now()
        sent = 0
        for device_id, payload in self._events:
            self._publish(self._topic(self.models[device_id], MessageKind.EVENT), json.dumps(payload))
            sent += 1
        self._events.clear()
        for device_id, due in self._due.items():
            if due > t / self.speed:
                continue
            self._due[device_id] = due + self.interval[device_id]
            model = self.models[device_id]
            if model.silent:
                continue
            body: dict[str, object] = {
                "ts": round(time.time(), 3),
                "seq": model.next_seq(),
                "v": model.values(t),
            }
            if model.profile.battery is not None:
                model.drain_battery()
                body["batt"] = round(model.battery)
            body["rssi"] = round(model.rssi + model.rng.gauss(0, 2))
            self._publish(self._topic(model, MessageKind.TELEMETRY), json.dumps(body, separators=(",", ":")))
            sent += 1
        return sent

    async def run(
        self, duration: float | None = None, on_tick: Callable[[Simulation], None] | None = None
    ) -> None:
        """Publish until `duration` seconds (wall time) pass or stop() is called."""
        self._client = await asyncio.to_thread(self._connect)
        try:
            for model in self.models.values():
                self._publish(self._topic(model, MessageKind.STATUS), "online", retain=True)
            self._started = time.monotonic()
            while not self._stop.is_set():
                self.step()
                if on_tick is not None:
                    on_tick(self)
                if duration is not None and time.monotonic() - self._started >= duration:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 0.05)
        finally:
            client, self._client = self._client, None
            await asyncio.to_thread(self._disconnect, client)

    @staticmethod
    def _disconnect(client: mqtt.Client) -> None:
        client.loop_stop()
        client.disconnect()

    def stop(self) -> None:
        self._stop.set()


def simulate_main(
    registry_path: Path,
    *,
    host: str,
    port: int,
    duration: float | None = None,
    speed: float = 1.0,
    fire_zone: str | None = None,
    fire_at: float = 30.0,
    pressure_drop: str | None = None,
    gas_leak: str | None = None,
    silent_device: str | None = None,
    incident_at: float = 30.0,
    console: Console | None = None,
) -> int:
    """Run a simulation from the command line with a live status line; returns messages published."""
    console = console or Console()
    registry = load_registry(registry_path)
    sim = Simulation(registry, load_profiles(), host=host, port=port, speed=speed)
    schedule: list[tuple[float, str, Callable[[], object]]] = []
    if fire_zone:
        sim._in_zone(fire_zone)  # fail fast on a typo
        schedule.append((fire_at, f"fire in {fire_zone}", lambda: sim.inject_fire(fire_zone)))
    if pressure_drop:
        sim._model(pressure_drop)
        schedule.append(
            (
                incident_at,
                f"pressure drop at {pressure_drop}",
                lambda: sim.inject_pressure_drop(pressure_drop),
            )
        )
    if gas_leak:
        schedule.append((incident_at, f"gas leak at {gas_leak}", lambda: sim.inject_gas_leak(gas_leak)))
    if silent_device:
        sim._model(silent_device)
        schedule.append((incident_at, f"{silent_device} goes silent", lambda: sim.silence(silent_device)))
    done: list[str] = []

    async def main() -> None:
        started = time.monotonic()
        with Live(console=console, refresh_per_second=4) as live:

            def tick(s: Simulation) -> None:
                elapsed = time.monotonic() - started
                for when, label, action in schedule:
                    if label not in done and elapsed >= when:
                        action()
                        done.append(label)
                rate = s.published / max(elapsed, 1e-9)
                live.update(
                    f"{len(s.models)} devices · {s.published:,} messages · {rate:,.0f}/s · "
                    f"{elapsed:,.0f} s" + (f" · injected: {', '.join(done)}" if done else "")
                )

            await sim.run(duration, on_tick=tick)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sim.stop()
    console.print(f"published {sim.published:,} messages")
    return sim.published
