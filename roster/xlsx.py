"""The roster as a spreadsheet (docs/duty.md): the import sheet, its template, and the export.

One row a person on a shift: 日期, 班次, 开始, 结束, 岗位, 姓名. Rows with the same date, shift name,
start and end are one shift. 结束 at or before 开始 ends the next day (a night shift, 20:00 to 08:00).
岗位 is the duty role in Chinese (消防控制室, 微型消防站, 值班领导) or a site's own role as named;
姓名 a display name or a user name. Every row is read and every shift checked before anything is
saved; each error names its row and column in Chinese.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from openpyxl import Workbook, load_workbook

from alarms.labels import DUTY_ROLE_ZH, duty_role_zh
from core.xlsx_cells import cell, header, sheet
from roster.rules import ROLE_PATTERN, Member, ShiftDraft

if TYPE_CHECKING:
    from roster.service import Shift

COLUMNS = ("日期", "班次", "开始", "结束", "岗位", "姓名")
WIDTHS = (14, 10, 8, 8, 14, 16)
MAX_ROWS = 5000
ROLE_BY_ZH = {zh: role for role, zh in DUTY_ROLE_ZH.items()}


@dataclass
class SheetError(ValueError):
    """What is wrong with an imported sheet: one message per problem, each naming its row."""

    errors: list[tuple[list[int], str, str]] = field(default_factory=list)  # (rows, column, message)

    def __str__(self) -> str:
        return "；".join(text(e) for e in self.errors)


def text(error: tuple[list[int], str, str]) -> str:
    """第 3 行，日期：无法识别…; a shift's rule broken names all its rows (第 2–4 行)."""
    rows, column, message = error
    return f"{rows_text(rows)}{'，' + column if column else ''}：{message}"


@dataclass
class ImportedShift:
    draft: ShiftDraft
    rows: list[int]


def _date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?\s*", value)
        if m:
            try:
                return date(int(m[1]), int(m[2]), int(m[3]))
            except ValueError:
                return None
    return None


def _time(value: Any) -> time | None:
    if isinstance(value, datetime):
        return value.time()
    if isinstance(value, time):
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d{1,2})[:：](\d{2})\s*", value)
        if m and int(m[1]) <= 24 and int(m[2]) < 60:
            return time(0, int(m[2])) if int(m[1]) == 24 else time(int(m[1]), int(m[2]))
    return None


def read_sheet(data: bytes, people: dict[str, str]) -> list[ImportedShift]:
    """The shifts of an uploaded sheet, or SheetError listing every problem. `people`: every user
    who may be on duty, user name -> display name."""
    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception:  # not a workbook at all: a zip, XML or format error from deep inside openpyxl
        raise SheetError([([], "", "无法读取该文件：请上传 XLSX 工作簿（可先下载模板）")]) from None
    ws = wb.worksheets[0]
    rows = list(ws.iter_rows(values_only=True, max_row=MAX_ROWS + 2))
    wb.close()
    if not rows:
        raise SheetError([([], "", "表格是空的")])
    head = [str(v).strip() if v is not None else "" for v in rows[0]]
    missing = [c for c in COLUMNS if c not in head]
    if missing:
        raise SheetError([([1], "", f"缺少列：{'、'.join(missing)}（应为 {'、'.join(COLUMNS)}）")])
    if len(rows) > MAX_ROWS + 1:
        raise SheetError([([], "", f"一次最多导入 {MAX_ROWS} 行")])
    at = {c: head.index(c) for c in COLUMNS}
    by_display: dict[str, list[str]] = {}
    for account, display in people.items():
        by_display.setdefault(display, []).append(account)
    errors: list[tuple[list[int], str, str]] = []
    shifts: dict[tuple[date, str, time, time], ImportedShift] = {}
    for n, values in enumerate(rows[1:], start=2):
        row = {c: values[at[c]] if at[c] < len(values) else None for c in COLUMNS}
        if all(v is None or (isinstance(v, str) and not v.strip()) for v in row.values()):
            continue
        day, start, end = _date(row["日期"]), _time(row["开始"]), _time(row["结束"])
        name = str(row["班次"] or "").strip()
        role_text = str(row["岗位"] or "").strip()
        person = str(row["姓名"] or "").strip()
        problems: list[tuple[list[int], str, str]] = []
        if day is None:
            problems.append(([n], "日期", f"无法识别「{_shown(row['日期'])}」，应为日期，如 2026-12-05"))
        if not name or len(name) > 32:
            problems.append(([n], "班次", "应填班次名称（32 字以内），如 白班、夜班"))
        if start is None:
            problems.append(([n], "开始", f"无法识别「{_shown(row['开始'])}」，应为时间，如 08:00"))
        if end is None:
            problems.append(([n], "结束", f"无法识别「{_shown(row['结束'])}」，应为时间，如 20:00"))
        role = ROLE_BY_ZH.get(role_text, role_text)
        if not re.fullmatch(ROLE_PATTERN, role) or len(role) > 64:
            known = "、".join(DUTY_ROLE_ZH.values())
            problems.append(([n], "岗位", f"无法识别「{role_text}」，应为 {known} 或本单位的岗位代码"))
        user: str | None = person if person in people else None
        if user is None:
            matches = by_display.get(person, [])
            if len(matches) == 1:
                user = matches[0]
            elif len(matches) > 1:
                problems.append(([n], "姓名", f"「{person}」有 {len(matches)} 个账号同名，请填写账号名"))
            else:
                problems.append(([n], "姓名", f"没有这个人员（或账号已停用）：「{person}」"))
        if problems or day is None or start is None or end is None or user is None:
            errors.extend(problems)
            continue
        key = (day, name, start, end)
        if key not in shifts:
            begins = datetime.combine(day, start)
            ends = datetime.combine(day, end)
            if ends <= begins:  # a night shift ends the next day
                ends += timedelta(days=1)
            shifts[key] = ImportedShift(ShiftDraft(name, begins.timestamp(), ends.timestamp(), ()), [])
        found = shifts[key]
        found.rows.append(n)
        found.draft = ShiftDraft(
            name, found.draft.start_ts, found.draft.end_ts, (*found.draft.members, Member(user, role))
        )
    if errors:
        raise SheetError(errors)
    if not shifts:
        raise SheetError([([], "", "表格中没有值班记录")])
    return sorted(shifts.values(), key=lambda s: s.draft.start_ts)


def _shown(value: Any) -> str:
    return "" if value is None else str(value)[:40]


def rows_text(rows: Sequence[int]) -> str:
    if not rows:
        return "表格"
    return f"第 {rows[0]} 行" if len(rows) == 1 else f"第 {rows[0]}–{rows[-1]} 行"


def template() -> bytes:
    """An example sheet to fill in: one day and one night shift."""
    wb = Workbook(write_only=True)
    ws = sheet(wb, "值班表", WIDTHS)
    ws.append(header(ws, COLUMNS))
    examples = [
        ("2026-12-07", "白班", "08:00", "20:00", "消防控制室", "张三"),
        ("2026-12-07", "白班", "08:00", "20:00", "消防控制室", "李四"),
        ("2026-12-07", "白班", "08:00", "20:00", "微型消防站", "王五"),
        ("2026-12-07", "白班", "08:00", "20:00", "值班领导", "赵主任"),
        ("2026-12-07", "夜班", "20:00", "08:00", "消防控制室", "钱六"),
        ("2026-12-07", "夜班", "20:00", "08:00", "消防控制室", "孙七"),
        ("2026-12-07", "夜班", "20:00", "08:00", "值班领导", "周主任"),
    ]
    for example in examples:
        ws.append([cell(ws, v) for v in example])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def export(shifts: list[Shift]) -> bytes:
    """The roster in the import's own format (a person a row), so an export can be edited and
    imported again for another week."""
    wb = Workbook(write_only=True)
    ws = sheet(wb, "值班表", WIDTHS)
    ws.append(header(ws, COLUMNS))
    for s in shifts:
        start, end = datetime.fromtimestamp(s.start_ts), datetime.fromtimestamp(s.end_ts)
        for m in s.members:
            ws.append(
                [
                    cell(ws, start.strftime("%Y-%m-%d")),
                    cell(ws, s.name),
                    cell(ws, start.strftime("%H:%M")),
                    cell(ws, end.strftime("%H:%M")),
                    cell(ws, duty_role_zh(m.role)),
                    cell(ws, m.name),
                ]
            )
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
