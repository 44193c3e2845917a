"""Physics of the incidents the simulated hospital can suffer: pure functions of time and geometry.

Each incident is a small frozen object that knows which devices it reaches and, for each of them,
how it changes a channel at a time `t` (seconds of simulated time). Devices apply them on top of
their quiet behaviour (simulators/devices.py). Nothing here reads a clock or a random generator, so
an incident's effect is the same however fast the simulation runs.

Where a number comes from the literature, the comment says where; where it is the simulator's own
assumption, it says that too. These models aim at plausible signals for the detectors, not at fire
engineering accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

# --- fires ----------------------------------------------------------------------------------------


class Growth(StrEnum):
    """t-squared fire growth classes: Q = alpha t^2 reaches 1055 kW (1000 BTU/s) after the growth
    time t_g of 600, 300, 150 or 75 s (NFPA 72 Annex B / NFPA 92; SFPE Handbook)."""

    SLOW = "slow"
    MEDIUM = "medium"
    FAST = "fast"
    ULTRAFAST = "ultrafast"


ALPHA_KW_S2: dict[Growth, float] = {
    Growth.SLOW: 1055.0 / 600.0**2,  # 0.00293 kW/s^2
    Growth.MEDIUM: 1055.0 / 300.0**2,  # 0.0117
    Growth.FAST: 1055.0 / 150.0**2,  # 0.0469
    Growth.ULTRAFAST: 1055.0 / 75.0**2,  # 0.1876
}


def t_squared_hrr(t: float, alpha: float, peak_kw: float) -> float:
    """Heat release rate (kW) t seconds after established burning: alpha t^2, capped at the peak a
    room's fuel or ventilation allows."""
    return min(peak_kw, alpha * t * t) if t > 0 else 0.0


def ceiling_jet_rise(q_kw: float, height_m: float, r_m: float) -> float:
    """Steady ceiling-jet temperature rise (K) at radial distance r from the plume axis under an
    unconfined smooth ceiling of height H (Alpert 1972, SFPE Handbook):
    r/H <= 0.18: 16.9 Q^(2/3) / H^(5/3);  r/H > 0.18: 5.38 (Q/r)^(2/3) / H."""
    if q_kw <= 0:
        return 0.0
    if r_m / height_m <= 0.18:
        return float(16.9 * q_kw ** (2 / 3) / height_m ** (5 / 3))
    return float(5.38 * (q_kw / r_m) ** (2 / 3) / height_m)


def ceiling_jet_velocity(q_kw: float, height_m: float, r_m: float) -> float:
    """Ceiling-jet velocity (m/s) (Alpert 1972): r/H <= 0.15: 0.96 (Q/H)^(1/3);
    r/H > 0.15: 0.195 Q^(1/3) H^(1/2) / r^(5/6)."""
    if q_kw <= 0:
        return 0.0
    if r_m / height_m <= 0.15:
        return float(0.96 * (q_kw / height_m) ** (1 / 3))
    return float(0.195 * q_kw ** (1 / 3) * height_m**0.5 / r_m ** (5 / 6))


# Smoke at a detector follows the ceiling jet's temperature rise (the temperature-rise analogy of
# Heskestad & Delichatsios 1977, the basis of NFPA 72 Annex B's smoke detector spacing): obscuration
# is proportional to the rise, with a ratio that depends on the fuel. The default ratio is this
# simulator's assumption: a photoelectric head's 0.15 dB/m (GB 4715 B-type) at a 3 K rise.
SMOKE_DB_M_PER_K = 0.05
SMOKE_SATURATION_DB_M = 1.9  # a chamber's reading tops out just below its 2.0 dB/m range


@dataclass(frozen=True)
class Reach:
    """How an incident reaches one device: after `delay` seconds, attenuated by `factor` (0-1), at
    `distance` metres from the origin (the same room: `same_room`)."""

    delay: float
    factor: float
    distance: float
    same_room: bool


def spread(
    distance_m: float, same_room: bool, *, speed_m_s: float, door_delay_s: float, decay_m: float
) -> Reach:
    """Smoke and hot gas leave the room of origin through its door and travel along the corridor:
    a device in another room or the corridor sees them after the door delay plus the travel time,
    weakened with distance (mixing with cool air). The speeds and lengths are scenario parameters;
    the defaults are this simulator's assumptions (corridor smoke fronts move at roughly 0.5-1 m/s
    in building fire tests; a closed door holds smoke back for tens of seconds)."""
    if same_room:
        return Reach(0.0, 1.0, distance_m, True)
    delay = door_delay_s + distance_m / speed_m_s
    return Reach(delay, math.exp(-distance_m / decay_m), distance_m, False)


@dataclass(frozen=True)
class FlamingFire:
    """A flaming fire growing as alpha t^2 (kW) under a ceiling of `height_m`.

    In the room of origin each device sees Alpert's ceiling jet at its distance from the plume,
    reached after the jet's travel time; elsewhere in the zone the smoke and heat arrive through the
    door and along the corridor (`spread`). A heat detector's element lags the gas by its response
    time, which devices.py applies.
    """

    start: float
    reach: dict[str, Reach]
    growth: Growth = Growth.MEDIUM
    peak_kw: float = 1500.0
    height_m: float = 2.8
    smoke_per_k: float = SMOKE_DB_M_PER_K
    incubation_s: float = 0.0  # time from ignition to established t-squared burning

    def gas_rise(self, device_id: str, t: float) -> float:
        """Ceiling gas temperature rise (K) at the device at time t."""
        reach = self.reach.get(device_id)
        if reach is None:
            return 0.0
        age = t - self.start - self.incubation_s - reach.delay
        if age <= 0:
            return 0.0
        alpha = ALPHA_KW_S2[self.growth]
        r = max(reach.distance, 0.5)
        q = t_squared_hrr(age, alpha, self.peak_kw)
        if reach.same_room:
            # The jet needs r / U to reach the device: evaluate the fire as it was that long ago.
            u = ceiling_jet_velocity(q, self.height_m, r)
            travel = r / u if u > 0 else math.inf
            q = t_squared_hrr(age - travel, alpha, self.peak_kw)
            return min(800.0, ceiling_jet_rise(q, self.height_m, r))
        # Outside the room: the room's hot layer (its jet near the plume) diluted along the way.
        return min(800.0, ceiling_jet_rise(q, self.height_m, 1.0) * reach.factor)

    def smoke(self, device_id: str, t: float) -> float:
        return min(SMOKE_SATURATION_DB_M, self.smoke_per_k * self.gas_rise(device_id, t))

    def ceiling_temperature_at_origin(self, t: float, ambient: float = 20.0) -> float:
        origin = min(self.reach.values(), key=lambda r: r.distance, default=None)
        if origin is None:
            return ambient
        alpha = ALPHA_KW_S2[self.growth]
        q = t_squared_hrr(t - self.start - self.incubation_s, alpha, self.peak_kw)
        return ambient + ceiling_jet_rise(q, self.height_m, max(origin.distance, 0.5))


@dataclass(frozen=True)
class SmoulderingFire:
    """A smouldering fire: smoke rises slowly, with little heat (the standard smouldering test fires
    of EN 54-7 / GB 4715, wood pyrolysis and cotton, take minutes to reach high obscuration while the
    temperature barely moves). Obscuration in the room grows as (t / t_end)^2 towards `smoke_end`
    over `t_end_s`; the warm smoke drifts slowly (it is not buoyant enough for a ceiling jet)."""

    start: float
    reach: dict[str, Reach]
    t_end_s: float = 900.0
    smoke_end: float = 1.2  # dB/m in the room after t_end_s (simulator assumption)
    heat_end: float = 2.0  # K in the room after t_end_s (simulator assumption)

    def _progress(self, device_id: str, t: float) -> float:
        reach = self.reach.get(device_id)
        if reach is None:
            return 0.0
        age = t - self.start - reach.delay
        if age <= 0:
            return 0.0
        return min(1.5, (age / self.t_end_s) ** 2) * reach.factor

    def smoke(self, device_id: str, t: float) -> float:
        return min(SMOKE_SATURATION_DB_M, self.smoke_end * self._progress(device_id, t))

    def gas_rise(self, device_id: str, t: float) -> float:
        return self.heat_end * self._progress(device_id, t)


# --- water supply ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class JockeyCycle:
    """The quiet pressure of a wet fire main: a small natural leakage lets it fall from the jockey
    pump's stop pressure to its start pressure, then the pump restores it within a tenth of the
    period; a saw-tooth of +-`ripple` around the set point (common practice for pressure
    maintenance pumps; the numbers are this simulator's assumptions)."""

    setpoint: float
    ripple: float = 0.02
    period_s: float = 900.0
    phase_s: float = 0.0

    @property
    def decay_rate(self) -> float:
        """MPa/s lost to the natural leakage while the pump rests (0.9 of the period)."""
        return 2 * self.ripple / (0.9 * self.period_s)

    def pressure(self, t: float) -> float:
        x = ((t + self.phase_s) % self.period_s) / self.period_s
        hi, lo = self.setpoint + self.ripple, self.setpoint - self.ripple
        if x < 0.9:
            return hi - (hi - lo) * x / 0.9
        return lo + (hi - lo) * (x - 0.9) / 0.1


@dataclass(frozen=True)
class SprinklerOpening:
    """A sprinkler head opening on a wet system: the water flowing out drops the main's pressure by
    `drop_mpa` within seconds (more near the opening, in the same building); after `pump_start_s`
    the pressure switch has started the fire pump, which lifts the main to `pump_mpa` while the head
    flows. The drop and start time are scenario parameters (simulator assumptions)."""

    start: float
    factors: dict[str, float]  # device -> share of the drop it sees (1 near the opening)
    drop_mpa: float = 0.2
    tau_s: float = 3.0
    pump_start_s: float = 45.0
    pump_mpa: float = 0.55
    pump_devices: frozenset[str] = frozenset()  # pump outlet transmitters: they read the pump

    def pressure(self, device_id: str, quiet: float, t: float) -> float:
        if device_id not in self.factors or t < self.start:
            return quiet
        age = t - self.start
        dropped = quiet - self.drop_mpa * self.factors[device_id] * (1 - math.exp(-age / self.tau_s))
        if age < self.pump_start_s:
            return dropped
        target = self.pump_mpa if device_id in self.pump_devices else self.pump_mpa - 0.1
        rise = 1 - math.exp(-(age - self.pump_start_s) / 5.0)
        return dropped + (target - dropped) * rise


@dataclass(frozen=True)
class SlowLeak:
    """A leak larger than the jockey pump can make up: the main sags by `rate_mpa_per_h` beneath
    its saw-tooth, until it is repaired (`duration_s`) or the pump's low-pressure start cuts in."""

    start: float
    devices: frozenset[str]
    rate_mpa_per_h: float = 0.6
    floor_mpa: float = 0.0

    def pressure(self, device_id: str, quiet: float, t: float) -> float:
        if device_id not in self.devices or t < self.start:
            return quiet
        return max(self.floor_mpa, quiet - self.rate_mpa_per_h * (t - self.start) / 3600.0)


@dataclass(frozen=True)
class PumpFailure:
    """The jockey pump stops (motor tripped, controller fault): nothing makes up the natural leakage
    any more, so the main falls steadily from where it was at `start`, at the leakage rate of its
    quiet cycle (`JockeyCycle.decay_rate`) unless the system is known to leak faster
    (`leakage_mpa_per_h`), towards empty."""

    start: float
    devices: frozenset[str]
    leakage_mpa_per_h: float | None = None

    def pressure(self, device_id: str, quiet: float, t: float, cycle: JockeyCycle | None) -> float:
        if device_id not in self.devices or t < self.start or cycle is None:
            return quiet
        rate = cycle.decay_rate if self.leakage_mpa_per_h is None else self.leakage_mpa_per_h / 3600.0
        return max(0.0, cycle.pressure(self.start) - rate * (t - self.start))


# --- gas ------------------------------------------------------------------------------------------


class Gas(StrEnum):
    NATURAL_GAS = "natural_gas"  # methane: LEL 5 %vol, lighter than air
    LPG = "lpg"  # propane: LEL 2.1 %vol, heavier than air

    @property
    def lel_vol_percent(self) -> float:
        return 5.0 if self is Gas.NATURAL_GAS else 2.1


@dataclass(frozen=True)
class GasLeak:
    """Gas leaking into a room, well mixed by its ventilation (a single-zone model):
    C(t) = (leak / Q) (1 - exp(-t Q / V)), with Q = air changes per hour x V. A detector near the
    leak sees it first and somewhat richer (`near_factor`, gas layering near the ceiling or floor);
    values in %LEL of the gas (methane 5 %vol, propane 2.1 %vol)."""

    start: float
    reach: dict[str, Reach]
    leak_m3_per_h: float = 3.0
    room_volume_m3: float = 80.0
    air_changes_per_h: float = 1.0
    gas: Gas = Gas.NATURAL_GAS
    near_factor: float = 1.3
    stop_s: float | None = None  # the valve closed after this long: the room airs out

    def lel(self, device_id: str, t: float) -> float:
        reach = self.reach.get(device_id)
        if reach is None:
            return 0.0
        age = t - self.start - reach.delay
        if age <= 0:
            return 0.0
        q = self.air_changes_per_h * self.room_volume_m3  # m3/h
        tau = self.room_volume_m3 / q * 3600.0  # s
        c_eq = 100.0 * self.leak_m3_per_h / q  # %vol the room tends to
        if self.stop_s is None or age <= self.stop_s:
            c = c_eq * (1 - math.exp(-age / tau))
        else:
            c_stop = c_eq * (1 - math.exp(-self.stop_s / tau))
            c = c_stop * math.exp(-(age - self.stop_s) / tau)
        near = self.near_factor if reach.distance < 3.0 else 1.0
        return 100.0 * c / self.gas.lel_vol_percent * near * reach.factor


# --- electrical -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CableOverheat:
    """A circuit loaded beyond its rating: conductor temperature rise goes with the square of the
    current (Joule heating, I^2 R), approached with the cable's thermal time constant; hot
    insulation leaks more, so the residual current climbs with the temperature above 60 °C.
    `rated_rise_k` is the rise at rated current (PVC-insulated cable: 70 °C conductor at 30 °C
    ambient, i.e. 40 K, IEC 60364-5-52); the time constant and leakage slope are simulator
    assumptions."""

    start: float
    device_id: str
    channel: str  # which phase's temperature (temp_l1.. temp_n, or a socket's temp)
    load_factor: float = 1.5  # current / rated current
    rated_rise_k: float = 40.0
    tau_s: float = 600.0
    leakage_ma_per_k: float = 4.0

    def extra_rise(self, normal_load: float, t: float) -> float:
        """Kelvin above the cable's normal temperature at its normal load fraction."""
        if t < self.start:
            return 0.0
        full = self.rated_rise_k * (self.load_factor**2 - normal_load**2)
        return max(0.0, full) * (1 - math.exp(-(t - self.start) / self.tau_s))


# --- detector ageing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DirtyChamber:
    """Dust and fluff settling in a photoelectric chamber scatter light as smoke does: the clean-air
    reading creeps up, steadily, until the head false-alarms (why GB 25201 has detectors cleaned).
    `rate_db_m_per_day` is the creep (simulator assumption; real chambers take weeks to months)."""

    start: float
    device_id: str
    rate_db_m_per_day: float = 0.05
    initial_db_m: float = 0.0

    def offset(self, t: float) -> float:
        if t < self.start:
            return 0.0
        return self.initial_db_m + self.rate_db_m_per_day * (t - self.start) / 86_400.0


# --- replayed recordings --------------------------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    """Recorded values driving a device's channel: linear interpolation in the recording's own time
    axis, starting `start` seconds into the simulation at recording time `t0`. `relative` adds the
    change since t0 to the device's own quiet value (a recorded room at 20 °C drives a ward at 24 °C
    with the fire's rise), else the recorded value replaces it."""

    start: float
    device_id: str
    channel: str
    times: tuple[float, ...]
    values: tuple[float, ...]
    t0: float
    scale: float = 1.0
    offset: float = 0.0
    relative: bool = True
    _v0: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_v0", self._at(self.t0))

    def _at(self, rt: float) -> float:
        times, values = self.times, self.values
        if rt <= times[0]:
            return values[0]
        if rt >= times[-1]:
            return values[-1]
        lo, hi = 0, len(times) - 1
        while hi - lo > 1:  # bisect: recordings are a few thousand rows
            mid = (lo + hi) // 2
            if times[mid] <= rt:
                lo = mid
            else:
                hi = mid
        w = (rt - times[lo]) / (times[hi] - times[lo])
        return values[lo] + w * (values[hi] - values[lo])

    @property
    def length_s(self) -> float:
        return self.times[-1] - self.t0

    def value(self, quiet: float, t: float) -> float:
        if t < self.start:
            return quiet
        raw = self._at(self.t0 + (t - self.start))
        if self.relative:
            return quiet + (raw - self._v0) * self.scale
        return raw * self.scale + self.offset
