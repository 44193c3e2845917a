"""Sensor health: is the sensor itself believable? Each check raises its own fault.

- out of range: a reading outside the channel's physical range (the message is rejected by ingest,
  and counted here: a sensor reporting the impossible is broken);
- stuck: no change beyond a tolerance for a long time, where a live sensor always moves a little;
- jump: consecutive readings further apart than physics allows for that quantity;
- noisy: the spread of successive differences (EWMA) above a limit.

A health fault never holds back a fire alarm: the fire detectors see the same readings and decide
on their own (STANDARDS.md design rule).
"""

from __future__ import annotations

import numpy as np

from detectors.base import F64, I64, Bool, Example, Runs, SequentialDetector, State


def _ticks(n: int, rounds: int, every: float) -> F64:
    return np.arange(rounds, dtype=np.float64)[:, None] * every + np.zeros(n)


class OutOfRange(SequentialDetector):
    """Parameters per unit: `lo`, `hi`. Raises on a reading outside, clears on the next one inside.

    >>> import numpy as np
    >>> from detectors.samples import Samples
    >>> bank = OutOfRange([0], lo=0.0, hi=2.0)
    >>> hits = bank.update(Samples(np.zeros(3, np.int32), np.arange(3.0), np.array([0.1, 9.9, 0.1])))
    >>> hits.raised.tolist()
    [True, False]
    """

    type_name = "out_of_range"

    def initial_state(self, n: int) -> State:
        return {"active": np.zeros(n, dtype=bool)}

    def step(self, u: I64, t: F64, x: F64) -> tuple[Bool, Bool, F64]:
        r = self.rows(u)
        outside = (x < self.params["lo"][r]) | (x > self.params["hi"][r])
        return outside, ~outside, x

    def scan(self, runs: Runs) -> tuple[Bool, Bool, F64]:
        return self.step(runs.unit[:, None], runs.t, runs.x)

    @classmethod
    def example(cls) -> Example:
        n = 2
        bank = cls(np.arange(n), lo=0.0, hi=2.0)

        def normal(rounds: int, rng: np.random.Generator) -> tuple[F64, F64]:
            return _ticks(n, rounds, 30.0), rng.uniform(0.0, 0.2, (rounds, n))

        def incident(rounds: int, rng: np.random.Generator) -> tuple[F64, F64]:
            t, x = normal(rounds, rng)
            x[rounds // 2] = 5.0
            return t, x

        return Example(bank, normal, incident)


class Stuck(SequentialDetector):
    """Parameters per unit: `stuck_s`, `tolerance`. Evidence: seconds without change.

    >>> import numpy as np
    >>> from detectors.samples import Samples
    >>> bank = Stuck([0], stuck_s=3600.0, tolerance=0.0)
    >>> t = np.arange(0.0, 7200.0, 600.0)
    >>> hits = bank.update(Samples(np.zeros(t.size, np.int32), t, np.full(t.size, 0.61)))
    >>> hits.ts.tolist()
    [3600.0]
    """

    type_name = "stuck"

    def initial_state(self, n: int) -> State:
        return {
            "active": np.zeros(n, dtype=bool),
            "anchor_x": np.full(n, np.nan),  # the value the sensor has been sitting at
            "anchor_t": np.zeros(n),  # since when
        }

    def step(self, u: I64, t: F64, x: F64) -> tuple[Bool, Bool, F64]:
        st, p = self.state, self.params
        r = self.rows(u)
        moved = ~(np.abs(x - st["anchor_x"][u]) <= p["tolerance"][r])  # NaN anchor: moved
        st["anchor_x"][u] = np.where(moved, x, st["anchor_x"][u])
        st["anchor_t"][u] = np.where(moved, t, st["anchor_t"][u])
        still_for = t - st["anchor_t"][u]
        return ~moved & (still_for >= p["stuck_s"][r]), moved, still_for

    def scan(self, runs: Runs) -> tuple[Bool, Bool, F64] | None:
        st, p = self.state, self.params
        u, t, x = runs.unit, runs.t, runs.x
        r = self.rows(u)
        m, width = x.shape
        tol = p["tolerance"][r][:, None]
        anchor_x, anchor_t = st["anchor_x"][u], st["anchor_t"][u]
        cols = np.arange(width)
        # The anchor a reading is compared with is the newest earlier reading that moved. Guess that
        # every reading moves, then correct: each pass fixes at least the first wrong reading, and a
        # pass that changes nothing is the step-by-step answer (a live sensor moves at nearly every
        # reading, so one or two passes do).
        moved = runs.valid.copy()
        for _ in range(8):
            at = np.maximum.accumulate(np.where(moved, cols, -1), axis=1)
            before = np.concatenate([np.full((m, 1), -1), at[:, :-1]], axis=1)
            ref = np.where(
                before >= 0, np.take_along_axis(x, np.maximum(before, 0), axis=1), anchor_x[:, None]
            )
            again = runs.valid & ~(np.abs(x - ref) <= tol)
            if np.array_equal(again, moved):
                break
            moved = again
        else:
            return None
        at = np.maximum.accumulate(np.where(moved, cols, -1), axis=1)
        since = np.where(at >= 0, np.take_along_axis(t, np.maximum(at, 0), axis=1), anchor_t[:, None])
        still_for = t - since
        end = at[np.arange(m), runs.last]
        rows = np.flatnonzero(end >= 0)
        st["anchor_x"][u[rows]] = x[rows, end[rows]]
        st["anchor_t"][u[rows]] = t[rows, end[rows]]
        return ~moved & (still_for >= p["stuck_s"][r][:, None]), moved, still_for

    @classmethod
    def example(cls) -> Example:
        n = 2
        bank = cls(np.arange(n), stuck_s=3600.0, tolerance=np.array([0.0, 0.005]))

        def normal(rounds: int, rng: np.random.Generator) -> tuple[F64, F64]:
            return _ticks(n, rounds, 600.0), 0.6 + rng.normal(0, 0.02, (rounds, n))

        def incident(rounds: int, rng: np.random.Generator) -> tuple[F64, F64]:
            t, x = normal(rounds, rng)
            x[rounds // 4 :] = 0.6
            return t, x

        return Example(bank, normal, incident)


class Jump(SequentialDetector):
    """Parameters per unit: `max_jump`. Raises on an impossible change, clears on the next plausible one.

    >>> import numpy as np
    >>> from detectors.samples import Samples
    >>> bank = Jump([0], max_jump=0.5)
    >>> hits = bank.update(Samples(np.zeros(4, np.int32), np.arange(4.0), np.array([3.0, 3.1, 8.0, 8.1])))
    >>> hits.raised.tolist(), hits.ts.tolist()
    ([True, False], [2.0, 3.0])
    """

    type_name = "jump"

    def initial_state(self, n: int) -> State:
        return {"active": np.zeros(n, dtype=bool), "prev_x": np.full(n, np.nan)}

    def step(self, u: I64, t: F64, x: F64) -> tuple[Bool, Bool, F64]:
        st = self.state
        change = np.abs(x - st["prev_x"][u])
        known = np.isfinite(change)
        jump = known & (change > self.params["max_jump"][self.rows(u)])
        st["prev_x"][u] = x
        return jump, known & ~jump, np.where(known, change, 0.0)

    @classmethod
    def example(cls) -> Example:
        n = 2
        bank = cls(np.arange(n), max_jump=0.5)

        def normal(rounds: int, rng: np.random.Generator) -> tuple[F64, F64]:
            return _ticks(n, rounds, 60.0), 3.0 + rng.normal(0, 0.02, (rounds, n))

        def incident(rounds: int, rng: np.random.Generator) -> tuple[F64, F64]:
            t, x = normal(rounds, rng)
            x[rounds // 2 :] += 2.0
            return t, x

        return Example(bank, normal, incident)


class Noisy(SequentialDetector):
    """Parameters per unit: `max_noise`, `alpha`. Evidence: the EWMA RMS of successive differences.

    Raises after at least 1/alpha differences when the RMS difference exceeds `max_noise`, clears
    below 80 % of it.

    >>> import numpy as np
    >>> from detectors.samples import Samples
    >>> bank = Noisy([0], max_noise=0.5, alpha=0.1)
    >>> rng = np.random.default_rng(0)
    >>> x = np.r_[rng.normal(20, 0.05, 50), rng.normal(20, 2.0, 50)]
    >>> hits = bank.update(Samples(np.zeros(100, np.int32), np.arange(100.0), x))
    >>> hits.raised.tolist()
    [True]
    """

    type_name = "noisy"

    def initial_state(self, n: int) -> State:
        return {
            "active": np.zeros(n, dtype=bool),
            "prev_x": np.full(n, np.nan),
            "msd": np.zeros(n),  # EWMA of squared successive differences
            "n": np.zeros(n, dtype=np.int64),
        }

    def step(self, u: I64, t: F64, x: F64) -> tuple[Bool, Bool, F64]:
        st, p = self.state, self.params
        r = self.rows(u)
        d = x - st["prev_x"][u]
        known = np.isfinite(d)
        a = p["alpha"][r]
        count = st["n"][u] + known
        w = np.maximum(a, 1.0 / np.maximum(count, 1))
        st["msd"][u] = np.where(known, (1 - w) * st["msd"][u] + w * np.where(known, d * d, 0.0), st["msd"][u])
        st["n"][u] = count
        st["prev_x"][u] = x
        rms = np.sqrt(st["msd"][u])
        warm = count >= np.ceil(1.0 / a)
        return warm & (rms > p["max_noise"][r]), warm & (rms < 0.8 * p["max_noise"][r]), rms

    @classmethod
    def example(cls) -> Example:
        n = 2
        bank = cls(np.arange(n), max_noise=0.5, alpha=0.1)

        def normal(rounds: int, rng: np.random.Generator) -> tuple[F64, F64]:
            return _ticks(n, rounds, 10.0), 20.0 + rng.normal(0, 0.05, (rounds, n))

        def incident(rounds: int, rng: np.random.Generator) -> tuple[F64, F64]:
            t, x = normal(rounds, rng)
            x[rounds // 3 :] += rng.normal(0, 2.0, (rounds - rounds // 3, n))
            return t, x

        return Example(bank, normal, incident)
