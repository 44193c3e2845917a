"""Chinese and English labels for the alarm and ticket vocabularies (console, tickets, exports)."""

from __future__ import annotations

from core.domain import AlarmCategory

CATEGORY_ZH: dict[AlarmCategory, str] = {
    AlarmCategory.FIRE: "火警",
    AlarmCategory.PRE_ALARM: "预警",
    AlarmCategory.FAULT: "故障",
    AlarmCategory.SUPERVISORY: "监管",
    AlarmCategory.HAZARD: "隐患",
}

ALARM_TYPE_ZH: dict[str, str] = {
    "device.offline": "设备离线",
    "device.outage": "区域通信中断（多台设备同时离线）",
    "device.fault": "设备故障",
    "device.tamper": "设备防拆",
    "device.alarm": "设备报警",
    "sensor.flapping": "传感器频繁报警（不稳定）",
    "influx.write_failing": "InfluxDB 写入失败",
}

# Suggested rectification measures (整改措施与意见) for automatically opened tickets.
MEASURES_ZH: dict[str, str] = {
    "device.offline": "现场检查设备供电与通信链路（网关、无线信号、电池），恢复设备在线并确认数据上报正常。",
    "device.outage": (
        "检查该区域的供电、网关与交换机等公共通信链路，恢复后确认全部设备重新上报；"
        "中断期间安排人员对该区域加强巡查。"
    ),
    "device.fault": "检查设备故障代码，清洁或更换探测部件，必要时更换设备，并完成功能测试。",
    "device.tamper": "检查设备是否被拆卸或遮挡，恢复安装并完成功能测试。",
    "sensor.flapping": (
        "检查探测器安装位置、污染和接线，排除反复报警/恢复的原因（如蒸汽、气流、接触不良），"
        "必要时清洗或更换。"
    ),
}
MEASURES_BY_CATEGORY_ZH: dict[AlarmCategory, str] = {
    AlarmCategory.SUPERVISORY: "检查系统压力、阀门及水泵状态，恢复至正常监管状态并做好记录。",
    AlarmCategory.FAULT: "检查设备及线路，排除故障并完成功能测试。",
    AlarmCategory.HAZARD: "查明隐患原因，制定整改措施并限期整改。",
    AlarmCategory.PRE_ALARM: "现场核查预警原因，排除隐患。",
    AlarmCategory.FIRE: "现场核实火情并按应急预案处置。",
}


def alarm_type_zh(alarm_type: str) -> str:
    return ALARM_TYPE_ZH.get(alarm_type, alarm_type)
