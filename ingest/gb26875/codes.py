"""The code tables of GB/T 26875.3-2011: commands, type identifiers, system and component types,
status and operation bits, analog quantities. Names are the standard's Chinese terms.

Codes not in a table are never an error: real user information transmission devices send
user-defined system types (201, 203) and type identifiers (204, 205); `name_of` names them
"用户自定义" (128–255) or "保留" (reserved).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

RESERVED = "保留"
USER_DEFINED = "用户自定义"


class Command(IntEnum):
    """控制单元命令字节 (§7.2 of the standard; values 7–127 reserved, 128–255 user-defined)."""

    CONTROL = 1  # 控制命令: centre -> device (time sync, initialise, duty check)
    SEND = 2  # 发送数据: device -> centre uploads, and the vendors' heartbeat with an empty ADU
    CONFIRM = 3  # 确认
    REQUEST = 4  # 请求: centre -> device queries
    RESPONSE = 5  # 应答
    DENY = 6  # 否认


COMMAND_NAMES: dict[int, str] = {
    Command.CONTROL: "控制命令",
    Command.SEND: "发送数据",
    Command.CONFIRM: "确认",
    Command.REQUEST: "请求",
    Command.RESPONSE: "应答",
    Command.DENY: "否认",
}


class TypeId(IntEnum):
    """类型标志 of the application data unit: 1–28 upstream, 61–91 downstream."""

    SYSTEM_STATE = 1
    COMPONENT_STATE = 2
    ANALOG_VALUE = 3
    OPERATION = 4
    SOFTWARE_VERSION = 5
    SYSTEM_CONFIG = 6
    COMPONENT_CONFIG = 7
    SYSTEM_TIME = 8
    DEVICE_STATE = 21
    DEVICE_OPERATION = 24
    DEVICE_VERSION = 25
    DEVICE_CONFIG = 26
    DEVICE_TIME = 28
    READ_SYSTEM_STATE = 61
    READ_COMPONENT_STATE = 62
    READ_ANALOG_VALUE = 63
    READ_OPERATIONS = 64
    READ_SOFTWARE_VERSION = 65
    READ_SYSTEM_CONFIG = 66
    READ_COMPONENT_CONFIG = 67
    READ_SYSTEM_TIME = 68
    READ_DEVICE_STATE = 81
    READ_DEVICE_OPERATIONS = 84
    READ_DEVICE_VERSION = 85
    READ_DEVICE_CONFIG = 86
    READ_DEVICE_TIME = 88
    INIT_DEVICE = 89
    SYNC_CLOCK = 90
    DUTY_CHECK = 91


TYPE_NAMES: dict[int, str] = {
    1: "建筑消防设施系统状态",
    2: "建筑消防设施部件运行状态",
    3: "建筑消防设施部件模拟量值",
    4: "建筑消防设施操作信息",
    5: "建筑消防设施软件版本",
    6: "建筑消防设施系统配置情况",
    7: "建筑消防设施部件配置情况",
    8: "建筑消防设施系统时间",
    21: "用户信息传输装置运行状态",
    24: "用户信息传输装置操作信息",
    25: "用户信息传输装置软件版本",
    26: "用户信息传输装置配置情况",
    28: "用户信息传输装置系统时间",
    61: "读建筑消防设施系统状态",
    62: "读建筑消防设施部件运行状态",
    63: "读建筑消防设施部件模拟量值",
    64: "读建筑消防设施操作信息记录",
    65: "读建筑消防设施软件版本",
    66: "读建筑消防设施系统配置情况",
    67: "读建筑消防设施部件配置情况",
    68: "读建筑消防设施系统时间",
    81: "读用户信息传输装置运行状态",
    84: "读用户信息传输装置操作信息记录",
    85: "读用户信息传输装置软件版本",
    86: "读用户信息传输装置配置情况",
    88: "读用户信息传输装置系统时间",
    89: "初始化用户信息传输装置",
    90: "同步用户信息传输装置时钟",
    91: "查岗命令",
}

# 系统类型 (§8.2.1.1). 23 is 消防电源: one transcription of the standard repeats 消防电梯 there, a typo.
SYSTEM_TYPES: dict[int, str] = {
    0: "通用",
    1: "火灾报警系统",
    10: "消防联动控制器",
    11: "消火栓系统",
    12: "自动喷水灭火系统",
    13: "气体灭火系统",
    14: "水喷雾灭火系统(泵启动方式)",
    15: "水喷雾灭火系统(压力容器启动方式)",
    16: "泡沫灭火系统",
    17: "干粉灭火系统",
    18: "防烟排烟系统",
    19: "防火门及卷帘系统",
    20: "消防电梯",
    21: "消防应急广播",
    22: "消防应急照明和疏散指示系统",
    23: "消防电源",
    24: "消防电话",
}

# 部件类型 (§8.2.1.2); every other code up to 127 is reserved.
COMPONENT_TYPES: dict[int, str] = {
    0: "通用",
    1: "火灾报警控制器",
    10: "可燃气体探测器",
    11: "点型可燃气体探测器",
    12: "独立式可燃气体探测器",
    13: "线型可燃气体探测器",
    16: "电气火灾监控报警器",
    17: "剩余电流式电气火灾监控探测器",
    18: "测温式电气火灾监控探测器",
    21: "探测回路",
    22: "火灾显示盘",
    23: "手动火灾报警按钮",
    24: "消火栓按钮",
    25: "火灾探测器",
    30: "感温火灾探测器",
    31: "点型感温火灾探测器",
    32: "点型感温火灾探测器(S型)",
    33: "点型感温火灾探测器(R型)",
    34: "线型感温火灾探测器",
    35: "线型感温火灾探测器(S型)",
    36: "线型感温火灾探测器(R型)",
    37: "光纤感温火灾探测器",
    40: "感烟火灾探测器",
    41: "点型离子感烟火灾探测器",
    42: "点型光电感烟火灾探测器",
    43: "线型光束感烟火灾探测器",
    44: "吸气式感烟火灾探测器",
    50: "复合式火灾探测器",
    51: "复合式感烟感温火灾探测器",
    52: "复合式感光感温火灾探测器",
    53: "复合式感光感烟火灾探测器",
    61: "紫外火焰探测器",
    62: "红外火焰探测器",
    69: "感光火灾探测器",
    74: "气体探测器",
    78: "图像摄像方式火灾探测器",
    79: "感声火灾探测器",
    81: "气体灭火控制器",
    82: "消防电气控制装置",
    83: "消防控制室图形显示装置",
    84: "模块",
    85: "输入模块",
    86: "输出模块",
    87: "输入/输出模块",
    88: "中继模块",
    91: "消防水泵",
    92: "消防水箱",
    95: "喷淋泵",
    96: "水流指示器",
    97: "信号阀",
    98: "报警阀",
    99: "压力开关",
    101: "阀驱动装置",
    102: "防火门",
    103: "防火阀",
    104: "通风空调",
    105: "泡沫液泵",
    106: "管网电磁阀",
    111: "防烟排烟风机",
    113: "排烟防火阀",
    114: "常闭送风口",
    115: "排烟口",
    116: "电控挡烟垂壁",
    117: "防火卷帘控制器",
    118: "防火门监控器",
    121: "警报装置",
}

# Status bits: bit -> (name when 1, name when 0 or ""). Bit 0 = 0 means "test", but many devices
# send fires with bit 0 clear, so it is informational only and never gates an alarm.
SYSTEM_STATUS_BITS: dict[int, tuple[str, str]] = {
    0: ("正常运行", "测试"),
    1: ("火警", ""),
    2: ("故障", ""),
    3: ("屏蔽", ""),
    4: ("监管", ""),
    5: ("启动(开启)", "停止(关闭)"),
    6: ("反馈", ""),
    7: ("延时状态", ""),
    8: ("主电故障", ""),
    9: ("备电故障", ""),
    10: ("总线故障", ""),
    11: ("手动状态", "自动状态"),
    12: ("配置改变", ""),
    13: ("复位", ""),
}

# Type 2: bits 0–7 as the system's, bit 8 电源故障, bits 9–15 reserved.
COMPONENT_STATUS_BITS: dict[int, tuple[str, str]] = {
    **{bit: SYSTEM_STATUS_BITS[bit] for bit in range(8)},
    8: ("电源故障", ""),
}

# Type 21 (one byte).
DEVICE_STATUS_BITS: dict[int, tuple[str, str]] = {
    0: ("正常监视", "测试"),
    1: ("火警", ""),
    2: ("故障", ""),
    3: ("主电故障", ""),
    4: ("备电故障", ""),
    5: ("与监控中心通信信道故障", ""),
    6: ("监测连接线路故障", ""),
}

# Operation flags (one byte): type 4 for the facility, type 24 for the device; they differ in bit 5.
OPERATION_BITS: dict[int, str] = {
    0: "复位",
    1: "消音",
    2: "手动报警",
    3: "警情消除",
    4: "自检",
    5: "确认",
    6: "测试",
}
DEVICE_OPERATION_BITS: dict[int, str] = {**OPERATION_BITS, 5: "查岗应答"}


@dataclass(frozen=True, slots=True)
class AnalogType:
    """One analog quantity of type 3: engineering value = raw × scale."""

    name: str
    unit: str
    scale: float
    decimals: int


# Analog types (§8.2.1.3, table of 模拟量类型). Code 5 is kPa at 0.1 kPa (one transcription writes
# "0.1Mpa", a typo beside code 4's MPa).
ANALOG_TYPES: dict[int, AnalogType] = {
    1: AnalogType("事件计数", "件", 1.0, 0),
    2: AnalogType("高度", "m", 0.01, 2),
    3: AnalogType("温度", "℃", 0.1, 1),
    4: AnalogType("压力", "MPa", 0.1, 1),
    5: AnalogType("压力", "kPa", 0.1, 1),
    6: AnalogType("气体浓度", "%LEL", 0.1, 1),
    7: AnalogType("时间", "s", 1.0, 0),
    8: AnalogType("电压", "V", 0.1, 1),
    9: AnalogType("电流", "A", 0.1, 1),
    10: AnalogType("流量", "L/s", 0.1, 1),
    11: AnalogType("风量", "m³/min", 0.1, 1),
    12: AnalogType("风速", "m/s", 1.0, 0),
}


def name_of(table: dict[int, str], code: int) -> str:
    """The name of `code` in `table`; "用户自定义" for 128–255, "保留" for any other unknown code."""
    name = table.get(code)
    if name is not None:
        return name
    return USER_DEFINED if 128 <= code <= 255 else RESERVED


def analog_type(code: int) -> AnalogType:
    """The analog quantity of `code`; user-defined and reserved codes keep the raw value (scale 1)."""
    known = ANALOG_TYPES.get(code)
    if known is not None:
        return known
    return AnalogType(name_of({}, code), "", 1.0, 0)


def status_names(table: dict[int, tuple[str, str]], status: int) -> list[str]:
    """The names of the set bits of `status`, lowest first; a set bit outside `table` is "保留(bitN)"."""
    names: list[str] = []
    bit = 0
    while status >> bit:
        if status >> bit & 1:
            names.append(table[bit][0] if bit in table else f"{RESERVED}(bit{bit})")
        bit += 1
    return names


def flag_names(table: dict[int, str], flags: int) -> list[str]:
    """The names of the set bits of an operation byte (type 4 or 24), lowest first."""
    return [table.get(bit, f"{RESERVED}(bit{bit})") for bit in range(flags.bit_length()) if flags >> bit & 1]
