"""GB/T 26875.3-2011 frames and objects: every type identifier both ways, byte by byte against the
layout of the standard, the vendor example sequence, and every way a frame can be malformed."""

from __future__ import annotations

import contextlib
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.gb26875.codes import (
    COMPONENT_TYPES,
    SYSTEM_STATUS_BITS,
    SYSTEM_TYPES,
    TYPE_NAMES,
    Command,
    TypeId,
    flag_names,
    name_of,
    status_names,
)
from ingest.gb26875.frame import (
    MAX_ADU,
    Frame,
    FrameError,
    FrameErrorReason,
    GbTime,
    answer,
    checksum,
    decode_frame,
    encode_frame,
)
from ingest.gb26875.objects import (
    AduError,
    AnalogValue,
    ComponentConfig,
    ComponentState,
    DeviceConfig,
    DeviceOperation,
    DeviceState,
    DeviceTime,
    DeviceVersion,
    DutyCheck,
    GbObject,
    InitDevice,
    Operation,
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
    SoftwareVersion,
    SyncClock,
    SystemConfig,
    SystemState,
    SystemTime,
    UnknownObjects,
    decode_adu,
    encode_adu,
    loop_point,
)

# The vendor example sequence transcribed in ActorLancer/GB-T-26875.3.2011-rs (GB26875文档.md):
# device 0x379 (889), centre 0x15B38 (88888), events at 2012-09-26 09:58:02.
VENDOR = {
    "fire": "40 40 01 00 01 01 20 3A 09 1A 09 0C"
    " 79 03 00 00 00 00 38 5B 01 00 00 00 30 00 02 02 01 01 01 28 0A 00 02 00 02 00"
    + " 20" * 30
    + " 00 02 3A 09 1A 09 0C 46 23 23",
    "centre_confirm": "40 40 01 00 01 01 23 3A 09 1A 09 0C"
    " 38 5B 01 00 00 00 79 03 00 00 00 00 00 00 03 AB 23 23",
    "centre_deny": "40 40 01 00 01 01 23 3A 09 1A 09 0C"
    " 38 5B 01 00 00 00 79 03 00 00 00 00 00 00 06 AE 23 23",
    "main_power_fault": "40 40 01 00 01 01 20 3A 09 1A 09 0C"
    " 79 03 00 00 00 00 38 5B 01 00 00 00 09 00 02 15 01 08 02 3A 09 1A 09 0C 42 23 23",
    "duty_answer": "40 40 01 00 01 01 20 3A 09 1A 09 0C"
    " 79 03 00 00 00 00 38 5B 01 00 00 00 0A 00 02 18 01 20 01 02 3A 09 1A 09 0C 5F 23 23",
    "version": "40 40 01 00 01 01 20 3A 09 1A 09 0C"
    " 79 03 00 00 00 00 38 5B 01 00 00 00 04 00 02 19 01 01 01 C7 23 23",
    "device_time": "40 40 01 00 01 01 20 3A 09 1A 09 0C"
    " 79 03 00 00 00 00 38 5B 01 00 00 00 08 00 02 1C 01 02 3A 09 1A 09 0C 40 23 23",
    "read_state": "40 40 01 00 01 01 20 3A 09 1A 09 0C"
    " 38 5B 01 00 00 00 79 03 00 00 00 00 03 00 04 51 01 00 FE 23 23",
    "state_response": "40 40 01 00 01 01 20 3A 09 1A 09 0C"
    " 79 03 00 00 00 00 38 5B 01 00 00 00 09 00 05 15 01 08 02 3A 09 1A 09 0C 45 23 23",
    "read_version": "40 40 01 00 01 01 20 3A 09 1A 09 0C"
    " 38 5B 01 00 00 00 79 03 00 00 00 00 03 00 04 55 01 00 02 23 23",
    "read_time": "40 40 01 00 01 01 20 3A 09 1A 09 0C"
    " 38 5B 01 00 00 00 79 03 00 00 00 00 03 00 04 58 01 00 05 23 23",
    "init": "40 40 01 00 01 01 20 3A 09 1A 09 0C"
    " 38 5B 01 00 00 00 79 03 00 00 00 00 03 00 01 59 01 00 03 23 23",
    "device_confirm": "40 40 01 00 01 01 23 3A 09 1A 09 0C"
    " 79 03 00 00 00 00 38 5B 01 00 00 00 00 00 03 AB 23 23",
    "clock_sync": "40 40 01 00 01 01 20 3A 09 1A 09 0C"
    " 38 5B 01 00 00 00 79 03 00 00 00 00 08 00 01 5A 01 02 3A 09 1A 09 0C 7D 23 23",
    "duty_check": "40 40 01 00 01 01 20 3A 09 1A 09 0C"
    " 38 5B 01 00 00 00 79 03 00 00 00 00 03 00 01 5B 01 0A 0F 23 23",
}
DEVICE, CENTRE = 889, 88888
SENT = GbTime(0x20, 0x3A, 9, 26, 9, 2012)  # the device's send time in the sample
ANSWERED = GbTime(0x23, 0x3A, 9, 26, 9, 2012)  # the centre's own time in its answers
EVENT = GbTime(2, 58, 9, 26, 9, 2012)
T = GbTime(5, 58, 14, 5, 12, 2026)
T_BYTES = "05 3a 0e 05 0c 1a"


def vendor(name: str) -> bytes:
    return bytes.fromhex(VENDOR[name])


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# --- the vendor example sequence --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VENDOR))
def test_every_vendor_example_frame_decodes_with_a_valid_checksum(name: str) -> None:
    frame = decode_frame(vendor(name))
    assert frame.raw == vendor(name)
    assert frame.version == (1, 1)
    assert {frame.source, frame.destination} == {DEVICE, CENTRE}
    if frame.adu:
        assert decode_adu(frame.adu).count == 1


def test_the_vendor_fire_is_a_smoke_detector_in_zone_10_number_2() -> None:
    frame = decode_frame(vendor("fire"))
    assert (frame.serial, frame.serial_bytes, frame.command) == (1, b"\x01\x00", Command.SEND)
    assert (frame.source, frame.destination) == (DEVICE, CENTRE)
    assert frame.time.to_datetime() == datetime(2012, 9, 26, 9, 58, 32)
    adu = decode_adu(frame.adu)
    assert (adu.type_id, adu.count) == (TypeId.COMPONENT_STATE, 1)
    (fire,) = adu.objects
    assert isinstance(fire, ComponentState)
    assert (fire.sys_type, fire.sys_addr, fire.comp_type) == (1, 1, 40)
    assert loop_point(fire.comp_addr) == (10, 2)  # "2号10区"
    assert status_names(SYSTEM_STATUS_BITS, fire.status) == ["火警"]  # bit 0 clear, as many devices send
    assert fire.description == ""  # 30 spaces and a NUL
    assert fire.time == EVENT


def test_the_centres_confirm_and_deny_match_the_vendor_example_byte_for_byte() -> None:
    upload = decode_frame(vendor("fire"))
    assert answer(upload, Command.CONFIRM, ANSWERED) == vendor("centre_confirm")
    assert answer(upload, Command.DENY, ANSWERED) == vendor("centre_deny")


def test_a_device_answer_to_a_control_command_swaps_the_addresses_back() -> None:
    init = decode_frame(vendor("init"))
    assert answer(init, Command.CONFIRM, ANSWERED) == vendor("device_confirm")


@pytest.mark.parametrize(
    ("name", "command", "type_id", "objects"),
    [
        ("main_power_fault", Command.SEND, TypeId.DEVICE_STATE, [DeviceState(0x08, EVENT)]),
        ("state_response", Command.RESPONSE, TypeId.DEVICE_STATE, [DeviceState(0x08, EVENT)]),
        ("duty_answer", Command.SEND, TypeId.DEVICE_OPERATION, [DeviceOperation(0x20, 1, EVENT)]),
        ("version", Command.SEND, TypeId.DEVICE_VERSION, [DeviceVersion(1, 1)]),
        ("device_time", Command.SEND, TypeId.DEVICE_TIME, [DeviceTime(EVENT)]),
        ("read_state", Command.REQUEST, TypeId.READ_DEVICE_STATE, [ReadDeviceState()]),
        ("read_version", Command.REQUEST, TypeId.READ_DEVICE_VERSION, [ReadDeviceVersion()]),
        ("read_time", Command.REQUEST, TypeId.READ_DEVICE_TIME, [ReadDeviceTime()]),
        ("init", Command.CONTROL, TypeId.INIT_DEVICE, [InitDevice()]),
        ("clock_sync", Command.CONTROL, TypeId.SYNC_CLOCK, [SyncClock(EVENT)]),
        ("duty_check", Command.CONTROL, TypeId.DUTY_CHECK, [DutyCheck(10)]),
    ],
)
def test_encoding_reproduces_the_vendor_example(
    name: str, command: Command, type_id: TypeId, objects: list[GbObject]
) -> None:
    upstream = command in (Command.SEND, Command.RESPONSE)
    encoded = encode_frame(
        serial=1,
        command=command,
        source=DEVICE if upstream else CENTRE,
        destination=CENTRE if upstream else DEVICE,
        adu=encode_adu(type_id, objects),
        time=SENT,
    )
    assert encoded == vendor(name)
    assert decode_adu(decode_frame(encoded).adu).objects == tuple(objects)


# --- hand-built frames, byte by byte against the layout -------------------------------------------


def test_a_type_2_fire_from_a_point_photoelectric_smoke_detector() -> None:
    description = "3楼东区护士站"
    text = description.encode("gb18030")
    adu = encode_adu(2, [ComponentState(1, 1, 42, 0x0002000A, 0x0003, description, T)])
    assert adu == h(
        "02 01"  # type 2, one object
        " 01 01"  # 火灾报警系统, system address 1
        " 2a"  # component type 42 点型光电感烟火灾探测器
        " 0a 00 02 00"  # component address: loop 10, point 2, little-endian
        " 03 00"  # status: 正常运行 + 火警
    ) + text + bytes(31 - len(text)) + h(T_BYTES)
    frame = encode_frame(
        serial=0x1234, command=Command.SEND, source=DEVICE, destination=CENTRE, adu=adu, time=T
    )
    control = h("34 12 01 01") + h(T_BYTES) + h("79 03 00 00 00 00 38 5b 01 00 00 00 30 00 02")
    assert frame == b"@@" + control + adu + bytes([sum(control + adu) % 256]) + b"##"
    (fire,) = decode_adu(decode_frame(frame).adu).objects
    assert fire == ComponentState(1, 1, 42, 0x0002000A, 3, description, T)
    assert name_of(COMPONENT_TYPES, 42) == "点型光电感烟火灾探测器"


def test_a_type_1_system_state() -> None:
    adu = encode_adu(1, [SystemState(1, 2, 0x0105, T)])  # 正常运行, 故障, 主电故障
    assert adu == h("01 01 01 02 05 01") + h(T_BYTES)
    (state,) = decode_adu(adu).objects
    assert isinstance(state, SystemState)
    assert status_names(SYSTEM_STATUS_BITS, state.status) == ["正常运行", "故障", "主电故障"]


def test_a_type_3_analog_pressure_and_a_negative_temperature() -> None:
    pressure = AnalogValue(12, 1, 99, 0x00030001, 5, 2850, T)  # pressure switch, 285.0 kPa
    cold = AnalogValue(1, 1, 31, 7, 3, -125, T)  # -12.5 ℃
    adu = encode_adu(3, [pressure, cold])
    assert adu == h("03 02 0c 01 63 01 00 03 00 05 22 0b") + h(T_BYTES) + h(
        "01 01 1f 07 00 00 00 03 83 ff"
    ) + h(T_BYTES)
    decoded = decode_adu(adu).objects
    assert decoded == (pressure, cold)
    assert [(o.value, o.raw) for o in decoded if isinstance(o, AnalogValue)] == [(285.0, 2850), (-12.5, -125)]


def test_analog_scaling_per_type_and_unknown_types_unscaled() -> None:
    assert AnalogValue(0, 0, 0, 0, 2, 20481, T).value == 204.81  # height, 0.01 m
    assert AnalogValue(0, 0, 0, 0, 4, 12, T).value == 1.2  # MPa
    assert AnalogValue(0, 0, 0, 0, 1, 7, T).value == 7  # event count
    assert AnalogValue(0, 0, 0, 0, 200, 1234, T).value == 1234  # user-defined: raw


def test_a_type_21_device_state() -> None:
    adu = encode_adu(21, [DeviceState(0x23, T)])  # 正常监视, 火警, 通信信道故障
    assert adu == h("15 01 23") + h(T_BYTES)
    assert decode_adu(adu).objects == (DeviceState(0x23, T),)


def test_a_type_4_operation_with_reset_and_silence() -> None:
    adu = encode_adu(4, [Operation(1, 1, 0x03, 7, T)])
    assert adu == h("04 01 01 01 03 07") + h(T_BYTES)
    (operation,) = decode_adu(adu).objects
    assert isinstance(operation, Operation)
    assert flag_names({0: "复位", 1: "消音"}, operation.flags) == ["复位", "消音"]


def test_type_90_clock_sync_is_type_count_and_the_bare_time() -> None:
    now = GbTime(30, 15, 18, 5, 12, 2026)
    adu = encode_adu(90, [SyncClock(now)])
    assert adu == h("5a 01 1e 0f 12 05 0c 1a")
    frame = decode_frame(encode_frame(serial=7, command=Command.CONTROL, source=CENTRE, destination=DEVICE,
                                      adu=adu, time=now))  # fmt: skip
    assert decode_adu(frame.adu).objects == (SyncClock(now),)


def test_type_91_duty_check_carries_the_answer_timeout_in_minutes() -> None:
    assert encode_adu(91, [DutyCheck(10)]) == h("5b 01 0a")
    assert decode_adu(h("5b 01 00")).objects == (DutyCheck(0),)  # "reserved 0" senders decode too


# --- every type identifier both ways ---------------------------------------------------------------

EVERY_TYPE: dict[int, list[GbObject]] = {
    1: [SystemState(1, 1, 0x0003, T), SystemState(201, 3, 0x2000, T)],
    2: [ComponentState(1, 1, 23, 0x00050001, 0x0003, "1楼大厅手报", T)],
    3: [AnalogValue(11, 1, 92, 9, 2, 350, T)],
    4: [Operation(1, 1, 0x21, 3, T)],
    5: [SoftwareVersion(1, 1, 2, 13)],
    6: [SystemConfig(1, 1, "JB-QB-GST200 火灾报警控制器"), SystemConfig(18, 1, "")],
    7: [ComponentConfig(1, 1, 42, 0x00020001, "2楼病房201")],
    8: [SystemTime(1, 1, T)],
    21: [DeviceState(0x01, T)],
    24: [DeviceOperation(0x10, 2, T), DeviceOperation(0x20, 2, T)],
    25: [DeviceVersion(3, 4)],
    26: [DeviceConfig("用户信息传输装置 型号 X")],
    28: [DeviceTime(T)],
    61: [ReadSystemState(1, 1), ReadSystemState(12, 1)],
    62: [ReadComponentState(1, 1, 0x00020001)],
    63: [ReadAnalogValue(11, 1, 9)],
    64: [ReadOperations(1, 1, 10, T)],
    65: [ReadSoftwareVersion(1, 1)],
    66: [ReadSystemConfig(1, 1)],
    67: [ReadComponentConfig(1, 1, 0x00020001)],
    68: [ReadSystemTime(1, 1)],
    81: [ReadDeviceState()],
    84: [ReadDeviceOperations(5, T)],
    85: [ReadDeviceVersion()],
    86: [ReadDeviceConfig()],
    88: [ReadDeviceTime()],
    89: [InitDevice()],
    90: [SyncClock(T)],
    91: [DutyCheck(10)],
}


def test_every_type_identifier_is_covered() -> None:
    assert set(EVERY_TYPE) == {int(t) for t in TypeId} == set(TYPE_NAMES)


@pytest.mark.parametrize("type_id", sorted(EVERY_TYPE))
def test_every_type_round_trips_through_a_frame(type_id: int) -> None:
    objects = EVERY_TYPE[type_id]
    adu = encode_adu(type_id, objects)
    wire = encode_frame(serial=3, command=Command.SEND, source=DEVICE, destination=CENTRE, adu=adu, time=T)
    decoded = decode_adu(decode_frame(wire).adu)
    assert (decoded.type_id, decoded.count, decoded.objects) == (type_id, len(objects), tuple(objects))


def test_an_object_of_another_type_is_refused() -> None:
    with pytest.raises(ValueError, match="carries ComponentState, not SystemState"):
        encode_adu(2, [SystemState(1, 1, 0, T)])


def test_fields_that_do_not_fit_are_refused_on_encoding() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        encode_adu(1, [SystemState(256, 1, 0, T)])
    with pytest.raises(ValueError, match="over 31"):
        encode_adu(2, [ComponentState(1, 1, 42, 1, 2, "超" * 16, T)])
    with pytest.raises(ValueError, match="over 1024"):
        encode_adu(1, [SystemState(1, 1, 0, T)] * 103)
    with pytest.raises(ValueError, match="6-byte time tag"):
        GbTime(0, 0, 0, 1, 1, 1999).encode()


def test_user_defined_types_decode_as_unknown_objects_and_round_trip() -> None:
    adu = h("cc 02 01 00 00 01")  # 204 装置开关量状态 from real kit: two objects, 2 bytes each
    decoded = decode_adu(adu)
    assert decoded.objects == (UnknownObjects(204, 2, h("01 00 00 01")),)
    assert encode_adu(204, decoded.objects) == adu
    assert name_of(TYPE_NAMES, 204) == "用户自定义"
    assert name_of(TYPE_NAMES, 30) == "保留"


def test_code_tables_name_user_defined_and_reserved_codes_without_error() -> None:
    assert name_of(SYSTEM_TYPES, 1) == "火灾报警系统"
    assert name_of(SYSTEM_TYPES, 23) == "消防电源"
    assert name_of(SYSTEM_TYPES, 201) == name_of(SYSTEM_TYPES, 203) == "用户自定义"
    assert name_of(SYSTEM_TYPES, 5) == "保留"
    assert name_of(COMPONENT_TYPES, 23) == "手动火灾报警按钮"
    assert status_names(SYSTEM_STATUS_BITS, 0x8002) == ["火警", "保留(bit15)"]


# --- ADU errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("adu", "message"),
    [
        (b"", "empty ADU"),
        (h("02"), "no object count"),
        (h("02 02") + bytes(46), "2 objects of 46 bytes need 92 bytes, the ADU carries 46"),
        (h("15 01") + bytes(8), "need 7 bytes, the ADU carries 8"),
        (h("06 01 01 01 05 41 42"), "declares 5 bytes of text, 2 remain"),
        (h("1a 01 01 41 42"), "1 bytes after the 1 objects"),
        (h("1a 02 00"), "object 2 of 2 is cut short"),
    ],
)
def test_an_adu_that_does_not_fit_its_count_is_an_adu_error(adu: bytes, message: str) -> None:
    with pytest.raises(AduError, match=message):
        decode_adu(adu)


@given(st.binary(max_size=300))
def test_decode_adu_raises_nothing_but_adu_error(data: bytes) -> None:
    with contextlib.suppress(AduError):
        decode_adu(data)


@given(st.sampled_from(sorted(EVERY_TYPE)), st.integers(0, 255), st.binary(max_size=200))
def test_decode_adu_of_any_known_type_raises_nothing_but_adu_error(
    type_id: int, count: int, body: bytes
) -> None:
    with contextlib.suppress(AduError):
        decode_adu(bytes((type_id, count)) + body)


# --- descriptions and time tags -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("一层大厅".encode("gb18030") + bytes(23), "一层大厅"),  # NUL padding
        (" 一层大厅".encode("gb18030") + b" " * 22, "一层大厅"),  # spaces at both ends
        # leading NULs, as real kit sends
        (bytes(10) + "烟感 3-12".encode("gb18030") + bytes(12), "烟感 3-12"),
        # not cut at the first NUL
        ("甲".encode("gb18030") + b"\x00\x00" + "乙".encode("gb18030") + bytes(25), "甲\x00\x00乙"),
        (b"\xff" + b"A" * 30, "\ufffd" + "A" * 30),  # an invalid byte is replaced, not an error
    ],
)
def test_descriptions_are_gb18030_stripped_at_both_ends(field: bytes, text: str) -> None:
    adu = h("02 01 01 01 2a 01 00 00 00 02 00") + field + h(T_BYTES)
    (component,) = decode_adu(adu).objects
    assert isinstance(component, ComponentState)
    assert component.description == text


def test_time_tags_are_plain_binary_and_invalid_ones_have_no_datetime() -> None:
    assert GbTime.from_bytes(h("02 3a 09 1a 09 0c")).to_datetime() == datetime(2012, 9, 26, 9, 58, 2)
    assert GbTime.from_datetime(datetime(2026, 12, 5, 14, 58, 5)).encode() == h(T_BYTES)
    assert GbTime.from_bytes(bytes(6)).to_datetime() is None  # a device's unset clock
    assert GbTime(60, 0, 0, 1, 1, 2026).to_datetime() is None


# --- frame errors --------------------------------------------------------------------------------------


def good() -> bytes:
    return vendor("main_power_fault")


def fscn8001() -> bytes:
    """A 赋安 FSCN8001 private frame: @@, cmd, 00 01 05, BCD time, 12-byte device id, data, sum, ##."""
    body = h("01 00 01 05") + h("26 12 05 14 58 05") + b"FSCN80010001" + h("01 02 03")
    return b"@@" + body + bytes([sum(body) % 256]) + b"##"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (good()[:29], FrameErrorReason.too_short),
        (good()[:-1], FrameErrorReason.too_short),
        (b"#@" + good()[2:], FrameErrorReason.bad_start),
        (good()[:-2] + b"#$", FrameErrorReason.bad_end),
        (good() + b"\x00", FrameErrorReason.bad_end),
        (good()[:-3] + bytes([good()[-3] ^ 1]) + b"##", FrameErrorReason.bad_checksum),
        (good()[:24] + (1025).to_bytes(2, "little") + good()[26:], FrameErrorReason.adu_too_long),
        (fscn8001(), FrameErrorReason.lookalike_fscn8001),
    ],
)
def test_every_frame_error_has_its_reason(data: bytes, reason: FrameErrorReason) -> None:
    with pytest.raises(FrameError) as caught:
        decode_frame(data)
    assert caught.value.reason == reason
    assert str(caught.value).startswith(f"{reason}: ")


def test_a_bad_checksum_message_names_both_sums() -> None:
    data = good()[:-3] + b"\x00##"
    with pytest.raises(FrameError, match="checksum byte is 0x00, the sum of the frame's bytes gives 0x42"):
        decode_frame(data)


def test_the_checksum_is_the_low_byte_of_the_sum_between_start_and_checksum() -> None:
    frame = good()
    assert checksum(frame[2:-3]) == frame[-3] == 0x42
    assert checksum(b"\xff\x02") == 0x01


def test_the_largest_adu_is_accepted_and_a_larger_one_refused() -> None:
    largest = encode_frame(
        serial=0, command=Command.SEND, source=1, destination=2, adu=bytes(MAX_ADU), time=T
    )
    assert len(decode_frame(largest).adu) == MAX_ADU
    with pytest.raises(ValueError, match="over 1024"):
        encode_frame(serial=0, command=Command.SEND, source=1, destination=2, adu=bytes(MAX_ADU + 1), time=T)


def test_a_heartbeat_is_a_send_with_an_empty_adu() -> None:
    frame = decode_frame(
        encode_frame(serial=9, command=Command.SEND, source=DEVICE, destination=CENTRE, time=T)
    )
    assert (frame.command, frame.adu, len(frame.raw)) == (Command.SEND, b"", 30)


def test_answers_echo_the_raw_serial_bytes_and_keep_the_user_version() -> None:
    frame = decode_frame(encode_frame(serial=b"\xfe\xff", command=2, source=0xA1B2C3D4E5F6, destination=1,
                                      time=T, version=(1, 7)))  # fmt: skip
    reply = decode_frame(answer(frame, Command.CONFIRM, SENT))
    assert isinstance(reply, Frame)
    assert (reply.serial_bytes, reply.serial, reply.version) == (b"\xfe\xff", 0xFFFE, (1, 7))
    assert (reply.source, reply.destination, reply.time, reply.command) == (1, 0xA1B2C3D4E5F6, SENT, 3)


def test_encode_frame_refuses_fields_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="serial 65536"):
        encode_frame(serial=65536, command=2, source=1, destination=2, time=T)
    with pytest.raises(ValueError, match="serial bytes must be 2"):
        encode_frame(serial=b"\x01", command=2, source=1, destination=2, time=T)
    with pytest.raises(ValueError, match="source address"):
        encode_frame(serial=1, command=2, source=1 << 48, destination=2, time=T)
