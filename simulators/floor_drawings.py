"""Floor plan drawings (平面图) of a generated hospital, drawn from its building model, and every device
placed on them.

Each floor becomes an SVG: its outline, each zone (防火分区/病区) as a frame with its name above it,
each room as a rectangle with its Chinese name. The drawing is the floor plan of `simulators.hospital`
at `SCALE` units a metre inside a `MARGIN`, north up, so a device's position in metres maps to a
fraction of the drawing exactly (`on_drawing`); a device without a position (the demo's panel
points) goes near its room's centre.
"""

from __future__ import annotations

from collections.abc import Iterator
from xml.sax.saxutils import escape

from core.registry import Registry
from core.registry_spec import Device, FloorSpec, SiteSpec
from simulators.hospital import FloorPlan, Rect

SCALE = 20.0  # SVG units a metre
MARGIN = 60.0  # around the floor: room for the zone names above it


def drawing_size(plan: FloorPlan) -> tuple[float, float]:
    return plan.width * SCALE + 2 * MARGIN, plan.depth * SCALE + 2 * MARGIN


def on_drawing(plan: FloorPlan, x: float, y: float) -> tuple[float, float]:
    """A point of the floor (metres, y from the south wall) as fractions of the drawing (y down)."""
    width, height = drawing_size(plan)
    fx = (MARGIN + x * SCALE) / width
    fy = (MARGIN + (plan.depth - y) * SCALE) / height
    return round(min(1.0, max(0.0, fx)), 4), round(min(1.0, max(0.0, fy)), 4)


def _box(plan: FloorPlan, r: Rect) -> tuple[float, float, float, float]:
    """A rectangle of the floor as SVG x, y, width, height."""
    return (
        MARGIN + r.x0 * SCALE,
        MARGIN + (plan.depth - r.y1) * SCALE,
        (r.x1 - r.x0) * SCALE,
        (r.y1 - r.y0) * SCALE,
    )


def _text(x: float, y: float, text: str, size: float, **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size:.1f}" text-anchor="middle" '
        f'dominant-baseline="middle"{extra}>{escape(text)}</text>'
    )


def floor_svg(plan: FloorPlan, floor: FloorSpec, title: str) -> bytes:
    """The floor's drawing: outline, zones framed and named, rooms with their names."""
    width, height = drawing_size(plan)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" '
        'font-family="Noto Sans CJK SC, WenQuanYi Micro Hei, sans-serif">',
        f'<rect x="0" y="0" width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>',
        _text(width / 2, MARGIN / 3, title, 20, fill="#333333"),
    ]
    for zone in floor.zones:
        zone_path = f"{plan.path}/{zone.id}"
        rects = [
            plan.rooms[f"{zone_path}/{room.id}"]
            for room in zone.rooms
            if f"{zone_path}/{room.id}" in plan.rooms
        ]
        for room in zone.rooms:
            rect = plan.rooms.get(f"{zone_path}/{room.id}")
            if rect is None:
                continue
            x, y, w, h = _box(plan, rect)
            corridor = "corridor" in room.tags or room.id == "corr"
            fill = "#eef1f4" if corridor else "#fbfbf7"
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{fill}" '
                'stroke="#555555" stroke-width="1.5"/>'
            )
            size = min(13.0, max(6.0, w / max(len(room.name), 1) * 0.95))
            # Near the room's top: its devices sit at its centre.
            parts.append(_text(x + w / 2, y + min(h / 2, size * 1.4), room.name, size, fill="#444444"))
        if rects:
            x0 = min(r.x0 for r in rects)
            x1 = max(r.x1 for r in rects)
            zx, zy, zw, zh = _box(plan, Rect(x0, 0.0, x1, plan.depth))
            parts.append(
                f'<rect x="{zx:.1f}" y="{zy:.1f}" width="{zw:.1f}" height="{zh:.1f}" fill="none" '
                'stroke="#222222" stroke-width="4"/>'
            )
            parts.append(_text(zx + zw / 2, MARGIN * 0.72, zone.name, 15, fill="#222222"))
    parts.append("</svg>")
    return "".join(parts).encode("utf-8")


def _floors(sites: list[SiteSpec]) -> Iterator[tuple[str, str, FloorSpec]]:
    for site in sites:
        for building in site.buildings:
            for floor in building.floors:
                yield f"{site.id}/{building.id}/{floor.id}", f"{building.name} {floor.name}", floor


def drawings(sites: list[SiteSpec], plans: dict[str, FloorPlan]) -> dict[str, bytes]:
    """An SVG per floor that has a plan, by floor path."""
    return {
        path: floor_svg(plans[path], floor, title) for path, title, floor in _floors(sites) if path in plans
    }


def placed(registry: Registry, plans: dict[str, FloorPlan]) -> Registry:
    """The registry with every device on a floor with a plan placed on its drawing: where its
    position (metres) says, else near its room's centre (a few apart in one room); a device placed
    already stays where it is."""
    in_room: dict[str, int] = {}
    devices: list[Device] = []
    for device in registry.specs.values():
        floor = "/".join(device.place.split("/")[:3])
        plan = plans.get(floor)
        if device.plan is not None or plan is None:
            devices.append(device)
            continue
        if device.position is not None:
            xy = on_drawing(plan, *device.position)
        else:
            rect = plan.rooms.get(device.place, plan.outline)
            n = in_room[device.place] = in_room.get(device.place, 0) + 1
            cx, cy = rect.centre
            xy = on_drawing(plan, min(rect.x1, cx + 0.8 * (n - 1) - 0.8), cy)
        devices.append(device.model_copy(update={"plan": xy}))
    return registry.with_devices(devices)
