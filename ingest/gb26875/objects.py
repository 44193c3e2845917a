"""The application data unit (应用数据单元, §8 of GB/T 26875.3-2011) and its typed objects.

    类型标志 (1 byte) | 信息对象数目 (1 byte) | object 1 | … | object n

Upstream objects (device -> centre, types 1–28) carry a 6-byte time tag after their body, except
types 5, 6, 7, 25 and 26 (none) and 8 and 28 (whose body is a time). Downstream objects (centre ->
device, types 61–91) are the centre's requests and control commands. Multi-byte integers are
little-endian. A type identifier firewatch does not know (e.g. the user-defined 204 and 205 of real
kit) decodes to `UnknownObjects`, never an error.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ingest.gb26875.codes import TYPE_NAMES, TypeId, analog_type, name_of
from ingest.gb26875.frame import MAX_ADU, GbTime

DESCRIPTION_BYTES = 31  # 部件说明 and 部件配置说明: GB 18030 text, padded


class AduError(ValueError):
    """The ADU's bytes do not fit its type identifier and object count."""


# --- upstream: device -> centre -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SystemState:
    """Type 1, 建筑消防设施系统状态."""

    sys_type: int
    sys_addr: int
    status: int  # SYSTEM_STATUS_BITS
    time: GbTime


@dataclass(frozen=True, slots=True)
class ComponentState:
    """Type 2, 建筑消防设施部件运行状态."""

    sys_type: int
    sys_addr: int
    comp_type: int
    comp_addr: int  # 4 bytes little-endian; see loop_point for the usual split
    status: int  # COMPONENT_STATUS_BITS
    description: str  # 31 bytes of GB 18030, NULs and spaces stripped at both ends
    time: GbTime


@dataclass(frozen=True, slots=True)
class AnalogValue:
    """Type 3, 建筑消防设施部件模拟量值: `value` = `raw` × the analog type's resolution."""

    sys_type: int
    sys_addr: int
    comp_type: int
    comp_addr: int
    analog_type: int  # ANALOG_TYPES
    raw: int  # signed int16 as on the wire
    time: GbTime
    value: float = field(init=False)

    def __post_init__(self) -> None:
        quantity = analog_type(self.analog_type)
        object.__setattr__(self, "value", round(self.raw * quantity.scale, quantity.decimals))


@dataclass(frozen=True, slots=True)
class Operation:
    """Type 4, 建筑消防设施操作信息."""

    sys_type: int
    sys_addr: int
    flags: int  # OPERATION_BITS
    operator: int  # 操作员编号, defined by the facility
    time: GbTime


@dataclass(frozen=True, slots=True)
class SoftwareVersion:
    """Type 5, 建筑消防设施软件版本."""

    sys_type: int
    sys_addr: int
    major: int
    minor: int


@dataclass(frozen=True, slots=True)
class SystemConfig:
    """Type 6, 建筑消防设施系统配置情况: a length byte and that many bytes of GB 18030 text."""

    sys_type: int
    sys_addr: int
    text: str


@dataclass(frozen=True, slots=True)
class ComponentConfig:
    """Type 7, 建筑消防设施部件配置情况."""

    sys_type: int
    sys_addr: int
    comp_type: int
    comp_addr: int
    description: str


@dataclass(frozen=True, slots=True)
class SystemTime:
    """Type 8, 建筑消防设施系统时间."""

    sys_type: int
    sys_addr: int
    time: GbTime


@dataclass(frozen=True, slots=True)
class DeviceState:
    """Type 21, 用户信息传输装置运行状态."""

    status: int  # DEVICE_STATUS_BITS
    time: GbTime


@dataclass(frozen=True, slots=True)
class DeviceOperation:
    """Type 24, 用户信息传输装置操作信息."""

    flags: int  # DEVICE_OPERATION_BITS
    operator: int
    time: GbTime


@dataclass(frozen=True, slots=True)
class DeviceVersion:
    """Type 25, 用户信息传输装置软件版本."""

    major: int
    minor: int


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """Type 26, 用户信息传输装置配置情况."""

    text: str


@dataclass(frozen=True, slots=True)
class DeviceTime:
    """Type 28, 用户信息传输装置系统时间."""

    time: GbTime


# --- downstream: centre -> device -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadSystemState:
    """Type 61 (answered with type 1)."""

    sys_type: int
    sys_addr: int


@dataclass(frozen=True, slots=True)
class ReadComponentState:
    """Type 62 (answered with type 2). The request names no component type."""

    sys_type: int
    sys_addr: int
    comp_addr: int


@dataclass(frozen=True, slots=True)
class ReadAnalogValue:
    """Type 63 (answered with type 3)."""

    sys_type: int
    sys_addr: int
    comp_addr: int


@dataclass(frozen=True, slots=True)
class ReadOperations:
    """Type 64 (answered with type 4): up to `records` (≤ 102) records from `start`."""

    sys_type: int
    sys_addr: int
    records: int
    start: GbTime


@dataclass(frozen=True, slots=True)
class ReadSoftwareVersion:
    """Type 65 (answered with type 5)."""

    sys_type: int
    sys_addr: int


@dataclass(frozen=True, slots=True)
class ReadSystemConfig:
    """Type 66 (answered with type 6)."""

    sys_type: int
    sys_addr: int


@dataclass(frozen=True, slots=True)
class ReadComponentConfig:
    """Type 67 (answered with type 7)."""

    sys_type: int
    sys_addr: int
    comp_addr: int


@dataclass(frozen=True, slots=True)
class ReadSystemTime:
    """Type 68 (answered with type 8)."""

    sys_type: int
    sys_addr: int


@dataclass(frozen=True, slots=True)
class ReadDeviceState:
    """Type 81 (answered with type 21); its one byte is reserved (0)."""

    reserved: int = 0


@dataclass(frozen=True, slots=True)
class ReadDeviceOperations:
    """Type 84 (answered with type 24): up to `records` (≤ 102) records from `start`."""

    records: int
    start: GbTime


@dataclass(frozen=True, slots=True)
class ReadDeviceVersion:
    """Type 85 (answered with type 25); reserved byte."""

    reserved: int = 0


@dataclass(frozen=True, slots=True)
class ReadDeviceConfig:
    """Type 86 (answered with type 26); reserved byte."""

    reserved: int = 0


@dataclass(frozen=True, slots=True)
class ReadDeviceTime:
    """Type 88 (answered with type 28); reserved byte."""

    reserved: int = 0


@dataclass(frozen=True, slots=True)
class InitDevice:
    """Type 89, 初始化用户信息传输装置 (a control command); reserved byte."""

    reserved: int = 0


@dataclass(frozen=True, slots=True)
class SyncClock:
    """Type 90, 同步用户信息传输装置时钟 (a control command): the ADU is 5A 01 and the 6-byte time.

    Sources disagree on this payload (a reserved byte, or a reserved byte and the time); the type,
    count and bare time form is the one the vendor example sequence and an independent codec share.
    """

    time: GbTime


@dataclass(frozen=True, slots=True)
class DutyCheck:
    """Type 91, 查岗命令 (a control command): one byte, the answer timeout in minutes (0x0A = 10 min,
    as the vendor example sends; some transcriptions call it a reserved byte 0)."""

    timeout_minutes: int


@dataclass(frozen=True, slots=True)
class UnknownObjects:
    """Any type identifier firewatch does not decode (reserved or user-defined): the bytes as they came."""

    type_id: int
    count: int
    data: bytes


GbObject = (
    SystemState | ComponentState | AnalogValue | Operation | SoftwareVersion | SystemConfig
    | ComponentConfig | SystemTime | DeviceState | DeviceOperation | DeviceVersion | DeviceConfig
    | DeviceTime | ReadSystemState | ReadComponentState | ReadAnalogValue | ReadOperations
    | ReadSoftwareVersion | ReadSystemConfig | ReadComponentConfig | ReadSystemTime | ReadDeviceState
    | ReadDeviceOperations | ReadDeviceVersion | ReadDeviceConfig | ReadDeviceTime | InitDevice
    | SyncClock | DutyCheck | UnknownObjects
)  # fmt: skip


@dataclass(frozen=True)
class Adu:
    type_id: int
    count: int
    objects: tuple[GbObject, ...]  # one UnknownObjects holding all the bytes for an unknown type


def loop_point(addr: int) -> tuple[int, int]:
    """The default split of a 4-byte 部件地址: (low 16-bit word = 区号/loop, high word = 位号/point).

    The standard only says "4-byte binary, low byte first"; this split is the one a transcription
    of it and the vendor example ("0A 00 02 00" = 10区2号) use. Other vendors pack the bytes
    differently (e.g. controller, loop, point one byte each), so it is a default, not a fact.
    """
    return addr & 0xFFFF, addr >> 16


# --- codecs ---------------------------------------------------------------------------------------


def _text(data: bytes) -> str:
    # Devices pad with NULs or spaces, at either end (real captures have leading NULs), so the
    # whole field is decoded rather than cut at the first NUL.
    return data.strip(b"\x00 ").decode("gb18030", "replace").strip("\x00 ")


def _description(text: str) -> bytes:
    data = text.encode("gb18030")
    if len(data) > DESCRIPTION_BYTES:
        raise ValueError(f"description {text!r} is {len(data)} bytes in GB 18030, over {DESCRIPTION_BYTES}")
    return data


def _time(data: bytes) -> GbTime:
    return GbTime.from_bytes(data)


# (struct of one object, tuple -> object, object -> tuple) for every fixed-size type.
_Fixed = tuple[struct.Struct, Callable[[tuple[Any, ...]], GbObject], Callable[[Any], tuple[Any, ...]]]

_FIXED: dict[int, tuple[type, _Fixed]] = {
    TypeId.SYSTEM_STATE: (SystemState, (
        struct.Struct("<BBH6s"),
        lambda t: SystemState(t[0], t[1], t[2], _time(t[3])),
        lambda o: (o.sys_type, o.sys_addr, o.status, o.time.encode()),
    )),
    TypeId.COMPONENT_STATE: (ComponentState, (
        struct.Struct("<BBBIH31s6s"),
        lambda t: ComponentState(t[0], t[1], t[2], t[3], t[4], _text(t[5]), _time(t[6])),
        lambda o: (o.sys_type, o.sys_addr, o.comp_type, o.comp_addr, o.status,
                   _description(o.description), o.time.encode()),
    )),
    TypeId.ANALOG_VALUE: (AnalogValue, (
        struct.Struct("<BBBIBh6s"),
        lambda t: AnalogValue(t[0], t[1], t[2], t[3], t[4], t[5], _time(t[6])),
        lambda o: (o.sys_type, o.sys_addr, o.comp_type, o.comp_addr, o.analog_type, o.raw,
                   o.time.encode()),
    )),
    TypeId.OPERATION: (Operation, (
        struct.Struct("<BBBB6s"),
        lambda t: Operation(t[0], t[1], t[2], t[3], _time(t[4])),
        lambda o: (o.sys_type, o.sys_addr, o.flags, o.operator, o.time.encode()),
    )),
    TypeId.SOFTWARE_VERSION: (SoftwareVersion, (
        struct.Struct("<BBBB"),
        lambda t: SoftwareVersion(*t),
        lambda o: (o.sys_type, o.sys_addr, o.major, o.minor),
    )),
    TypeId.COMPONENT_CONFIG: (ComponentConfig, (
        struct.Struct("<BBBI31s"),
        lambda t: ComponentConfig(t[0], t[1], t[2], t[3], _text(t[4])),
        lambda o: (o.sys_type, o.sys_addr, o.comp_type, o.comp_addr, _description(o.description)),
    )),
    TypeId.SYSTEM_TIME: (SystemTime, (
        struct.Struct("<BB6s"),
        lambda t: SystemTime(t[0], t[1], _time(t[2])),
        lambda o: (o.sys_type, o.sys_addr, o.time.encode()),
    )),
    TypeId.DEVICE_STATE: (DeviceState, (
        struct.Struct("<B6s"),
        lambda t: DeviceState(t[0], _time(t[1])),
        lambda o: (o.status, o.time.encode()),
    )),
    TypeId.DEVICE_OPERATION: (DeviceOperation, (
        struct.Struct("<BB6s"),
        lambda t: DeviceOperation(t[0], t[1], _time(t[2])),
        lambda o: (o.flags, o.operator, o.time.encode()),
    )),
    TypeId.DEVICE_VERSION: (DeviceVersion, (
        struct.Struct("<BB"),
        lambda t: DeviceVersion(*t),
        lambda o: (o.major, o.minor),
    )),
    TypeId.DEVICE_TIME: (DeviceTime, (
        struct.Struct("<6s"),
        lambda t: DeviceTime(_time(t[0])),
        lambda o: (o.time.encode(),),
    )),
    TypeId.READ_SYSTEM_STATE: (ReadSystemState, (
        struct.Struct("<BB"), lambda t: ReadSystemState(*t), lambda o: (o.sys_type, o.sys_addr),
    )),
    TypeId.READ_COMPONENT_STATE: (ReadComponentState, (
        struct.Struct("<BBI"),
        lambda t: ReadComponentState(*t),
        lambda o: (o.sys_type, o.sys_addr, o.comp_addr),
    )),
    TypeId.READ_ANALOG_VALUE: (ReadAnalogValue, (
        struct.Struct("<BBI"),
        lambda t: ReadAnalogValue(*t),
        lambda o: (o.sys_type, o.sys_addr, o.comp_addr),
    )),
    TypeId.READ_OPERATIONS: (ReadOperations, (
        struct.Struct("<BBB6s"),
        lambda t: ReadOperations(t[0], t[1], t[2], _time(t[3])),
        lambda o: (o.sys_type, o.sys_addr, o.records, o.start.encode()),
    )),
    TypeId.READ_SOFTWARE_VERSION: (ReadSoftwareVersion, (
        struct.Struct("<BB"), lambda t: ReadSoftwareVersion(*t), lambda o: (o.sys_type, o.sys_addr),
    )),
    TypeId.READ_SYSTEM_CONFIG: (ReadSystemConfig, (
        struct.Struct("<BB"), lambda t: ReadSystemConfig(*t), lambda o: (o.sys_type, o.sys_addr),
    )),
    TypeId.READ_COMPONENT_CONFIG: (ReadComponentConfig, (
        struct.Struct("<BBI"),
        lambda t: ReadComponentConfig(*t),
        lambda o: (o.sys_type, o.sys_addr, o.comp_addr),
    )),
    TypeId.READ_SYSTEM_TIME: (ReadSystemTime, (
        struct.Struct("<BB"), lambda t: ReadSystemTime(*t), lambda o: (o.sys_type, o.sys_addr),
    )),
    TypeId.READ_DEVICE_STATE: (ReadDeviceState, (
        struct.Struct("<B"), lambda t: ReadDeviceState(*t), lambda o: (o.reserved,),
    )),
    TypeId.READ_DEVICE_OPERATIONS: (ReadDeviceOperations, (
        struct.Struct("<B6s"),
        lambda t: ReadDeviceOperations(t[0], _time(t[1])),
        lambda o: (o.records, o.start.encode()),
    )),
    TypeId.READ_DEVICE_VERSION: (ReadDeviceVersion, (
        struct.Struct("<B"), lambda t: ReadDeviceVersion(*t), lambda o: (o.reserved,),
    )),
    TypeId.READ_DEVICE_CONFIG: (ReadDeviceConfig, (
        struct.Struct("<B"), lambda t: ReadDeviceConfig(*t), lambda o: (o.reserved,),
    )),
    TypeId.READ_DEVICE_TIME: (ReadDeviceTime, (
        struct.Struct("<B"), lambda t: ReadDeviceTime(*t), lambda o: (o.reserved,),
    )),
    TypeId.INIT_DEVICE: (InitDevice, (
        struct.Struct("<B"), lambda t: InitDevice(*t), lambda o: (o.reserved,),
    )),
    TypeId.SYNC_CLOCK: (SyncClock, (
        struct.Struct("<6s"), lambda t: SyncClock(_time(t[0])), lambda o: (o.time.encode(),),
    )),
    TypeId.DUTY_CHECK: (DutyCheck, (
        struct.Struct("<B"), lambda t: DutyCheck(*t), lambda o: (o.timeout_minutes,),
    )),
}  # fmt: skip

# Types 6 and 26 carry a length byte and that much text.
_TEXT_TYPES: dict[int, type] = {TypeId.SYSTEM_CONFIG: SystemConfig, TypeId.DEVICE_CONFIG: DeviceConfig}


def _type_label(type_id: int) -> str:
    return f"type {type_id} ({name_of(TYPE_NAMES, type_id)})"


def decode_adu(adu: bytes) -> Adu:
    """The ADU's type identifier, count and objects; AduError when they do not fit its bytes.

    An empty ADU (a heartbeat or a bare confirm) is an AduError too: callers test
    `frame.adu` before decoding.
    """
    if len(adu) < 2:
        raise AduError(
            "empty ADU (no type identifier or count)" if not adu else "ADU of 1 byte: no object count"
        )
    type_id, count = adu[0], adu[1]
    body = adu[2:]
    fixed = _FIXED.get(type_id)
    if fixed is not None:
        layout, build, _ = fixed[1]
        if len(body) != count * layout.size:
            raise AduError(
                f"{_type_label(type_id)}: {count} objects of {layout.size} bytes need "
                f"{count * layout.size} bytes, the ADU carries {len(body)}"
            )
        return Adu(type_id, count, tuple(build(values) for values in layout.iter_unpack(body)))
    if type_id in _TEXT_TYPES:
        return Adu(type_id, count, _decode_texts(type_id, count, body))
    return Adu(type_id, count, (UnknownObjects(type_id, count, bytes(body)),))


def _decode_texts(type_id: int, count: int, body: bytes) -> tuple[GbObject, ...]:
    head = 3 if type_id == TypeId.SYSTEM_CONFIG else 1
    objects: list[GbObject] = []
    at = 0
    for index in range(count):
        if at + head > len(body):
            raise AduError(f"{_type_label(type_id)}: object {index + 1} of {count} is cut short")
        length = body[at + head - 1]
        end = at + head + length
        if end > len(body):
            raise AduError(
                f"{_type_label(type_id)}: object {index + 1} declares {length} bytes of text, "
                f"{len(body) - at - head} remain"
            )
        text = _text(body[at + head : end])
        if type_id == TypeId.SYSTEM_CONFIG:
            objects.append(SystemConfig(body[at], body[at + 1], text))
        else:
            objects.append(DeviceConfig(text))
        at = end
    if at != len(body):
        raise AduError(f"{_type_label(type_id)}: {len(body) - at} bytes after the {count} objects")
    return tuple(objects)


def encode_adu(type_id: int, objects: Sequence[GbObject]) -> bytes:
    """The ADU for `objects` of `type_id`; ValueError when an object is of another type, a field does
    not fit its bytes, or the ADU would be over 1024 bytes. For an unknown type pass one UnknownObjects."""
    if not 0 <= type_id <= 0xFF:
        raise ValueError(f"type identifier {type_id} does not fit a byte")
    fixed = _FIXED.get(type_id)
    text_type = _TEXT_TYPES.get(type_id)
    if fixed is None and text_type is None:
        if len(objects) != 1 or not isinstance(objects[0], UnknownObjects) or objects[0].type_id != type_id:
            raise ValueError(f"{_type_label(type_id)}: pass exactly one UnknownObjects of this type")
        unknown = objects[0]
        return _bounded(bytes((type_id, unknown.count)) + unknown.data)
    if len(objects) > 0xFF:
        raise ValueError(f"{len(objects)} objects do not fit the 1-byte count")
    expected = fixed[0] if fixed is not None else _TEXT_TYPES[type_id]
    parts = [bytes((type_id, len(objects)))]
    for obj in objects:
        if type(obj) is not expected:
            raise ValueError(f"{_type_label(type_id)} carries {expected.__name__}, not {type(obj).__name__}")
        if fixed is not None:
            layout, _, flatten = fixed[1]
            try:
                parts.append(layout.pack(*flatten(obj)))
            except struct.error as exc:
                raise ValueError(f"{obj}: a field does not fit its bytes ({exc})") from None
        else:
            parts.append(_encode_text(obj))
    return _bounded(b"".join(parts))


def _encode_text(obj: GbObject) -> bytes:
    if isinstance(obj, SystemConfig):
        try:
            head = bytes((obj.sys_type, obj.sys_addr))
        except ValueError:
            raise ValueError(f"{obj}: system type or address does not fit a byte") from None
        text = obj.text
    elif isinstance(obj, DeviceConfig):
        head, text = b"", obj.text
    else:  # pragma: no cover - encode_adu checked the type
        raise ValueError(f"{obj} carries no text")
    data = text.encode("gb18030")
    if len(data) > 0xFF:
        raise ValueError(f"configuration text of {len(data)} bytes is over 255")
    return head + bytes((len(data),)) + data


def _bounded(adu: bytes) -> bytes:
    if len(adu) > MAX_ADU:
        raise ValueError(f"ADU of {len(adu)} bytes is over {MAX_ADU}")
    return adu
