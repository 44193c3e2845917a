"""A simulated fire alarm installation behind a GB/T 26875.3 transmission device: the pure model.

    用户信息传输装置 (transmission device, one TCP connection to the centre)
      └─ 火灾报警控制器 (fire alarm panel: system type 1, system address n)
           └─ loops of points (component type + 4-byte address: low word loop, high word point)

Each point, panel and the device keep their whole status word, as the real kit does: a report
(type 2 for a point, type 1 for a panel, type 21 for the device) carries the word, never a change
(GB/T 26875.3-2011 §8.2.1.1, §8.2.1.2, §8.2.1.8). Built from a registry's `gb26875=` tags
(`installation_from_registry`: exactly what the centre binds) or from counts.

`Outbox` is the sender's side of an upload exchange (GB/T 26875.3 §6.5): an upload unanswered for
10 s, or denied, is sent again, at most 3 times; after that the exchange has failed. Everything here
is pure; simulators/gb26875_link.py puts it on a TCP connection.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import StrEnum

from core.registry import Registry
from device_profiles.schema import Profile
from ingest.gb26875.codes import COMPONENT_TYPES, Command
from ingest.gb26875.frame import GbTime
from ingest.gb26875.objects import ComponentState, DeviceState, Operation, SystemState
from ingest.gb26875.points import PointMap
from ingest.index import DeviceIndex

NORMAL = 1 << 0  # bit 0 正常运行 (clear means 测试, §8.2.1.1)
FIRE_ALARM_SYSTEM = 1  # 系统类型 火灾报警系统
RESET = 1 << 0  # operation flag 复位 (type 4)
DESCRIPTION_BYTES = 31  # 部件说明, GB 18030
ANSWER_TIMEOUT_S = 10.0  # §6.5: an answer is due within 10 s ...
RESENDS = 3  # ... and an unanswered or denied upload is sent again up to 3 times


class GbState(StrEnum):
    """What a scenario can make of a point (or panel, or the device): the status bit it sets."""

    FIRE = "fire"  # bit 1 火警
    FAULT = "fault"  # bit 2 故障
    DISABLED = "disabled"  # bit 3 屏蔽
    SUPERVISORY = "supervisory"  # bit 4 监管
    START = "start"  # bit 5 启动: a module's linkage output started
    FEEDBACK = "feedback"  # bit 6 反馈: the started equipment answered
    POWER_FAULT = "power_fault"  # bit 8 电源故障 (a panel's 主电故障)
    NORMAL = "normal"  # every condition cleared


STATE_BITS: dict[GbState, int] = {
    GbState.FIRE: 1 << 1,
    GbState.FAULT: 1 << 2,
    GbState.DISABLED: 1 << 3,
    GbState.SUPERVISORY: 1 << 4,
    GbState.START: 1 << 5,
    GbState.FEEDBACK: 1 << 6,
    GbState.POWER_FAULT: 1 << 8,
}
# The device's own word (type 21) has fewer bits: 火警 1, 故障 2, 主电故障 3.
DEVICE_STATE_BITS: dict[GbState, int] = {
    GbState.FIRE: 1 << 1,
    GbState.FAULT: 1 << 2,
    GbState.POWER_FAULT: 1 << 3,
}
# Linkage start and feedback are a module's (输入/输出模块, component types 84–88): a detector has none.
MODULE_TYPES = frozenset({84, 85, 86, 87, 88})
LINKAGE = frozenset({GbState.START, GbState.FEEDBACK})
# What a panel's reset (复位) clears: fires and the linkage they started; faults and 屏蔽 remain
# until they are repaired or re-enabled (GB 4717 resets the alarm state, not the faults).
RESET_CLEARS = STATE_BITS[GbState.FIRE] | STATE_BITS[GbState.START] | STATE_BITS[GbState.FEEDBACK]


class PanelError(ValueError):
    """A point, panel or device the installation does not have, or a state it cannot take."""


def point_address(loop: int, point: int) -> int:
    """The 4-byte 部件地址 of point `point` on loop `loop` (low word loop, high word point, the
    split the vendor example uses: docs/gb26875.md)."""
    if not (0 <= loop <= 0xFFFF and 0 <= point <= 0xFFFF):
        raise PanelError(f"loop {loop} and point {point} must each fit 16 bits")
    return loop | point << 16


def with_state(
    word: int, state: GbState, *, clear: bool = False, bits: dict[GbState, int] = STATE_BITS
) -> int:
    """`word` with `state`'s bit set (or cleared); NORMAL clears every condition and keeps bit 0."""
    if state is GbState.NORMAL:
        return NORMAL
    bit = bits.get(state)
    if bit is None:
        raise PanelError(f"a status word of this kind has no {state.value} bit")
    return word & ~bit if clear else word | bit


@dataclass
class Point:
    comp_type: int
    comp_addr: int
    description: str = ""
    device_id: str | None = None
    status: int = NORMAL

    @property
    def loop(self) -> int:
        return self.comp_addr & 0xFFFF

    @property
    def number(self) -> int:
        return self.comp_addr >> 16


@dataclass
class Panel:
    sys_addr: int
    sys_type: int = FIRE_ALARM_SYSTEM
    device_id: str | None = None
    status: int = NORMAL
    points: dict[tuple[int, int], Point] = field(default_factory=dict)  # by (comp type, address)


@dataclass
class Installation:
    """One transmission device (its 48-bit address) and the panels behind it."""

    address: int
    device_id: str | None = None
    status: int = NORMAL  # type 21
    panels: dict[tuple[int, int], Panel] = field(default_factory=dict)  # by (sys type, sys address)

    # --- lookup -------------------------------------------------------------------------------------
    def find(self, device_id: str) -> Point | Panel | Installation:
        if device_id == self.device_id:
            return self
        for panel in self.panels.values():
            if panel.device_id == device_id:
                return panel
            for point in panel.points.values():
                if point.device_id == device_id:
                    return point
        raise PanelError(f"transmission device {self.address} has no point or panel {device_id!r}")

    def panel_of(self, point: Point) -> Panel:
        for panel in self.panels.values():
            if any(p is point for p in panel.points.values()):
                return panel
        raise PanelError(f"point {point.comp_addr:#x} is on no panel of device {self.address}")

    def points(self) -> Iterable[tuple[Panel, Point]]:
        for panel in self.panels.values():
            for point in panel.points.values():
                yield panel, point

    # --- what happens, and the report it makes ----------------------------------------------------
    def set_state(
        self, device_id: str, state: GbState, tag: GbTime, *, clear: bool = False
    ) -> tuple[int, ComponentState | SystemState | DeviceState]:
        """Set (or clear) `state` on a point, panel or the device; (type id, the object to upload:
        the whole new status word)."""
        target = self.find(device_id)
        if isinstance(target, Point):
            if state in LINKAGE and target.comp_type not in MODULE_TYPES:
                kind = COMPONENT_TYPES.get(target.comp_type, str(target.comp_type))
                raise PanelError(
                    f"{device_id} is a {kind} (component type {target.comp_type}): linkage "
                    f"{state.value} is a module's (component types 84–88)"
                )
            target.status = with_state(target.status, state, clear=clear)
            return 2, self.point_state(self.panel_of(target), target, tag)
        if isinstance(target, Panel):
            if state in LINKAGE:
                raise PanelError(f"{device_id} is a panel: linkage {state.value} is a module's")
            target.status = with_state(target.status, state, clear=clear)
            return 1, SystemState(target.sys_type, target.sys_addr, target.status, tag)
        target.status = with_state(target.status, state, clear=clear, bits=DEVICE_STATE_BITS)
        return 21, DeviceState(target.status, tag)

    def reset(self, panel_id: str, tag: GbTime, operator: int = 0) -> Operation:
        """复位 at a panel: its points' and its own fires (and the linkage they started) clear;
        the report is the operation record (type 4, flag bit 0)."""
        panel = self.find(panel_id)
        if not isinstance(panel, Panel):
            raise PanelError(f"{panel_id} is not a panel: only a panel is reset")
        if not 0 <= operator <= 0xFF:
            raise PanelError(f"operator {operator} does not fit a byte")
        panel.status &= ~RESET_CLEARS
        for point in panel.points.values():
            point.status &= ~RESET_CLEARS
        return Operation(panel.sys_type, panel.sys_addr, RESET, operator, tag)

    @staticmethod
    def point_state(panel: Panel, point: Point, tag: GbTime) -> ComponentState:
        return ComponentState(
            panel.sys_type,
            panel.sys_addr,
            point.comp_type,
            point.comp_addr,
            point.status,
            point.description,
            tag,
        )


# --- building one -----------------------------------------------------------------------------------


def fit_description(text: str) -> str:
    """`text` cut to the 31 bytes of GB 18030 a 部件说明 holds, at a character boundary."""
    while len(text.encode("gb18030")) > DESCRIPTION_BYTES:
        text = text[:-1]
    return text


def installation_from_counts(
    address: int, *, panels: int = 1, loops: int = 2, points_per_loop: int = 32, comp_type: int = 42
) -> Installation:
    """Panels 1..n (system type 1), each with `loops` loops of `points_per_loop` points of one type
    (default 42, 点型光电感烟火灾探测器), unregistered (no device ids)."""
    if not 1 <= panels <= 255:
        raise PanelError(f"{panels} panels: a system address is one byte (1–255)")
    if not 0 <= comp_type <= 255:
        raise PanelError(f"component type {comp_type} does not fit a byte")
    inst = Installation(address)
    for n in range(1, panels + 1):
        panel = Panel(n)
        for loop in range(1, loops + 1):
            for number in range(1, points_per_loop + 1):
                addr = point_address(loop, number)
                panel.points[(comp_type, addr)] = Point(comp_type, addr, f"{n}号主机{loop}回路{number}号")
        inst.panels[(FIRE_ALARM_SYSTEM, n)] = panel
    return inst


def installations_from_registry(registry: Registry, profiles: dict[str, Profile]) -> list[Installation]:
    """Every transmission device of the registry with the panels and points bound to it by their
    `gb26875=` tags, read by the listener's own binding code (ingest/gb26875/points.py), so the
    simulator plays exactly what the centre expects. Descriptions are the points' place names."""
    index = DeviceIndex.build(registry, profiles)
    bindings = PointMap.from_index(index)
    out: list[Installation] = []
    for station in sorted(bindings.stations.values(), key=lambda s: s.address):
        inst = Installation(station.address, station.device_id)
        for (sys_type, sys_addr), panel_id in station.systems.items():
            inst.panels[(sys_type, sys_addr)] = Panel(sys_addr, sys_type, panel_id)
        for (sys_type, sys_addr, comp_type, comp_addr), point_id in station.components.items():
            panel = inst.panels.setdefault((sys_type, sys_addr), Panel(sys_addr, sys_type))
            device = registry.devices[point_id]
            place = registry.places[device.place].name
            panel.points[(comp_type, comp_addr)] = Point(
                comp_type, comp_addr, fit_description(device.name or place), point_id
            )
        out.append(inst)
    return out


# --- time tags ---------------------------------------------------------------------------------------


def time_tag(ts: float, utc_offset_hours: float = 8.0) -> GbTime:
    """The 6-byte time tag of epoch `ts` in the device's local time (Beijing time by default, as the
    centre's `gb26875.utc_offset_hours`). Whole seconds, rounded up: a report is never stamped
    before the moment it reports."""
    zone = timezone(timedelta(hours=utc_offset_hours))
    return GbTime.from_datetime(datetime.fromtimestamp(math.ceil(ts), zone))


# --- the sender's side of an exchange (§6.5) ------------------------------------------------------


@dataclass
class Pending:
    """One upload in flight: the frame is rebuilt from `command` and `adu` when resent on a new
    connection (serials restart there); within a connection a resend keeps its serial."""

    command: Command
    adu: bytes
    serial: int
    first_sent: float
    sent_at: float
    attempts: int = 1
    denials: int = 0


@dataclass(frozen=True, slots=True)
class Settled:
    """How an upload ended: confirmed, or given up after its resends."""

    confirmed: bool
    attempts: int
    denials: int
    latency_s: float  # first send to the confirm (or to giving up)


class Outbox:
    """Uploads awaiting the centre's answer, by serial."""

    def __init__(self, timeout_s: float = ANSWER_TIMEOUT_S, resends: int = RESENDS) -> None:
        self.timeout_s = timeout_s
        self.resends = resends
        self.pending: dict[int, Pending] = {}

    def sent(self, command: Command, adu: bytes, serial: int, now: float) -> Pending:
        item = Pending(command, adu, serial, now, now)
        self.pending[serial] = item
        return item

    def answered(self, serial: int, command: int, now: float) -> tuple[Pending, Settled | None] | None:
        """The centre answered `serial`: (the upload, how it settled) for a confirm; (the upload,
        None) for a deny with resends left (the caller sends it again now); None for a serial not
        in flight (a late answer to an upload already settled)."""
        item = self.pending.get(serial)
        if item is None:
            return None
        if command == Command.CONFIRM:
            del self.pending[serial]
            return item, Settled(True, item.attempts, item.denials, now - item.first_sent)
        item.denials += 1
        if item.attempts > self.resends:
            del self.pending[serial]
            return item, Settled(False, item.attempts, item.denials, now - item.first_sent)
        item.attempts += 1
        item.sent_at = now
        return item, None

    def due(self, now: float) -> tuple[list[Pending], list[tuple[Pending, Settled]]]:
        """(uploads to send again now, uploads given up) after `timeout_s` without an answer."""
        resend: list[Pending] = []
        failed: list[tuple[Pending, Settled]] = []
        for serial, item in list(self.pending.items()):
            if now - item.sent_at < self.timeout_s:
                continue
            if item.attempts > self.resends:
                del self.pending[serial]
                failed.append((item, Settled(False, item.attempts, item.denials, now - item.first_sent)))
            else:
                item.attempts += 1
                item.sent_at = now
                resend.append(item)
        return resend, failed

    def renumber(self, next_serial: Callable[[], int]) -> list[Pending]:
        """After a reconnect: the uploads in flight, in the order first sent, under the new
        connection's serials; the caller sends them again."""
        items = sorted(self.pending.values(), key=lambda p: p.first_sent)
        self.pending = {}
        for item in items:
            item.serial = next_serial()
            self.pending[item.serial] = item
        return items
