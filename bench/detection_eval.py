"""Score detectors on real compartment fires: false alarms before ignition, delay after it.

    python3 -m bench.detection_eval

The four ceiling thermocouples (25 mm below the ceiling, one per quadrant) stand for four point heat
detectors covering the room. Scored side by side, from the same channels:

- the two classic references the dataset README names: fixed temperature 57 °C, and rate of rise
  8.3 °C/min (15 °F/min) over a 60 s window; a room alarms when any of its four detectors does;
- firewatch: the shipped heat profile on each of the four heads, one zone, run through the same
  engine and alarm service as the live service (`firewatch.replay.run`); the room alarms at its
  first fire-category alarm (a head's own, or the zone's fire confirmation).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.table import Table

from bench.fsri import DATASET, Experiment, experiments

Detector = Callable[[npt.NDArray[np.float64], npt.NDArray[np.float64]], npt.NDArray[np.bool_]]


def fixed_temperature(limit: float = 57.0) -> Detector:
    def alarm(_time: npt.NDArray[np.float64], temp: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        return np.asarray((temp >= limit).any(axis=1))

    return alarm


def rate_of_rise(per_min: float = 8.3, window_s: float = 60.0) -> Detector:
    def alarm(time: npt.NDArray[np.float64], temp: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        # The rise over the last `window_s` seconds of recorded time, for every row at once.
        back = np.searchsorted(time, time - window_s)
        span = time - time[back]
        rise = temp - temp[back]
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(span[:, None] >= window_s * 0.9, rise / span[:, None] * 60.0, 0.0)
        return np.asarray((rate >= per_min).any(axis=1))

    return alarm


def firewatch(profile: str = "heat-a1r") -> Detector:
    """The shipped detectors of `profile` on the four heads; True at each fire-category raise."""
    from firewatch.replay import Recording, ReplayDevice, ReplaySpec, run

    spec = ReplaySpec(
        time_column="Time",
        devices=[
            ReplayDevice(id=f"heat-{q}", profile=profile, zone="room", channels={"temp": f"q{q}"})
            for q in "ABCD"
        ],
    )

    def alarm(time: npt.NDArray[np.float64], temp: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        rec = Recording(time, {f"q{q}": temp[:, i] for i, q in enumerate("ABCD")}, [])
        raised = [
            t["_ts"]
            for t in run(rec, spec).transitions
            if t["category"] == "fire" and t["action"] == "raised"
        ]
        return np.isin(time, np.array(raised, dtype=np.float64))

    return alarm


@dataclass(frozen=True)
class Score:
    experiment: str
    fuel: str
    false_alarm: bool  # any alarm before ignition
    delay: float | None  # seconds from ignition to the first alarm while the fire burns; None = missed


def score(exp: Experiment, detector: Detector) -> Score:
    valid = np.isfinite(exp.ceiling).all(axis=1)
    time, temp = exp.time[valid], exp.ceiling[valid]
    alarm = detector(time, temp)
    before = alarm & (time < 0)
    burning = alarm & (time >= 0) & (time < exp.fire_out)
    first = np.flatnonzero(burning)
    return Score(exp.name, exp.fuel, bool(before.any()), float(time[first[0]]) if first.size else None)


def table(title: str, scores: list[Score]) -> Table:
    t = Table(title=title)
    for col in ("fuel", "experiments", "with false alarm", "missed", "median delay s", "worst delay s"):
        t.add_column(col, justify="left" if col == "fuel" else "right")
    for fuel in sorted({s.fuel for s in scores}):
        group = [s for s in scores if s.fuel == fuel]
        delays = [s.delay for s in group if s.delay is not None]
        t.add_row(
            fuel,
            str(len(group)),
            str(sum(s.false_alarm for s in group)),
            str(sum(s.delay is None for s in group)),
            f"{statistics.median(delays):.0f}" if delays else "-",
            f"{max(delays):.0f}" if delays else "-",
        )
    return t


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default=str(DATASET), help="folder of the FSRI 2018 compartment data")
    parser.add_argument("--profile", default="heat-a1r", help="the heat profile firewatch is scored with")
    args = parser.parse_args()
    from pathlib import Path

    console = Console()
    exps = experiments(Path(args.dataset))
    for name, detector in (
        ("fixed 57 °C (classic reference)", fixed_temperature()),
        ("rate of rise 8.3 °C/min (classic reference)", rate_of_rise()),
        (f"firewatch, profile {args.profile}", firewatch(args.profile)),
    ):
        console.print(table(f"{name} — {len(exps)} experiments", [score(e, detector) for e in exps]))


if __name__ == "__main__":
    main()
