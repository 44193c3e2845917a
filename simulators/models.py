"""Value models for simulated sensors: a realistic quiet baseline per channel, and incidents that
change it over (compressible) physical time.

All values are clamped to the channel's physical range and quantised to its resolution, as a real
device's ADC and firmware would.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from core.domain import DeviceKind
from device_profiles.schema import Profile

DAY = 86_400.0


@dataclass
class Fire:
    """A growing fire: heat release follows the t-squared law (Q = alpha t^2), so the ceiling jet's
    smoke obscuration and temperature rise roughly with t^2 until the layer saturates. Detectors
    further from the origin see it after a transport delay."""

    start: float
    delays: dict[str, float]  # device id -> seconds until the plume/ceiling jet reaches it
    smoke_growth: float = 0.002  # dB/m per s^2: ~0.2 dB/m ten seconds after arrival
    heat_growth: float = 0.02  # °C per s^2: +50 °C about 50 s after arrival

    def smoke(self, device_id: str, t: float) -> float:
        dt = t - self.start - self.delays.get(device_id, math.inf)
        return min(1.8, self.smoke_growth * dt * dt) if dt > 0 else 0.0

    def heat(self, device_id: str, t: float) -> float:
        dt = t - self.start - self.delays.get(device_id, math.inf)
        return min(90.0, self.heat_growth * dt * dt) if dt > 0 else 0.0


@dataclass
class PressureDrop:
    """A sprinkler opening or a pipe burst: pressure decays towards a few kPa within seconds."""

    start: float
    tau: float = 3.0

    def factor(self, t: float) -> float:
        return math.exp(-(t - self.start) / self.tau) if t >= self.start else 1.0


@dataclass
class GasLeak:
    """Gas accumulating in a closed room: concentration rises roughly linearly at first."""

    start: float
    rate: float = 1.0  # %LEL per s

    def lel(self, t: float) -> float:
        return min(80.0, self.rate * (t - self.start)) if t >= self.start else 0.0


@dataclass
class DeviceModel:
    device_id: str
    site: str
    profile: Profile
    rng: random.Random
    baseline: dict[str, float] = field(default_factory=dict)
    battery: float = 100.0
    rssi: float = -70.0
    seq: int = 0
    silent: bool = False
    fires: list[Fire] = field(default_factory=list)
    drops: list[PressureDrop] = field(default_factory=list)
    leaks: list[GasLeak] = field(default_factory=list)

    def __post_init__(self) -> None:
        r = self.rng
        for name in self.profile.channels:
            if name == "smoke":
                self.baseline[name] = r.uniform(0.005, 0.03)
            elif name == "pressure" and self.profile.kind is DeviceKind.OXYGEN_PRESSURE:
                self.baseline[name] = r.uniform(0.39, 0.41)  # regulated around 0.4 MPa
            elif name == "pressure":
                self.baseline[name] = r.uniform(0.30, 0.45)
            elif name == "open":
                self.baseline[name] = 0.0  # fire doors are kept closed
            elif name == "level":
                self.baseline[name] = r.uniform(3.0, 4.0)
            elif name == "current":
                self.baseline[name] = r.uniform(0.5, 3.0)  # chargers of one to a few e-bikes
            elif name == "residual_current":
                self.baseline[name] = r.uniform(50.0, 150.0)
            elif name.startswith("temp_"):
                self.baseline[name] = r.uniform(30.0, 45.0)
            elif name == "lel":
                self.baseline[name] = r.uniform(0.0, 2.0)
            else:  # ambient temperature
                self.baseline[name] = r.uniform(22.0, 26.0)
        self.battery = r.uniform(60.0, 100.0)
        self.rssi = r.uniform(-95.0, -60.0)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def values(self, t: float) -> dict[str, float]:
        """Channel values at physical time t (seconds since the simulation started)."""
        r = self.rng
        out: dict[str, float] = {}
        for name, channel in self.profile.channels.items():
            base = self.baseline[name]
            if name == "smoke":
                v = base + r.gauss(0, 0.002) + sum(f.smoke(self.device_id, t) for f in self.fires)
            elif name == "pressure" and self.profile.kind is DeviceKind.OXYGEN_PRESSURE:
                v = base + r.gauss(0, 0.002)  # a regulated supply: no pump cycle
                for drop in self.drops:
                    v *= drop.factor(t)
            elif name == "pressure":
                # jockey-pump cycle: a slow saw-tooth ripple of a few hundredths of an MPa
                v = base + 0.02 * math.sin(2 * math.pi * t / 600) + r.gauss(0, 0.002)
                for drop in self.drops:
                    v *= drop.factor(t)
            elif name == "residual_current":
                load = 1.0 + 0.3 * math.sin(2 * math.pi * t / DAY)  # leakage follows the daily load
                v = base * load + r.gauss(0, 3.0)
            elif name == "open":
                v = base
            elif name == "level":
                v = base + r.gauss(0, 0.003)
            elif name == "current":
                v = max(0.0, base + r.gauss(0, 0.05))
            elif name == "lel":
                v = max(0.0, base + r.gauss(0, 0.2)) + sum(leak.lel(t) for leak in self.leaks)
            else:  # temperatures: diurnal swing plus any fire's heat
                v = base + 1.5 * math.sin(2 * math.pi * t / DAY) + r.gauss(0, 0.1)
                v += sum(f.heat(self.device_id, t) for f in self.fires)
            lo, hi = channel.range
            v = min(hi, max(lo, v))
            out[name] = round(round(v / channel.resolution) * channel.resolution, 6)
        return out

    def drain_battery(self, reports: int = 1) -> None:
        self.battery = max(0.0, self.battery - 0.0001 * reports)
