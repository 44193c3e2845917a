"""Chinese and English labels for the alarm and ticket vocabularies (console, tickets, exports)."""

from __future__ import annotations

from alarms.type_names import type_zh
from core.domain import (
    AlarmCategory,
    AlarmState,
    FalseAlarmCause,
    IncidentAction,
    IncidentKind,
    IncidentState,
    RejectReason,
    Verification,
)

CATEGORY_ZH: dict[AlarmCategory, str] = {
    AlarmCategory.FIRE: "火警",
    AlarmCategory.PRE_ALARM: "预警",
    AlarmCategory.FAULT: "故障",
    AlarmCategory.SUPERVISORY: "监管",
    AlarmCategory.DISABLED: "屏蔽",
    AlarmCategory.HAZARD: "隐患",
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
    "device.unregistered": (
        "该用户信息传输装置上报了设备登记表中没有的部件：核对火灾报警控制器的部件清单，"
        "在登记表中补录该部件（系统类型/地址、部件类型/地址）及其位置，并完成联网测试。"
    ),
    "device.disabled": "查明部件被屏蔽的原因，尽快修复并解除屏蔽；屏蔽期间安排人员加强该部位巡查。",
    "sensor.flapping": (
        "检查探测器安装位置、污染和接线，排除反复报警/恢复的原因（如蒸汽、气流、接触不良），"
        "必要时清洗或更换。"
    ),
}
MEASURES_BY_CATEGORY_ZH: dict[AlarmCategory, str] = {
    AlarmCategory.SUPERVISORY: "检查系统压力、阀门及水泵状态，恢复至正常监管状态并做好记录。",
    AlarmCategory.FAULT: "检查设备及线路，排除故障并完成功能测试。",
    AlarmCategory.DISABLED: "查明部件被屏蔽的原因，尽快修复并解除屏蔽；屏蔽期间安排人员加强该部位巡查。",
    AlarmCategory.HAZARD: "查明隐患原因，制定整改措施并限期整改。",
    AlarmCategory.PRE_ALARM: "现场核查预警原因，排除隐患。",
    AlarmCategory.FIRE: "现场核实火情并按应急预案处置。",
}


def alarm_type_zh(alarm_type: str) -> str:
    """Named outright, or as its channel and level (`smoke.alarm`: 烟雾报警); never the identifier."""
    return type_zh(alarm_type)


INCIDENT_KIND_ZH: dict[IncidentKind, str] = {
    IncidentKind.FIRE: "火情",
    IncidentKind.GAS: "燃气泄漏",
    IncidentKind.OUTAGE: "通信中断",
    IncidentKind.SUPERVISORY: "监管异常",
    IncidentKind.FAULT: "设备故障",
    IncidentKind.DISABLED: "部件屏蔽",
    IncidentKind.HAZARD: "隐患",
}

INCIDENT_ACTION_ZH: dict[IncidentAction, str] = {
    IncidentAction.OPENED: "报警",
    IncidentAction.JOINED: "新增报警",
    IncidentAction.UPGRADED: "升级为火警",
    IncidentAction.SPREAD: "蔓延至新区域",
    IncidentAction.REOPENED: "再次报警",
    IncidentAction.ACKNOWLEDGED: "已受理",
    IncidentAction.VERIFYING: "核实中",
    IncidentAction.CONFIRMED: "确认为真实火警",
    IncidentAction.FALSE_ALARM: "核实为误报",
    IncidentAction.TEST: "核实为测试",
    IncidentAction.CALLED_119: "已拨打119",
    IncidentAction.ESCALATED: "未受理，已升级",
    IncidentAction.REMINDED: "未受理，再次提醒",
    IncidentAction.VERIFY_OVERDUE: "超时未核实，已上报值班领导",
    IncidentAction.RESET: "已复位",
    IncidentAction.ENDED: "报警已全部恢复",
    IncidentAction.CLOSED: "已结束",
}

VERIFICATION_ZH: dict[Verification, str] = {
    Verification.PENDING: "待核实",
    Verification.VERIFYING: "核实中",
    Verification.CONFIRMED: "真实火警",
    Verification.FALSE_ALARM: "误报",
    Verification.TEST: "测试",
}

CAUSE_ZH: dict[FalseAlarmCause, str] = {
    FalseAlarmCause.DUST: "灰尘/污染",
    FalseAlarmCause.STEAM: "水汽/蒸汽",
    FalseAlarmCause.COOKING: "油烟",
    FalseAlarmCause.WORKS: "施工/动火作业",
    FalseAlarmCause.DEVICE: "设备故障",
    FalseAlarmCause.HUMAN: "人为误触",
    FalseAlarmCause.OTHER: "其他",
}


INCIDENT_STATE_ZH: dict[IncidentState, str] = {
    IncidentState.OPEN: "处置中",
    IncidentState.ENDED: "报警已恢复，待受理",
    IncidentState.CLOSED: "已结束",
}

# As the console shows them (确认 = acknowledged, not the verdict of a fire).
ALARM_STATE_ZH: dict[AlarmState, str] = {
    AlarmState.ACTIVE_UNACKNOWLEDGED: "报警中·未确认",
    AlarmState.ACTIVE_ACKNOWLEDGED: "报警中·已确认",
    AlarmState.CLEARED_UNACKNOWLEDGED: "已恢复·未确认",
    AlarmState.CLEARED_ACKNOWLEDGED: "已恢复·已确认",
    AlarmState.CLOSED: "已关闭",
}

# The duty roles of the default escalation chain (core/settings.py); a site's own roles show as named.
DUTY_ROLE_ZH: dict[str, str] = {
    "control_room": "消防控制室",
    "micro_fire_station": "微型消防站",
    "leader_on_call": "值班领导",
}


def duty_role_zh(role: str) -> str:
    return DUTY_ROLE_ZH.get(role, role)


# Tickets as the console says them (api/static/console.js `status.*`, `source.*`, `action.*`): 派单,
# not 指派; 报警, not 告警; 超期, not 逾期; 备注, not 留言 (tests/test_terms.py keeps them one).
TICKET_STATUS_ZH: dict[str, str] = {
    "open": "待派单",
    "assigned": "已派单",
    "rectifying": "整改中",
    "rectified": "已整改",
    "verified": "已复检",
    "closed": "已关闭",
}
TICKET_SOURCE_ZH: dict[str, str] = {
    "alarm": "报警",
    "patrol": "巡查",
    "inspection": "检查",
    "maintenance": "维保",
    "staff_report": "随手拍",
}
TICKET_ACTION_ZH: dict[str, str] = {
    "opened": "创建",
    "recurred": "再次发生",
    "assign": "派单",
    "start": "开始整改",
    "rectify": "整改完成",
    "verify": "复检通过",
    "reject": "复检不通过",
    "close": "关闭整改单",
    "extend": "延期",
    "comment": "备注",
    "attach": "附件",
    "edit": "修改",
    "overdue": "超期",
    "ready": "可复检",
    "not_ready": "状况复发",
}


# Why an inbound message was rejected (docs/ingest.md "Rejects"), as a person reads it.
REJECT_REASON_ZH: dict[RejectReason, str] = {
    RejectReason.BAD_TOPIC: "主题格式不正确",
    RejectReason.UNKNOWN_DEVICE: "未登记的设备",
    RejectReason.SITE_MISMATCH: "主题中的场所与设备登记的场所不符",
    RejectReason.TOO_LARGE: "消息过大",
    RejectReason.BAD_JSON: "消息不是有效的 JSON",
    RejectReason.BAD_PAYLOAD: "消息内容的格式或取值不正确",
    RejectReason.UNKNOWN_CHANNEL: "设备型号没有该测量通道",
    RejectReason.NON_FINITE: "读数不是有效数值",
    RejectReason.OUT_OF_RANGE: "读数超出测量范围",
    RejectReason.FUTURE_TIMESTAMP: "消息时间超前于服务器时间",
    RejectReason.BAD_TIMESTAMP: "消息时间无效或过旧",
    RejectReason.UNKNOWN_EVENT: "未知的事件",
    RejectReason.UNPROCESSABLE: "消息无法处理（程序错误，已保留待排查）",
}


def reject_reason_zh(reason: str) -> str:
    """A reject reason in Chinese; one this version does not know shows as stored."""
    try:
        return REJECT_REASON_ZH[RejectReason(reason)]
    except ValueError:
        return reason
