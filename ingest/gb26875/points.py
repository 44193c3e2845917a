"""Which registry device a GB/T 26875.3 object is about, and the device events its state bits mean.

A transmission device (用户信息传输装置) is a registry device tagged `gb26875=<address>` (the 48-bit
source address of its frames). A fire alarm panel (or any facility system) behind it is a device
with `gateway: <the transmission device's id>` and the tag `gb26875=<system type>/<system address>`;
a component (detector, call point, module …) the same with
`gb26875=<system type>/<system address>/<component type>/<component address>` (numbers in decimal,
or hexadecimal with 0x). So registry import, export and sync carry the bindings unchanged.

A state object carries the whole status word, not a change: `StateMemory` keeps each point's last
word and turns a new one into raise and clear events, bit by bit. A fire bit raises every time it is
reported (when in doubt, alarm: a repeat of an active fire only counts an occurrence). A component
the registry does not know is reported on its transmission device (its site, its place) with the
component named, and raises the device's `unregistered` hazard, which opens an onboarding ticket.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from core.domain import DeviceEventKind
from ingest.index import DeviceIndex

TAG = "gb26875="
_NUMBER = r"(0x[0-9a-fA-F]+|\d+)"
_UD_RE = re.compile(rf"^{_NUMBER}$")
_SYSTEM_RE = re.compile(rf"^{_NUMBER}/{_NUMBER}$")
_COMPONENT_RE = re.compile(rf"^{_NUMBER}/{_NUMBER}/{_NUMBER}/{_NUMBER}$")

# Status word bits (GB/T 26875.3-2011 §8.2.1.1 type 1 and 2, §8.2.1.8 type 21): which device event
# each group of bits stands for. A group is set when any of its bits is.
FIRE = "fire"
SYSTEM_BITS: dict[DeviceEventKind, int] = {
    DeviceEventKind.ALARM: 1 << 1,  # 火警
    DeviceEventKind.FAULT: (1 << 2) | (1 << 10),  # 故障, 总线故障
    DeviceEventKind.DISABLED: 1 << 3,  # 屏蔽
    DeviceEventKind.SUPERVISORY: 1 << 4,  # 监管
    DeviceEventKind.POWER_FAULT: (1 << 8) | (1 << 9),  # 主电故障, 备电故障
}
COMPONENT_BITS: dict[DeviceEventKind, int] = {
    DeviceEventKind.ALARM: 1 << 1,
    DeviceEventKind.FAULT: 1 << 2,
    DeviceEventKind.DISABLED: 1 << 3,
    DeviceEventKind.SUPERVISORY: 1 << 4,
    DeviceEventKind.POWER_FAULT: 1 << 8,  # 电源故障
}
DEVICE_BITS: dict[DeviceEventKind, int] = {
    DeviceEventKind.ALARM: 1 << 1,
    # 故障, 与监控中心通信信道故障, 监测连接线路故障: the device cannot pass on what its panel says.
    DeviceEventKind.FAULT: (1 << 2) | (1 << 5) | (1 << 6),
    DeviceEventKind.POWER_FAULT: (1 << 3) | (1 << 4),  # 主电故障, 备电故障
}
# Bits that are recorded in the point's event log as they change, raising nothing: linkage started
# (启动, bit 5), its feedback (反馈, bit 6), a delay running (延时, bit 7). Types 1 and 2 alike.
LOGGED_BITS: dict[DeviceEventKind, int] = {
    DeviceEventKind.LINKAGE_START: 1 << 5,
    DeviceEventKind.FEEDBACK: 1 << 6,
    DeviceEventKind.DELAY: 1 << 7,
}
SYSTEM_BITS.update(LOGGED_BITS)
COMPONENT_BITS.update(LOGGED_BITS)
SYSTEM_RESET_BIT = 1 << 13  # 复位 in a system state word
OPERATION_RESET_BIT = 1 << 0  # 复位 in an operation record (types 4 and 24)
_CLEAR_OF: dict[DeviceEventKind, DeviceEventKind] = {
    DeviceEventKind.ALARM: DeviceEventKind.ALARM_CLEAR,
    DeviceEventKind.FAULT: DeviceEventKind.FAULT_CLEAR,
    DeviceEventKind.DISABLED: DeviceEventKind.DISABLED_CLEAR,
    DeviceEventKind.SUPERVISORY: DeviceEventKind.SUPERVISORY_CLEAR,
    DeviceEventKind.POWER_FAULT: DeviceEventKind.POWER_FAULT_CLEAR,
    DeviceEventKind.LINKAGE_START: DeviceEventKind.LINKAGE_STOP,
    DeviceEventKind.FEEDBACK: DeviceEventKind.FEEDBACK_CLEAR,
    DeviceEventKind.DELAY: DeviceEventKind.DELAY_CLEAR,
}

# Analog values (type 3, GB/T 26875.3 §8.2.1.3) as telemetry channels of the point's profile, with the
# factor to the channel's unit: the same detectors then judge them as any MQTT reading. Pressure
# arrives as MPa (type 4) or kPa (type 5) and is kept in MPa, as the water-pressure profiles are.
ANALOG_CHANNELS: dict[int, tuple[str, float]] = {
    1: ("count", 1.0),  # 事件计数
    2: ("level", 1.0),  # 高度 (m): a tank's or pool's water level
    3: ("temp", 1.0),  # 温度 (°C)
    4: ("pressure", 1.0),  # 压力 (MPa)
    5: ("pressure", 0.001),  # 压力 (kPa) -> MPa
    6: ("gas", 1.0),  # 气体浓度 (%LEL)
    7: ("seconds", 1.0),  # 时间 (s)
    8: ("voltage", 1.0),  # 电压 (V)
    9: ("current", 1.0),  # 电流 (A)
    10: ("flow", 1.0),  # 流量 (L/s)
    11: ("air_volume", 1.0),  # 风量 (m³/min)
    12: ("air_speed", 1.0),  # 风速 (m/s)
}

SystemKey = tuple[int, int]  # system type, system address
ComponentKey = tuple[int, int, int, int]  # system type, system address, component type, address


def _int(text: str) -> int:
    return int(text, 16) if text.lower().startswith("0x") else int(text)


@dataclass(frozen=True, slots=True)
class Station:
    """One transmission device and what is registered behind it."""

    address: int
    device_id: str
    site: str
    systems: dict[SystemKey, str] = field(default_factory=dict)
    components: dict[ComponentKey, str] = field(default_factory=dict)

    def system_components(self, key: SystemKey) -> list[str]:
        """Every registered component of one system (a panel's reset covers them all)."""
        return [d for (st, sa, _, _), d in self.components.items() if (st, sa) == key]


@dataclass(frozen=True, slots=True)
class BindingIssue:
    device_id: str
    message: str


@dataclass(frozen=True, slots=True)
class PointMap:
    stations: dict[int, Station]
    issues: tuple[BindingIssue, ...] = ()

    @classmethod
    def from_index(cls, index: DeviceIndex) -> PointMap:
        """The bindings of every device tagged `gb26875=…`. A tag that does not parse, a component
        whose gateway is not a transmission device, or a point bound twice is an issue (logged by
        the listener), and the device is left out: its reports then arrive as unregistered."""
        stations: dict[int, Station] = {}
        by_id: dict[str, Station] = {}
        issues: list[BindingIssue] = []
        tagged: list[tuple[int, str]] = []
        for dev, device_id in enumerate(index.device_ids):
            if index.profiles[dev].codec.value != "gb26875":
                continue
            tags = [t[len(TAG) :] for t in index.devices[dev].tags if t.startswith(TAG)]
            if len(tags) != 1:
                issues.append(BindingIssue(device_id, f"needs exactly one {TAG}… tag, has {len(tags)}"))
                continue
            if _UD_RE.match(tags[0]):
                address = _int(tags[0])
                if not 0 <= address < 1 << 48:
                    issues.append(BindingIssue(device_id, f"address {address} is not 48-bit"))
                elif address in stations:
                    issues.append(
                        BindingIssue(device_id, f"address {address} is also {stations[address].device_id}")
                    )
                else:
                    station = Station(address, device_id, index.sites[dev])
                    stations[address] = by_id[device_id] = station
            else:
                tagged.append((dev, tags[0]))
        for dev, tag in tagged:
            device_id = index.device_ids[dev]
            found = by_id.get(index.gateways[dev])
            if found is None:
                issues.append(
                    BindingIssue(device_id, f"gateway {index.gateways[dev]!r} is not a transmission device")
                )
                continue
            station = found
            if (m := _COMPONENT_RE.match(tag)) is not None:
                key4 = (_int(m[1]), _int(m[2]), _int(m[3]), _int(m[4]))
                if not (key4[0] < 256 and key4[1] < 256 and key4[2] < 256 and key4[3] < 1 << 32):
                    issues.append(BindingIssue(device_id, f"{tag}: a field is out of range"))
                elif key4 in station.components:
                    issues.append(BindingIssue(device_id, f"{tag} is also {station.components[key4]}"))
                else:
                    station.components[key4] = device_id
            elif (m := _SYSTEM_RE.match(tag)) is not None:
                key2 = (_int(m[1]), _int(m[2]))
                if not (key2[0] < 256 and key2[1] < 256):
                    issues.append(BindingIssue(device_id, f"{tag}: a field is out of range"))
                elif key2 in station.systems:
                    issues.append(BindingIssue(device_id, f"{tag} is also {station.systems[key2]}"))
                else:
                    station.systems[key2] = device_id
            else:
                issues.append(BindingIssue(device_id, f"tag {TAG}{tag} is not a/b or a/b/c/d"))
        return cls(stations, tuple(issues))


@dataclass(frozen=True, slots=True)
class PointEvent:
    """One device event a GB object means, for the pipeline's `.../event` path."""

    device_id: str
    event: DeviceEventKind
    ts: float
    code: int | None = None  # the status word or operation flags it came from
    channel: str | None = None  # an unregistered component's name, on its transmission device
    # False: a state restated rather than changed (a clear on a point's first report, so an alarm
    # left open while the listener did not know the point ends): acted on, not kept in the log.
    logged: bool = True


@dataclass(frozen=True, slots=True)
class PointReading:
    """One analog value a GB object carries, for the pipeline's `.../telemetry` path."""

    device_id: str
    channel: str
    value: float
    ts: float


def analog_reading(device_id: str, analog_type: int, value: float, ts: float) -> PointReading:
    """The reading an analog value is; a type with no channel here (reserved, user-defined) gets
    `analog_<type>`, which no profile declares, so the pipeline rejects it and keeps it."""
    channel, factor = ANALOG_CHANNELS.get(analog_type, (f"analog_{analog_type}", 1.0))
    return PointReading(device_id, channel, round(value * factor, 6), ts)


def unregistered_name(key: ComponentKey | SystemKey) -> str:
    """How an unregistered point is named on its transmission device (fits an event's channel)."""
    if len(key) == 2:
        return f"gb:{key[0]}/{key[1]}"
    return f"gb:{key[0]}/{key[1]}/{key[2]}/{key[3]:#x}"


class StateMemory:
    """Each point's last status word, per transmission device, so a word becomes edges. Unknown
    (first report, or after a restart): every alarm group is decided by the word alone, set or
    clear; a logged group (`LOGGED_BITS`) is recorded only as it changes, so a first report of an
    idle point does not log a linkage stopping that never started."""

    def __init__(self) -> None:
        self._last: dict[tuple[int, str, str], int] = {}

    def edges(
        self,
        station: int,
        device_id: str,
        point: str,
        status: int,
        bits: dict[DeviceEventKind, int],
        ts: float,
        channel: str | None = None,
    ) -> list[PointEvent]:
        key = (station, device_id, point)
        before = self._last.get(key)
        self._last[key] = status
        out: list[PointEvent] = []
        for kind, mask in bits.items():
            now_set = bool(status & mask)
            was_set = None if before is None else bool(before & mask)
            logged = kind in LOGGED_BITS
            if now_set and (kind is DeviceEventKind.ALARM or not was_set):
                out.append(PointEvent(device_id, kind, ts, status, channel))
            elif not now_set and (was_set if logged else was_set is not False):
                out.append(
                    PointEvent(device_id, _CLEAR_OF[kind], ts, status, channel, logged=was_set is True)
                )
        return out

    def forget_fire(self, station: int, device_ids: Iterable[str]) -> None:
        """After a reset: the points' fire bits are cleared, so their next fire raises anew."""
        ids = set(device_ids)
        mask = ~(1 << 1)
        for key, word in self._last.items():
            if key[0] == station and key[1] in ids:
                self._last[key] = word & mask
