"""An alarm's detail in words a person reads, Chinese and English, from what the alarm stores.

Detectors write their detail as a short technical English line (`smoke >= 0.15 dB/m (clears below
0.1); 0.18 dB/m`, `no message for 90 s (limit 90 s)`, `device reported fault (code 3)`): a string
built once per unit, never per message, and kept as it is for integrations. This module renders that
line, with the alarm's type, channel and value, into Chinese and English when an alarm is shown
(API `detail_zh`/`detail_en`, pushes, reports, exports). It reads only what is stored, so an alarm
recorded before this module existed renders the same way.

Each detector's template has a pattern here (tests/test_describe.py runs every producer through it).
A detail no pattern knows is never shown raw in Chinese: the Chinese text falls back to the value
and its unit (or nothing), the English to the stored line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from alarms.type_names import channel_en, channel_unit, channel_zh, type_en, type_zh
from core.domain import DeviceEventKind

_NUM = r"-?[0-9][0-9.e+-]*"
_UNIT = r"[^\s;()]*"


@dataclass(frozen=True, slots=True)
class Described:
    zh: str
    en: str


def _ch_zh(channel: str) -> str:
    return channel_zh(channel) or "读数"


def _ch_en(channel: str) -> str:
    return channel_en(channel) or "Reading"


def _reading(m: re.Match[str]) -> tuple[str, str]:
    """The `; <value> <unit>` a detector appends: what the reading was."""
    v = m.groupdict().get("v")
    if not v:
        return "", ""
    shown = f"{v}{_u((m.groupdict().get('vu') or '').strip())}"
    return f"；读数 {shown}", f"; reading {shown}"


# A channel whose "unit" is a state (a door: 0 shut, 1 open) has none to say.
_NO_UNIT = {"", "state"}


def _u(unit: str) -> str:
    return "" if unit in _NO_UNIT else f" {unit}"


_TAIL = rf"(?:; (?P<v>{_NUM}) ?(?P<vu>.*))?$"

# --- the detectors' templates (detectors/catalog.py, liveness.py, device_events.py, fusion.py) -------

_THRESHOLD = re.compile(
    rf"^(?P<ch>\w+) (?P<cmp>>=|<=) (?P<at>{_NUM}) ?(?P<unit>{_UNIT})"
    rf"(?: for (?P<for>{_NUM}) s)?(?: in (?P<rep>\d+) readings)? \(clears (?:below|above) (?P<clr>{_NUM})\)"
    + _TAIL
)


def _threshold(m: re.Match[str]) -> Described:
    ch, unit, cmp = m["ch"], m["unit"], m["cmp"]
    cmp_zh, back_zh = ("≥", "低于") if cmp == ">=" else ("≤", "高于")
    cmp_en, back_en = ("≥", "below") if cmp == ">=" else ("≤", "above")
    hold_zh = (f" 持续 {m['for']} 秒" if m["for"] else "") + (f" 连续 {m['rep']} 次" if m["rep"] else "")
    hold_en = (f" for {m['for']} s" if m["for"] else "") + (f" in {m['rep']} readings" if m["rep"] else "")
    r_zh, r_en = _reading(m)
    return Described(
        f"{_ch_zh(ch)} {cmp_zh} {m['at']}{_u(unit)}{hold_zh}（{back_zh} {m['clr']}{_u(unit)} 恢复）{r_zh}",
        f"{_ch_en(ch)} {cmp_en} {m['at']}{_u(unit)}{hold_en} (clears {back_en} {m['clr']}{_u(unit)}){r_en}",
    )


_AMBIENT = re.compile(
    rf"^(?P<ch>\w+) held >= max\((?P<floor>{_NUM}) ?(?P<unit>{_UNIT}), (?P<k>{_NUM}) sigma\) above its "
    rf"ambient for (?P<hold>{_NUM}) s" + _TAIL
)


def _ambient(m: re.Match[str]) -> Described:
    ch, unit = m["ch"], m["unit"]
    v = f"；高于环境 {m['v']}{_u(unit)}" if m["v"] else ""
    v_en = f"; {m['v']}{_u(unit)} above ambient" if m["v"] else ""
    return Described(
        f"{_ch_zh(ch)}持续 {m['hold']} 秒高于环境值至少 {m['floor']}{_u(unit)}"
        f"（且不低于噪声的 {m['k']} 倍）{v}",
        f"{_ch_en(ch)} held at least {m['floor']}{_u(unit)} ({m['k']} sigma) above ambient "
        f"for {m['hold']} s{v_en}",
    )


_RATE = re.compile(
    rf"^(?P<ch>\w+) rising >= (?P<per>{_NUM}) (?P<unit>\S*)/min over (?P<w>{_NUM}) s" + _TAIL
)


def _rate(m: re.Match[str]) -> Described:
    ch, unit = m["ch"], m["unit"]
    v = f"；当前 {m['v']} {unit}/分钟" if m["v"] else ""
    v_en = f"; now {m['v']} {unit}/min" if m["v"] else ""
    return Described(
        f"{_ch_zh(ch)}在 {m['w']} 秒内上升速率 ≥ {m['per']} {unit}/分钟{v}",
        f"{_ch_en(ch)} rising ≥ {m['per']} {unit}/min over {m['w']} s{v_en}",
    )


_STEP = re.compile(
    rf"^(?P<ch>\w+) (?P<dir>drop|jump) of >= (?P<d>{_NUM}) ?(?P<unit>{_UNIT}) within (?P<g>{_NUM}) s" + _TAIL
)


def _step(m: re.Match[str]) -> Described:
    ch, unit = m["ch"], m["unit"]
    word_zh, word_en = ("骤降", "drop") if m["dir"] == "drop" else ("跳升", "jump")
    r_zh, r_en = _reading(m)
    return Described(
        f"{_ch_zh(ch)}在 {m['g']} 秒内{word_zh}至少 {m['d']}{_u(unit)}{r_zh}",
        f"{_ch_en(ch)} {word_en} of at least {m['d']}{_u(unit)} within {m['g']} s{r_en}",
    )


_DRIFT = re.compile(
    rf"^(?P<ch>\w+) drifting (?P<dir>up|down) from (?:(?P<ref>{_NUM}) ?(?P<unit>{_UNIT})|its learned normal) "
    rf"\(CUSUM >= (?P<limit>{_NUM})\)" + _TAIL
)


def _drift(m: re.Match[str]) -> Described:
    ch, unit = m["ch"], m["unit"] or ""
    dir_zh, dir_en = ("上升", "up") if m["dir"] == "up" else ("下降", "down")
    ref_zh = f"正常值 {m['ref']}{_u(unit)}" if m["ref"] else "学习到的正常值"
    ref_en = f"{m['ref']}{_u(unit)}" if m["ref"] else "its learned normal"
    return Described(
        f"{_ch_zh(ch)}相对{ref_zh}持续{dir_zh}（累积偏差达到 {m['limit']}）",
        f"{_ch_en(ch)} drifting {dir_en} from {ref_en} (accumulated deviation {m['limit']})",
    )


_ANOMALY = re.compile(rf"^(?P<ch>\w+) unusual for this device \(\|z\| >= (?P<z>{_NUM})\)" + _TAIL)


def _anomaly(m: re.Match[str]) -> Described:
    ch = m["ch"]
    return Described(
        f"{_ch_zh(ch)}与该设备的正常读数明显不同（偏离 {m['z']} 倍标准差以上）",
        f"{_ch_en(ch)} unusual for this device (more than {m['z']} standard deviations)",
    )


_RANGE = re.compile(
    rf"^(?P<ch>\w+) outside its physical range \[(?P<lo>{_NUM}), (?P<hi>{_NUM})\] ?(?P<unit>{_UNIT})" + _TAIL
)


def _range(m: re.Match[str]) -> Described:
    ch, unit = m["ch"], m["unit"]
    r_zh, r_en = _reading(m)
    return Described(
        f"{_ch_zh(ch)}超出量程 {m['lo']}～{m['hi']}{_u(unit)}（传感器故障）{r_zh}",
        f"{_ch_en(ch)} outside its range {m['lo']} to {m['hi']}{_u(unit)} (sensor fault){r_en}",
    )


_STUCK = re.compile(rf"^(?P<ch>\w+) unchanged for (?P<s>{_NUM}) s" + _TAIL)


def _stuck(m: re.Match[str]) -> Described:
    ch = m["ch"]
    return Described(
        f"{_ch_zh(ch)}读数 {m['s']} 秒未变化（疑似传感器故障）",
        f"{_ch_en(ch)} unchanged for {m['s']} s (sensor fault?)",
    )


_JUMP = re.compile(
    rf"^(?P<ch>\w+) changed by more than (?P<j>{_NUM}) ?(?P<unit>{_UNIT}) between readings" + _TAIL
)


def _jump(m: re.Match[str]) -> Described:
    ch, unit = m["ch"], m["unit"]
    return Described(
        f"{_ch_zh(ch)}相邻两次读数相差超过 {m['j']}{_u(unit)}（不可能的跳变）",
        f"{_ch_en(ch)} changed by more than {m['j']}{_u(unit)} between readings",
    )


_NOISY = re.compile(rf"^(?P<ch>\w+) noise above (?P<n>{_NUM}) ?(?P<unit>{_UNIT}) RMS" + _TAIL)


def _noisy(m: re.Match[str]) -> Described:
    ch, unit = m["ch"], m["unit"]
    return Described(
        f"{_ch_zh(ch)}读数噪声超过 {m['n']}{_u(unit)}（均方根）",
        f"{_ch_en(ch)} noise above {m['n']}{_u(unit)} RMS",
    )


_BATTERY = re.compile(rf"^battery <= (?P<low>{_NUM}) % \(clears above (?P<clr>{_NUM}) %\)" + _TAIL)


def _battery(m: re.Match[str]) -> Described:
    r_zh, r_en = _reading(m)
    return Described(
        f"电池电量 ≤ {m['low']}%（高于 {m['clr']}% 恢复）{r_zh}",
        f"Battery ≤ {m['low']}% (clears above {m['clr']}%){r_en}",
    )


_RSSI = re.compile(
    rf"^signal <= (?P<w>{_NUM}) dBm in (?P<n>\d+) readings \(clears above (?P<clr>{_NUM})\)" + _TAIL
)


def _rssi(m: re.Match[str]) -> Described:
    r_zh, r_en = _reading(m)
    return Described(
        f"信号强度连续 {m['n']} 次 ≤ {m['w']} dBm（高于 {m['clr']} dBm 恢复）{r_zh}",
        f"Signal ≤ {m['w']} dBm in {m['n']} readings (clears above {m['clr']} dBm){r_en}",
    )


_OFFLINE = re.compile(rf"^no message for (?P<s>{_NUM}) s \(limit (?P<l>{_NUM}) s\)$")


def _offline(m: re.Match[str]) -> Described:
    return Described(
        f"{m['s']} 秒未收到设备消息（超过 {m['l']} 秒即离线）",
        f"No message for {m['s']} s (offline after {m['l']} s)",
    )


_STALE = re.compile(rf"^no (?P<ch>\w+) reading for (?P<s>{_NUM}) s \(limit (?P<l>{_NUM}) s\)$")


def _stale(m: re.Match[str]) -> Described:
    ch = m["ch"]
    return Described(
        f"{m['s']} 秒未收到{_ch_zh(ch)}读数（超过 {m['l']} 秒即报）",
        f"No {_ch_en(ch).lower()} reading for {m['s']} s (limit {m['l']} s)",
    )


_AGAIN = re.compile(r"^(?:(?P<ch>\w+) )?reporting again$")


def _again(m: re.Match[str]) -> Described:
    return Described("已恢复上报", "Reporting again")


_OUTAGE = re.compile(
    r"^通信中断 / outage: (?P<n>\d+) of (?P<total>\d+) devices of (?P<label>.+?) \((?P<level>\w+)\) "
    r"silent together: (?P<ids>.*?)(?: and (?P<more>\d+) more)?$"
)


def _outage(m: re.Match[str]) -> Described:
    more_zh = f"等（另有 {m['more']} 台）" if m["more"] else ""
    more_en = f" and {m['more']} more" if m["more"] else ""
    ids = m["ids"].split(", ")
    return Described(
        f"{m['label']}共 {m['total']} 台设备中 {m['n']} 台同时无消息：{'、'.join(ids)}{more_zh}",
        f"{m['n']} of {m['total']} devices of {m['label']} silent together: {', '.join(ids)}{more_en}",
    )


_OUTAGE_END = re.compile(
    r"^(?P<label>.+?) reporting again(?:; (?P<n>\d+) still silent, each raised offline)?$"
)


def _outage_end(m: re.Match[str]) -> Described:
    rest_zh = f"；仍有 {m['n']} 台无消息，已分别报离线" if m["n"] else ""
    rest_en = f"; {m['n']} still silent, each raised offline" if m["n"] else ""
    return Described(f"{m['label']}已恢复上报{rest_zh}", f"{m['label']} reporting again{rest_en}")


_EVENT_ZH: dict[str, str] = {
    DeviceEventKind.ALARM: "报警",
    DeviceEventKind.FAULT: "故障",
    DeviceEventKind.TAMPER: "防拆（被拆卸或遮挡）",
    DeviceEventKind.SUPERVISORY: "监管",
    DeviceEventKind.DISABLED: "屏蔽",
    DeviceEventKind.POWER_FAULT: "电源故障",
    DeviceEventKind.UNREGISTERED: "未登记部件",
    DeviceEventKind.RESET: "复位",
    DeviceEventKind.ALARM_CLEAR: "报警恢复",
    DeviceEventKind.FAULT_CLEAR: "故障恢复",
    DeviceEventKind.TAMPER_CLEAR: "防拆恢复",
    DeviceEventKind.SUPERVISORY_CLEAR: "监管恢复",
    DeviceEventKind.DISABLED_CLEAR: "解除屏蔽",
    DeviceEventKind.POWER_FAULT_CLEAR: "电源故障恢复",
}
_EVENT = re.compile(
    r"^device reported (?P<event>\w+)(?: \((?:channel (?P<ch>\S+))? ?(?:code (?P<code>-?\d+))?\))?$"
)
_GB_POINT = re.compile(r"^gb:(?P<st>\d+)/(?P<sa>\d+)(?:/(?P<pt>\d+)/(?P<pa>0x[0-9a-f]+|\d+))?$")


def _gb_point(channel: str) -> tuple[str, str] | None:
    """A GB/T 26875.3 point as the listener names it (`gb:1/1/23/0x90001`), in words."""
    g = _GB_POINT.match(channel)
    if g is None:
        return None
    if g["pt"] is None:
        return f"系统类型 {g['st']}、系统地址 {g['sa']}", f"system type {g['st']}, address {g['sa']}"
    return (
        f"系统类型 {g['st']}、系统地址 {g['sa']}、部件类型 {g['pt']}、部件地址 {g['pa']}",
        f"system type {g['st']}, address {g['sa']}, component type {g['pt']}, address {g['pa']}",
    )


def _event(m: re.Match[str]) -> Described:
    event = m["event"]
    what_zh = _EVENT_ZH.get(event, "状态变化")
    what_en = event.replace("_", " ")
    parts_zh: list[str] = []
    parts_en: list[str] = []
    if m["ch"]:
        point = _gb_point(m["ch"])
        if point is not None:
            parts_zh.append(f"部件 {point[0]}")
            parts_en.append(f"point {point[1]}")
        elif channel_zh(m["ch"]):
            parts_zh.append(f"通道 {channel_zh(m['ch'])}")
            parts_en.append(f"channel {channel_en(m['ch']).lower()}")
        else:
            parts_zh.append(f"通道 {m['ch']}")
            parts_en.append(f"channel {m['ch']}")
    if m["code"]:
        parts_zh.append(f"代码 {m['code']}")
        parts_en.append(f"code {m['code']}")
    return Described(
        f"设备上报{what_zh}" + (f"（{'，'.join(parts_zh)}）" if parts_zh else ""),
        f"Device reported {what_en}" + (f" ({', '.join(parts_en)})" if parts_en else ""),
    )


_ZONE_TWO = re.compile(r"^fire alarms from (?P<a>\S+) and (?P<b>\S+) in (?P<zone>.+)$")
_ZONE_SMOKE = re.compile(
    r"^smoke \((?P<a>\S+)\) and a temperature rise \((?P<b>\S+) (?P<t>\S+)\) in (?P<zone>.+)$"
)
_ZONE_END = re.compile(r"^no signal of the zone is active$")


def _zone_two(m: re.Match[str]) -> Described:
    return Described(
        f"{m['zone']}：{m['a']} 与 {m['b']} 两个探测器均报火警",
        f"{m['zone']}: fire alarms from {m['a']} and {m['b']}",
    )


def _zone_smoke(m: re.Match[str]) -> Described:
    return Described(
        f"{m['zone']}：{m['a']} 感烟报警，且 {m['b']} {type_zh(m['t'])}",
        f"{m['zone']}: smoke ({m['a']}) and a temperature rise ({m['b']} {type_en(m['t'])})",
    )


def _zone_end(m: re.Match[str]) -> Described:
    return Described("该防火分区已无报警信号", "No signal of the zone is active")


_FLAPPING = re.compile(rf"^(?P<n>\d+) raises in (?P<w>{_NUM}) s \(limit (?P<l>\d+)\): (?P<rest>.*)$")


def _flapping(m: re.Match[str]) -> Described:
    held = m["rest"].startswith("notifications held")
    return Described(
        f"{m['w']} 秒内报警 {m['n']} 次（上限 {m['l']} 次）：" + ("已暂停推送" if held else "火警推送不暂停"),
        f"{m['n']} raises in {m['w']} s (limit {m['l']}): {m['rest']}",
    )


_PATTERNS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], Described]], ...] = (
    (_THRESHOLD, _threshold),
    (_AMBIENT, _ambient),
    (_RATE, _rate),
    (_STEP, _step),
    (_DRIFT, _drift),
    (_ANOMALY, _anomaly),
    (_RANGE, _range),
    (_STUCK, _stuck),
    (_JUMP, _jump),
    (_NOISY, _noisy),
    (_BATTERY, _battery),
    (_RSSI, _rssi),
    (_OFFLINE, _offline),
    (_STALE, _stale),
    (_AGAIN, _again),
    (_OUTAGE, _outage),
    (_EVENT, _event),
    (_ZONE_TWO, _zone_two),
    (_ZONE_SMOKE, _zone_smoke),
    (_ZONE_END, _zone_end),
    (_FLAPPING, _flapping),
    (_OUTAGE_END, _outage_end),
)

_LATIN_WORD = re.compile(r"[A-Za-z]{3,}")
_BILINGUAL = re.compile(r"^(?P<zh>[^/]*[\u4e00-\u9fff][^/]*?) / (?P<en>.+)$", re.S)


def describe(
    alarm_type: str, detail: str, *, channel: str | None = None, value: float | None = None
) -> Described:
    """The alarm's detail in Chinese and English (either may be empty when there is nothing to say)."""
    text = (detail or "").strip()
    for pattern, render in _PATTERNS:
        m = pattern.match(text)
        if m is not None:
            return render(m)
    # Service alarms write "中文 / English: cause": the Chinese head, the English whole.
    b = _BILINGUAL.match(text)
    if b is not None:
        return Described(b["zh"].strip(), b["en"].strip())
    if text and not _LATIN_WORD.search(text):
        return Described(text, text)  # already in words a Chinese reader reads (or only numbers)
    return Described(_value_zh(channel, value), text)


def _value_zh(channel: str | None, value: float | None) -> str:
    if value is None or channel is None or not channel_zh(channel):
        return ""
    return f"{channel_zh(channel)} {value:g}{_u(channel_unit(channel))}"


def type_and_detail(
    alarm_type: str, detail: str, *, channel: str | None = None, value: float | None = None, lang: str = "zh"
) -> str:
    """`类型 — 说明` as one line, the way the console and the pushes name an alarm."""
    d = describe(alarm_type, detail, channel=channel, value=value)
    name, text = (type_zh(alarm_type), d.zh) if lang == "zh" else (type_en(alarm_type), d.en)
    return f"{name} — {text}" if text else name
