"""Read the UL FSRI 2018 compartment-fire experiments (../shared/datasets/fsri_compartments_2018).

Each experiment is a 1 Hz CSV whose `Time` column is seconds relative to ignition (negative rows are
the room before the fire) and an `_Events.csv` with wall-clock events. After `Burner Off` or
`Suppression` the fire is out: scoring stops there (the dataset README).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

DATASET = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "fsri_compartments_2018"
CEILING = [f"Quadrant {q} Temperature 25 mm Below Ceiling" for q in "ABCD"]
FIRE_OUT = ("Burner Off", "Suppression")


@dataclass(frozen=True)
class Experiment:
    name: str
    fuel: str  # 100kW, 100kWSB, 250kW, 500kW, RedAccent (the upholstered chair)
    time: npt.NDArray[np.float64]  # seconds since ignition
    ceiling: npt.NDArray[np.float64]  # (rows, 4) °C at 25 mm below the ceiling, quadrants A-D
    fire_out: float  # seconds since ignition when the fire went out (inf if it did not)


def _event_times(path: Path) -> dict[str, datetime]:
    with path.open(newline="") as f:
        return {
            row["Event"]: datetime.strptime(row["Time"], "%Y-%m-%d-%H:%M:%S") for row in csv.DictReader(f)
        }


def load_experiment(csv_path: Path) -> Experiment:
    with csv_path.open(newline="") as f:
        header = next(csv.reader(f))
    columns = [header.index("Time"), *(header.index(c) for c in CEILING)]
    data = np.genfromtxt(csv_path, delimiter=",", skip_header=1, usecols=columns, dtype=np.float64)
    data = data[np.isfinite(data[:, 0])]
    events = _event_times(csv_path.with_name(csv_path.stem + "_Events.csv"))
    ignition = events.get("Ignition")
    outs = [t for name, t in events.items() if ignition and name.startswith(FIRE_OUT)]
    fire_out = min((t - ignition).total_seconds() for t in outs) if outs and ignition else float("inf")
    return Experiment(csv_path.stem, csv_path.stem.split("_")[0], data[:, 0], data[:, 1:], fire_out)


def experiments(root: Path = DATASET) -> list[Experiment]:
    files = sorted(p for p in (root / "data").glob("*.csv") if not p.stem.endswith("_Events"))
    return [load_experiment(p) for p in files]
