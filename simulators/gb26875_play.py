"""The registry's GB/T 26875.3 installations during a scenario: one `StationLink` per transmission
device, heartbeating on the scenario's simulated clock and uploading what the timeline's `gb`,
`gb_reset`, `gb_reconnect` and `gb_garbage` steps do (docs/simulators.md).

Time tags carry the scenario's simulated time (its origin plus the step's `at`), as the MQTT fleet
stamps its readings, so the judge times a panel's alarm from the step that caused it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from core.registry import Registry
from device_profiles.schema import Codec, Profile
from simulators.gb26875_link import StationLink
from simulators.gb26875_panel import Installation, PanelError, installations_from_registry, time_tag
from simulators.scenario import GbBadFrameStep, GbReconnectStep, GbResetStep, GbStateStep

GbStep = GbStateStep | GbResetStep | GbReconnectStep | GbBadFrameStep
GB_STEPS = (GbStateStep, GbResetStep, GbReconnectStep, GbBadFrameStep)
HEARTBEAT_S = 30.0  # simulated seconds: the transmission device profile's heartbeat


@dataclass
class GbTotals:
    uploads: int = 0
    confirmed: int = 0
    denied: int = 0
    resent: int = 0
    gave_up: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class GbPlayer:
    def __init__(self, installations: list[Installation], *, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.installations = installations
        self.heartbeat_s = heartbeat_s
        self.links: dict[int, StationLink] = {}  # by address, once connected
        self.ts = 0.0  # the simulated epoch time that time tags carry
        self.utc_offset_hours = 8.0
        self._owner: dict[str, Installation] = {}
        for inst in installations:
            names = [inst.device_id, *(p.device_id for p in inst.panels.values())]
            names += [pt.device_id for _, pt in inst.points()]
            self._owner.update({n: inst for n in names if n is not None})
        self._beaten: dict[int, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def for_registry(cls, registry: Registry, profiles: dict[str, Profile]) -> GbPlayer | None:
        """A player for the registry's transmission devices, or None when it has none."""
        if not any(
            (p := profiles.get(d.profile)) is not None and p.codec is Codec.GB26875
            for d in registry.devices.values()
        ):
            return None
        return cls(installations_from_registry(registry, profiles))

    def owner(self, device_id: str) -> Installation:
        inst = self._owner.get(device_id)
        if inst is None:
            raise PanelError(
                f"{device_id!r} is no point, panel or transmission device bound with a gb26875= tag"
            )
        return inst

    # --- the connections ------------------------------------------------------------------------
    async def connect(self, host: str, port: int, *, utc_offset_hours: float = 8.0) -> None:
        """One connection per transmission device, each starting with a heartbeat."""
        self.utc_offset_hours = utc_offset_hours
        for inst in self.installations:
            link = StationLink(inst, host, port, clock=lambda: self.ts, utc_offset_hours=utc_offset_hours)
            await link.connect()
            self.links[inst.address] = link

    def step(self, t: float, origin: float) -> None:
        """Heartbeats due at simulated second `t`."""
        self.ts = origin + t
        for address, link in self.links.items():
            if t - self._beaten.get(address, -self.heartbeat_s) >= self.heartbeat_s:
                self._beaten[address] = t
                link.heartbeat()

    async def settle(self, timeout_s: float) -> bool:
        """Until every upload is confirmed (so stored) or given up; True when all were settled."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)
        results = [await link.settle(timeout_s) for link in self.links.values()]
        return all(results)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for link in self.links.values():
            await link.close()

    def totals(self) -> GbTotals:
        out = GbTotals()
        for link in self.links.values():
            s = link.stats
            out.uploads += s.uploads
            out.confirmed += s.confirmed
            out.denied += s.denied
            out.resent += s.resent
            out.gave_up += s.gave_up
        return out

    # --- the timeline ------------------------------------------------------------------------------
    def apply(self, step: GbStep, ts: float) -> list[str]:
        """Carry out one GB step at simulated epoch `ts`: the model changes at once, and its report
        goes out on the device's connection (none in a dry run). Returns the devices touched."""
        self.ts = ts
        inst = self.owner(step.device)
        link = self.links.get(inst.address)
        tag = time_tag(ts, self.utc_offset_hours)
        match step:
            case GbStateStep():
                type_id, obj = inst.set_state(step.device, step.state, tag, clear=step.clear)
                if link is not None:
                    link.upload(type_id, [obj])
            case GbResetStep():
                op = inst.reset(step.device, tag, step.operator)
                if link is not None:
                    link.upload(4, [op])
            case GbReconnectStep():
                self._device_only(inst, step.device)
                if link is not None:
                    task = asyncio.create_task(link.reconnect(), name=f"gb-reconnect-{inst.address}")
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            case GbBadFrameStep():
                self._device_only(inst, step.device)
                if link is not None:
                    for _ in range(step.count):
                        link.send_bad(step.kind)
        return [step.device]

    @staticmethod
    def _device_only(inst: Installation, device_id: str) -> None:
        if device_id != inst.device_id:
            raise PanelError(f"{device_id!r} is not a transmission device: name its 用户信息传输装置")
