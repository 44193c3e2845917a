"""Floor plan images (平面图): an uploaded PNG, SVG or PDF page checked and made into what is stored.

GB 25506-2010 asks the fire control room for a graphic display of where an alarm is; the
console draws a floor's devices over its plan. What is stored is a PNG or an SVG:

- a PNG is decoded whole (a broken or truncated file is refused) and kept as uploaded;
- an SVG is parsed as XML and kept as uploaded: it is served with a sandboxing Content-Security-Policy
  and `nosniff`, and the console shows it only through `<img>`, where no script in it runs
  (docs/decisions/0014-floor-plan-images.md); a document type (entities) is refused outright;
- a PDF page is rendered to PNG here, with PDFium (pypdfium2's wheel carries it: no system
  package needed), its longer side `PDF_LONG_SIDE` pixels.

Limits: `MAX_PLAN_BYTES` per upload, `MAX_PLAN_PIXELS` per raster image (a decompression bomb is
refused before it is decoded).
"""

from __future__ import annotations

import hashlib
import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from enum import StrEnum

import pypdfium2 as pdfium
from PIL import Image, UnidentifiedImageError

MAX_PLAN_BYTES = 10 * 1024 * 1024  # a scanned A1 drawing as PNG or PDF is a few MB
MAX_PLAN_PIXELS = 40_000_000  # e.g. 8000 x 5000; Pillow decodes a PNG into 4 bytes a pixel
PDF_LONG_SIDE = 3000  # pixels: sharp on a control-room screen, a PNG of a few hundred kB
MAX_PDF_PAGES = 500
SVG_NS = "{http://www.w3.org/2000/svg}svg"
_LENGTH = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(px)?\s*$")


class PlanSource(StrEnum):
    """What was uploaded."""

    PNG = "png"
    SVG = "svg"
    PDF = "pdf"


class PlanMedia(StrEnum):
    """What is stored and served."""

    PNG = "image/png"
    SVG = "image/svg+xml"


class PlanError(ValueError):
    """The upload cannot be a floor plan: the message says why (answered 422)."""


class PlanTooLargeError(PlanError):
    """The upload or its image is larger than the limits (answered 413)."""


@dataclass(frozen=True, slots=True)
class PlanImage:
    source: PlanSource
    media: PlanMedia
    data: bytes
    width: float  # pixels (for an SVG: its user units), the image's aspect ratio for the console
    height: float

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def sniff(data: bytes) -> PlanSource | None:
    """The kind of file by its first bytes (not by its name or declared type)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PlanSource.PNG
    if data.startswith(b"%PDF-"):
        return PlanSource.PDF
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<?xml", b"<svg", b"<!--")) and b"<svg" in data[: 64 * 1024].lower():
        return PlanSource.SVG
    return None


def read_plan(data: bytes, page: int = 1) -> PlanImage:
    """The plan image of an upload; `page` (from 1) picks a PDF's page. PlanError if it is none."""
    if len(data) > MAX_PLAN_BYTES:
        raise PlanTooLargeError(f"the file is larger than {MAX_PLAN_BYTES // 2**20} MB")
    source = sniff(data)
    if source is None:
        raise PlanError("not a PNG, SVG or PDF file: upload the floor plan as one of these")
    if source is PlanSource.PNG:
        return _png(data)
    if source is PlanSource.SVG:
        return _svg(data)
    return _pdf(data, page)


def _png(data: bytes) -> PlanImage:
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            width, height = image.size  # from the header: nothing decoded yet
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PlanError(f"the PNG file is broken: {exc}") from None
    _check_pixels(width, height)
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            image.load()  # decodes every row: a truncated or corrupt file fails here
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PlanError(f"the PNG file is broken: {exc}") from None
    return PlanImage(PlanSource.PNG, PlanMedia.PNG, data, float(width), float(height))


def _check_pixels(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise PlanError("the image has no pixels")
    if width * height > MAX_PLAN_PIXELS:
        raise PlanTooLargeError(
            f"the image is {width} x {height} pixels, more than {MAX_PLAN_PIXELS:,}: scale it down"
        )


def _svg(data: bytes) -> PlanImage:
    # Entities (and so "billion laughs" and external entities) come only with a document type.
    if b"<!doctype" in data.lower() or b"<!entity" in data.lower():
        raise PlanError("an SVG with a document type (<!DOCTYPE or <!ENTITY) is not taken")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise PlanError(f"the SVG file is not well-formed XML: {exc}") from None
    if root.tag != SVG_NS:
        raise PlanError("the file is XML but not an SVG image (its root is not <svg> in the SVG namespace)")
    width, height = _svg_size(root)
    return PlanImage(PlanSource.SVG, PlanMedia.SVG, data, width, height)


def _svg_size(root: ET.Element) -> tuple[float, float]:
    """The SVG's size: its viewBox, else its width and height in pixels."""
    box = root.get("viewBox", "").replace(",", " ").split()
    if len(box) == 4:
        try:
            width, height = float(box[2]), float(box[3])
        except ValueError:
            width = height = 0.0
        if width > 0 and height > 0:
            return width, height
    sizes = [_LENGTH.match(root.get(name, "")) for name in ("width", "height")]
    if sizes[0] and sizes[1]:
        width, height = float(sizes[0].group(1)), float(sizes[1].group(1))
        if width > 0 and height > 0:
            return width, height
    raise PlanError("the SVG has no size: give it a viewBox (or width and height in pixels)")


def _pdf(data: bytes, page: int) -> PlanImage:
    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise PlanError(f"the PDF file cannot be read: {exc}") from None
    try:
        pages = len(document)
        if pages > MAX_PDF_PAGES:
            raise PlanError(f"the PDF has {pages} pages, more than {MAX_PDF_PAGES}: upload the floor's page")
        if not 1 <= page <= pages:
            raise PlanError(f"the PDF has {pages} page(s), no page {page}")
        pdf_page = document[page - 1]
        try:
            width, height = pdf_page.get_size()
            if width <= 0 or height <= 0:
                raise PlanError(f"page {page} of the PDF has no size")
            scale = PDF_LONG_SIDE / max(width, height)
            bitmap = pdf_page.render(scale=scale, fill_color=(255, 255, 255, 255))
            image = bitmap.to_pil()
        except pdfium.PdfiumError as exc:
            raise PlanError(f"page {page} of the PDF cannot be drawn: {exc}") from None
        finally:
            pdf_page.close()
    finally:
        document.close()
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return PlanImage(PlanSource.PDF, PlanMedia.PNG, out.getvalue(), float(image.width), float(image.height))
