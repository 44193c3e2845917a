"""The simulated hospital's building model: what it contains, where the devices go, and that it can be
generated at any size."""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import pytest
import typer
from typer.testing import CliRunner

from core.registry import Device, Registry, RoomSpec, SiteSpec, dump_registry, load_registry
from device_profiles.loader import load_profiles
from device_profiles.schema import Codec
from firewatch.cli_building import building
from firewatch.demo import plan_for
from simulators.hospital import (
    CORRIDOR_SMOKE_SPACING,
    DEMO_HOSPITAL,
    DOOR,
    ELECTRICAL,
    GAS,
    HEAT,
    OXYGEN,
    PRESSURE,
    ROOM_TAGS,
    SMOKE,
    SOCKET,
    TANK,
    Hospital,
    HospitalSizeError,
    build_hospital,
    count_devices,
    generate_hospital,
    hospital_for_devices,
    smallest_hospital,
)

if TYPE_CHECKING:
    from firewatch.service import Service

DEMO = generate_hospital()

# Every profile of a sensor that publishes over MQTT: the generated hospital holds those (a fire
# alarm panel's points, reported through GB/T 26875.3, are added for the demo: simulators/hospital_panel.py).
MQTT_PROFILES = {pid for pid, p in load_profiles().items() if p.codec is Codec.JSON}


def rooms(sites: list[SiteSpec]) -> dict[str, tuple[RoomSpec, str]]:
    """Room path -> (room, its zone's department)."""
    return {
        f"{s.id}/{b.id}/{f.id}/{z.id}/{r.id}": (r, z.department)
        for s in sites
        for b in s.buildings
        for f in b.floors
        for z in f.zones
        for r in z.rooms
    }


def at(devices: list[Device], place: str, profile: str | None = None) -> list[Device]:
    return [d for d in devices if d.place == place and (profile is None or d.profile == profile)]


def floor_of(path: str) -> str:
    return "/".join(path.split("/")[:3])


def zone_of(path: str) -> str:
    return "/".join(path.split("/")[:4])


def dist(a: Device, b: Device) -> float:
    assert a.position is not None
    assert b.position is not None
    return math.dist(a.position, b.position)


def build(n: int) -> Hospital:
    return hospital_for_devices(n).generate()


# --- what the demo hospital contains ---------------------------------------------------------------


def test_the_demo_hospital_has_every_kind_of_place_and_every_mqtt_profile() -> None:
    tags = {t for room, _ in rooms(DEMO.sites).values() for t in room.tags}
    assert tags == set(ROOM_TAGS)
    names = " ".join(room.name for room, _ in rooms(DEMO.sites).values())
    places = "门诊药房 药库 生化实验室 病理取材室 CT室 病房 护士站 厨房操作间"
    places += " 消防水泵房 高低压配电室 锅炉房 消防控制室 充电区 楼梯间 走廊"
    for place in places.split():
        assert place in names, place
    departments = {d for _, d in rooms(DEMO.sites).values()} | {
        r.department for r, _ in rooms(DEMO.sites).values()
    }
    assert {"药剂科", "检验科", "病理科", "放射科", "营养科", "后勤保障部", "保卫科", "心内科"} <= departments
    assert [b.name for b in DEMO.sites[0].buildings] == ["门诊医技楼", "住院楼", "电动车充电棚"]
    assert set(Counter(d.profile for d in DEMO.devices)) == MQTT_PROFILES
    assert all(d.responsible and d.name and d.installed for d in DEMO.devices)


def test_hazardous_chemicals_are_stored_in_the_pharmacy_laboratory_and_pathology_each_watched() -> None:
    hazmat = {p: (r, dept) for p, (r, dept) in rooms(DEMO.sites).items() if "hazmat" in r.tags}
    assert sorted(r.department or dept for r, dept in hazmat.values()) == ["检验科", "病理科", "药剂科"]
    assert any("甲醛" in r.name and "二甲苯" in r.name for r, _ in hazmat.values())  # pathology
    for path in hazmat:
        assert len(at(DEMO.devices, path, SMOKE)) == 1, path


def test_the_demo_still_stages_its_fire_in_a_ward_and_its_fault_on_a_gas_detector() -> None:
    registry = load_registry(DEMO_HOSPITAL)
    plan = plan_for(cast("Service", SimpleNamespace(registry=registry)))
    zone_rooms = {r.id: r for p, (r, _) in rooms(DEMO.sites).items() if zone_of(p) == plan.fire_zone}
    assert any("ward" in r.tags for r in zone_rooms.values())
    assert registry.devices[plan.faulty_device].profile == GAS
    assert registry.locations[plan.silent_device].building != plan.fire_zone.split("/")[1]


# --- placement rules -------------------------------------------------------------------------------


def test_every_ward_has_one_smoke_detector_at_its_centre() -> None:
    wards = [p for p, (r, _) in rooms(DEMO.sites).items() if "ward" in r.tags]
    assert len(wards) == 5 * 2 * 7  # ward floors x nursing units x wards
    for path in wards:
        (smoke,) = at(DEMO.devices, path)
        rect = DEMO.plans[floor_of(path)].rooms[path]
        assert smoke.profile == SMOKE
        assert smoke.position == pytest.approx(rect.centre)


def test_corridor_detectors_are_on_the_centre_line_at_most_15_m_apart_and_7_5_m_from_the_ends() -> None:
    corridors = [p for p, (r, _) in rooms(DEMO.sites).items() if "corridor" in r.tags]
    assert corridors
    for path in corridors:
        rect = DEMO.plans[floor_of(path)].rooms[path]
        xs = sorted(d.position[0] for d in at(DEMO.devices, path, SMOKE) if d.position)
        assert xs, path
        assert all(
            d.position and d.position[1] == pytest.approx(rect.centre[1])
            for d in at(DEMO.devices, path, SMOKE)
        )
        gaps = [b - a for a, b in itertools.pairwise(xs)]
        assert all(g <= CORRIDOR_SMOKE_SPACING for g in gaps), (path, gaps)
        assert xs[0] - rect.x0 <= CORRIDOR_SMOKE_SPACING / 2
        assert rect.x1 - xs[-1] <= CORRIDOR_SMOKE_SPACING / 2


def test_smoke_from_any_room_meets_a_corridor_detector_within_10_m() -> None:
    """The geometry the fire physics relies on: in a zone with a corridor, every room detector has a
    corridor detector a few metres from its door."""
    corridor_smoke: dict[str, list[Device]] = defaultdict(list)
    for d in DEMO.devices:
        if d.place.endswith("/corr") and d.profile == SMOKE:
            corridor_smoke[zone_of(d.place)].append(d)
    for d in DEMO.devices:
        if d.profile == SMOKE and zone_of(d.place) in corridor_smoke and not d.place.endswith("/corr"):
            assert min(dist(d, c) for c in corridor_smoke[zone_of(d.place)]) <= 10.0, d.id


def test_kitchen_and_boiler_room_have_heat_and_gas_detectors_and_no_smoke_detectors() -> None:
    for room_id in ("kitchen", "boiler"):
        (path,) = [p for p in rooms(DEMO.sites) if p.endswith(f"/{room_id}")]
        profiles = Counter(d.profile for d in at(DEMO.devices, path))
        assert profiles[HEAT] >= 2, path  # a room over 30 m²: one per 20 m² (Table 6.2.2)
        assert profiles[GAS] >= 1, path
        assert profiles[SMOKE] == 0, path
    (lab,) = [p for p, (r, _) in rooms(DEMO.sites).items() if "laboratory" in r.tags and "gas" in r.tags]
    assert at(DEMO.devices, lab, GAS)


def test_the_plant_rooms_carry_pump_pressures_the_pool_level_and_the_incomer_monitors() -> None:
    plant = {r.id: p for p, (r, _) in rooms(DEMO.sites).items() if "plant" in r.tags}
    assert set(plant) == {"pump", "switch", "boiler"}
    pump = Counter(d.profile for d in at(DEMO.devices, plant["pump"]))
    assert (pump[PRESSURE], pump[TANK]) == (2, 1)
    assert pump[HEAT] >= 1
    switch = [d for d in at(DEMO.devices, plant["switch"], ELECTRICAL)]
    assert len(switch) == 2
    assert not any("消防" in d.name for d in switch)  # never on fire-service circuits (GB 50116 §9.2.2)


def test_every_building_has_a_pressure_transmitter_at_the_far_end_of_its_top_floor() -> None:
    site = DEMO.sites[0]
    for b in site.buildings:
        if b.id == "eb":
            continue
        top = f"{site.id}/{b.id}/{b.floors[-1].id}"
        (prs,) = [d for d in DEMO.devices if d.profile == PRESSURE and floor_of(d.place) == top]
        assert prs.position is not None
        assert prs.position[0] > DEMO.plans[top].width - 1.0


def test_each_floor_has_its_distribution_board_monitor_and_each_nursing_unit_its_oxygen() -> None:
    for floor in DEMO.plans:
        if floor.endswith("/fb1"):  # B1's boards are in the switchgear room
            continue
        assert len([d for d in DEMO.devices if d.profile == ELECTRICAL and floor_of(d.place) == floor]) == 1
    ward_zones = {zone_of(p) for p, (r, _) in rooms(DEMO.sites).items() if "ward" in r.tags}
    oxygen = Counter(zone_of(d.place) for d in DEMO.devices if d.profile == OXYGEN)
    assert oxygen == dict.fromkeys(ward_zones, 1)


def test_every_stairwell_door_on_every_floor_is_monitored() -> None:
    stairs = [p for p, (r, _) in rooms(DEMO.sites).items() if "stair" in r.tags]
    assert len(stairs) > 10
    for path in stairs:
        assert len(at(DEMO.devices, path, DOOR)) == 1, path


def test_the_e_bike_shed_has_smoke_heat_and_a_monitor_in_every_socket() -> None:
    rows = [p for p, (r, _) in rooms(DEMO.sites).items() if "ebike" in r.tags]
    assert rows
    for path in rows:
        profiles = Counter(d.profile for d in at(DEMO.devices, path))
        assert profiles == {SMOKE: 1, HEAT: 1, SOCKET: 8}


def test_wireless_devices_are_the_fire_doors_and_everything_in_the_e_bike_charging_rows() -> None:
    ebike_rows = {p for p, (r, _) in rooms(DEMO.sites).items() if "ebike" in r.tags}
    for d in DEMO.devices:
        expected = d.profile == DOOR or d.place in ebike_rows
        assert ("wireless" in d.tags) == expected, d.id
        assert d.tags in ([], ["wireless"])


# --- geometry --------------------------------------------------------------------------------------


def check_geometry(h: Hospital) -> None:
    """Every device is in a room of the place tree, inside that room on its floor's plan, and the
    rooms of a floor do not overlap."""
    room_paths = set(rooms(h.sites))
    assert set().union(*(p.rooms for p in h.plans.values())) == room_paths
    for d in h.devices:
        assert d.place in room_paths, d.id
        plan = h.plans[floor_of(d.place)]
        assert d.position is not None
        assert plan.outline.contains(*d.position), d.id
        assert plan.rooms[d.place].contains(*d.position), d.id
    for plan in h.plans.values():
        rects = sorted(plan.rooms.values(), key=lambda r: (r.y0, r.x0))
        for a, b in itertools.pairwise(rects):
            same_band = a.y0 == b.y0
            assert not same_band or a.x1 <= b.x0 + 1e-6, plan.path


def test_every_device_lies_in_its_room_on_its_floor_plan() -> None:
    check_geometry(DEMO)
    Registry(DEMO.sites, DEMO.devices)


# --- determinism and the shipped registry ----------------------------------------------------------


def test_generation_is_deterministic_for_a_seed_and_only_the_people_and_dates_depend_on_it() -> None:
    assert build_hospital(seed=7) == build_hospital(seed=7)
    _, a = build_hospital(seed=1)
    _, b = build_hospital(seed=2)
    assert [(d.id, d.place, d.position) for d in a] == [(d.id, d.place, d.position) for d in b]
    assert [d.responsible for d in a] != [d.responsible for d in b]


def test_the_shipped_demo_registry_is_the_generator_output() -> None:
    assert DEMO_HOSPITAL.read_text(encoding="utf-8") == dump_registry(DEMO.sites, DEMO.devices)


# --- any size --------------------------------------------------------------------------------------


def test_a_tiny_clinic_is_a_consistent_registry_of_a_few_devices() -> None:
    clinic = build(smallest_hospital())
    assert len(clinic.devices) < 20
    assert [b.id for b in clinic.sites[0].buildings] == ["b1"]
    check_geometry(clinic)
    Registry(clinic.sites, clinic.devices)


def test_a_100_000_device_hospital_builds_a_consistent_registry() -> None:
    # How fast is measured in bench/registry_scale.py, not asserted here.
    big = build(100_000)
    registry = Registry(big.sites, big.devices)
    assert len(registry.devices) == pytest.approx(100_000, rel=0.1)
    assert set(Counter(d.profile for d in big.devices)) == MQTT_PROFILES
    assert all(d.position is not None for d in big.devices)
    per_building = Counter(loc.building for loc in registry.locations.values())
    assert len(per_building) > 10


@pytest.mark.parametrize("n", [15, 20, 40, 100, 267, 350, 1_000, 5_000, 20_000])
def test_hospital_for_devices_lands_within_10_percent(n: int) -> None:
    assert count_devices(hospital_for_devices(n)) == pytest.approx(n, rel=0.1)


def test_bigger_hospitals_have_more_and_taller_buildings() -> None:
    small, large = hospital_for_devices(1_000), hospital_for_devices(50_000)
    assert large.inpatient_buildings > small.inpatient_buildings
    assert large.ward_floors > small.ward_floors


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ward_floors": 0},
        {"rooms_per_zone": 0},
        {"zones_per_floor": 0},
        {"inpatient_buildings": -1},
        {"medtech_floors": 0},
        {"ward_floors": 1000},
        {"scale": 0.0},
    ],
)
def test_impossible_sizes_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(HospitalSizeError):
        build_hospital(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [0, 5, 10_000_000])
def test_device_counts_out_of_range_are_refused(n: int) -> None:
    with pytest.raises(HospitalSizeError, match="devices must be between"):
        hospital_for_devices(n)


# --- the command -----------------------------------------------------------------------------------


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(building)
    app.command("other")(lambda: None)  # two commands: `building` stays a subcommand, as registered
    return app


def test_the_command_writes_a_loadable_registry_of_the_asked_size(tmp_path: Path) -> None:
    out = tmp_path / "registry.yaml"
    result = CliRunner().invoke(cli(), ["building", "--out", str(out), "--devices", "2000", "--seed", "3"])
    assert result.exit_code == 0, result.output
    registry = load_registry(out)
    assert len(registry.devices) == pytest.approx(2000, rel=0.1)
    for text in ("devices by profile", "devices by building", "危化品", "检验科", "病理科", "药剂科"):
        assert text in result.output
    assert not list(tmp_path.glob("*.tmp"))


def test_the_command_with_no_size_writes_the_demo_hospital(tmp_path: Path) -> None:
    out = tmp_path / "demo.yaml"
    result = CliRunner().invoke(cli(), ["building", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == DEMO_HOSPITAL.read_text(encoding="utf-8")


def test_the_command_takes_explicit_sizes_and_a_site(tmp_path: Path) -> None:
    out = tmp_path / "r.yaml"
    args = ["--inpatient-buildings", "2", "--ward-floors", "3", "--rooms-per-zone", "4", "--site-id", "h2"]
    result = CliRunner().invoke(cli(), ["building", "--out", str(out), *args, "--site-name", "二院"])
    assert result.exit_code == 0, result.output
    registry = load_registry(out)
    assert registry.places["h2"].name == "二院"
    assert {loc.building for loc in registry.locations.values()} == {"b1", "b2", "b3", "eb"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--devices", "3"], "devices must be between"),
        (["--ward-floors", "0"], "ward_floors must be between"),
        (["--devices", "500", "--ward-floors", "3"], "leave out --ward-floors"),
        (["--site-id", "a/b"], "is not an id"),
    ],
)
def test_the_command_refuses_bad_sizes_with_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "r.yaml"
    result = CliRunner().invoke(cli(), ["building", "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not out.exists()
