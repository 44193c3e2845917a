"""Alarm types in words, Chinese and English: named outright, or as a channel and a level.

A profile's detector raises `{channel}.{level}` (`smoke.alarm`, `pressure.slow_leak`); the channel is
named by the shipped profiles' `label_zh`/`label` (a curated word first where profiles disagree,
e.g. `temp`: 温度), the level by the tables below. What is not known shows as a generic 报警 of the
channel rather than the identifier itself.
"""

from __future__ import annotations

from functools import cache

from device_profiles.loader import load_profiles

ALARM_TYPE_ZH: dict[str, str] = {
    "device.offline": "设备离线",
    "device.outage": "区域通信中断（多台设备同时离线）",
    "device.fault": "设备故障",
    "device.tamper": "设备防拆",
    "device.alarm": "设备报警",
    "device.supervisory": "监管报警",
    "device.disabled": "部件屏蔽",
    "device.power_fault": "电源故障",
    "device.unregistered": "未登记部件上报",
    "device.low_battery": "电池电量低",
    "device.weak_signal": "信号弱",
    "device.clock_wrong": "设备时钟错误",
    "device.reset": "设备复位",
    "sensor.flapping": "传感器频繁报警（不稳定）",
    "influx.write_failing": "InfluxDB 写入失败",
    "zone.fire_confirmed": "区域火警确认（同一防火分区多个探测器报警）",
    "ingest.storage_failing": "数据库不可用",
    "ingest.unacked_backlog": "消息确认积压",
    "ingest.stalled": "数据接入停滞",
    "ingest.broker_down": "与消息服务器的连接中断",
}

ALARM_TYPE_EN: dict[str, str] = {
    "device.offline": "Device offline",
    "device.outage": "Area communication outage (devices silent together)",
    "device.fault": "Device fault",
    "device.tamper": "Device tamper",
    "device.alarm": "Device alarm",
    "device.supervisory": "Supervisory signal",
    "device.disabled": "Point disabled",
    "device.power_fault": "Power fault",
    "device.unregistered": "Unregistered point reported",
    "device.low_battery": "Battery low",
    "device.weak_signal": "Weak signal",
    "device.clock_wrong": "Device clock wrong",
    "device.reset": "Device reset",
    "sensor.flapping": "Sensor flapping",
    "influx.write_failing": "InfluxDB writes failing",
    "zone.fire_confirmed": "Zone fire confirmed (several detectors of one fire zone)",
    "ingest.storage_failing": "Database unavailable",
    "ingest.unacked_backlog": "Received messages wait too long",
    "ingest.stalled": "Data intake has stalled",
    "ingest.broker_down": "Connection to the message server lost",
}

# The level half of `{channel}.{level}`: the shipped profiles' level and detector names.
LEVEL_ZH: dict[str, str] = {
    "pre_alarm": "预警",
    "alarm": "报警",
    "hot": "过热",
    "overload": "过载",
    "out_of_range": "超出量程",
    "stuck": "读数不变",
    "rising": "持续上升",
    "held_open": "常开",
    "low": "过低",
    "very_low": "严重过低",
    "high": "过高",
    "sudden_drop": "骤降",
    "slow_leak": "缓慢下降（疑似泄漏）",
    "jump": "跳变",
    "rate_of_rise": "温升速率报警",
    "rise": "温升报警",
    "dirty_chamber": "迷宫污染",
    "unusual": "异常",
    "level1": "低限报警",
    "level2": "高限报警",
    "noisy": "读数噪声过大",
    "stale": "无数据",
    "step": "突变",
    "drift": "漂移",
    "anomaly": "异常",
}
LEVEL_EN: dict[str, str] = {
    "pre_alarm": "pre-alarm",
    "alarm": "alarm",
    "hot": "hot",
    "overload": "overload",
    "out_of_range": "out of range",
    "stuck": "stuck",
    "rising": "rising",
    "held_open": "held open",
    "low": "low",
    "very_low": "very low",
    "high": "high",
    "sudden_drop": "sudden drop",
    "slow_leak": "slow fall (leak?)",
    "jump": "jump",
    "rate_of_rise": "rate-of-rise alarm",
    "rise": "rise alarm",
    "dirty_chamber": "dirty chamber",
    "unusual": "unusual",
    "level1": "low-level alarm",
    "level2": "high-level alarm",
    "noisy": "noisy",
    "stale": "no data",
    "step": "step",
    "drift": "drift",
    "anomaly": "anomaly",
}

# Where the shipped profiles name one channel differently (temp: 插座温度, 环境温度, 温度), the general word.
_CHANNEL_ZH: dict[str, str] = {"temp": "温度", "pressure": "压力", "smoke": "烟雾", "lel": "可燃气体浓度"}
_CHANNEL_EN: dict[str, str] = {"temp": "Temperature", "pressure": "Pressure", "smoke": "Smoke"}


@cache
def channel_words() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Each shipped channel's Chinese and English label and its unit (loaded once)."""
    zh, en = dict(_CHANNEL_ZH), dict(_CHANNEL_EN)
    unit: dict[str, str] = {}
    for profile in load_profiles().values():
        for name, c in profile.channels.items():
            zh.setdefault(name, c.label_zh or c.label or name)
            en.setdefault(name, (c.label or name).capitalize())
            unit.setdefault(name, "" if c.unit == "state" else c.unit)
    return zh, en, unit


def channel_zh(channel: str) -> str:
    return channel_words()[0].get(channel, "")


def channel_en(channel: str) -> str:
    return channel_words()[1].get(channel, "")


def channel_unit(channel: str) -> str:
    return channel_words()[2].get(channel, "")


def type_zh(alarm_type: str) -> str:
    """An alarm type in Chinese: 感烟 `smoke.alarm` -> 烟雾报警; an unknown one as 报警 of its channel."""
    if alarm_type in ALARM_TYPE_ZH:
        return ALARM_TYPE_ZH[alarm_type]
    channel, _, level = alarm_type.partition(".")
    word = channel_zh(channel) if level else ""
    return f"{word}{LEVEL_ZH.get(level, '报警')}" if word else "报警"


def type_en(alarm_type: str) -> str:
    if alarm_type in ALARM_TYPE_EN:
        return ALARM_TYPE_EN[alarm_type]
    channel, _, level = alarm_type.partition(".")
    word = channel_en(channel) if level else ""
    return f"{word} {LEVEL_EN.get(level, level.replace('_', ' '))}" if word else alarm_type
