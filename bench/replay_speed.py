"""Replay throughput (issue 20): `firewatch.replay.run` over a synthetic recording of smoke heads,
with the sequential detectors' `scan` path and, for comparison, the round-by-round path every batch
took before (one reading per unit per round; `SequentialDetector.update_by_rounds`).

    python3 -m bench.replay_speed [--rows 200000] [--devices 2] [--repeat 3] [--no-rounds]

Two recordings: `quiet` (clean air and room temperature, no alarm: the issue's case) and
`incidents` (a dirty chamber drifting, a fire, a stuck chamber, an impossible reading, an unusual
room temperature), each replayed for `--devices` smoke-photoelectric heads on the same columns.
Prints samples/s (readings of one channel) and rows/s, best of `--repeat`, and whether both paths
gave the same transitions. The bar: >= 100,000 samples/s on the quiet recording. Results:
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from detectors.base import SequentialDetector
from firewatch.replay import Recording, ReplaySpec, run

console = Console()


def recording(kind: str, n: int) -> Recording:
    t = np.arange(n, dtype=np.float64) * 10.0
    rng = np.random.default_rng(1)
    smoke = 0.02 + rng.normal(0, 0.002, n)
    temp = 22 + rng.normal(0, 0.1, n)
    if kind == "incidents":
        at = [int(n * f) for f in (0.1, 0.35, 0.4, 0.45, 0.6, 0.7, 0.75, 0.9)]
        smoke[at[0] : at[1]] += np.linspace(0, 0.05, at[1] - at[0])  # a chamber getting dirty
        smoke[at[2] : at[2] + 300] = 0.3  # a fire
        smoke[at[4] : at[5]] = 0.021  # stuck
        smoke[at[6]] = 99.0  # impossible
        temp[at[3] : at[3] + 1000] += 15.0  # an unusual room
        temp[at[7] : at[7] + 500] = 150.0
        smoke = np.round(smoke, 3)
    return Recording(t, {"smoke": smoke, "temp": temp}, [])


def spec(devices: int) -> ReplaySpec:
    return ReplaySpec.model_validate(
        {
            "time_column": "t",
            "devices": [
                {
                    "id": f"smk-{i}",
                    "profile": "smoke-photoelectric",
                    "channels": {"smoke": "smoke", "temp": "temp"},
                }
                for i in range(devices)
            ],
        }
    )


@contextmanager
def rounds_only() -> Iterator[None]:
    """Every batch by rounds, as before issue 20."""
    original = SequentialDetector._scan
    SequentialDetector._scan = lambda self, *args: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        SequentialDetector._scan = original  # type: ignore[method-assign]


def measure(rec: Recording, sp: ReplaySpec, repeat: int) -> tuple[float, int, list[dict[str, Any]]]:
    best, samples, transitions = np.inf, 0, []
    for _ in range(repeat):
        started = time.perf_counter()
        result = run(rec, sp)
        best = min(best, time.perf_counter() - started)
        samples, transitions = result.samples, result.transitions
    return best, samples, transitions


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the recording (1,000-5,000,000)")
    parser.add_argument("--devices", type=int, default=2, help="smoke heads replayed on the columns (1-50)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the scan path, best kept (1-20)")
    parser.add_argument("--no-rounds", action="store_true", help="skip the (slow) round-by-round path")
    args = parser.parse_args()
    rows = max(1_000, min(5_000_000, args.rows))
    devices = max(1, min(50, args.devices))
    repeat = max(1, min(20, args.repeat))
    sp = spec(devices)
    table = Table(title=f"replay of {rows:,} rows x {devices} smoke heads x 2 channels")
    for col in ("recording", "path", "s", "samples/s", "rows/s", "transitions", "same as rounds"):
        table.add_column(col, justify="left" if col in ("recording", "path") else "right")
    for kind in ("quiet", "incidents"):
        rec = recording(kind, rows)
        with console.status(f"{kind}: scan"):
            dt, samples, fast = measure(rec, sp, repeat)
        table.add_row(
            kind, "scan", f"{dt:.2f}", f"{samples / dt:,.0f}", f"{rows / dt:,.0f}", str(len(fast)), ""
        )
        if not args.no_rounds:
            with console.status(f"{kind}: rounds"), rounds_only():
                dt, samples, slow = measure(rec, sp, 1)
            same = "yes" if fast == slow else "NO"
            table.add_row(
                kind, "rounds", f"{dt:.2f}", f"{samples / dt:,.0f}", f"{rows / dt:,.0f}", str(len(slow)), same
            )
    console.print(table)
    console.print(
        f"{platform.processor() or platform.machine()}, {datetime.now(UTC):%Y-%m-%d}; "
        "bar: >= 100,000 samples/s on the quiet recording"
    )


if __name__ == "__main__":
    main()
