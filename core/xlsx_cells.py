"""Cells and sheets for the XLSX exports (the ticket ledger, the incident report): text is data,
never a formula, control characters XML cannot carry are dropped, headers bold on grey and repeated
on every printed page. Write-only workbooks: large exports are streamed, not held as cell objects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

WRAP = Alignment(wrap_text=True, vertical="top")
HEADER_FONT = Font(bold=True)
HEADER_FILL = PatternFill("solid", fgColor="DDDDDD")


def cell(ws: Any, value: object, number_format: str | None = None, font: Font | None = None) -> Any:
    """One cell; "" is an empty cell (a blank on the paper form)."""
    if value == "":
        value = None
    if isinstance(value, str):
        # Text is data, never a formula (a note starting with "=" stays text), and control
        # characters that XML cannot carry are dropped rather than failing the export.
        value = ILLEGAL_CHARACTERS_RE.sub("", value)
    out = WriteOnlyCell(ws, value=value)
    if isinstance(value, str):
        out.data_type = "s"
        out.alignment = WRAP
    if number_format is not None:
        out.number_format = number_format
        out.alignment = WRAP
    if font is not None:
        out.font = font
    return out


def header(ws: Any, labels: Sequence[str]) -> list[Any]:
    """A header row's cells."""
    cells = []
    for label in labels:
        c = cell(ws, label, font=HEADER_FONT)
        c.fill = HEADER_FILL
        cells.append(c)
    return cells


def sheet(wb: Any, name: str, widths: Sequence[float]) -> Any:
    """A sheet with its columns' widths, the header row frozen and printed on every page."""
    ws = wb.create_sheet(name)
    for i, width in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(i)].width = width
    ws.freeze_panes = "A2"
    ws.print_title_rows = "1:1"
    return ws
