"""The demo hospital's fire alarm panel: a 火灾报警控制器 in the 消防控制室 with one loop of points in
the outpatient hall, reporting through a user information transmission device (用户信息传输装置)
over GB/T 26875.3 (docs/gb26875.md).

The generated hospital (simulators/hospital.py) holds the MQTT sensors; the panel and its points are
added for the demo here, bound by the registry tags the listener reads (ingest/gb26875/points.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.registry import Device, Registry

ADDRESS = 889  # the transmission device's address on the wire
SYSTEM = (1, 1)  # 火灾报警系统, panel 1


@dataclass(frozen=True)
class Point:
    device_id: str
    comp_type: int  # GB/T 26875.3 component type
    loop: int
    point: int

    @property
    def address(self) -> int:
        """The 4-byte component address: loop in the low word, point in the high word (the split the
        listener's docs show; vendors differ)."""
        return self.loop | self.point << 16


def panel_devices(control_room: str, rooms: list[str]) -> tuple[list[Device], list[Point]]:
    """The transmission device and panel in `control_room`, and loop 1's points: a smoke detector in
    each of `rooms`, a manual call point in the first and an output module in the last."""
    ud, panel = "fas-ud", "fas-1"
    devices = [
        Device(
            id=ud,
            profile="gb-transmission-device",
            place=control_room,
            name="用户信息传输装置",
            responsible="保卫科",
            tags=[f"gb26875={ADDRESS}"],
        ),
        Device(
            id=panel,
            profile="gb-fire-alarm-panel",
            place=control_room,
            name="1号火灾报警控制器",
            responsible="保卫科",
            gateway=ud,
            tags=[f"gb26875={SYSTEM[0]}/{SYSTEM[1]}"],
        ),
    ]
    points: list[Point] = []
    number = 0

    def add(profile: str, comp_type: int, room: str, label: str) -> None:
        nonlocal number
        number += 1
        p = Point(f"fas-1-l1-p{number}", comp_type, 1, number)
        points.append(p)
        devices.append(
            Device(
                id=p.device_id,
                profile=profile,
                place=room,
                name=f"1回路{number}号 {label}",
                responsible="保卫科",
                gateway=ud,
                tags=[f"gb26875={SYSTEM[0]}/{SYSTEM[1]}/{comp_type}/{p.address:#x}"],
            )
        )

    for room in rooms:
        add("gb-smoke-detector", 42, room, "点型光电感烟火灾探测器")  # 42: 点型光电感烟
    add("gb-manual-call-point", 23, rooms[0], "手动火灾报警按钮")  # 23: 手动火灾报警按钮
    add("gb-module", 86, rooms[-1], "输出模块（排烟风机）")  # 86: 输出模块
    return devices, points


def with_panel(registry: Registry, control_room_id: str = "fcc") -> tuple[Registry, list[Point]]:
    """The registry with the demo panel added: in its 消防控制室 (the room with id `fcc`), the points
    in three other rooms of that zone. Unchanged, with no points, when it has no such room."""
    control = next((path for path in registry.places if path.rsplit("/", 1)[-1] == control_room_id), None)
    if control is None:
        return registry, []
    zone = control.rsplit("/", 1)[0]
    rooms = sorted(path for path in registry.places if path.startswith(zone + "/") and path != control)[:3]
    devices, points = panel_devices(control, rooms or [control])
    return registry.with_devices([*registry.specs.values(), *devices]), points
