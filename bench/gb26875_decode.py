"""GB/T 26875.3 decoding per core: the framer splitting a device stream, then each ADU decoded.

    python3 -m bench.gb26875_decode [--frames 200000] [--rounds 3] [--read 1460] [--heartbeats 0.7]

The mix is what a hospital's user information transmission devices send: 70 % heartbeats (command 2,
empty ADU), 20 % type 2 component states (fires and faults, 1–4 objects with GB 18030
descriptions), 10 % type 3 analog values (2–8 objects); --heartbeats 0 is an alarm storm, uploads
only, two type 2 frames to one type 3. The frames are built beforehand and
concatenated into one stream, cut into reads of --read bytes (so frames are split across reads
and several share one), as a TCP connection delivers them.

Two figures, in this process's CPU time (time.process_time, the steadier figure on a shared
machine), best of --rounds:

* stream: `Framer.feed` (which finds "@@", checks length, "##" and checksum and builds each Frame,
  the work of `decode_frame`) plus `decode_adu` for every frame with an ADU;
* frames: `decode_frame` then `decode_adu` on frames already split, one call per frame.

The bar (issue 21) is 20,000 frames/s per core.
"""

from __future__ import annotations

import argparse
import platform
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

from rich.console import Console

from ingest.gb26875.codes import Command
from ingest.gb26875.frame import Frame, GbTime, decode_frame, encode_frame
from ingest.gb26875.framer import Framer
from ingest.gb26875.objects import AnalogValue, ComponentState, decode_adu, encode_adu

PLACES = ["3楼东区护士站", "住院部5楼走廊", "门诊大厅", "地下一层配电室", "ICU 2床", "手术室3", "药房"]


def build(count: int, heartbeats: float = 0.7, seed: int = 26875) -> list[bytes]:
    rng = random.Random(seed)
    frames: list[bytes] = []
    for serial in range(count):
        now = GbTime(serial % 60, 30, 14, 5, 12, 2026)
        draw = rng.random()
        if draw < heartbeats:
            adu = b""
        elif draw < heartbeats + (1 - heartbeats) * 2 / 3:
            adu = encode_adu(
                2,
                [
                    ComponentState(
                        1,
                        1,
                        rng.choice((23, 31, 42, 42, 42)),
                        rng.randrange(1, 8) | rng.randrange(1, 256) << 16,
                        rng.choice((0x0003, 0x0005, 0x0001)),
                        rng.choice(PLACES),
                        now,
                    )
                    for _ in range(rng.randint(1, 4))
                ],
            )
        else:
            adu = encode_adu(
                3,
                [
                    AnalogValue(
                        12,
                        1,
                        99,
                        rng.randrange(1, 1 << 20),
                        rng.choice((2, 3, 5)),
                        rng.randrange(-50, 3000),
                        now,
                    )
                    for _ in range(rng.randint(2, 8))
                ],
            )
        frames.append(
            encode_frame(
                serial=serial % 0x10000,
                command=Command.SEND,
                source=100_000 + serial % 50,
                destination=88888,
                adu=adu,
                time=now,
            )
        )
    return frames


def stream_round(reads: list[bytes]) -> tuple[float, int, int]:
    framer = Framer()
    decode = decode_adu
    frames = objects = 0
    started = time.process_time()
    for read in reads:
        for item in framer.feed(read):
            if isinstance(item, Frame):
                frames += 1
                if item.adu:
                    objects += len(decode(item.adu).objects)
    return time.process_time() - started, frames, objects


def frames_round(frames: list[bytes]) -> tuple[float, int, int]:
    decode = decode_adu
    objects = 0
    started = time.process_time()
    for wire in frames:
        frame = decode_frame(wire)
        if frame.adu:
            objects += len(decode(frame.adu).objects)
    return time.process_time() - started, len(frames), objects


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--heartbeats", type=float, default=0.7, help="share of heartbeats; the rest is 2:1 type 2 to type 3"
    )
    parser.add_argument("--read", type=int, default=1460, help="bytes per TCP read (one Ethernet segment)")
    args = parser.parse_args()
    console = Console()
    frames = build(args.frames, args.heartbeats)
    stream = b"".join(frames)
    reads = [stream[at : at + args.read] for at in range(0, len(stream), args.read)]
    expected = sum(len(decode_adu(decode_frame(f).adu).objects) for f in frames if len(f) > 30)
    console.print(
        f"{len(frames):,} frames, {len(stream):,} bytes ({len(stream) / len(frames):.0f} per frame), "
        f"{expected:,} objects, {len(reads):,} reads of {args.read} bytes"
    )
    rounds: list[tuple[str, Callable[[], tuple[float, int, int]]]] = [
        ("stream", lambda: stream_round(reads)),
        ("frames", lambda: frames_round(frames)),
    ]
    for name, run in rounds:
        best = float("inf")
        for _ in range(args.rounds):
            cpu, decoded, objects = run()
            if (decoded, objects) != (len(frames), expected):
                console.print(f"[red]{name}: decoded {decoded} frames, {objects} objects[/]")
                raise SystemExit(1)
            best = min(best, cpu)
        console.print(
            f"{name}: [bold]{len(frames) / best:,.0f} frames/s per core[/] "
            f"({best / len(frames) * 1e6:.2f} µs CPU per frame, best of {args.rounds})"
        )
    console.print(
        f"machine: {platform.machine()}, CPython {platform.python_version()}; "
        f"{datetime.now(UTC).date().isoformat()}"
    )


if __name__ == "__main__":
    main()
