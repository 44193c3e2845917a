"""Multi-level thresholds with a clear band (hysteresis), minimum duration and repeat count.

Each level of each threshold detector of each device is one unit. A batch is resolved in closed
form, without rounds: the (unit, sample) pairs are ordered by unit then arrival, each reading is
coded "qualifies" (at or past `at` for `repeat` readings and `for_s` seconds in a row), "clears"
(back past `clear`) or "holds", and the state sequence is a forward fill of the codes. Only the rare
transitions reach Python. Defaults (`for_s=0`, `repeat=1`) make a level raise on the first reading
at or past it; the schema refuses a filter on a fire level (STANDARDS.md design rule).
"""

from __future__ import annotations

import numpy as np

from detectors.base import F64, I64, Detector, Example, Hits, State
from detectors.samples import Samples, group_starts


class Threshold(Detector):
    """Parameters per unit: `sign` (+1 above, -1 below), `at`, `clear`, `for_s`, `repeat`.

    >>> import numpy as np
    >>> from detectors.samples import Samples
    >>> bank = Threshold([0], sign=1.0, at=57.0, clear=50.0, for_s=0.0, repeat=1)
    >>> s = Samples(np.array([0, 0, 0], np.int32), np.array([1.0, 2, 3]), np.array([40.0, 58, 55]))
    >>> hits = bank.update(s)
    >>> hits.raised.tolist(), hits.ts.tolist()
    ([True], [2.0])
    """

    type_name = "threshold"

    def initial_state(self, n: int) -> State:
        return {
            "active": np.zeros(n, dtype=bool),
            "run_n": np.zeros(n, dtype=np.int64),  # consecutive readings at or past `at` so far
            "run_t0": np.zeros(n, dtype=np.float64),  # when that run began
        }

    def update(self, samples: Samples) -> Hits:
        unit, j = self.route(samples)
        if not unit.size:
            return Hits.empty()
        if samples.unique or np.bincount(unit, minlength=self.n_units).max() <= 1:
            return self._one_each(unit, j, samples)
        order = np.argsort(unit, kind="stable")  # by unit, arrival order kept within a unit
        unit, j = unit[order], j[order]
        p, st = self.params, self.state
        r = self.rows(unit)
        ts = samples.ts[j]
        x = samples.value[j] * p["sign"][r]
        over = x >= p["at"][r] * p["sign"][r]
        below_clear = x < p["clear"][r] * p["sign"][r]

        new, start = group_starts(unit)
        n = unit.size
        idx = np.arange(n)
        # The current run of readings at or past `at`: its length and start time, carried over
        # from the previous batch when the run began there.
        last_break = np.maximum.accumulate(np.where(~over, idx, -1))
        carried = last_break < start
        run_start = np.where(carried, start, last_break + 1)
        carry_n = np.where(carried, st["run_n"][unit], 0)
        run_n = np.where(over, idx - run_start + 1 + carry_n, 0)
        t0 = np.where(carried & (carry_n > 0), st["run_t0"][unit], ts[np.minimum(run_start, n - 1)])
        qualifies = over & (run_n >= p["repeat"][r]) & (ts - t0 >= p["for_s"][r])

        code = np.where(qualifies, 1, np.where(below_clear, 0, -1)).astype(np.int8)
        last = np.maximum.accumulate(np.where(code >= 0, idx, -1))
        init = st["active"][unit]
        after = np.where(last >= start, code[np.maximum(last, 0)] == 1, init)
        before = np.empty(n, dtype=bool)
        before[0] = init[0]
        before[1:] = after[:-1]
        before[new] = init[new]

        ends = np.flatnonzero(np.append(new[1:], True))
        end_unit = unit[ends]
        st["active"][end_unit] = after[ends]
        st["run_n"][end_unit] = run_n[ends]
        st["run_t0"][end_unit] = t0[ends]

        changed = np.flatnonzero(after != before)
        return Hits(unit[changed], ts[changed], samples.value[j[changed]], after[changed])

    def _one_each(self, unit: I64, j: I64, samples: Samples) -> Hits:
        """The live case, at most one reading per unit in the batch: no ordering, no forward fill."""
        p, st = self.params, self.state
        r = self.rows(unit)
        ts = samples.ts[j]
        sign = p["sign"][r]
        x = samples.value[j] * sign
        over = x >= p["at"][r] * sign
        carry = st["run_n"][unit]
        run_n = np.where(over, carry + 1, 0)
        t0 = np.where(carry > 0, st["run_t0"][unit], ts)
        qualifies = over & (run_n >= p["repeat"][r]) & (ts - t0 >= p["for_s"][r])
        before = st["active"][unit]
        after = np.where(qualifies, True, np.where(x < p["clear"][r] * sign, False, before))
        st["active"][unit] = after
        st["run_n"][unit] = run_n
        st["run_t0"][unit] = t0
        changed = np.flatnonzero(after != before)
        return Hits(unit[changed], ts[changed], samples.value[j[changed]], after[changed])

    @classmethod
    def example(cls) -> Example:
        n = 6
        bank = cls(
            np.arange(n),
            sign=np.where(np.arange(n) % 2 == 0, 1.0, -1.0),
            at=np.where(np.arange(n) % 2 == 0, 57.0, 0.2),
            clear=np.where(np.arange(n) % 2 == 0, 50.0, 0.25),
            for_s=np.array([0.0, 0.0, 0.0, 0.0, 30.0, 30.0]),
            repeat=np.array([1, 1, 3, 3, 1, 1]),
        )

        def normal(rounds: int, rng: np.random.Generator) -> tuple[F64, F64]:
            t = np.arange(rounds, dtype=np.float64)[:, None] * 10.0 + np.zeros(n)
            base = np.where(np.arange(n) % 2 == 0, 22.0, 0.35)
            return t, base + rng.normal(0, 0.01, (rounds, n))

        def incident(rounds: int, rng: np.random.Generator) -> tuple[F64, F64]:
            t, x = normal(rounds, rng)
            hot = np.arange(rounds)[:, None] >= rounds // 3
            return t, np.where(hot, np.where(np.arange(n) % 2 == 0, 70.0, 0.1), x)

        return Example(bank, normal, incident)
