"""The demo hospital ships floor plans (issue 22): a drawing per floor made from its building model,
every device placed on it, stored by the demo for each floor without a plan."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

from core.floor_plans import PlanSource, read_plan
from core.registry import PlaceKind, load_registry
from firewatch.demo_plans import demo_registry_placed, install_demo_plans
from simulators.floor_drawings import drawings, on_drawing
from simulators.hospital import DEMO_HOSPITAL, generate_hospital
from simulators.hospital_panel import with_panel
from storage.db import open_store
from storage.plan_models import FloorPlanRow


def test_every_floor_of_the_demo_hospital_has_a_drawing_naming_its_rooms_and_zones() -> None:
    hospital = generate_hospital()
    registry = load_registry(DEMO_HOSPITAL)
    floors = [p for p in registry.places.values() if p.kind == PlaceKind.FLOOR]
    drawn = drawings(hospital.sites, hospital.plans)
    assert sorted(drawn) == sorted(p.path for p in floors)
    for floor, svg in drawn.items():
        image = read_plan(svg)  # taken as an upload would be
        assert image.source == PlanSource.SVG
        text = svg.decode("utf-8")
        below = [p for p in registry.places.values() if p.path.startswith(f"{floor}/")]
        for place in below:
            assert escape(place.name) in text, (floor, place.name)


def test_every_demo_device_is_placed_inside_its_room_on_the_drawing() -> None:
    hospital = generate_hospital()
    demo, _ = with_panel(load_registry(DEMO_HOSPITAL))
    placed = demo_registry_placed(demo)
    assert [d.id for d in placed.specs.values()] == [d.id for d in demo.specs.values()]
    unplaced = [d.id for d in placed.specs.values() if d.plan is None]
    assert unplaced == []
    for device in placed.specs.values():
        assert device.plan is not None
        plan = hospital.plans["/".join(device.place.split("/")[:3])]
        room = plan.rooms.get(device.place, plan.outline)
        left, top = on_drawing(plan, room.x0, room.y1)
        right, bottom = on_drawing(plan, room.x1, room.y0)
        x, y = device.plan
        assert left - 1e-3 <= x <= right + 1e-3, device.id
        assert top - 1e-3 <= y <= bottom + 1e-3, device.id


def test_the_demo_stores_a_plan_per_floor_once_and_keeps_one_uploaded_over_it(tmp_path: Path) -> None:
    _, sessions = open_store(f"sqlite:///{tmp_path / 'state.sqlite'}")
    assert install_demo_plans(sessions) == len(generate_hospital().plans)
    with sessions() as db, db.begin():
        row = db.get(FloorPlanRow, "sxzyy/b2/f2")
        assert row is not None
        row.sha256, row.uploaded_by = "0" * 64, "保卫科 周九"
    assert install_demo_plans(sessions) == 0
    with sessions() as db:
        kept = db.get(FloorPlanRow, "sxzyy/b2/f2")
        assert kept is not None
        assert kept.uploaded_by == "保卫科 周九"
