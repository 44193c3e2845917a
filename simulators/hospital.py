"""A generated hospital: its buildings, floors, departments and rooms, with the devices a fire-safety
design puts there, each at a position on its floor's plan. Any size, deterministic for a seed.

The site (ids in brackets):

- [b1] 门诊医技楼, the outpatient and medical-technology building. B1 [fb1]: plant rooms, 消防水泵房
  with the fire water pool, 高低压配电室, 锅炉房. 1F: outpatient hall with the 消防控制室, and the
  pharmacy (药房, 药库 and its hazardous-chemicals store). 2F: laboratory 检验科 with its reagent
  store. 3F: pathology 病理科 with its formalin/xylene store. 4F: imaging 影像科. 5F and up:
  outpatient clinics. `medtech_floors` says how many of these floors there are (from 1F up).
- [b2, b3, ...] 住院楼, `inpatient_buildings` of them: a ground floor (admission hall; the first one
  also holds the 营养食堂 kitchen, on gas) and `ward_floors` ward floors of `zones_per_floor`
  nursing units (病区), each `rooms_per_zone` wards with a nurse station.
- [eb] 电动车充电棚, the e-bike charging shed: one charging row per inpatient building.

Every floor is a double-loaded corridor: rooms BAY (3.6 m) wide and ROOM_DEPTH (6 m) deep on both
sides of a CORRIDOR_WIDTH (2.4 m) corridor, zones side by side along it, a stairwell at the west end
of each zone and at the east end of the floor. x runs along the corridor from the floor's west end,
y across it from its south wall; the corridor is the room ``corr`` of each zone. Positions are in
metres on that plan, so distances between devices on one floor are real distances.

Placement rules and their basis. "GB 50116" is GB 50116-2013 (火灾自动报警系统设计规范); clauses
marked U were recalled, not re-read for this file (STANDARDS.md's tag for unverified):

- A point smoke detector in every room, at its centre (common practice: every room is its own
  detection area). A bigger room gets as many as the coverage of GB 50116 Table 6.2.2 needs (U):
  a smoke detector protects up to 80 m² (60 m² in rooms over 80 m²) within a radius of 6.7 m
  (5.8 m); they are spread along the room's long axis.
- Corridors under 3 m wide: smoke detectors on the centre line at most 15 m apart and at most half
  that from the end walls (GB 50116 §6.2.4, U; the clause also gives 10 m for heat detectors).
- Heat detectors instead of smoke where smoke or steam is normal or a smoke detector does not suit
  (GB 50116 §5.2.3, U: kitchens, boiler rooms): the kitchen and the boiler room; and in the pump
  room and the switchgear room (common practice for plant rooms; the switchgear room keeps a smoke
  detector too, for a smouldering cable). Coverage per Table 6.2.2 (U): 30 m² (20 m² in rooms over
  30 m²) within 4.4 m (3.6 m).
- Combustible-gas detectors by every gas appliance and the gas meter: kitchen stoves, the gas meter
  room, the boiler, the laboratory's gas outlets (common practice; GB/T 50493-2019 sets the alarm
  levels, see the profile). Natural gas is lighter than air: they sit high, near the source.
- Water pressure transmitters at each building's least favourable point: the far end of the top
  floor's corridor (GB 50974-2014 §5.2.2, S, sets the pressure there), and on the sprinkler and
  hydrant pump outlets in the pump room. A level transmitter on the fire water pool in the pump room.
- An electrical-fire monitor on each floor's distribution board (强电间, in the first zone) and on
  the low-voltage incomers in the switchgear room; never on fire-service power circuits
  (GB 50116 §9.2.2, V). The e-bike shed's board has one too.
- An oxygen pipeline pressure transmitter at each nursing unit's zone valve box, by its nurse station
  (common practice: every nursing unit has a zone valve and alarm).
- A fire door monitor on the door of every stairwell on every floor (common practice; the doors are
  normally closed), battery powered and wireless.
- The top of every stair shaft has a smoke detector (common practice: a shaft is detected at its
  top).
- The e-bike shed: per charging row a smoke and a heat detector over the bays and a monitor in every
  charging socket, all wireless (the shed has no fire alarm loop); one electrical-fire monitor on
  its distribution board. E-bikes are not charged indoors (common practice in Chinese hospitals,
  after a run of battery fires).

Wireless devices (battery, straight to the broker, NB-IoT style) carry the tag ``wireless``; all
others are wired behind their floor's gateway.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from core.registry import BuildingSpec, Device, FloorSpec, RoomSpec, SiteSpec, ZoneSpec, dump_registry

SMOKE, HEAT, PRESSURE, ELECTRICAL, GAS, OXYGEN, DOOR, SOCKET, TANK = (
    "smoke-photoelectric",
    "heat-a1r",
    "water-pressure",
    "electrical-fire",
    "combustible-gas",
    "oxygen-pressure",
    "fire-door",
    "charging-socket",
    "water-tank",
)
PROFILES: tuple[str, ...] = (SMOKE, HEAT, PRESSURE, ELECTRICAL, GAS, OXYGEN, DOOR, SOCKET, TANK)
TAGS = {
    SMOKE: "smk",
    HEAT: "heat",
    PRESSURE: "prs",
    ELECTRICAL: "elec",
    GAS: "gas",
    OXYGEN: "o2",
    DOOR: "door",
    SOCKET: "sock",
    TANK: "tank",
}
WIRELESS = "wireless"

# Floor plan (metres): a double-loaded corridor.
BAY = 3.6  # room width along the corridor (a common ward module)
ROOM_DEPTH = 6.0
CORRIDOR_WIDTH = 2.4
FLOOR_DEPTH = 2 * ROOM_DEPTH + CORRIDOR_WIDTH

# GB 50116-2013 Table 6.2.2 (U), flat ceilings up to 6 m: (area m², radius m) per detector, for a
# room up to the first area and for a bigger one.
SMOKE_COVER = ((80.0, 80.0, 6.7), (60.0, 5.8))
HEAT_COVER = ((30.0, 30.0, 4.4), (20.0, 3.6))
CORRIDOR_SMOKE_SPACING = 15.0  # GB 50116-2013 §6.2.4 (U): corridors under 3 m wide
SOCKETS_PER_ROW = 8
# Rooms that get heat detectors (or nothing from the common rules) instead of smoke detectors.
_NO_SMOKE = ("kitchen", "boiler", "pump_room", "ebike")

# Room tags: what a place is. Several can apply (a reagent store is `laboratory` and `hazmat`).
ROOM_TAGS = (
    "ward",
    "nurse_station",
    "clinic",
    "hall",
    "corridor",
    "stair",
    "electrical",
    "pharmacy",
    "laboratory",
    "pathology",
    "imaging",
    "hazmat",
    "kitchen",
    "gas",
    "dining",
    "plant",
    "pump_room",
    "switchgear",
    "boiler",
    "control_room",
    "ebike",
)

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚"
WARD_DEPARTMENTS = (
    "心内科",
    "呼吸内科",
    "骨科",
    "普外科",
    "神经内科",
    "儿科",
    "妇产科",
    "肿瘤科",
    "消化内科",
    "内分泌科",
    "肾内科",
    "泌尿外科",
    "神经外科",
    "心胸外科",
    "血液科",
    "老年病科",
    "康复科",
    "眼科",
    "耳鼻喉科",
    "感染科",
)
CLINIC_DEPARTMENTS = ("内科门诊", "外科门诊", "妇科门诊", "儿科门诊", "中医科门诊", "口腔科", "皮肤科")
CN_NUMBERS = "一二三四五六七八九十"
ZONE_SIDES = {1: ("",), 2: ("东区", "西区"), 3: ("东区", "中区", "西区")}

MAX_WARD_FLOORS = 60
MAX_ZONES_PER_FLOOR = 20
MAX_ROOMS_PER_ZONE = 60
MAX_MEDTECH_FLOORS = 30
MAX_INPATIENT_BUILDINGS = 500
MAX_DEVICES = 1_000_000


class HospitalSizeError(ValueError):
    """A size parameter out of range; the message says which and what is allowed."""


@dataclass(frozen=True, slots=True)
class Rect:
    """An axis-aligned rectangle on a floor plan, metres."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def centre(self) -> tuple[float, float]:
        return ((self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2)

    def contains(self, x: float, y: float, tol: float = 1e-6) -> bool:
        return self.x0 - tol <= x <= self.x1 + tol and self.y0 - tol <= y <= self.y1 + tol


@dataclass(frozen=True, slots=True)
class FloorPlan:
    """A floor's outline and where its rooms are (room path -> rectangle)."""

    path: str
    width: float
    depth: float
    rooms: dict[str, Rect]

    @property
    def outline(self) -> Rect:
        return Rect(0.0, 0.0, self.width, self.depth)


@dataclass(frozen=True, slots=True)
class HospitalSize:
    """The size parameters of `build_hospital`."""

    inpatient_buildings: int = 1
    ward_floors: int = 5
    zones_per_floor: int = 2
    rooms_per_zone: int = 7
    medtech_floors: int = 4

    def validate(self) -> None:
        limits = {
            "inpatient_buildings": (0, MAX_INPATIENT_BUILDINGS),
            "ward_floors": (1, MAX_WARD_FLOORS),
            "zones_per_floor": (1, MAX_ZONES_PER_FLOOR),
            "rooms_per_zone": (1, MAX_ROOMS_PER_ZONE),
            "medtech_floors": (1, MAX_MEDTECH_FLOORS),
        }
        for name, (lo, hi) in limits.items():
            value = getattr(self, name)
            if not lo <= value <= hi:
                raise HospitalSizeError(f"{name} must be between {lo} and {hi}, got {value}")

    def generate(
        self,
        *,
        site_id: str = "sxzyy",
        site_name: str = "绍兴市中医院",
        seed: int = 0,
        progress: Callable[[int, int], None] | None = None,
        dry: bool = False,
    ) -> Hospital:
        """`generate_hospital` with this size."""
        return generate_hospital(
            site_id=site_id,
            site_name=site_name,
            inpatient_buildings=self.inpatient_buildings,
            ward_floors=self.ward_floors,
            zones_per_floor=self.zones_per_floor,
            rooms_per_zone=self.rooms_per_zone,
            medtech_floors=self.medtech_floors,
            seed=seed,
            progress=progress,
            dry=dry,
        )


@dataclass
class Hospital:
    """A generated hospital: the place tree, the devices, and each floor's plan (floor path -> plan)."""

    sites: list[SiteSpec]
    devices: list[Device]
    plans: dict[str, FloorPlan]
    size: HospitalSize
    count: int  # devices, also when generated `dry`


# --- building blocks -------------------------------------------------------------------------------


@dataclass
class _Room:
    """A room before layout: `bays` wide; `side` S or N pins it to one side of the corridor, E to
    the east end of the zone (south side)."""

    id: str
    name: str
    tags: tuple[str, ...] = ()
    department: str = ""
    bays: int = 1
    side: str = ""
    rect: Rect = Rect(0.0, 0.0, 0.0, 0.0)  # set by the layout
    path: str = ""

    def spec(self) -> RoomSpec:
        return RoomSpec(id=self.id, name=self.name, department=self.department, tags=list(self.tags))


@dataclass
class _Zone:
    id: str
    name: str
    department: str
    rooms: list[_Room]
    corridor: bool = True  # an open shed has none
    x0: float = 0.0
    length: float = 0.0
    path: str = ""

    def room(self, tag: str) -> _Room:
        return next(r for r in self.rooms if tag in r.tags)

    def rooms_tagged(self, tag: str) -> list[_Room]:
        return [r for r in self.rooms if tag in r.tags]


def _layout(zone: _Zone, x0: float) -> None:
    """Place the zone's rooms along its corridor from x0: a room pinned to a side goes there, the
    others go to whichever side is shorter so far (south first); the corridor runs the zone's length."""
    cursor = {"S": 0, "N": 0}
    for room in zone.rooms:
        if room.side == "E":  # the east end: south side, past everything else
            side, bx = "S", max(cursor.values())
        else:
            side = room.side or ("S" if cursor["S"] <= cursor["N"] else "N")
            bx = cursor[side]
        cursor[side] = bx + room.bays
        y0 = 0.0 if side == "S" else ROOM_DEPTH + CORRIDOR_WIDTH
        room.rect = Rect(x0 + bx * BAY, y0, x0 + (bx + room.bays) * BAY, y0 + ROOM_DEPTH)
    bays = max(cursor.values(), default=0)
    if zone.corridor:
        corr = _Room(
            "corr",
            f"{zone.name}走廊",
            ("corridor",),
            rect=Rect(x0, ROOM_DEPTH, x0 + bays * BAY, ROOM_DEPTH + CORRIDOR_WIDTH),
        )
        zone.rooms.append(corr)
    zone.x0, zone.length = x0, bays * BAY


def _stair(n: int, side: str = "S") -> _Room:
    return _Room(f"st{n}", f"{n}号楼梯间", ("stair",), side=side)


Cover = tuple[tuple[float, float, float], tuple[float, float]]


def _spread(rect: Rect, cover: Cover) -> list[tuple[float, float]]:
    """Detector positions for a room by Table 6.2.2 coverage (area and radius), spread evenly along
    the room's long axis on its centre line."""
    offsets = _spread_offsets(round(rect.x1 - rect.x0, 6), round(rect.y1 - rect.y0, 6), cover)
    return [(rect.x0 + dx, rect.y0 + dy) for dx, dy in offsets]


@functools.cache
def _spread_offsets(w: float, d: float, cover: Cover) -> tuple[tuple[float, float], ...]:
    (small_area, a_small, r_small), (a_big, r_big) = cover
    area = w * d
    a, r = (a_small, r_small) if area <= small_area else (a_big, r_big)
    long, short = max(w, d), min(w, d)
    n = max(1, math.ceil(area / a - 1e-9))
    while math.hypot(long / n / 2, short / 2) > r:
        n += 1
    if w >= d:
        return tuple(((i + 0.5) * w / n, d / 2) for i in range(n))
    return tuple((w / 2, (i + 0.5) * d / n) for i in range(n))


def _corridor_points(rect: Rect) -> list[tuple[float, float]]:
    """GB 50116 §6.2.4 (U): at most 15 m apart on the centre line, at most 7.5 m from the ends."""
    length = rect.x1 - rect.x0
    n = max(1, math.ceil(length / CORRIDOR_SMOKE_SPACING - 1e-9))
    cy = (rect.y0 + rect.y1) / 2
    return [(rect.x0 + (i + 0.5) * length / n, cy) for i in range(n)]


def _near_wall(rect: Rect, along: float = 0.5, inset: float = 0.3) -> tuple[float, float]:
    """A point on the room's outer wall (away from the corridor), `along` its width: where a board,
    a stove or a gas meter stands."""
    x = rect.x0 + along * (rect.x1 - rect.x0)
    outer_south = rect.y0 < ROOM_DEPTH / 2
    y = rect.y0 + inset if outer_south else rect.y1 - inset
    return (x, y)


def _door(rect: Rect) -> tuple[float, float]:
    """The room's door to the corridor (just inside it)."""
    y = rect.y1 - 0.2 if rect.y1 <= ROOM_DEPTH + 1e-6 else rect.y0 + 0.2
    return ((rect.x0 + rect.x1) / 2, y)


# --- the builder -----------------------------------------------------------------------------------


@dataclass
class _Builder:
    site_id: str
    rng: random.Random
    dry: bool = False  # count devices only (for sizing)
    devices: list[Device] = field(default_factory=list)
    count: int = 0
    plans: dict[str, FloorPlan] = field(default_factory=dict)

    def person(self) -> str:
        return self.rng.choice(SURNAMES) + "".join(
            self.rng.choice(GIVEN) for _ in range(self.rng.choice((1, 2)))
        )

    def add(
        self,
        profile: str,
        room: _Room,
        position: tuple[float, float],
        name: str,
        responsible: str,
        suffix: str = "",
        *,
        wireless: bool = False,
    ) -> None:
        self.count += 1
        if self.dry:
            return
        device_id = room.path.split("/", 1)[1].replace("/", "-") + f"-{TAGS[profile]}{suffix}"
        installed = date(2022, 1, 1) + timedelta(days=self.rng.randrange(0, 1000))
        self.devices.append(
            Device(
                id=device_id,
                profile=profile,
                place=room.path,
                name=name,
                responsible=responsible,
                installed=installed,
                position=(round(position[0], 2), round(position[1], 2)),
                tags=[WIRELESS] if wireless else [],
            )
        )

    def add_many(
        self,
        profile: str,
        room: _Room,
        points: list[tuple[float, float]],
        name: str,
        responsible: str,
        *,
        wireless: bool = False,
    ) -> None:
        """One device per point; numbered only when there are several."""
        for i, point in enumerate(points, start=1):
            suffix = f"-{i}" if len(points) > 1 else ""
            label = f"{name}{i}" if len(points) > 1 else name
            self.add(profile, room, point, label, responsible, suffix, wireless=wireless)

    def floor(self, building_path: str, fid: str, fname: str, zones: list[_Zone]) -> FloorSpec:
        """Lay the zones out west to east and record the floor plan."""
        fp = f"{building_path}/{fid}"
        x = 0.0
        rects: dict[str, Rect] = {}
        for zone in zones:
            _layout(zone, x)
            x += zone.length
            zone.path = f"{fp}/{zone.id}"
            for room in zone.rooms:
                room.path = f"{zone.path}/{room.id}"
                rects[room.path] = room.rect
        self.plans[fp] = FloorPlan(fp, round(x, 2), FLOOR_DEPTH, rects)
        if self.dry:
            return FloorSpec(id=fid, name=fname)
        return FloorSpec(
            id=fid,
            name=fname,
            zones=[
                ZoneSpec(id=z.id, name=z.name, department=z.department, rooms=[r.spec() for r in z.rooms])
                for z in zones
            ],
        )

    def equip_common(self, zones: list[_Zone], fname: str, *, top: bool) -> None:
        """What every floor has: a smoke detector in each ordinary room (by coverage), corridor
        detectors, stair door monitors (and the shaft's top detector), the floor board's monitor."""
        for zone in zones:
            head = self.person()
            for room in zone.rooms:
                tags = room.tags
                if "corridor" in tags:
                    self.add_many(SMOKE, room, _corridor_points(room.rect), f"{zone.name}走廊感烟", head)
                elif "stair" in tags:
                    self.add(DOOR, room, _door(room.rect), f"{fname} {room.name}防火门", head, wireless=True)
                    if top:
                        self.add(SMOKE, room, room.rect.centre, f"{room.name}顶部感烟", head)
                elif "electrical" in tags:
                    self.add(SMOKE, room, room.rect.centre, f"{fname} {room.name}感烟", head)
                    self.add(
                        ELECTRICAL, room, _near_wall(room.rect), f"{fname} 配电箱电气火灾监控", self.person()
                    )
                elif not any(t in tags for t in _NO_SMOKE):
                    self.add_many(SMOKE, room, _spread(room.rect, SMOKE_COVER), f"{room.name}感烟", head)


def _floor_name(n: int) -> str:
    return f"B{-n}" if n < 0 else f"{n}F"


def _zone_sides(n: int) -> list[str]:
    if n in ZONE_SIDES:
        return list(ZONE_SIDES[n])
    return [f"{chr(ord('A') + i)}区" if i < 26 else f"{i + 1}区" for i in range(n)]


def _cn(n: int) -> str:
    return CN_NUMBERS[n - 1] if 1 <= n <= 10 else str(n)


def _with_stairs(zones: list[_Zone], stairs: bool) -> list[_Zone]:
    """A stairwell at the west end of every zone and at the east end of the last one."""
    if stairs:
        for i, zone in enumerate(zones, start=1):
            zone.rooms.insert(0, _stair(i))
        zones[-1].rooms.append(_stair(len(zones) + 1, side="E"))
    return zones


def _electrical(zone: _Zone) -> _Zone:
    zone.rooms.insert(
        1 if zone.rooms and "stair" in zone.rooms[0].tags else 0,
        _Room("elec", "强电间", ("electrical",), side="N"),
    )
    return zone


# --- building 1: outpatient and medical technology -------------------------------------------------


def _plant_floor(b: _Builder, bp: str, stairs: bool) -> FloorSpec:
    plant = _Zone(
        "z1",
        "B1 设备区",
        "后勤保障部",
        [
            _Room("pump", "消防水泵房", ("plant", "pump_room"), bays=2, side="S"),
            _Room("switch", "高低压配电室", ("plant", "switchgear"), bays=2, side="N"),
            _Room("boiler", "锅炉房", ("plant", "boiler", "gas"), bays=2, side="N"),
        ],
    )
    zones = _with_stairs([plant], stairs)
    spec = b.floor(bp, "fb1", "B1", zones)
    b.equip_common(zones, "B1", top=False)
    head = b.person()
    pump, switch, boiler = plant.room("pump_room"), plant.room("switchgear"), plant.room("boiler")
    b.add_many(HEAT, pump, _spread(pump.rect, HEAT_COVER), "消防水泵房感温", head)
    b.add(PRESSURE, pump, _near_wall(pump.rect, 0.25), "喷淋泵出口压力", head, "-1")
    b.add(PRESSURE, pump, _near_wall(pump.rect, 0.5), "消火栓泵出口压力", head, "-2")
    b.add(TANK, pump, _near_wall(pump.rect, 0.9), "消防水池液位", head)
    b.add_many(HEAT, switch, _spread(switch.rect, HEAT_COVER), "配电室感温", head)
    # Residual-current monitoring on the incomers and ordinary outgoing circuits, never on the fire
    # pumps' or other fire-service circuits (GB 50116-2013 §9.2.2, V).
    b.add(ELECTRICAL, switch, _near_wall(switch.rect, 0.25), "低压总进线电气火灾监控", head, "-1")
    b.add(ELECTRICAL, switch, _near_wall(switch.rect, 0.75), "照明动力出线电气火灾监控", head, "-2")
    b.add_many(HEAT, boiler, _spread(boiler.rect, HEAT_COVER), "锅炉房感温", head)
    b.add(GAS, boiler, _near_wall(boiler.rect, 0.3), "锅炉燃烧器可燃气体", head, "-1")
    b.add(GAS, boiler, _near_wall(boiler.rect, 0.8), "锅炉房燃气调压箱可燃气体", head, "-2")
    return spec


def _clinic_rooms(prefix: str, fname: str, n: int, dept: str, label: str = "诊室") -> list[_Room]:
    return [_Room(f"{prefix}{r:02d}", f"{fname}{label}{r:02d}", ("clinic",), dept) for r in range(1, n + 1)]


def _medtech_zones(floor: int, fname: str, rooms: int, zones_per_floor: int) -> list[_Zone]:
    """The departments of floor `floor` (1F up) of the outpatient and medical-technology building."""
    fid = f"f{floor}"
    if floor == 1:
        return [
            _Zone(
                "z1",
                "1F 门诊大厅",
                "门诊部",
                [
                    _Room("hall", "门诊大厅", ("hall",), bays=4, side="S"),
                    _Room("fcc", "消防控制室", ("control_room",), "保卫科", side="N"),
                    _Room("reg", "挂号收费处", ("clinic",), bays=2),
                    *_clinic_rooms(f"{fid}r", fname, rooms, "门诊部"),
                ],
            ),
            _Zone(
                "z2",
                "1F 药剂科",
                "药剂科",
                [
                    _Room("pharmacy", "门诊药房", ("pharmacy",), bays=2, side="S"),
                    _Room("store", "药库", ("pharmacy",), bays=2, side="N"),
                    _Room("hazmat", "药库危化品间（乙醇、过氧乙酸）", ("pharmacy", "hazmat"), side="N"),
                ],
            ),
        ]
    if floor == 2:
        return [
            _Zone(
                "z1",
                "2F 检验科",
                "检验科",
                [
                    _Room("lab1", "生化实验室", ("laboratory", "gas"), bays=2, side="S"),
                    _Room("lab2", "微生物实验室", ("laboratory",), bays=2, side="N"),
                    _Room("reagent", "检验试剂库（危化品）", ("laboratory", "hazmat"), side="N"),
                    *_clinic_rooms(f"{fid}r", fname, rooms, "检验科", "检验室"),
                ],
            )
        ]
    if floor == 3:
        return [
            _Zone(
                "z1",
                "3F 病理科",
                "病理科",
                [
                    _Room("gross", "病理取材室", ("pathology",), bays=2, side="S"),
                    _Room("chem", "病理试剂间（甲醛、二甲苯）", ("pathology", "hazmat"), side="N"),
                    _Room("archive", "病理档案室", ("pathology",), side="N"),
                    *_clinic_rooms(f"{fid}r", fname, rooms, "病理科", "工作室"),
                ],
            )
        ]
    if floor == 4:
        return [
            _Zone(
                "z1",
                "4F 影像科",
                "放射科",
                [
                    _Room("ct", "CT室", ("imaging",), bays=2, side="S"),
                    _Room("mri", "磁共振室", ("imaging",), bays=2, side="N"),
                    _Room("dr", "DR室", ("imaging",)),
                    *_clinic_rooms(f"{fid}r", fname, rooms, "放射科", "阅片室"),
                ],
            )
        ]
    zones = []
    for zi in range(1, zones_per_floor + 1):
        dept = CLINIC_DEPARTMENTS[(floor * zones_per_floor + zi) % len(CLINIC_DEPARTMENTS)]
        zones.append(
            _Zone(f"z{zi}", f"{fname} {dept}", dept, _clinic_rooms(f"z{zi}r", f"{fname}{dept}", rooms, dept))
        )
    return zones


def _medtech_building(b: _Builder, size: HospitalSize, rooms: int) -> BuildingSpec:
    bp = f"{b.site_id}/b1"
    # A clinic of one or two storeys and no wards has no basement plant (a modelling choice: its
    # water and power come from the street); anything bigger has the fire pump room, the switchgear
    # and the boiler in B1.
    basement = size.medtech_floors > 2 or size.inpatient_buildings > 0
    stairs = basement or size.medtech_floors > 1
    floors: list[FloorSpec] = []
    if basement:
        floors.append(_plant_floor(b, bp, stairs))
    top = size.medtech_floors
    for floor in range(1, top + 1):
        fname = _floor_name(floor)
        zones = _with_stairs(_medtech_zones(floor, fname, rooms, size.zones_per_floor), stairs)
        _electrical(zones[0])
        floors.append(b.floor(bp, f"f{floor}", fname, zones))
        b.equip_common(zones, fname, top=floor == top)
        for zone in zones:
            for room in zone.rooms_tagged("laboratory"):
                if "gas" in room.tags:
                    b.add(GAS, room, _near_wall(room.rect), f"{room.name}燃气接口可燃气体", b.person())
        if floor == top and stairs:
            _least_favourable(b, zones, fname)
    return BuildingSpec(id="b1", name="门诊医技楼", floors=floors)


def _least_favourable(b: _Builder, zones: list[_Zone], fname: str) -> None:
    """The building's least favourable point: the far (east) end of the top floor's corridor."""
    corr = zones[-1].room("corridor")
    b.add(PRESSURE, corr, (corr.rect.x1 - 0.5, corr.rect.y1 - 0.2), f"{fname} 屋顶最不利点压力", b.person())


# --- inpatient buildings ---------------------------------------------------------------------------


def _ground_floor(b: _Builder, bp: str, kitchen: bool, tower: str) -> FloorSpec:
    zones = [
        _Zone(
            "z1",
            "1F 入院服务中心",
            "入院服务中心",
            [
                _Room("hall", f"{tower}入院大厅", ("hall",), bays=3, side="S"),
                _Room("adm", "出入院结算处", ("clinic",), bays=2),
                _Room("pharm", "住院药房", ("pharmacy",), "药剂科", bays=2),
            ],
        )
    ]
    if kitchen:
        zones.append(
            _Zone(
                "z2",
                "1F 营养食堂",
                "营养科",
                [
                    _Room("kitchen", "厨房操作间", ("kitchen", "gas"), bays=3, side="S"),
                    _Room("meter", "燃气表间", ("gas",), side="S"),
                    _Room("dining", "职工餐厅", ("dining",), bays=3, side="N"),
                    _Room("pantry", "病员配餐间", ("dining",), side="N"),
                ],
            )
        )
    zones = _with_stairs(zones, True)
    _electrical(zones[0])
    spec = b.floor(bp, "f1", "1F", zones)
    b.equip_common(zones, "1F", top=False)
    if kitchen:
        kz = zones[1]
        head = b.person()
        k = kz.room("kitchen")
        b.add_many(HEAT, k, _spread(k.rect, HEAT_COVER), "厨房感温", head)
        b.add(GAS, k, _near_wall(k.rect, 0.25), "厨房灶台可燃气体", head, "-1")
        b.add(GAS, k, _near_wall(k.rect, 0.75), "厨房蒸柜可燃气体", head, "-2")
        meter = next(r for r in kz.rooms if r.id == "meter")
        b.add(GAS, meter, _near_wall(meter.rect), "燃气表间可燃气体", head)
    return spec


def _ward_zones(floor: int, fname: str, size: HospitalSize, rooms: int, dept_offset: int) -> list[_Zone]:
    sides = _zone_sides(size.zones_per_floor)
    numbering = 100 if size.zones_per_floor * rooms <= 99 else 1000
    zones = []
    k = 0
    for zi, side in enumerate(sides, start=1):
        n = dept_offset + (floor - 2) * size.zones_per_floor + zi - 1
        dept = WARD_DEPARTMENTS[n % len(WARD_DEPARTMENTS)]
        unit = n // len(WARD_DEPARTMENTS) + 1
        unit_name = f"{dept}{_cn(unit)}病区" if unit > 1 else f"{dept}病区"
        ward_rooms = []
        for _ in range(rooms):
            k += 1
            number = floor * numbering + k
            ward_rooms.append(_Room(f"r{number}", f"{number}病房", ("ward",)))
        # The nurse station sits in the middle of its unit, facing the corridor.
        ward_rooms.insert(
            len(ward_rooms) // 2, _Room("ns", f"{side}护士站" if side else "护士站", ("nurse_station",))
        )
        zones.append(_Zone(f"z{zi}", f"{fname} {side}{unit_name}", dept, ward_rooms))
    return zones


def _inpatient_building(b: _Builder, index: int, size: HospitalSize, floors: int, rooms: int) -> BuildingSpec:
    bid = f"b{index + 1}"
    bp = f"{b.site_id}/{bid}"
    tower = f"{index}号楼" if size.inpatient_buildings > 1 else ""
    ground = _ground_floor(b, bp, kitchen=index == 1, tower=tower)
    specs = [ground]
    top = floors + 1
    dept_offset = (index - 1) * floors * size.zones_per_floor
    for floor in range(2, top + 1):
        fname = _floor_name(floor)
        zones = _with_stairs(_ward_zones(floor, fname, size, rooms, dept_offset), True)
        _electrical(zones[0])
        specs.append(b.floor(bp, f"f{floor}", fname, zones))
        b.equip_common(zones, fname, top=floor == top)
        for zone in zones:
            ns = zone.room("nurse_station")
            corr = zone.room("corridor")
            x = (ns.rect.x0 + ns.rect.x1) / 2
            y = corr.rect.y0 + 0.2 if ns.rect.y1 <= ROOM_DEPTH + 1e-6 else corr.rect.y1 - 0.2
            b.add(OXYGEN, corr, (x, y), f"{zone.name}氧气区域阀箱压力", b.person())
        if floor == top:
            _least_favourable(b, zones, fname)
    name = f"{index}号住院楼" if size.inpatient_buildings > 1 else "住院楼"
    return BuildingSpec(id=bid, name=name, floors=specs)


# --- the e-bike charging shed ----------------------------------------------------------------------


def _ebike_shed(b: _Builder, rows: int) -> BuildingSpec:
    bp = f"{b.site_id}/eb"
    row_rooms = [
        _Room(f"row{i}", f"充电区{chr(ord('A') + i - 1) if i <= 26 else i}排", ("ebike",), bays=3)
        for i in range(1, rows + 1)
    ]
    board = _Room("board", "充电棚配电箱", ("electrical",), side="N")
    zone = _Zone("z1", "电动车充电区", "保卫科", [board, *row_rooms], corridor=False)
    spec = b.floor(bp, "f1", "1F", [zone])
    head = b.person()
    b.add(ELECTRICAL, board, _near_wall(board.rect), "充电棚配电电气火灾监控", head)
    for room in row_rooms:
        x0, x1 = room.rect.x0, room.rect.x1
        b.add(SMOKE, room, room.rect.centre, f"{room.name}感烟", head, wireless=True)
        b.add(
            HEAT, room, (x0 + (x1 - x0) * 0.75, room.rect.centre[1]), f"{room.name}感温", head, wireless=True
        )
        y = _near_wall(room.rect)[1]
        for s in range(1, SOCKETS_PER_ROW + 1):
            x = x0 + (s - 0.5) * (x1 - x0) / SOCKETS_PER_ROW
            b.add(SOCKET, room, (x, y), f"{room.name}插座{s:02d}", head, f"-{s}", wireless=True)
    return BuildingSpec(id="eb", name="电动车充电棚", floors=[spec])


# --- the whole site --------------------------------------------------------------------------------


def generate_hospital(
    *,
    site_id: str = "sxzyy",
    site_name: str = "绍兴市中医院",
    inpatient_buildings: int = 1,
    ward_floors: int = 5,
    zones_per_floor: int = 2,
    rooms_per_zone: int = 7,
    medtech_floors: int = 4,
    scale: float = 1.0,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    dry: bool = False,
) -> Hospital:
    """The hospital with its floor plans; `scale` multiplies the ward floors and the rooms per zone.
    `progress(done, total)` is called after each building; `dry` counts devices without making them
    (`Hospital.devices` stays empty, `len` is in `count_devices`)."""
    if not scale > 0:
        raise HospitalSizeError(f"scale must be positive, got {scale}")
    HospitalSize(inpatient_buildings, ward_floors, zones_per_floor, rooms_per_zone, medtech_floors).validate()
    size = HospitalSize(
        inpatient_buildings=inpatient_buildings,
        ward_floors=max(1, round(ward_floors * scale)),
        zones_per_floor=zones_per_floor,
        rooms_per_zone=max(1, round(rooms_per_zone * scale)),
        medtech_floors=medtech_floors,
    )
    size.validate()
    b = _Builder(site_id, random.Random(seed), dry=dry)
    total = 2 + size.inpatient_buildings
    buildings = [_medtech_building(b, size, size.rooms_per_zone)]
    if progress:
        progress(1, total)
    for i in range(1, size.inpatient_buildings + 1):
        buildings.append(_inpatient_building(b, i, size, size.ward_floors, size.rooms_per_zone))
        if progress:
            progress(1 + i, total)
    if size.inpatient_buildings:
        buildings.append(_ebike_shed(b, size.inpatient_buildings))
    if progress:
        progress(total, total)
    site = SiteSpec(id=site_id, name=site_name, buildings=buildings)
    return Hospital([site], b.devices, b.plans, size, b.count)


def build_hospital(
    *,
    site_id: str = "sxzyy",
    site_name: str = "绍兴市中医院",
    inpatient_buildings: int = 1,
    ward_floors: int = 5,
    zones_per_floor: int = 2,
    rooms_per_zone: int = 7,
    medtech_floors: int = 4,
    scale: float = 1.0,
    seed: int = 0,
) -> tuple[list[SiteSpec], list[Device]]:
    """The place tree and devices of the hospital (see the module docstring); the defaults are the
    demo hospital. `scale` multiplies the ward floors and the rooms per zone."""
    h = generate_hospital(
        site_id=site_id,
        site_name=site_name,
        inpatient_buildings=inpatient_buildings,
        ward_floors=ward_floors,
        zones_per_floor=zones_per_floor,
        rooms_per_zone=rooms_per_zone,
        medtech_floors=medtech_floors,
        scale=scale,
        seed=seed,
    )
    return h.sites, h.devices


def count_devices(size: HospitalSize) -> int:
    """How many devices a hospital of this size has, without making them."""
    return size.generate(dry=True).count


# Shapes by target size: (up to this many devices, zones per floor, rooms per zone, medtech floors,
# usual and most ward floors). Small hospitals are low and narrow; big ones have towers of wide
# floors, and more of them.
_SHAPES = (
    (400, 2, 7, 4, 5, 8),
    (1_500, 2, 10, 5, 8, 12),
    (6_000, 3, 14, 6, 12, 18),
    (30_000, 4, 18, 8, 16, 24),
    (MAX_DEVICES, 4, 24, 10, 20, 30),
)
_SMALL = 300  # below this, search the small shapes outright


def smallest_hospital() -> int:
    """The fewest devices a generated site can have: a one-storey clinic with one consulting room."""
    return count_devices(HospitalSize(0, 1, 1, 1, 1))


def hospital_for_devices(n: int) -> HospitalSize:
    """A hospital size with about `n` devices: within a few per cent from about 20 devices up (a
    clinic below 100 or so, then hospitals of more and taller inpatient buildings)."""
    smallest = smallest_hospital()
    if not smallest <= n <= MAX_DEVICES:
        raise HospitalSizeError(
            f"devices must be between {smallest} (a one-room clinic) and {MAX_DEVICES:,}, got {n:,}"
        )
    if n <= _SMALL:
        candidates = [
            HospitalSize(0, 1, 1, rooms, medtech) for medtech in range(1, 5) for rooms in range(1, 13)
        ]
        candidates += [
            HospitalSize(1, floors, 2 if floors > 1 else 1, rooms, medtech)
            for medtech in range(1, 5)
            for rooms in range(1, 9)
            for floors in range(1, 7)
        ]
        # The closest; among equals a clinic before a hospital, then the lower building.
        return min(
            candidates, key=lambda s: (abs(count_devices(s) - n), s.inpatient_buildings, s.ward_floors)
        )
    _, zones, rooms, medtech, usual, most = next(shape for shape in _SHAPES if n <= shape[0])
    # Devices are linear in buildings and floors: c(b, f) = fixed + b * (per_building + f * per_floor).
    c11 = count_devices(HospitalSize(1, 1, zones, rooms, medtech))
    c12 = count_devices(HospitalSize(1, 2, zones, rooms, medtech))
    c21 = count_devices(HospitalSize(2, 1, zones, rooms, medtech))
    per_floor = c12 - c11
    per_building = c21 - c11 - per_floor
    fixed = c11 - per_building - per_floor
    # As many buildings of the usual height as fit, then the height that lands closest.
    near = max(1, round((n - fixed) / (per_building + usual * per_floor)))
    best: tuple[int, HospitalSize] | None = None
    for buildings in range(max(1, near - 1), near + 2):
        floors = min(most, max(1, round(((n - fixed) / buildings - per_building) / per_floor)))
        error = abs(fixed + buildings * (per_building + floors * per_floor) - n)
        if best is None or error < best[0]:
            best = (error, HospitalSize(buildings, floors, zones, rooms, medtech))
    assert best is not None
    return best[1]


DEVICE_CHUNK = 2_000


def registry_yaml_parts(sites: list[SiteSpec], devices: list[Device]) -> Iterator[str]:
    """The text of `dump_registry(sites, devices)` in pieces, one building or `DEVICE_CHUNK` devices
    at a time, so that a big registry can be written with progress (`registry_yaml_part_count`
    pieces). Each piece is dumped by `dump_registry` itself; joined they are its text exactly."""
    yield "sites:\n"
    for site in sites:
        if not site.buildings:
            yield dump_registry([site], [])[len("sites:\n") :]
        for i, b in enumerate(site.buildings):
            text = dump_registry([site.model_copy(update={"buildings": [b]})], [])[len("sites:\n") :]
            yield text if i == 0 else text.split("  buildings:\n", 1)[1]
    if devices:
        yield "devices:\n"
    stub = [SiteSpec(id="x", name="x")]
    for start in range(0, len(devices), DEVICE_CHUNK):
        text = dump_registry(stub, devices[start : start + DEVICE_CHUNK])
        yield text.split("\ndevices:\n", 1)[1]


def registry_yaml_part_count(sites: list[SiteSpec], devices: list[Device]) -> int:
    buildings = sum(max(1, len(site.buildings)) for site in sites)
    return 1 + buildings + (1 + math.ceil(len(devices) / DEVICE_CHUNK) if devices else 0)


def write_registry(
    path: Path,
    sites: list[SiteSpec],
    devices: list[Device],
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Write the registry YAML through a temporary file, so a reader never sees half of it;
    `progress(done, total)` after each piece."""
    total = registry_yaml_part_count(sites, devices)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            for done, text in enumerate(registry_yaml_parts(sites, devices), start=1):
                f.write(text)
                if progress:
                    progress(done, total)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_hospital_registry(path: Path, **kwargs: object) -> None:
    sites, devices = build_hospital(**kwargs)  # type: ignore[arg-type]
    write_registry(path, sites, devices)


DEMO_HOSPITAL = Path(__file__).parent / "data" / "demo_hospital.yaml"

if __name__ == "__main__":  # regenerate the shipped demo registry: python3 -m simulators.hospital
    write_hospital_registry(DEMO_HOSPITAL)
