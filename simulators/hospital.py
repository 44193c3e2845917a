"""A generated hospital: two buildings, departments, and the devices a fire-safety design puts there.

Placement follows common practice: a smoke detector in every room and corridor; heat detectors
where smoke is normal (kitchen) or where a fire would be electrical (plant rooms); pressure
transmitters at the least favourable point (top floor) and the pump room; an electrical-fire monitor
on each floor's distribution board and in the switchgear room; gas detectors in the kitchen,
laboratory and boiler room. Deterministic for a seed.
"""

from __future__ import annotations

import random
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
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚"
WARD_DEPARTMENTS = ("心内科", "呼吸内科", "骨科", "普外科", "神经内科", "儿科", "妇产科", "肿瘤科")


@dataclass
class _Builder:
    site_id: str
    rng: random.Random
    devices: list[Device] = field(default_factory=list)

    def person(self) -> str:
        return self.rng.choice(SURNAMES) + "".join(
            self.rng.choice(GIVEN) for _ in range(self.rng.choice((1, 2)))
        )

    def add(self, profile: str, place: str, suffix: str, name: str, responsible: str) -> None:
        tag = TAGS[profile]
        device_id = place.split("/", 1)[1].replace("/", "-") + f"-{tag}{suffix}"
        installed = date(2022, 1, 1) + timedelta(days=self.rng.randrange(0, 1000))
        self.devices.append(
            Device(
                id=device_id,
                profile=profile,
                place=place,
                name=name,
                responsible=responsible,
                installed=installed,
            )
        )


def _ward_floor(b: _Builder, bp: str, floor: int, rooms_per_zone: int) -> FloorSpec:
    fid = f"f{floor}"
    zones = []
    for zi, side in enumerate(("东区", "西区"), start=1):
        dept = WARD_DEPARTMENTS[(floor * 2 + zi) % len(WARD_DEPARTMENTS)]
        head = b.person()
        rooms = [
            RoomSpec(id=f"r{floor}{zi}{r:02d}", name=f"{floor}{zi}{r:02d}病房")
            for r in range(1, rooms_per_zone + 1)
        ]
        rooms.append(RoomSpec(id=f"n{floor}{zi}", name=f"{side}护士站"))
        zone = ZoneSpec(id=f"z{zi}", name=f"{floor}F {side}病区", department=dept, rooms=rooms)
        zp = f"{bp}/{fid}/z{zi}"
        for room in rooms:
            b.add(SMOKE, f"{zp}/{room.id}", "", f"{room.name}感烟", head)
        b.add(SMOKE, zp, "-c", f"{floor}F {side}走廊感烟", head)
        zones.append(zone)
    b.add(ELECTRICAL, f"{bp}/{fid}/z1", "", f"{floor}F 配电箱电气火灾监控", b.person())
    b.add(OXYGEN, f"{bp}/{fid}/z1", "", f"{floor}F 病区氧气管道压力", b.person())
    for zi, side in enumerate(("东", "西"), start=1):
        b.add(DOOR, f"{bp}/{fid}/z{zi}", "", f"{floor}F {side}侧楼梯间防火门", b.person())
    return FloorSpec(id=fid, name=f"{floor}F", zones=zones)


def build_hospital(
    *,
    site_id: str = "sxzyy",
    site_name: str = "绍兴市中医院",
    floors: int = 8,
    rooms_per_zone: int = 7,
    scale: float = 1.0,
    seed: int = 0,
) -> tuple[list[SiteSpec], list[Device]]:
    """The place tree and devices of a two-building hospital; `scale` multiplies floors and rooms."""
    rng = random.Random(seed)
    b = _Builder(site_id, rng)
    ward_floors = max(2, round(floors * scale))
    rooms = max(2, round(rooms_per_zone * scale))

    # Building 1: outpatient and medical technology, with the plant rooms in its basement.
    b1 = f"{site_id}/b1"
    tech = [
        (
            "f1",
            "1F",
            "门诊大厅",
            "门诊部",
            [("pharmacy", "药房（危化品存放）", "药剂科"), ("hall", "挂号收费大厅", "门诊部")],
        ),
        (
            "f2",
            "2F",
            "检验科",
            "检验科",
            [("lab1", "生化实验室（危化品存放）", "检验科"), ("lab2", "微生物实验室", "检验科")],
        ),
        (
            "f3",
            "3F",
            "病理科",
            "病理科",
            [("path1", "病理取材室（危化品存放）", "病理科"), ("path2", "病理档案室", "病理科")],
        ),
        ("f4", "4F", "影像科", "放射科", [("ct", "CT室", "放射科"), ("mri", "磁共振室", "放射科")]),
    ]
    b1_floors = []
    plant_head = b.person()
    plant = ZoneSpec(
        id="z1",
        name="设备区",
        department="后勤保障部",
        rooms=[
            RoomSpec(id="pump", name="消防水泵房"),
            RoomSpec(id="switch", name="高低压配电室"),
            RoomSpec(id="boiler", name="锅炉房"),
        ],
    )
    b1_floors.append(FloorSpec(id="fb1", name="B1", zones=[plant]))
    pz = f"{b1}/fb1/z1"
    b.add(HEAT, f"{pz}/pump", "", "消防水泵房感温", plant_head)
    b.add(HEAT, f"{pz}/switch", "", "配电室感温", plant_head)
    b.add(HEAT, f"{pz}/boiler", "", "锅炉房感温", plant_head)
    b.add(SMOKE, f"{pz}/switch", "", "配电室感烟", plant_head)
    b.add(PRESSURE, f"{pz}/pump", "-1", "喷淋泵出口压力", plant_head)
    b.add(PRESSURE, f"{pz}/pump", "-2", "消火栓泵出口压力", plant_head)
    b.add(ELECTRICAL, f"{pz}/switch", "-1", "低压总进线电气火灾监控", plant_head)
    b.add(ELECTRICAL, f"{pz}/switch", "-2", "消防泵配电回路电气火灾监控", plant_head)
    b.add(GAS, f"{pz}/boiler", "", "锅炉房可燃气体", plant_head)
    b.add(TANK, f"{pz}/pump", "", "消防水池液位", plant_head)
    for fid, fname, zname, dept, specials in tech:
        head = b.person()
        zone_rooms = [RoomSpec(id=rid, name=rname, department=rdept) for rid, rname, rdept in specials]
        zone_rooms += [
            RoomSpec(id=f"{fid}r{r:02d}", name=f"{fname}诊室{r:02d}", department=dept)
            for r in range(1, rooms + 1)
        ]
        zone = ZoneSpec(id="z1", name=f"{fname} {zname}", department=dept, rooms=zone_rooms)
        zp = f"{b1}/{fid}/z1"
        for room in zone_rooms:
            b.add(SMOKE, f"{zp}/{room.id}", "", f"{room.name}感烟", head)
        b.add(SMOKE, zp, "-c", f"{fname} 走廊感烟", head)
        b.add(ELECTRICAL, zp, "", f"{fname} 配电箱电气火灾监控", b.person())
        if fid == "f2":
            b.add(GAS, f"{zp}/lab1", "", "生化实验室可燃气体", head)
        b1_floors.append(FloorSpec(id=fid, name=fname, zones=[zone]))
    b.add(PRESSURE, f"{b1}/f4/z1", "", "屋顶最不利点压力", b.person())

    # Building 2: inpatient wards; kitchen and e-bike charging area on the ground floor.
    b2 = f"{site_id}/b2"
    ground_head = b.person()
    ground = FloorSpec(
        id="f1",
        name="1F",
        zones=[
            ZoneSpec(
                id="z1",
                name="营养食堂",
                department="营养科",
                rooms=[RoomSpec(id="kitchen", name="厨房操作间"), RoomSpec(id="dining", name="职工餐厅")],
            ),
            ZoneSpec(
                id="z2",
                name="电动车充电区",
                department="保卫科",
                rooms=[RoomSpec(id="ebike", name="电动车充电棚")],
            ),
        ],
    )
    gp = f"{b2}/f1"
    b.add(HEAT, f"{gp}/z1/kitchen", "", "厨房感温", ground_head)
    b.add(GAS, f"{gp}/z1/kitchen", "-1", "厨房灶台可燃气体", ground_head)
    b.add(GAS, f"{gp}/z1/kitchen", "-2", "厨房燃气表间可燃气体", ground_head)
    b.add(SMOKE, f"{gp}/z1/dining", "", "职工餐厅感烟", ground_head)
    b.add(HEAT, f"{gp}/z2/ebike", "", "充电棚感温", b.person())
    b.add(SMOKE, f"{gp}/z2/ebike", "", "充电棚感烟", b.person())
    b.add(ELECTRICAL, f"{gp}/z2/ebike", "", "充电棚配电电气火灾监控", b.person())
    socket_head = b.person()
    for i in range(1, 5):
        b.add(SOCKET, f"{gp}/z2/ebike", f"-{i}", f"充电棚插座{i}", socket_head)
    b2_floors = [ground] + [_ward_floor(b, b2, f, rooms) for f in range(2, ward_floors + 2)]
    b.add(PRESSURE, f"{b2}/f{ward_floors + 1}/z1", "", "屋顶最不利点压力", b.person())

    site = SiteSpec(
        id=site_id,
        name=site_name,
        buildings=[
            BuildingSpec(id="b1", name="门诊医技楼", floors=b1_floors),
            BuildingSpec(id="b2", name="住院楼", floors=b2_floors),
        ],
    )
    return [site], b.devices


def write_hospital_registry(path: Path, **kwargs: object) -> None:
    sites, devices = build_hospital(**kwargs)  # type: ignore[arg-type]
    path.write_text(dump_registry(sites, devices), encoding="utf-8")


DEMO_HOSPITAL = Path(__file__).parent / "data" / "demo_hospital.yaml"

if __name__ == "__main__":  # regenerate the shipped demo registry: python3 -m simulators.hospital
    write_hospital_registry(DEMO_HOSPITAL)
