"""How long `firewatch --help` takes, as a user runs it: a new process each time, interleaved with a
bare `python3 -c pass` so the machine's noise falls on both (issue 20's bar: under 0.5 s).

    python3 -m bench.cli_start [--rounds 15]

Prints the median and the slowest wall time of each, and the median of the per-round difference
(what firewatch's imports and help rendering add to an interpreter's start). Results:
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

console = Console()


def timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (1-200)")
    args = parser.parse_args()
    rounds = max(1, min(200, args.rounds))
    firewatch = shutil.which("firewatch")
    cli = [firewatch, "--help"] if firewatch else [sys.executable, "-m", "firewatch.cli", "--help"]
    bare = [sys.executable, "-c", "pass"]
    timed(cli)  # warm the file cache once
    runs: dict[str, list[float]] = {"firewatch --help": [], "python3 -c pass": []}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("rounds", total=rounds)
        for _ in range(rounds):
            runs["firewatch --help"].append(timed(cli))
            runs["python3 -c pass"].append(timed(bare))
            progress.advance(task)
    table = Table(title=f"`firewatch --help`, {rounds} interleaved rounds (s)")
    for col in ("command", "median", "max"):
        table.add_column(col, justify="left" if col == "command" else "right")
    for name, values in runs.items():
        a = np.array(values)
        table.add_row(name, f"{np.median(a):.3f}", f"{a.max():.3f}")
    console.print(table)
    added = np.array(runs["firewatch --help"]) - np.array(runs["python3 -c pass"])
    console.print(f"firewatch adds (median of per-round differences): {np.median(added):.3f} s")
    console.print(f"{platform.processor() or platform.machine()}, {datetime.now(UTC):%Y-%m-%d}; bar: < 0.5 s")


if __name__ == "__main__":
    main()
