"""Rate of rise over a window: the R element of a heat detector (EN 54-5 class R).

Each unit keeps its last `capacity` readings in a ring (bounded memory). At each reading the rate
is estimated over the readings of the last `window_s` seconds, if they span at least
`min_span x window_s`: either two-point (newest minus oldest, the classic element) or the slope of
the least-squares line through all of them, which one noisy reading moves far less.
"""

from __future__ import annotations

import numpy as np

from detectors.base import F64, I64, Bool, Example, SequentialDetector, State

LEAST_SQUARES = 1
TWO_POINT = 0


class RateOfRise(SequentialDetector):
    """Parameters per unit: `per_min`, `clear_per_min`, `window_s`, `min_span`, `estimator`, `capacity`.

    `capacity` (readings kept) must cover the window at the device's reporting interval.

    >>> import numpy as np
    >>> from detectors.samples import Samples
    >>> bank = RateOfRise([0], per_min=8.3, clear_per_min=4.0, window_s=60.0, min_span=0.9,
    ...                   estimator=0, capacity=8)
    >>> t = np.arange(0.0, 200.0, 10.0)
    >>> x = 20.0 + np.where(t > 100, (t - 100) * 0.2, 0.0)   # 12 °C/min from t = 100 s
    >>> hits = bank.update(Samples(np.zeros(t.size, np.int32), t, x))
    >>> hits.ts.tolist(), [round(v, 1) for v in hits.value.tolist()]
    ([150.0], [10.0])
    """

    type_name = "rate_of_rise"

    def initial_state(self, n: int) -> State:
        k = int(self.params["capacity"].max(initial=1))  # parameters are set before the first call
        return {
            "active": np.zeros(n, dtype=bool),
            "ring_t": np.full((n, k), -np.inf),
            "ring_x": np.zeros((n, k)),
            "head": np.zeros(n, dtype=np.int64),  # next write position
        }

    def step(self, u: I64, t: F64, x: F64) -> tuple[Bool, Bool, F64]:
        st, p = self.state, self.params
        r = self.rows(u)
        k = st["ring_t"].shape[1]
        cap = p["capacity"][r]
        head = st["head"][u]
        st["ring_t"][u, head] = t
        st["ring_x"][u, head] = x
        st["head"][u] = (head + 1) % cap
        rt = st["ring_t"][u]
        rx = st["ring_x"][u]
        window = p["window_s"][r]
        used = (rt >= (t - window)[:, None]) & (np.arange(k) < cap[:, None])
        t_old = np.where(used, rt, np.inf).min(axis=1)
        span = t - t_old
        enough = span >= p["min_span"][r] * window
        oldest = np.where(used, rt, np.inf).argmin(axis=1)
        two_point = (x - rx[np.arange(u.size), oldest]) / np.where(span > 0, span, 1.0)
        # Least squares over the used readings, centred on their mean time to stay well conditioned.
        n = used.sum(axis=1)
        tc = np.where(used, rt - t[:, None], 0.0)
        mt = tc.sum(axis=1) / np.maximum(n, 1)
        dt = np.where(used, tc - mt[:, None], 0.0)
        mx = np.where(used, rx, 0.0).sum(axis=1) / np.maximum(n, 1)
        sxx = (dt * dt).sum(axis=1)
        sxy = (dt * np.where(used, rx - mx[:, None], 0.0)).sum(axis=1)
        ls = sxy / np.where(sxx > 0, sxx, 1.0)
        rate = np.where(p["estimator"][r] == LEAST_SQUARES, ls, two_point) * 60.0
        rate = np.where(enough, rate, 0.0)
        return rate >= p["per_min"][r], rate < p["clear_per_min"][r], rate

    @classmethod
    def example(cls) -> Example:
        n = 4
        bank = cls(
            np.arange(n),
            per_min=8.3,
            clear_per_min=4.0,
            window_s=60.0,
            min_span=0.9,
            estimator=np.array([TWO_POINT, LEAST_SQUARES, TWO_POINT, LEAST_SQUARES]),
            capacity=np.array([8, 8, 64, 64]),
        )

        def normal(rounds: int, rng: np.random.Generator) -> tuple[F64, F64]:
            t = np.arange(rounds, dtype=np.float64)[:, None] * 10.0 + np.zeros(n)
            return t, 22.0 + rng.normal(0, 0.1, (rounds, n))

        def incident(rounds: int, rng: np.random.Generator) -> tuple[F64, F64]:
            t, x = normal(rounds, rng)
            start = rounds // 3
            return t, x + np.maximum(t - t[start], 0.0) * (20.0 / 60.0)  # 20 °C/min

        return Example(bank, normal, incident)
