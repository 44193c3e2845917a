"""Which transitions are owed to which push route, and the message each carries.

Pure decisions plus the functions that add outbox rows in the caller's transaction: the alarm
service calls them inside the transaction that records the transition, so a transition and its
pushes are committed together or not at all (the transactional outbox pattern). Delivery is the
dispatcher's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from orjson import Fragment
from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from accounts.display_names import SYSTEM_ACTOR, person_zh, read_display_names
from alarms.batch import LOCAL_TIME, OUTBOX, OUTBOX_COLUMNS, PendingNotice, batch_of
from alarms.describe import describe
from alarms.driver_rows import insert_many
from alarms.incidents import SILENT, urgent
from alarms.labels import (
    CATEGORY_ZH,
    INCIDENT_ACTION_ZH,
    INCIDENT_KIND_ZH,
    VERIFICATION_ZH,
    alarm_type_zh,
    duty_role_zh,
)
from alarms.model import IncidentUpdate, Transition
from alarms.type_names import channel_unit
from core.domain import AlarmCategory, IncidentAction, IncidentKind, Verification
from core.settings import PushRoute
from storage.db import json_dumps
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
    """Per-alarm pushes go only to routes that ask for them (`per_alarm`): the people on duty hear of
    incidents (`incident_matches`). A route with roles gets what the escalation policy addresses to
    its roles; a route without roles gets the actions it subscribes to. Both honour their category,
    site and department filters."""
    if not route.per_alarm:
        return False
    after = t.after
    wanted = any(r in t.targets for r in route.roles) if route.roles else t.action in route.actions
    return (
        wanted
        and (not route.categories or AlarmCategory(after["category"]) in route.categories)
        and (not route.sites or after["site"] in route.sites)
        and (not route.departments or after.get("department", "") in route.departments)
    )


def local_time(ts: float) -> str:
    """`ts` as the people on duty read it: local date and time to the second."""
    return datetime.fromtimestamp(ts).strftime(LOCAL_TIME)


def render(
    t: Transition,
    place_name: str,
    when: Callable[[float], str] = local_time,
    people: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The push message, in Chinese first (the people on duty), with the transition attached.
    `when`: formats its time (`local_time`, or the batch's `AlarmBatch.local_time`); `people`: user
    name -> display name of those it names (`people_in`), who are shown by it."""
    a = t.after
    category = AlarmCategory(a["category"])
    when_text = when(a["last_ts"])
    action = ACTION_ZH.get(t.action.value, t.action.value)
    title = f"【{CATEGORY_ZH[category]}】{place_name} {alarm_type_zh(a['alarm_type'])} {action}"
    if a.get("maintenance_id") is not None:
        # Only a fire alarm is pushed during maintenance (DESIGN §4): say so, it is still a fire.
        title = f"【维护期间】{title}"
    if a.get("drill_id") is not None:
        title = f"【演练】{title}"
    lines = [
        f"位置: {place_name}",
        f"设备: {a['device_id']}",
        f"类型: {alarm_type_zh(a['alarm_type'])}",
        f"时间: {when_text}",
        f"状态: {action} · 第 {a['occurrences']} 次",
    ]
    if a.get("value") is not None:
        unit = channel_unit(a["channel"]) if a.get("channel") else ""
        lines.append(f"读数: {a['value']}{f' {unit}' if unit else ''}")
    # The detector's detail in words (alarms/describe.py); the raw line stays in the transition.
    said = describe(a["alarm_type"], a.get("detail") or "", channel=a.get("channel"), value=a.get("value")).zh
    if said:
        lines.append(f"说明: {said}")
    if a.get("maintenance_id") is not None:
        lines.append(f"维护: 设备处于维护窗口 #{a['maintenance_id']}，火警仍按规定推送，请现场核实")
    if a.get("flapping"):
        lines.append("注意: 该探测器频繁报警/恢复，已生成隐患整改单")
    if t.targets:
        lines.append(f"通知: {'、'.join(duty_role_zh(r) for r in t.targets)}")
    if t.note:
        lines.append(f"备注: {t.note}（{person_zh(t.actor, people or {})}）")
    return {"title": title, "body": "\n".join(lines), "transition": t.to_json()}


def enqueue(
    s: Session,
    routes: list[PushRoute],
    t: Transition,
    place_name: str,
    now: float,
    *,
    encoded: tuple[Fragment, Fragment] | None = None,
) -> int:
    """Add one outbox row per route this transition is owed to; returns how many. `encoded`: the
    transition's before and after snapshots already encoded (for its event row), embedded as they
    are instead of encoded again.

    The rows are plain tuples, not ORM objects (nothing in the write reads them back): in a bulk
    write they join the batch's rows, inserted at its end (AlarmBatch.settle_outbox); otherwise
    they go in at once (the caller flushed the transition's own rows first, so they keep the order
    the pushes were owed in). The message is rendered and encoded once for every route."""
    owed = [r for r in routes if matches(r, t)]
    if not owed:
        return 0
    batch = batch_of(s)
    named = people_in(s, [t.actor] if t.note else [])
    message = render(t, place_name, local_time if batch is None else batch.local_time, named)
    if encoded is not None:
        message["transition"]["before"], message["transition"]["after"] = encoded
    payload = json_dumps(message)
    rows = [(route.name, t.alarm_id, None, False, now, payload, 0, now, None, "") for route in owed]
    if batch is not None:
        batch.outbox.extend(rows)
    else:
        insert_many(s.connection(), OUTBOX, OUTBOX_COLUMNS, rows)
    return len(owed)


# --- incident notices ------------------------------------------------------------------------------


def incident_matches(route: PushRoute, u: IncidentUpdate) -> bool:
    """A route with roles hears what the incident's escalation addresses to its roles (its first
    notice, escalations, reminders, and every later step to the roles told so far); a route without
    roles hears the incident actions it subscribes to. Category and site filters apply; a step that
    is never pushed (another detector joined) goes nowhere."""
    if u.action in SILENT:
        return False
    a = u.after
    wanted = any(r in u.targets for r in route.roles) if route.roles else u.action in route.incident_actions
    return (
        wanted
        and (not route.categories or AlarmCategory(a["category"]) in route.categories)
        and (not route.sites or a["site"] in route.sites)
    )


def people_in(s: Session, names: Iterable[str | None]) -> dict[str, str]:
    """The display names of the people a notice names, read once per session and person: the
    service's own steps and unnamed ones ask for nothing, so most machine-made notices read none."""
    known: dict[str, str | None] = s.info.setdefault("display_names", {})
    wanted = {n for n in names if n and n != SYSTEM_ACTOR}
    missing = wanted - known.keys()
    if missing:
        found = read_display_names(s, missing)
        known.update({n: found.get(n) for n in missing})
    return {n: d for n in wanted if (d := known[n])}


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} 分钟" if seconds >= 90 else f"{seconds:.0f} 秒"


def render_incident(
    u: IncidentUpdate,
    place_name: str,
    now: float,
    steps: list[str] | None = None,
    people: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The incident notice, in Chinese: what, where, how far it spread, where confirmation stands.
    `steps`: the incident actions this notice reports (several when one write took several);
    `people`: user name -> display name of those it names (`people_in`), who are shown by it."""
    a = u.after
    who = people or {}
    kind = IncidentKind(a["kind"])
    category = AlarmCategory(a["category"])
    action = "，".join(INCIDENT_ACTION_ZH[IncidentAction(x)] for x in (steps or [u.action.value]))
    title = f"【{CATEGORY_ZH[category]}】{place_name} {INCIDENT_KIND_ZH[kind]} {action}"
    if a.get("drill_id") is not None:
        title = f"【演练】{title}"  # a drill's notice (docs/drills.md): nobody takes it for a fire
    first = datetime.fromtimestamp(a["first_ts"]).strftime("%Y-%m-%d %H:%M:%S")
    lines = [
        f"位置: {place_name}",
        f"首次报警: {first}（已持续 {_minutes(max(0.0, now - a['first_ts']))}）",
        f"报警: {a['alarm_count']} 条，设备 {a['device_count']} 台，仍在报警 {a['active_count']} 条",
    ]
    if len(a["zones"]) > 1 or len(a["floors"]) > 1:
        lines.append(f"范围: {len(a['floors'])} 个楼层、{len(a['zones'])} 个防火分区")
    if a.get("zone_confirmed_ts") is not None:
        lines.append("同一分区两只探测器报警：火警已由探测器互相印证")
    if kind is IncidentKind.FIRE:
        lines.append(f"核实: {VERIFICATION_ZH[Verification(a['verification'])]}")
        if a.get("verifier"):
            lines.append(f"核实人: {person_zh(a['verifier'], who)}")
        if a["verification"] == Verification.CONFIRMED.value and a.get("call_119_ts") is None:
            lines.append("请立即拨打 119，启动灭火和应急疏散预案，并报告消防安全责任人")
        if a.get("call_119_ts") is not None:
            called = datetime.fromtimestamp(a["call_119_ts"]).strftime("%H:%M:%S")
            lines.append(f"119: 已于 {called} 报警（{person_zh(a.get('call_119_by'), who)}）")
    if a.get("acked_by"):
        lines.append(f"已受理: {person_zh(a['acked_by'], who)}")
    if u.targets:
        lines.append(f"通知: {'、'.join(duty_role_zh(r) for r in u.targets)}")
    if u.note:
        lines.append(f"备注: {u.note}")
    return {"title": title, "body": "\n".join(lines), "incident": u.to_json()}


def _waiting(route: str, incident_id: int) -> Select[OutboxRow]:
    """The route's notices of the incident still waiting to be replaced (replaceable, untried).
    Built only where read: composing it was a tenth of a bulk write's incident notice."""
    return select(OutboxRow).where(
        OutboxRow.route == route,
        OutboxRow.incident_id == incident_id,
        OutboxRow.replaceable.is_(True),
        OutboxRow.delivered_ts.is_(None),
        OutboxRow.attempts == 0,
    )


def enqueue_incident(
    s: Session,
    routes: list[PushRoute],
    u: IncidentUpdate,
    place_name: str,
    now: float,
    *,
    interval_s: float,
) -> int:
    """Add the notice each route is owed for this incident step; returns how many rows were added.

    Urgent steps (alarms/incidents.py URGENT) go at once and replace any update of the same incident
    still waiting on the route (the new notice carries the whole incident). Other steps go at most
    once per `interval_s` per route and incident: one that comes sooner waits, and a later one
    replaces it while it waits, so a route hears the latest state, not every step."""
    owed = [r for r in routes if incident_matches(r, u)]
    if not owed:
        return 0
    a = u.after
    named = people_in(s, [a.get("acked_by"), a.get("call_119_by"), a.get("verifier")])
    message = {**render_incident(u, place_name, now, people=named), "steps": [u.action.value]}
    # The notices this transaction added, by (route, incident): in a bulk write the batch's own
    # (rows only at its end, AlarmBatch.settle_outbox), otherwise the session's, which lives for
    # one write.
    batch = batch_of(s)
    this_write: dict[tuple[str, int], OutboxRow] = (
        s.info.setdefault("incident_notices", {}) if batch is None else {}
    )
    added = 0
    for route in owed:
        every = interval_s if route.update_interval_s is None else route.update_interval_s
        key = (route.name, u.incident_id)
        same_write: OutboxRow | PendingNotice | None = (
            this_write.get(key) if batch is None else batch.notices.get(key)
        )
        if same_write is not None:
            # One notice per route and incident per write (a reset and the end it causes): the
            # later step's notice, which carries the whole incident, names both steps.
            steps = [*same_write.payload.get("steps", []), u.action.value]
            same_write.payload = {**render_incident(u, place_name, now, steps, named), "steps": steps}
            if urgent(u.action):
                same_write.next_ts, same_write.replaceable = now, False
            continue
        if urgent(u.action) or every <= 0:
            if batch is not None:
                # Deleted at the batch's end, before its rows go in: what this DELETE would delete
                # now, as nothing in between adds or changes a waiting notice of this route and
                # incident (later steps of them rewrite the notice made below, which is due now,
                # so never waiting).
                batch.replaced.setdefault(route.name, []).append(u.incident_id)
            else:
                waiting = _waiting(route.name, u.incident_id)
                s.execute(
                    delete(OutboxRow).where(
                        OutboxRow.id.in_(waiting.with_only_columns(OutboxRow.id).scalar_subquery())
                    )
                )
            next_ts = now
        else:
            waiting = _waiting(route.name, u.incident_id)
            pending = s.scalars(waiting.order_by(OutboxRow.id.desc()).limit(1)).first()
            if pending is not None:
                pending.payload = message
                pending.alarm_id = u.alarm_id or pending.alarm_id
                continue
            last = s.scalar(
                select(func.max(OutboxRow.next_ts)).where(
                    OutboxRow.route == route.name, OutboxRow.incident_id == u.incident_id
                )
            )
            next_ts = now if last is None else max(now, float(last) + every)
        alarm_id = u.alarm_id if u.alarm_id is not None else u.after["first_alarm_id"]
        if batch is not None:
            notice = PendingNotice(route.name, alarm_id, u.incident_id, next_ts > now, now, message, next_ts)
            batch.outbox.append(notice)
            batch.notices[key] = notice
        else:
            row = OutboxRow(
                route=route.name,
                alarm_id=alarm_id,
                incident_id=u.incident_id,
                replaceable=next_ts > now,
                created_ts=now,
                payload=message,
                attempts=0,
                next_ts=next_ts,
                delivered_ts=None,
                last_error="",
            )
            s.add(row)
            this_write[key] = row
        added += 1
    return added
