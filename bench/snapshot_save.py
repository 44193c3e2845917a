"""Detector snapshot: how long `Engine.save` holds the pipeline's thread, and `Engine.load` at start.

    python3 -m bench.snapshot_save [--devices 200000] [--repeat 3]

The pipeline saves every `detection.snapshot_every_s` (60 s) between batches, so a save is a pause
of ingest. A registry of `--devices` smoke-photoelectric heads (7 detector units each, the shipped
profile), an engine fresh from it; the snapshot written `--repeat` times to a temporary file, then
loaded into a second engine. Figures: docs/benchmarks.md ("Registry at scale").
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

from rich.console import Console

from bench.ingest import registry
from detectors.engine import Engine
from device_profiles.loader import load_profiles
from ingest.index import DeviceIndex

console = Console()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=200_000, help="smoke detectors in the registry")
    ap.add_argument("--repeat", type=int, default=3, help="saves to time")
    args = ap.parse_args()
    with console.status(f"building an engine for {args.devices:,} devices"):
        index = DeviceIndex.build(registry(args.devices), load_profiles())
        engine = Engine(index, start=1_800_000_000.0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "detectors.npz"
        saves = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            engine.save(path)
            saves.append(time.perf_counter() - t0)
        size = path.stat().st_size
        t0 = time.perf_counter()
        warm = Engine(index, start=1_800_000_000.0).load(path)
        load_s = time.perf_counter() - t0
    console.print(
        f"{engine.n_units:,} units: save {', '.join(f'{s:.2f}' for s in saves)} s, "
        f"file {size / 1e6:,.0f} MB, load {load_s:.2f} s ({warm:,} units warm); "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )


if __name__ == "__main__":
    main()
