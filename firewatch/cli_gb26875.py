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


# --- asking a running service's connected devices (through its API) ------------------------------
ApiOpt = Annotated[str, typer.Option(help="the running service's API")]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        envvar="FIREWATCH_API_TOKEN",
        show_default=False,
        help="an API key or session token of an operator (FIREWATCH_API_TOKEN); `firewatch api-keys create`",
    ),
]


def _call(api: str, token: str | None, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One API call; a clear message and exit 1 for what the service refuses or cannot do."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        r = httpx.request(method, f"{api.rstrip('/')}/api/v1{path}", json=body, headers=headers, timeout=15.0)
    except httpx.HTTPError as exc:
        err.print(
            f"[red]cannot reach the service at {escape(api)}: {escape(str(exc))}[/] (is it running? --api)"
        )
        raise typer.Exit(1) from None
    if r.status_code >= 400:
        try:
            detail = r.json().get("detail") or r.json().get("title") or r.text
        except ValueError:
            detail = r.text
        hint = (
            " (give an operator's key with --token or FIREWATCH_API_TOKEN)"
            if r.status_code in (401, 403)
            else ""
        )
        err.print(f"[red]{r.status_code}: {escape(str(detail))}[/]{hint}")
        raise typer.Exit(1)
    return r.json()


@gb26875_app.command()
def devices(api: ApiOpt = "http://127.0.0.1:8080", token: TokenOpt = None) -> None:
    """The transmission devices of the registry, whether each is connected now, and when it last
    answered the centre's state read (巡检)."""
    from rich.table import Table

    rows = _call(api, token, "GET", "/gb26875/devices")
    table = Table(title="用户信息传输装置 (transmission devices)")
    for column in ("设备 device", "地址 address", "场所 site", "在线 connected", "来自 peer", "部件 points"):
        table.add_column(column)
    for d in rows:
        table.add_row(
            d["device_id"],
            str(d["address"]),
            d["site"],
            "是 yes" if d["connected"] else "否 no",
            d["peer"] or "",
            str(d["points"]),
        )
    console.print(table)


@gb26875_app.command()
def query(
    device: Annotated[str, typer.Argument(help="the transmission device's registry id")],
    type_id: Annotated[
        int,
        typer.Option(
            "--type", help="61-68: a panel or point (system and component fields); 81, 84-86, 88: the device"
        ),
    ],
    system_type: Annotated[int | None, typer.Option(help="系统类型, e.g. 1 火灾报警系统")] = None,
    system_address: Annotated[int | None, typer.Option(help="系统地址")] = None,
    component_address: Annotated[
        str | None, typer.Option(help="部件地址 as the 4-byte value, decimal or 0x hex")
    ] = None,
    records: Annotated[int | None, typer.Option(help="types 64, 84: how many operation records")] = None,
    start: Annotated[str | None, typer.Option(help="types 64, 84: records from (local time, ISO)")] = None,
    api: ApiOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
) -> None:
    """Ask a connected transmission device (GB/T 26875.3 types 61-88) through the running service and
    print its answer, decoded as `decode --json` prints a frame. Exit 1 when the device is not
    connected, does not answer within 10 s, or the query lacks a field it needs."""
    body: dict[str, Any] = {"type": type_id}
    for name, value in (
        ("system_type", system_type),
        ("system_address", system_address),
        ("records", records),
    ):
        if value is not None:
            body[name] = value
    if component_address is not None:
        try:
            body["component_address"] = int(component_address, 0)
        except ValueError:
            err.print(
                f"[red]--component-address {escape(component_address)}: not a number (decimal or 0x hex)[/]"
            )
            raise typer.Exit(2) from None
    if start is not None:
        body["start"] = start
    answer = _call(api, token, "POST", f"/gb26875/devices/{device}/query", body)
    print(json.dumps(answer, ensure_ascii=False, indent=2))
    if answer["command"] == 6:
        err.print("[yellow]the device denied the query (否认)[/]")
        raise typer.Exit(1)


@gb26875_app.command("duty-check")
def duty_check(
    device: Annotated[str, typer.Argument(help="the transmission device's registry id")],
    timeout_minutes: Annotated[int, typer.Option(help="how long its duty person has to answer")] = 10,
    api: ApiOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
) -> None:
    """查岗: ask the duty person at a transmission device to answer. The answer's time is recorded when
    it comes (`firewatch gb26875 duty-checks`, and the audit log)."""
    record = _call(
        api, token, "POST", f"/gb26875/devices/{device}/duty-check", {"timeout_minutes": timeout_minutes}
    )
    state = "confirmed by the device" if record["confirmed"] else "[yellow]denied by the device[/]"
    console.print(
        f"duty check sent to {escape(device)}: {state}; the answer is due within {timeout_minutes} min"
    )


@gb26875_app.command("duty-checks")
def duty_checks(api: ApiOpt = "http://127.0.0.1:8080", token: TokenOpt = None) -> None:
    """The duty checks sent since the service started, newest first, and how long each took to answer."""
    from datetime import datetime

    from rich.table import Table

    table = Table(title="查岗 (duty checks)")
    for column in ("设备 device", "发出 sent", "应答 answered", "用时 answer s", "操作员 operator"):
        table.add_column(column)
    for r in _call(api, token, "GET", "/gb26875/duty-checks"):
        answered = (
            datetime.fromtimestamp(r["answered_at"]).strftime("%F %T")
            if r["answered_at"]
            else "未应答 no answer"
        )
        table.add_row(
            r["device_id"],
            datetime.fromtimestamp(r["sent_at"]).strftime("%F %T"),
            answered,
            f"{r['answer_s']:.0f}" if r["answer_s"] is not None else "",
            str(r["operator"] or ""),
        )
    console.print(table)
