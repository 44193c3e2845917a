"""Slow drift from a reference by a one-sided CUSUM (E. S. Page, Continuous inspection schemes, 1954).

S = max(0, S + sign*(x - reference) - slack): each reading adds how far it lies beyond the
reference, less the slack that normal variation explains. S grows only under a sustained shift and
raises at `limit`; it clears once S is back to 0. The reference is the profile's value or, when
absent, the mean of the first `warmup` readings (nothing is scored before that). Readings past
`ignore_beyond` (an alarm level: a fire, not drift) neither count nor teach.
"""

from __future__ import annotations

import numpy as np

from detectors.base import F64, I64, Bool, Example, Runs, SequentialDetector, State, restarted_sums


class Drift(SequentialDetector):
    """Parameters per unit: `sign`, `reference` (NaN = learn), `warmup`, `slack`, `limit`, `ignore_beyond`.

    >>> import numpy as np
    >>> from detectors.samples import Samples
    >>> bank = Drift([0], sign=1.0, reference=0.02, warmup=1, slack=0.01, limit=0.5,
    ...              ignore_beyond=np.inf)
    >>> x = 0.02 + np.arange(100) * 0.001          # a chamber creeping up by 0.001 dB/m per reading
    >>> hits = bank.update(Samples(np.zeros(100, np.int32), np.arange(100.0), x))
    >>> hits.raised.tolist(), hits.ts.tolist()
    ([True], [42.0])
    """

    type_name = "drift"

    def initial_state(self, n: int) -> State:
        return {
            "active": np.zeros(n, dtype=bool),
            "s": np.zeros(n),
            "n": np.zeros(n, dtype=np.int64),  # readings learned from, while warming up
            "mean": np.zeros(n),  # running mean of those readings
        }

    def step(self, u: I64, t: F64, x: F64) -> tuple[Bool, Bool, F64]:
        st, p = self.state, self.params
        r = self.rows(u)
        sign = p["sign"][r]
        usable = x * sign < p["ignore_beyond"][r] * sign
        fixed = np.isfinite(p["reference"][r])
        learning = usable & ~fixed & (st["n"][u] < p["warmup"][r])
        n_new = st["n"][u] + learning
        st["mean"][u] = np.where(
            learning, st["mean"][u] + (x - st["mean"][u]) / np.maximum(n_new, 1), st["mean"][u]
        )
        st["n"][u] = n_new
        ready = fixed | (n_new >= p["warmup"][r])
        scored = usable & ready & ~learning
        ref = np.where(fixed, p["reference"][r], st["mean"][u])
        s = np.where(scored, np.maximum(0.0, st["s"][u] + sign * (x - ref) - p["slack"][r]), st["s"][u])
        st["s"][u] = s
        return scored & (s >= p["limit"][r]), scored & (s <= 0.0), s

    def scan(self, runs: Runs) -> tuple[Bool, Bool, F64] | None:
        """After warm-up, S_k = max(0, V_k) where V is a running sum that restarts at 0 after each
        reading with V <= 0; readings still learning the reference go by rounds.

        Where the restarts fall is read off the closed form S_k = C_k - min(0, min_{j<=k} C_j) (C the
        plain running sum from the old S), then every stretch between restarts is summed exactly as
        the steps add (`restarted_sums`); if a stretch disagrees with the closed form about a restart
        (rounding, a hair from 0), this returns None and the batch goes by rounds.
        """
        st, p = self.state, self.params
        u, x = runs.unit, runs.x
        r = self.rows(u)
        sign = p["sign"][r][:, None]
        usable = runs.valid & (x * sign < p["ignore_beyond"][r][:, None] * sign)
        fixed = np.isfinite(p["reference"][r])
        n = st["n"][u]
        if (usable.any(axis=1) & ~fixed & (n < p["warmup"][r])).any():
            return None
        scored = usable & (fixed | (n >= p["warmup"][r]))[:, None]
        ref = np.where(fixed, p["reference"][r], st["mean"][u])[:, None]
        s0 = st["s"][u]
        if not (s0 >= 0).all():
            return None
        rise = np.where(scored, sign * (x - ref), 0.0)
        slack = np.where(scored, p["slack"][r][:, None], 0.0)
        c = np.cumsum(np.concatenate([s0[:, None], rise - slack], axis=1), axis=1)
        low = np.minimum.accumulate(np.minimum(c, 0.0), axis=1)  # min(0, min C) before each reading
        restart = c[:, 1:] <= low[:, :-1]  # S = 0 after this reading
        rr, cc = np.nonzero(runs.valid)
        after = np.zeros(rr.size, dtype=bool)
        after[1:] = restart[rr[:-1], cc[:-1]]
        begins = (cc == 0) | after
        init = np.where(cc[begins] == 0, s0[rr[begins]], 0.0)
        v = restarted_sums(init, begins, rise[rr, cc], -slack[rr, cc])
        inner = cc != runs.last[rr]  # a restart at a unit's last reading changes nothing after it
        if not np.array_equal((v <= 0.0)[inner], restart[rr, cc][inner]):
            return None
        s = np.zeros(x.shape)
        s[rr, cc] = np.maximum(0.0, v)
        limit = p["limit"][r][:, None]
        st["s"][u] = s[np.arange(u.size), runs.last]
        return scored & (s >= limit), scored & (s <= 0.0), s

    @classmethod
    def example(cls) -> Example:
        n = 4
        bank = cls(
            np.arange(n),
            sign=np.array([1.0, 1.0, -1.0, -1.0]),
            reference=np.array([np.nan, 0.02, np.nan, 0.6]),
            warmup=10,
            slack=0.01,
            limit=0.5,
            ignore_beyond=np.array([0.5, np.inf, -np.inf, -np.inf]),
        )

        def normal(rounds: int, rng: np.random.Generator) -> tuple[F64, F64]:
            t = np.arange(rounds, dtype=np.float64)[:, None] * 60.0 + np.zeros(n)
            base = np.array([0.02, 0.02, 0.6, 0.6])
            return t, base + rng.normal(0, 0.003, (rounds, n))

        def incident(rounds: int, rng: np.random.Generator) -> tuple[F64, F64]:
            t, x = normal(rounds, rng)
            ramp = np.maximum(np.arange(rounds) - rounds // 4, 0)[:, None] * 0.004
            return t, x + ramp * bank.unit_params("sign")

        return Example(bank, normal, incident)
