"""Which transitions are owed to which push route, and the message each carries.

Pure decisions plus one function that adds outbox rows to the caller's session: the alarm service
calls it inside the transaction that records the transition, so a transition and its pushes are
committed together or not at all (the transactional outbox pattern). Delivery is the dispatcher's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from alarms.labels import CATEGORY_ZH, alarm_type_zh
from alarms.model import Transition
from core.domain import AlarmCategory
from core.settings import PushRoute
from storage.models import OutboxRow

ACTION_ZH = {
    "raised": "报警",
    "repeated": "再次报警",
    "cleared": "已恢复",
    "acknowledged": "已确认",
    "closed": "已关闭",
    "shelved": "已搁置",
    "unshelved": "取消搁置",
    "escalated": "未确认，已升级",
    "reminded": "未确认，再次提醒",
    "flapping": "频繁报警，暂停推送",
    "steady": "恢复稳定",
    "released": "维护结束，恢复推送",
    "normal": "读数恢复（火警保持，待复位）",
    "reset": "已复位",
    "superseded": "已升级为火警",
}


def matches(route: PushRoute, t: Transition) -> bool:
    """A route with roles gets what the escalation policy addresses to its roles; a route without
    roles gets the actions it subscribes to. Both honour their category, site and department filters."""
    after = t.after
    wanted = any(r in t.targets for r in route.roles) if route.roles else t.action in route.actions
    return (
        wanted
        and (not route.categories or AlarmCategory(after["category"]) in route.categories)
        and (not route.sites or after["site"] in route.sites)
        and (not route.departments or after.get("department", "") in route.departments)
    )


def render(t: Transition, place_name: str) -> dict[str, Any]:
    """The push message, in Chinese first (the people on duty), with the transition attached."""
    a = t.after
    category = AlarmCategory(a["category"])
    when = datetime.fromtimestamp(a["last_ts"]).strftime("%Y-%m-%d %H:%M:%S")
    action = ACTION_ZH.get(t.action.value, t.action.value)
    title = f"【{CATEGORY_ZH[category]}】{place_name} {alarm_type_zh(a['alarm_type'])} {action}"
    if a.get("maintenance_id") is not None:
        # Only a fire alarm is pushed during maintenance (DESIGN §4): say so, it is still a fire.
        title = f"【维护期间】{title}"
    lines = [
        f"位置: {place_name}",
        f"设备: {a['device_id']}",
        f"类型: {alarm_type_zh(a['alarm_type'])} ({a['alarm_type']})",
        f"时间: {when}",
        f"状态: {action} · 第 {a['occurrences']} 次",
    ]
    if a.get("value") is not None:
        lines.append(f"读数: {a['value']}")
    if a.get("detail"):
        lines.append(f"说明: {a['detail']}")
    if a.get("maintenance_id") is not None:
        lines.append(f"维护: 设备处于维护窗口 #{a['maintenance_id']}，火警仍按规定推送，请现场核实")
    if a.get("flapping"):
        lines.append("注意: 该探测器频繁报警/恢复，已生成隐患整改单")
    if t.targets:
        lines.append(f"通知: {', '.join(t.targets)}")
    if t.note:
        lines.append(f"备注: {t.note} ({t.actor})")
    return {"title": title, "body": "\n".join(lines), "transition": t.to_json()}


def enqueue(s: Session, routes: list[PushRoute], t: Transition, place_name: str, now: float) -> int:
    """Add one outbox row per route this transition is owed to; returns how many."""
    owed = [r for r in routes if matches(r, t)]
    if not owed:
        return 0
    message = render(t, place_name)
    for route in owed:
        s.add(
            OutboxRow(
                route=route.name,
                alarm_id=t.alarm_id,
                created_ts=now,
                payload=message,
                attempts=0,
                next_ts=now,
                delivered_ts=None,
                last_error="",
            )
        )
    return len(owed)
