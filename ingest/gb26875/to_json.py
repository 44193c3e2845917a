"""A decoded frame as plain JSON-ready data, for `firewatch gb26875 decode --json` and for logs.

Codes appear as the integers on the wire with their names beside them, so a support engineer can
check both against a capture and the standard's tables.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from ingest.gb26875.codes import (
    COMMAND_NAMES,
    COMPONENT_STATUS_BITS,
    COMPONENT_TYPES,
    DEVICE_OPERATION_BITS,
    DEVICE_STATUS_BITS,
    OPERATION_BITS,
    SYSTEM_STATUS_BITS,
    SYSTEM_TYPES,
    TYPE_NAMES,
    analog_type,
    flag_names,
    name_of,
    status_names,
)
from ingest.gb26875.frame import Frame, GbTime
from ingest.gb26875.objects import (
    AduError,
    AnalogValue,
    ComponentState,
    DeviceOperation,
    DeviceState,
    GbObject,
    Operation,
    SystemState,
    UnknownObjects,
    decode_adu,
    loop_point,
)


def time_to_json(time: GbTime) -> dict[str, Any]:
    """ISO text (None when the tag is not a real date and time) and the six fields as sent."""
    dt = time.to_datetime()
    return {
        "iso": None if dt is None else dt.isoformat(),
        "second": time.second,
        "minute": time.minute,
        "hour": time.hour,
        "day": time.day,
        "month": time.month,
        "year": time.year,
    }


def object_to_json(obj: GbObject) -> dict[str, Any]:
    """One object's fields, each code with its name, status words with the names of their set bits."""
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, GbTime):
            out[f.name] = time_to_json(value)
        elif isinstance(value, bytes):
            out[f.name] = value.hex(" ")
        else:
            out[f.name] = value
    if "sys_type" in out:
        out["sys_type_name"] = name_of(SYSTEM_TYPES, out["sys_type"])
    if "comp_type" in out:
        out["comp_type_name"] = name_of(COMPONENT_TYPES, out["comp_type"])
    if "comp_addr" in out:
        out["loop"], out["point"] = loop_point(out["comp_addr"])
    if isinstance(obj, SystemState):
        out["status_names"] = status_names(SYSTEM_STATUS_BITS, obj.status)
    elif isinstance(obj, ComponentState):
        out["status_names"] = status_names(COMPONENT_STATUS_BITS, obj.status)
    elif isinstance(obj, DeviceState):
        out["status_names"] = status_names(DEVICE_STATUS_BITS, obj.status)
    elif isinstance(obj, Operation):
        out["flag_names"] = flag_names(OPERATION_BITS, obj.flags)
    elif isinstance(obj, DeviceOperation):
        out["flag_names"] = flag_names(DEVICE_OPERATION_BITS, obj.flags)
    elif isinstance(obj, AnalogValue):
        quantity = analog_type(obj.analog_type)
        out["analog_type_name"] = quantity.name
        out["unit"] = quantity.unit
    return out


def frame_to_json(frame: Frame) -> dict[str, Any]:
    """The header, the ADU length and the ADU decoded; an ADU that does not decode gives its hex and
    the reason under "adu_error" (the frame itself was valid)."""
    out: dict[str, Any] = {
        "serial": frame.serial,
        "version": list(frame.version),
        "time": time_to_json(frame.time),
        "source": frame.source,
        "destination": frame.destination,
        "command": frame.command,
        "command_name": name_of(COMMAND_NAMES, frame.command),
        "adu_length": len(frame.adu),
    }
    if not frame.adu:
        return out
    try:
        adu = decode_adu(frame.adu)
    except AduError as exc:
        out["adu_error"] = str(exc)
        out["adu_hex"] = frame.adu.hex(" ")
        return out
    out["type_id"] = adu.type_id
    out["type_name"] = name_of(TYPE_NAMES, adu.type_id)
    out["count"] = adu.count
    if len(adu.objects) == 1 and isinstance(adu.objects[0], UnknownObjects):
        out["data"] = adu.objects[0].data.hex(" ")
    else:
        out["objects"] = [object_to_json(obj) for obj in adu.objects]
    return out
