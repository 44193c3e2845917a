"""The demo hospital's floor plans: drawn from its building model (simulators/floor_drawings.py),
kept in the state store for every floor that has none yet, and every device placed on them.

A plan someone uploaded over the demo's is kept: the demo only fills floors without one.
"""

from __future__ import annotations

import time

from sqlalchemy.orm import Session, sessionmaker

from core.floor_plans import read_plan
from core.registry import Registry
from simulators.floor_drawings import drawings, placed
from simulators.hospital import generate_hospital
from storage.plan_models import FloorPlanRow

DRAWN_BY = "演示平面图"  # shown as who uploaded it


def demo_registry_placed(registry: Registry) -> Registry:
    """The demo registry with every device placed on its floor's drawing."""
    return placed(registry, generate_hospital().plans)


def install_demo_plans(sessions: sessionmaker[Session]) -> int:
    """Store the demo hospital's drawing of each floor that has no plan yet; how many were stored."""
    hospital = generate_hospital()
    stored = 0
    with sessions() as db, db.begin():
        for floor, svg in drawings(hospital.sites, hospital.plans).items():
            if db.get(FloorPlanRow, floor) is not None:
                continue
            image = read_plan(svg)  # checked as an upload is
            db.add(
                FloorPlanRow(
                    place=floor,
                    source=image.source.value,
                    page=1,
                    media_type=image.media.value,
                    width=image.width,
                    height=image.height,
                    sha256=image.sha256,
                    size=len(image.data),
                    uploaded_by=DRAWN_BY,
                    uploaded_at=time.time(),
                    data=image.data,
                )
            )
            stored += 1
    return stored
