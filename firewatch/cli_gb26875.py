"""`firewatch gb26875`: GB/T 26875.3-2011 frames from 用户信息传输装置 (see docs/gb26875.md).

Exit codes of `decode`: 0 every input was whole, valid frames; 1 something was not (each reason
on stderr, after the good frames were printed); 2 no input.
"""

from __future__ import annotations

import json
import re
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from ingest.gb26875.frame import Frame

gb26875_app = typer.Typer(
    help="GB/T 26875.3-2011 (城市消防远程监控系统 报警传输网络通信协议): read frames from user "
    "information transmission devices (用户信息传输装置). See docs/gb26875.md.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)

_SEPARATORS = re.compile(r"[\s:,]+")


def parse_hex(text: str) -> bytes:
    """Bytes from hex written as a capture shows it: "40 40 01", "40:40:01", "0x40 0x40", "404001"."""
    tokens = [token[2:] if token[:2] in ("0x", "0X") else token for token in _SEPARATORS.split(text)]
    return bytes.fromhex("".join(tokens))


@gb26875_app.command()
def decode(
    frames: Annotated[
        list[str],
        typer.Argument(
            metavar="HEX",
            help="one or more frames in hex, each argument quoted if it has spaces "
            "(e.g. '40 40 01 00 …'); '-' reads them from stdin, one per line",
        ),
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON object per frame (JSON Lines), for tools and tickets")
    ] = False,
) -> None:
    """Decode GB/T 26875.3 frames, e.g. from a packet capture or a device's log.

    For a support engineer checking what a device sent: each frame's header (serial, time,
    source and destination addresses, command) and its application data unit with every object
    (system and component types, 部件地址 as loop/point, status bits, analog values with their
    units) as codes with their Chinese names. An argument (or stdin line) may hold several frames
    back to back, as a TCP stream carries them. A frame that is not valid (bad hex, bad checksum,
    wrong length or end, the 赋安 FSCN8001 look-alike, an ADU that does not fit its count) has its
    reason printed to stderr, and the command exits 1 after printing the good ones.
    """
    from ingest.gb26875.framer import Framer, FrameReject
    from ingest.gb26875.to_json import frame_to_json

    inputs: list[tuple[str, str]] = []
    for number, argument in enumerate(frames, 1):
        if argument == "-":
            for line_no, line in enumerate(sys.stdin, 1):
                if line.strip() and not line.lstrip().startswith("#"):
                    inputs.append((f"stdin line {line_no}", line))
        else:
            inputs.append((f"argument {number}", argument))
    if not inputs:
        err.print("[red]no frames given[/]")
        raise typer.Exit(2)
    failed = False
    count = 0
    for label, text in inputs:
        try:
            data = parse_hex(text)
        except ValueError as exc:
            err.print(f"[red]{escape(label)}: bad hex: {escape(str(exc))}[/]")
            failed = True
            continue
        framer = Framer()
        for item in [*framer.feed(data), *framer.close()]:
            if isinstance(item, FrameReject):
                shown = item.raw[:40].hex(" ") + (" …" if len(item.raw) > 40 else "")
                err.print(
                    f"[red]{escape(label)}: {item.reason}: {escape(item.detail)} "
                    f"({len(item.raw)} bytes: {shown})[/]"
                )
                failed = True
                continue
            count += 1
            decoded = frame_to_json(item)
            if "adu_error" in decoded:
                err.print(f"[red]{escape(label)}: bad ADU: {escape(decoded['adu_error'])}[/]")
                failed = True
            if as_json:
                typer.echo(json.dumps(decoded, ensure_ascii=False))
            else:
                _render(count, label, item, decoded)
    if failed:
        raise typer.Exit(1)


def _render(number: int, label: str, frame: Frame, decoded: dict[str, Any]) -> None:
    time = decoded["time"]["iso"] or "invalid time " + frame.time.encode().hex(" ")
    console.print(
        f"[bold]帧 {number}[/] ({escape(label)}) [bold]{decoded['command_name']}[/] "
        f"(command {frame.command}) serial {frame.serial} · {time} · "
        f"{frame.source} → {frame.destination} · ADU {decoded['adu_length']} bytes"
        + (" (heartbeat 心跳)" if frame.command == 2 and not frame.adu else "")
    )
    if "type_id" not in decoded:
        if "adu_hex" in decoded:
            console.print(f"  ADU {decoded['adu_hex']}")
        return
    console.print(f"  类型 {decoded['type_id']} {decoded['type_name']}, {decoded['count']} object(s)")
    if "data" in decoded:
        console.print(f"  data {decoded['data']}")
        return
    for index, obj in enumerate(decoded["objects"], 1):
        console.print(f"  [bold]#{index}[/]")
        for key, text in _cells(obj).items():
            console.print(f"    {_LABELS.get(key, key)}: {escape(text)}")


# Field labels in Chinese first, the JSON key beside them.
_LABELS = {
    "sys_type": "系统类型 sys_type",
    "sys_addr": "系统地址 sys_addr",
    "comp_type": "部件类型 comp_type",
    "comp_addr": "部件地址 comp_addr",
    "status": "状态 status",
    "description": "部件说明 description",
    "time": "时间 time",
    "analog_type": "模拟量类型 analog_type",
    "raw": "原始值 raw",
    "value": "模拟量值 value",
    "flags": "操作标志 flags",
    "operator": "操作员编号 operator",
    "major": "主版本号 major",
    "minor": "次版本号 minor",
    "text": "配置说明 text",
    "records": "记录数目 records",
    "start": "起始时间 start",
    "reserved": "预留 reserved",
    "timeout_minutes": "应答时限(分钟) timeout_minutes",
}
_MERGED = {"status_names", "flag_names", "loop", "point", "unit"}


def _cells(obj: dict[str, Any]) -> dict[str, str]:
    """One object's fields as table cells: each code beside its name."""
    cells: dict[str, str] = {}
    for key, value in obj.items():
        if key.endswith("_name") or key in _MERGED:
            continue
        text = (value["iso"] or "invalid") if isinstance(value, dict) else str(value)
        if f"{key}_name" in obj:
            text = f"{value} {obj[f'{key}_name']}"
        if key == "status":
            text = f"0x{value:04x} {','.join(obj['status_names'])}"
        elif key == "flags":
            text = f"0x{value:02x} {','.join(obj['flag_names'])}"
        elif key == "comp_addr":
            text = f"{value} (loop {obj['loop']}, point {obj['point']})"
        elif key == "value":
            text = f"{value} {obj['unit']}"
        cells[key] = text
    return cells
