"""Adaptive anomaly for channels without fixed limits: EWMA mean and variance, a z-score.

Scoring and deciding are separate, and the baseline learns only from readings that are normal and
arrive while no anomaly is active (river's protected anomaly filter): a fire, a leak or a failing pump
never becomes the new normal. `min_std` floors the spread, so a quantised, flat signal does not
turn one step of resolution into a huge z.
"""

from __future__ import annotations

import math

import numpy as np

from detectors.base import F64, I64, Bool, Example, Runs, SequentialDetector, State


class Anomaly(SequentialDetector):
    """Parameters per unit: `alpha` (EWMA weight), `z_on`, `z_off`, `warmup`, `min_std`.

    >>> import numpy as np
    >>> from detectors.samples import Samples
    >>> bank = Anomaly([0], alpha=0.05, z_on=6.0, z_off=3.0, warmup=30, min_std=0.05)
    >>> rng = np.random.default_rng(1)
    >>> x = np.r_[4.0 + rng.normal(0, 0.1, 100), 6.0, 6.0, 4.0]
    >>> hits = bank.update(Samples(np.zeros(x.size, np.int32), np.arange(float(x.size)), x))
    >>> hits.raised.tolist(), hits.ts.tolist()
    ([True, False], [100.0, 102.0])
    """

    type_name = "anomaly"

    def initial_state(self, n: int) -> State:
        return {
            "active": np.zeros(n, dtype=bool),
            "n": np.zeros(n, dtype=np.int64),
            "mean": np.zeros(n),
            "var": np.zeros(n),
        }

    def step(self, u: I64, t: F64, x: F64) -> tuple[Bool, Bool, F64]:
        st, p = self.state, self.params
        r = self.rows(u)
        mean, var, count = st["mean"][u], st["var"][u], st["n"][u]
        std = np.maximum(np.sqrt(var), p["min_std"][r])
        z = np.where(count > 0, (x - mean) / std, 0.0)
        warm = count >= p["warmup"][r]
        anomalous = warm & (np.abs(z) >= p["z_on"][r])
        learn = ~anomalous & ~st["active"][u]
        # While warming up the weight is 1/n (a plain mean), so the first readings are not overweighted.
        a = np.where(warm, p["alpha"][r], 1.0 / (count + 1))
        d = x - mean
        st["mean"][u] = np.where(learn, mean + a * d, mean)
        st["var"][u] = np.where(learn, (1 - a) * (var + a * d * d), var)
        st["n"][u] = count + learn
        return anomalous, warm & (np.abs(z) < p["z_off"][r]), z

    def scan(self, runs: Runs) -> tuple[Bool, Bool, F64] | None:
        """`step` as a loop over Python floats along each unit's run (docs/decisions/0009).

        Whether a reading teaches the baseline depends on the alarm it may itself raise, and the
        EWMA adds in an order no numpy primitive repeats bit for bit, so the run is a plain loop:
        the same IEEE operations in the same order as `step`, a float at a time instead of an array
        of one. It pays where a batch has few units and many readings each (replay, a backlog);
        with many units and few readings, rounds are cheaper and it declines.
        """
        st, p = self.state, self.params
        u = runs.unit
        r = self.rows(u)
        count_all = int(runs.last.sum()) + u.size
        if count_all > 16 * runs.x.shape[1]:
            return None
        if not (
            np.isfinite(runs.x[runs.valid]).all()
            and np.isfinite(st["mean"][u]).all()
            and np.isfinite(st["var"][u]).all()
            and (p["min_std"][r] > 0).all()
        ):
            return None  # NaN and division by zero follow numpy's rules in `step`; keep them there
        up = np.zeros(runs.x.shape, dtype=bool)
        down = np.zeros(runs.x.shape, dtype=bool)
        zs = np.zeros(runs.x.shape)
        for i, (unit, row) in enumerate(zip(u.tolist(), r.tolist(), strict=True)):
            alpha, z_on, z_off = float(p["alpha"][row]), float(p["z_on"][row]), float(p["z_off"][row])
            warmup, min_std = p["warmup"][row].item(), float(p["min_std"][row])
            mean, var, count = float(st["mean"][unit]), float(st["var"][unit]), int(st["n"][unit])
            active = bool(st["active"][unit])
            row_up, row_down, row_z = [], [], []
            for x in runs.x[i, : runs.last[i] + 1].tolist():
                std = max(math.sqrt(var), min_std)
                z = (x - mean) / std if count > 0 else 0.0
                warm = count >= warmup
                anomalous = warm and abs(z) >= z_on
                clear = warm and abs(z) < z_off
                if not anomalous and not active:  # learn
                    a = alpha if warm else 1.0 / (count + 1)
                    d = x - mean
                    mean = mean + a * d
                    var = (1 - a) * (var + a * d * d)
                    count += 1
                active = True if anomalous else (False if clear else active)
                row_up.append(anomalous)
                row_down.append(clear)
                row_z.append(z)
            k = len(row_z)
            up[i, :k], down[i, :k], zs[i, :k] = row_up, row_down, row_z
            st["mean"][unit], st["var"][unit], st["n"][unit] = mean, var, count
        return up, down, zs

    @classmethod
    def example(cls) -> Example:
        n = 3
        bank = cls(np.arange(n), alpha=0.05, z_on=6.0, z_off=3.0, warmup=20, min_std=0.05)

        def normal(rounds: int, rng: np.random.Generator) -> tuple[F64, F64]:
            t = np.arange(rounds, dtype=np.float64)[:, None] * 60.0 + np.zeros(n)
            return t, 4.0 + rng.normal(0, 0.1, (rounds, n))

        def incident(rounds: int, rng: np.random.Generator) -> tuple[F64, F64]:
            t, x = normal(rounds, rng)
            return t, x + (np.arange(rounds)[:, None] >= max(rounds // 2, 25)) * 3.0

        return Example(bank, normal, incident)
