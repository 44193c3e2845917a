"""`firewatch gb26875 decode`, as a support engineer runs it on frames copied from a capture."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from firewatch.cli import app
from firewatch.cli_gb26875 import parse_hex
from ingest.gb26875.codes import Command
from ingest.gb26875.frame import GbTime, encode_frame
from ingest.gb26875.objects import AnalogValue, ComponentState, encode_adu

T = GbTime(5, 58, 14, 5, 12, 2026)
FIRE = encode_frame(
    serial=0x0102,
    command=Command.SEND,
    source=889,
    destination=88888,
    adu=encode_adu(2, [ComponentState(1, 1, 42, 0x0002000A, 0x0003, "3楼东区护士站", T)]),
    time=T,
)
ANALOG = encode_frame(
    serial=3,
    command=Command.SEND,
    source=889,
    destination=88888,
    adu=encode_adu(3, [AnalogValue(12, 1, 99, 0x00010004, 5, 2850, T)]),
    time=T,
)


def decode(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["gb26875", "decode", *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_json_gives_codes_as_integers_with_their_names_and_the_address_split() -> None:
    code, out, _ = decode("--json", FIRE.hex(" "))
    assert code == 0
    (line,) = out.splitlines()
    decoded = json.loads(line)
    assert decoded["serial"] == 0x0102
    assert (decoded["source"], decoded["destination"]) == (889, 88888)
    assert (decoded["command"], decoded["command_name"]) == (2, "发送数据")
    assert decoded["time"]["iso"] == "2026-12-05T14:58:05"
    assert (decoded["adu_length"], decoded["type_id"], decoded["count"]) == (48, 2, 1)
    assert decoded["type_name"] == "建筑消防设施部件运行状态"
    (fire,) = decoded["objects"]
    assert (fire["sys_type"], fire["sys_type_name"]) == (1, "火灾报警系统")
    assert (fire["comp_type"], fire["comp_type_name"]) == (42, "点型光电感烟火灾探测器")
    assert (fire["comp_addr"], fire["loop"], fire["point"]) == (0x0002000A, 10, 2)
    assert (fire["status"], fire["status_names"]) == (3, ["正常运行", "火警"])
    assert fire["description"] == "3楼东区护士站"
    assert fire["time"]["second"] == 5


def test_json_gives_an_analog_value_raw_and_scaled_with_its_unit() -> None:
    code, out, _ = decode("--json", ANALOG.hex())
    assert code == 0
    (value,) = json.loads(out)["objects"]
    assert (value["analog_type"], value["raw"], value["value"], value["unit"]) == (5, 2850, 285.0, "kPa")


def test_a_bad_checksum_is_reported_on_stderr_after_the_good_frames() -> None:
    broken = FIRE[:-3] + bytes([FIRE[-3] ^ 1]) + b"##"
    code, out, err = decode("--json", broken.hex(), ANALOG.hex())
    assert code == 1
    assert [json.loads(line)["serial"] for line in out.splitlines()] == [3]
    assert "argument 1: bad_checksum" in err


def test_bad_hex_and_the_fscn8001_look_alike_are_refused_with_their_reasons() -> None:
    body = bytes.fromhex("01 00 01 05 26 12 05 14 58 05") + b"FSCN80010001" + b"\x01"
    fscn = b"@@" + body + bytes([sum(body) % 256]) + b"##"
    code, out, err = decode("--json", "40 40 zz", fscn.hex())
    assert (code, out) == (1, "")
    assert "argument 1: bad hex" in err
    assert "argument 2: lookalike_fscn8001" in err


def test_frames_from_stdin_one_per_line_in_any_usual_hex_notation() -> None:
    stdin = (
        "# capture 2026-12-05\n"
        + ":".join(f"{b:02X}" for b in FIRE)
        + "\n\n"
        + " ".join(f"0x{b:02x}" for b in ANALOG)
    )
    code, out, _ = decode("--json", "-", stdin=stdin)
    assert code == 0
    assert [json.loads(line)["type_id"] for line in out.splitlines()] == [2, 3]


def test_several_frames_back_to_back_in_one_argument() -> None:
    code, out, _ = decode("--json", (FIRE + ANALOG).hex())
    assert code == 0
    assert len(out.splitlines()) == 2


def test_the_readable_view_names_everything_in_chinese() -> None:
    code, out, _ = decode(FIRE.hex())
    assert code == 0
    for text in (
        "发送数据",
        "建筑消防设施部件运行状态",
        "点型光电感烟火灾探测器",
        "正常运行,火警",
        "loop 10, point 2",
    ):
        assert text in out


def test_parse_hex_accepts_the_notations_captures_use() -> None:
    assert parse_hex("40 40 0a") == parse_hex("40:40:0A") == parse_hex("0x40 0x40 0x0a") == b"@@\n"
    assert parse_hex("40400a") == b"@@\n"
