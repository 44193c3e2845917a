"""A sudden change between consecutive readings: a sprinkler head opening, a pipe bursting.

Raises when two readings at most `max_gap_s` apart differ by `delta` or more in the configured
direction, remembering the level before the step; clears when the value is back within `recover`
of that level (the system is refilled or the valve closed).
"""

from __future__ import annotations

import numpy as np

from detectors.base import F64, I64, Bool, Example, SequentialDetector, State


class Step(SequentialDetector):
    """Parameters per unit: `sign` (+1 jump, -1 drop), `delta`, `max_gap_s`, `recover`.

    >>> import numpy as np
    >>> from detectors.samples import Samples
    >>> bank = Step([0], sign=-1.0, delta=0.1, max_gap_s=30.0, recover=0.05)
    >>> x = np.array([0.60, 0.61, 0.42, 0.40, 0.58])
    >>> hits = bank.update(Samples(np.zeros(5, np.int32), np.arange(5) * 10.0, x))
    >>> hits.raised.tolist(), hits.ts.tolist()
    ([True, False], [20.0, 40.0])
    """

    type_name = "step"

    def initial_state(self, n: int) -> State:
        return {
            "active": np.zeros(n, dtype=bool),
            "prev_t": np.full(n, -np.inf),
            "prev_x": np.zeros(n),
            "ref": np.zeros(n),  # the level before the most recent step
        }

    def step(self, u: I64, t: F64, x: F64) -> tuple[Bool, Bool, F64]:
        st, p = self.state, self.params
        r = self.rows(u)
        sign = p["sign"][r]
        change = (x - st["prev_x"][u]) * sign
        is_step = (change >= p["delta"][r]) & (t - st["prev_t"][u] <= p["max_gap_s"][r])
        st["ref"][u] = np.where(is_step, st["prev_x"][u], st["ref"][u])
        recovered = (x - st["ref"][u]) * sign <= p["recover"][r]
        st["prev_t"][u] = t
        st["prev_x"][u] = x
        return is_step, recovered & ~is_step, np.where(is_step, change, x)

    @classmethod
    def example(cls) -> Example:
        n = 4
        bank = cls(
            np.arange(n), sign=np.array([-1.0, -1.0, 1.0, 1.0]), delta=0.1, max_gap_s=30.0, recover=0.05
        )

        def normal(rounds: int, rng: np.random.Generator) -> tuple[F64, F64]:
            t = np.arange(rounds, dtype=np.float64)[:, None] * 10.0 + np.zeros(n)
            return t, 0.6 + rng.normal(0, 0.005, (rounds, n))

        def incident(rounds: int, rng: np.random.Generator) -> tuple[F64, F64]:
            t, x = normal(rounds, rng)
            after = np.arange(rounds)[:, None] >= rounds // 2
            return t, x + after * bank.unit_params("sign") * 0.3

        return Example(bank, normal, incident)
