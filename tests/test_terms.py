"""One term per thing across the console, the pushes, the PDFs and the spreadsheets: 报警 (not 告警),
派单 (not 指派), 超期 (not 逾期), 备注 (not 留言); the ticket words of the exports are the console's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from alarms.labels import TICKET_ACTION_ZH, TICKET_SOURCE_ZH, TICKET_STATUS_ZH

ROOT = Path(__file__).resolve().parent.parent
REJECTED = {"告警": "报警", "指派": "派单", "逾期": "超期", "留言": "备注"}
# Where the words users see are written: the console, the labels, pushes, reports, exports, tickets.
SHIPPED = [
    "api/static",
    "alarms",
    "tickets",
    "core/pdf_pages.py",
    "core/xlsx_cells.py",
    "api/routes",
    "docs/console.md",
    "docs/alarms.md",
    "docs/tickets.md",
]


def shipped_files() -> list[Path]:
    out: list[Path] = []
    for name in SHIPPED:
        path = ROOT / name
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        out += [p for p in files if p.suffix in {".py", ".js", ".html", ".md"}]
    return out


def console_zh() -> dict[str, str]:
    """The console's Chinese strings (its I18N table's `zh` block), read as the page ships them."""
    text = (ROOT / "api/static/console.js").read_text(encoding="utf-8")
    block = text[text.index("  zh: {") : text.index("  en: {")]
    return {k: v for k, v in re.findall(r'"([\w.]+)": "([^"]*)"', block)}


@pytest.mark.parametrize(("rejected", "chosen"), sorted(REJECTED.items()))
def test_the_rejected_variant_of_a_term_is_nowhere_users_read(rejected: str, chosen: str) -> None:
    found = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in shipped_files()
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if rejected in line and "REJECTED" not in line and "not " + rejected not in line
    ]
    assert found == [], f"say {chosen}, not {rejected}: {found}"


TABLES = [("status", TICKET_STATUS_ZH), ("source", TICKET_SOURCE_ZH), ("action", TICKET_ACTION_ZH)]


@pytest.mark.parametrize(("prefix", "table"), TABLES)
def test_the_exports_name_ticket_statuses_sources_and_actions_as_the_console_does(
    prefix: str, table: dict[str, str]
) -> None:
    zh = console_zh()
    for key, word in table.items():
        assert zh.get(f"{prefix}.{key}") == word, (prefix, key)
