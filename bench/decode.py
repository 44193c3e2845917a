"""Throughput of the decoder alone: parsing, validation and de-duplication, in one process.

    python3 -m bench.decode [--devices 5000] [--batches 40] [--undo]

Each batch holds one telemetry reading (smoke and temperature, ~70 bytes of JSON) from every one of
`--devices` smoke-photoelectric devices, each device counting its seq up by one per batch; the
messages are built beforehand and only `Decoder.decode` is timed, in wall-clock time and in this
process's CPU time (the steadier figure on a shared machine). `--undo` opens and commits the
de-duplication undo record around each batch, as the pipeline does (firewatch/pipeline.py).
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import UTC, datetime

import orjson
from rich.console import Console
from rich.progress import Progress

from bench.ingest import registry
from device_profiles.loader import load_profiles
from ingest.decode import Decoder
from ingest.envelope import Message
from ingest.index import DeviceIndex

NOW = 1_800_000_000.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=5_000)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--undo", action="store_true", help="wrap each batch in the undo record")
    args = parser.parse_args()
    console = Console()
    index = DeviceIndex.build(registry(args.devices), load_profiles())
    decoder = Decoder(index)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("building messages", total=args.batches)
        batches = []
        for k in range(1, args.batches + 1):
            body = {"ts": NOW + k, "seq": k, "v": {"smoke": 0.02, "temp": 24.0}}
            batches.append(
                [
                    Message(f"fw/v1/bench/{d}/telemetry", orjson.dumps(body), NOW + k, 1, 1)
                    for d in index.device_ids
                ]
            )
            progress.advance(task)
        task = progress.add_task("decoding", total=args.batches)
        spent = 0.0
        cpu = 0.0
        accepted = 0
        for batch in batches:
            started = time.perf_counter()
            cpu_started = time.process_time()
            if args.undo:
                decoder.seq.begin()
            decoded = decoder.decode(batch, NOW + args.batches + 1)
            if args.undo:
                decoder.seq.commit()
            spent += time.perf_counter() - started
            cpu += time.process_time() - cpu_started
            accepted += int(decoded.reading_dev.size)
            progress.advance(task)
    messages = args.devices * args.batches
    if accepted != messages:
        console.print(f"[red]accepted {accepted:,} of {messages:,} readings[/]")
        raise SystemExit(1)
    console.print(
        f"decoded {messages:,} readings in {spent:.2f} s: [bold]{messages / spent:,.0f} msgs/s[/], "
        f"[bold]{cpu / messages * 1e6:.2f} µs CPU per message[/] "
        f"({'with' if args.undo else 'without'} the undo record)"
    )
    console.print(
        f"machine: {platform.machine()}, CPython {platform.python_version()}; "
        f"{datetime.now(UTC).date().isoformat()}"
    )


if __name__ == "__main__":
    main()
