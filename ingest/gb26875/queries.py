"""The centre's queries (GB/T 26875.3 types 61–88) built from plain fields, as the API and CLI take
them: which fields each type needs, and its data unit. Pure computation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ingest.gb26875.codes import TypeId
from ingest.gb26875.frame import GbTime
from ingest.gb26875.objects import (
    GbObject,
    ReadAnalogValue,
    ReadComponentConfig,
    ReadComponentState,
    ReadDeviceConfig,
    ReadDeviceOperations,
    ReadDeviceState,
    ReadDeviceTime,
    ReadDeviceVersion,
    ReadOperations,
    ReadSoftwareVersion,
    ReadSystemConfig,
    ReadSystemState,
    ReadSystemTime,
    encode_adu,
)

# What each query reads, and which fields it needs beside its type.
QUERIES: dict[TypeId, tuple[str, tuple[str, ...]]] = {
    TypeId.READ_SYSTEM_STATE: ("读建筑消防设施系统状态", ("system_type", "system_address")),
    TypeId.READ_COMPONENT_STATE: (
        "读建筑消防设施部件运行状态",
        ("system_type", "system_address", "component_address"),
    ),
    TypeId.READ_ANALOG_VALUE: (
        "读建筑消防设施部件模拟量值",
        ("system_type", "system_address", "component_address"),
    ),
    TypeId.READ_OPERATIONS: (
        "读建筑消防设施操作信息记录",
        ("system_type", "system_address", "records", "start"),
    ),
    TypeId.READ_SOFTWARE_VERSION: ("读建筑消防设施软件版本", ("system_type", "system_address")),
    TypeId.READ_SYSTEM_CONFIG: ("读建筑消防设施系统配置情况", ("system_type", "system_address")),
    TypeId.READ_COMPONENT_CONFIG: (
        "读建筑消防设施部件配置情况",
        ("system_type", "system_address", "component_address"),
    ),
    TypeId.READ_SYSTEM_TIME: ("读建筑消防设施系统时间", ("system_type", "system_address")),
    TypeId.READ_DEVICE_STATE: ("读用户信息传输装置运行状态", ()),
    TypeId.READ_DEVICE_OPERATIONS: ("读用户信息传输装置操作信息记录", ("records", "start")),
    TypeId.READ_DEVICE_VERSION: ("读用户信息传输装置软件版本", ()),
    TypeId.READ_DEVICE_CONFIG: ("读用户信息传输装置配置情况", ()),
    TypeId.READ_DEVICE_TIME: ("读用户信息传输装置系统时间", ()),
}
RECORDS_MAX = 102  # operation records per answer (they must fit one data unit of 1024 bytes)


class QueryError(ValueError):
    """A query that cannot be built: its message says which field is missing or out of range."""


@dataclass(frozen=True)
class QueryFields:
    system_type: int | None = None
    system_address: int | None = None
    component_address: int | None = None
    records: int | None = None
    start: datetime | None = None  # local time (no zone on the wire)


def _byte(name: str, value: int | None) -> int:
    if value is None:
        raise QueryError(f"{name} is required for this query")
    if not 0 <= value <= 0xFF:
        raise QueryError(f"{name} must be 0-255, got {value}")
    return value


def request_adu(type_id: int, fields: QueryFields) -> bytes:
    """The data unit of query `type_id` (61–68, 81, 84–86, 88) with `fields`; QueryError if the type
    is not a query or a field it needs is missing or out of range."""
    try:
        kind = TypeId(type_id)
    except ValueError:
        kind = None
    if kind not in QUERIES:
        raise QueryError(f"type {type_id} is not a query; one of {sorted(int(t) for t in QUERIES)}")
    assert kind is not None
    f = fields
    obj: GbObject
    if kind in (TypeId.READ_COMPONENT_STATE, TypeId.READ_ANALOG_VALUE, TypeId.READ_COMPONENT_CONFIG):
        if f.component_address is None:
            raise QueryError("component_address is required for this query")
        if not 0 <= f.component_address < 1 << 32:
            raise QueryError(f"component_address must fit 4 bytes, got {f.component_address}")
        st, sa = _byte("system_type", f.system_type), _byte("system_address", f.system_address)
        if kind is TypeId.READ_COMPONENT_STATE:
            obj = ReadComponentState(st, sa, f.component_address)
        elif kind is TypeId.READ_ANALOG_VALUE:
            obj = ReadAnalogValue(st, sa, f.component_address)
        else:
            obj = ReadComponentConfig(st, sa, f.component_address)
    elif kind in (TypeId.READ_OPERATIONS, TypeId.READ_DEVICE_OPERATIONS):
        records = f.records if f.records is not None else 10
        if not 1 <= records <= RECORDS_MAX:
            raise QueryError(f"records must be 1-{RECORDS_MAX}, got {records}")
        if f.start is None:
            raise QueryError("start (the time to read records from) is required for this query")
        start = GbTime.from_datetime(f.start)
        if kind is TypeId.READ_OPERATIONS:
            st, sa = _byte("system_type", f.system_type), _byte("system_address", f.system_address)
            obj = ReadOperations(st, sa, records, start)
        else:
            obj = ReadDeviceOperations(records, start)
    elif kind is TypeId.READ_SYSTEM_STATE:
        obj = ReadSystemState(_byte("system_type", f.system_type), _byte("system_address", f.system_address))
    elif kind is TypeId.READ_SOFTWARE_VERSION:
        obj = ReadSoftwareVersion(
            _byte("system_type", f.system_type), _byte("system_address", f.system_address)
        )
    elif kind is TypeId.READ_SYSTEM_CONFIG:
        obj = ReadSystemConfig(_byte("system_type", f.system_type), _byte("system_address", f.system_address))
    elif kind is TypeId.READ_SYSTEM_TIME:
        obj = ReadSystemTime(_byte("system_type", f.system_type), _byte("system_address", f.system_address))
    elif kind is TypeId.READ_DEVICE_STATE:
        obj = ReadDeviceState()
    elif kind is TypeId.READ_DEVICE_VERSION:
        obj = ReadDeviceVersion()
    elif kind is TypeId.READ_DEVICE_CONFIG:
        obj = ReadDeviceConfig()
    else:
        obj = ReadDeviceTime()
    try:
        return encode_adu(kind, [obj])
    except ValueError as exc:
        raise QueryError(str(exc)) from None
