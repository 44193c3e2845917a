"""Sustained rise above the learned ambient temperature, with a threshold scaled to the sensor's
own noise: a differential heat element with a constant-false-alarm-rate (CFAR) threshold.

Why: a room fire heats the ceiling jet steadily from ignition on, long before the rise reaches a
fixed rate (8.3 °C/min) or a fixed temperature (57 °C). A quiet sensor can see a rise of a degree
or two; a sensor in a draught cannot, so each sensor's threshold is k times its own normal spread
(the CFAR idea of radar detection), never below a floor above the sensor's accuracy.

Per reading:
- the ambient baseline and the spread are running means of the reading and of its squared
  deviation, turning into exponential averages with time constant `tau_s`;
- once `warmup_s` has passed, a deviation is clipped at `clip` spreads before it teaches the
  baseline, so a fire cannot teach the detector its own rise (river's protected filter);
- it raises when every reading of the last `hold_s` (and at least the last `min_readings`) lies at
  least max(`floor`, `k` x spread) above the baseline; it clears when the reading is back below half
  that.

Validated on the FSRI compartment fires (docs/detection.md): parameters are physical (a 5-minute
ambient, 5 sigma, 1.5 °C, 5 s), and ±25 % on any one kept zero false alarms there.
"""

from __future__ import annotations

import numpy as np

from detectors.base import F64, I64, Bool, Example, SequentialDetector, State


class AmbientRise(SequentialDetector):
    """Parameters per unit: `tau_s`, `k`, `floor`, `clip`, `warmup_s`, `hold_s`, `min_readings`,
    `sigma0`, `capacity` (readings kept for the hold window).

    >>> import numpy as np
    >>> from detectors.samples import Samples
    >>> bank = AmbientRise([0], tau_s=300.0, k=5.0, floor=1.5, clip=4.0, warmup_s=60.0, hold_s=5.0,
    ...                    min_readings=2, sigma0=0.5, capacity=8)
    >>> t = np.arange(0.0, 200.0)
    >>> x = 21.0 + np.where(t >= 120, (t - 120) * 0.1, 0.0)     # 6 °C/min from t = 120 s
    >>> hits = bank.update(Samples(np.zeros(t.size, np.int32), t, x))
    >>> hits.raised.tolist(), hits.ts.tolist()
    ([True], [140.0])
    """

    type_name = "ambient_rise"

    def initial_state(self, n: int) -> State:
        # Parameters are set before the first call (Detector.__init__); `reset` fixes `var` per unit.
        k = int(self.params["capacity"].max(initial=1))
        sigma0 = self.unit_params("sigma0") if n == self.n_units else self.params["sigma0"][:1]
        return {
            "active": np.zeros(n, dtype=bool),
            "n": np.zeros(n, dtype=np.int64),
            "t_first": np.zeros(n),
            "t_last": np.zeros(n),
            "base": np.zeros(n),
            "var": np.broadcast_to(np.square(sigma0), (n,)).astype(np.float64),
            "ring_t": np.full((n, k), -np.inf),
            "ring_x": np.zeros((n, k)),
            "head": np.zeros(n, dtype=np.int64),
        }

    def reset(self, units: object) -> None:
        idx = np.asarray(units, dtype=np.int64)
        super().reset(idx)
        self.state["var"][idx] = np.square(self.params["sigma0"][self.row[idx]])

    def step(self, u: I64, t: F64, x: F64) -> tuple[Bool, Bool, F64]:
        st, p = self.state, self.params
        r = self.rows(u)
        first = st["n"][u] == 0
        base = np.where(first, x, st["base"][u])
        st["t_first"][u] = np.where(first, t, st["t_first"][u])
        sigma = np.sqrt(st["var"][u])

        cap = p["capacity"][r]
        head = st["head"][u]
        st["ring_t"][u, head] = t
        st["ring_x"][u, head] = x
        st["head"][u] = (head + 1) % cap
        k = st["ring_t"].shape[1]
        rt = np.where(np.arange(k) < cap[:, None], st["ring_t"][u], -np.inf)
        # The readings of the last hold_s, and never fewer than the last min_readings of them (a
        # device reporting every 10 s has one reading in a 5 s hold).
        m = np.minimum(p["min_readings"][r], cap)
        mth_newest = np.take_along_axis(np.sort(rt, axis=1), (k - m)[:, None], axis=1)[:, 0]
        recent = np.isfinite(rt) & ((rt > (t - p["hold_s"][r])[:, None]) | (rt >= mth_newest[:, None]))
        lowest = np.where(recent, st["ring_x"][u], np.inf).min(axis=1)
        enough = np.isfinite(rt).sum(axis=1) >= p["min_readings"][r]

        warm = t - st["t_first"][u] >= p["warmup_s"][r]
        threshold = np.maximum(p["floor"][r], p["k"][r] * sigma)
        rise = lowest - base
        up = warm & enough & (rise >= threshold)
        down = (x - base) < 0.5 * threshold

        # Learn: a plain mean at first, then an exponential average with time constant tau_s.
        n = st["n"][u]
        dt = np.where(first, 0.0, t - st["t_last"][u])
        a = np.maximum(1.0 / (n + 1), np.minimum(1.0, dt / p["tau_s"][r]))
        e = x - base
        bound = p["clip"][r] * np.maximum(sigma, 0.1)
        e = np.where(warm, np.clip(e, -bound, bound), e)
        st["base"][u] = base + a * e
        st["var"][u] = st["var"][u] + a * (e * e - st["var"][u])
        st["n"][u] = n + 1
        st["t_last"][u] = t
        return up, down, np.where(np.isfinite(rise), rise, 0.0)

    @classmethod
    def example(cls) -> Example:
        n = 3
        bank = cls(
            np.arange(n),
            tau_s=300.0,
            k=5.0,
            floor=1.5,
            clip=4.0,
            warmup_s=60.0,
            hold_s=np.array([5.0, 5.0, 30.0]),
            min_readings=2,
            sigma0=0.5,
            capacity=np.array([8, 8, 8]),
        )

        def normal(rounds: int, rng: np.random.Generator) -> tuple[F64, F64]:
            t = np.arange(rounds, dtype=np.float64)[:, None] * 10.0 + np.zeros(n)
            return t, 22.0 + rng.normal(0, 0.1, (rounds, n))

        def incident(rounds: int, rng: np.random.Generator) -> tuple[F64, F64]:
            t, x = normal(rounds, rng)
            start = max(rounds // 3, 10)
            return t, x + np.maximum(t - t[start], 0.0) * (6.0 / 60.0)  # 6 °C/min

        return Example(bank, normal, incident)
