"""The printable sheet of staff hazard report QR codes (随手拍二维码): A4 pages of cut-out labels,
each with its QR code, the place (and device) in Chinese and what to do: 发现消防隐患？扫码上报.

The QR codes are drawn by reportlab's own QR widget (pure Python, already pinned for the other
printouts), so the sheet needs no further library; the text uses the embedded CJK font."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, Table, TableStyle

from core.cjk_font import embedded_font
from core.pdf_pages import build_a4

INSTRUCTION = "发现消防隐患？扫码上报"
HINT = "无需登录 · 可拍照 · 消防控制室受理"
COLUMNS = 3
QR_SIZE = 42 * mm


@dataclass(frozen=True)
class Label:
    url: str  # what the QR code holds: the report page of one code
    where: str  # the place in words, e.g. 住院楼 3层 东区
    what: str  # the device in words, or "" for the place's own code


def qr_drawing(url: str, size: float = QR_SIZE) -> Drawing:
    widget = QrCodeWidget(url, barLevel="M")  # M: a smudged or partly covered label still scans
    x0, y0, x1, y1 = widget.getBounds()
    drawing = Drawing(size, size, transform=[size / (x1 - x0), 0, 0, size / (y1 - y0), 0, 0])
    drawing.add(widget)
    return drawing


def render_sheet_pdf(labels: list[Label], title: str, font_path: Path | None = None) -> bytes:
    """The labels, three a row, as A4 pages. Raises core.cjk_font.FontUnavailableError without a
    CJK font to embed."""
    font = embedded_font(font_path)
    big = ParagraphStyle("big", fontName=font, fontSize=12, leading=16, alignment=TA_CENTER, wordWrap="CJK")
    where = ParagraphStyle("where", parent=big, fontSize=9.5, leading=12.5)
    small = ParagraphStyle("small", parent=big, fontSize=7.5, leading=10, textColor="#555555")

    def cell(label: Label) -> list[Any]:
        parts: list[Any] = [Paragraph(escape(INSTRUCTION), big), qr_drawing(label.url)]
        parts.append(Paragraph(escape(label.where), where))
        if label.what:
            parts.append(Paragraph(escape(label.what), where))
        parts.append(Paragraph(escape(HINT), small))
        return parts

    cells: list[Any] = [cell(label) for label in labels]
    cells += [""] * (-len(cells) % COLUMNS)
    rows = [cells[i : i + COLUMNS] for i in range(0, len(cells), COLUMNS)]
    width = 59 * mm
    table = Table(rows or [[""]], colWidths=[width] * COLUMNS)
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.5, "#999999"),  # cutting lines
                ("ALIGN", (0, 0), (-1, -1), "CENTER"),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("TOPPADDING", (0, 0), (-1, -1), 3 * mm),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 3 * mm),
            ]
        )
    )
    heading = ParagraphStyle("heading", fontName=font, fontSize=14, leading=20, alignment=TA_CENTER)
    story: list[Any] = [Paragraph(escape(title), heading), table]
    return build_a4(story, font=font, title=title, footer_left=title, page_label="第 {page} 页")
