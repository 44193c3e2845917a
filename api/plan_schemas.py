"""Input and output models of floor plans and device positions on them (api/routes/plans.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from core.floor_plans import PlanMedia, PlanSource
from core.registry_spec import PlanFraction


class PlanOut(BaseModel):
    """A floor's plan: what was uploaded, and where to fetch the image."""

    place: str = Field(description="the floor's path")
    place_name: str = Field(description="the floor in words, e.g. 住院楼 3层")
    source: PlanSource = Field(description="what was uploaded: png, svg or pdf (a PDF page is stored as PNG)")
    page: int = Field(description="the PDF's page that was drawn (1 for a PNG or SVG)")
    media_type: PlanMedia = Field(description="what the image is served as")
    width: float = Field(description="the image's width: pixels, or an SVG's user units")
    height: float
    sha256: str = Field(description="the image's content hash, part of image_url: a new plan is a new URL")
    size: int = Field(description="bytes")
    uploaded_by: str = Field(description="who uploaded it (their display name)")
    uploaded_at: float
    image_url: str = Field(description="the image, cacheable for good (the URL changes with the content)")


class PlanDeviceOut(BaseModel):
    """A device on a floor, and where it is on the floor's plan (x, y null: not placed yet)."""

    id: str
    name: str
    profile: str
    kind: str
    place: str = Field(description="its zone or room path")
    place_name: str = Field(description="its zone or room in words")
    x: float | None = Field(description="fraction of the plan's width, from the left")
    y: float | None = Field(description="fraction of the plan's height, from the top")


class PlanPositionIn(BaseModel):
    """Where on its floor's plan a device is: fractions of the plan's width and height."""

    model_config = ConfigDict(extra="forbid")
    x: PlanFraction = Field(description="0: the left edge, 1: the right edge")
    y: PlanFraction = Field(description="0: the top edge, 1: the bottom edge")


class PlanPositionOut(BaseModel):
    device_id: str
    floor: str = Field(description="the floor whose plan the position is on")
    x: float | None
    y: float | None
    persisted: bool = Field(description="written to the registry file, so a restart keeps it")
