"""A4 pages for the printable exports (the ticket form, the incident report): a margin all round, a
footer on every page, reproducible bytes and only the embedded CJK font named."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import SimpleDocTemplate

PAGE_W, PAGE_H = A4


@dataclass(frozen=True)
class ReportStyles:
    """The paragraph styles the printed reports share (incident, shift, drill), in `font`."""

    value: ParagraphStyle
    small: ParagraphStyle
    title: ParagraphStyle
    heading: ParagraphStyle
    subheading: ParagraphStyle


def report_styles(font: str) -> ReportStyles:
    # wordWrap="CJK" breaks between any two Chinese characters (which have no spaces to break at).
    value = ParagraphStyle("value", fontName=font, fontSize=9.5, leading=13, wordWrap="CJK")
    heading = ParagraphStyle(
        "heading", fontName=font, fontSize=12.5, leading=17, spaceBefore=8, spaceAfter=4, keepWithNext=1
    )
    return ReportStyles(
        value=value,
        small=ParagraphStyle("small", parent=value, fontSize=8.5, leading=11),
        title=ParagraphStyle("title", fontName=font, fontSize=17, leading=23, alignment=TA_CENTER),
        heading=heading,
        subheading=ParagraphStyle("sub", parent=heading, fontSize=10.5, leading=14, spaceBefore=5),
    )


def build_a4(
    story: list[Any], *, font: str, title: str, footer_left: str, page_label: str, margin: float = 16 * mm
) -> bytes:
    """Render `story` on A4 with `margin` all round; every page's footer has `footer_left` and
    `page_label` formatted with the page number (`{page}`)."""

    def footer(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(font, 8)
        canvas.drawString(margin, margin / 2, footer_left)
        canvas.drawRightString(PAGE_W - margin, margin / 2, page_label.format(page=doc.page))
        canvas.restoreState()

    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=A4,
        leftMargin=margin,
        rightMargin=margin,
        topMargin=margin,
        bottomMargin=margin,
        title=title,
        author="firewatch",
        invariant=True,  # the same content renders to the same bytes (no creation time or random id)
        initialFontName=font,  # else every page also names Helvetica, a font not embedded
    )
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buf.getvalue()
