"""The detector protocol: a bank of *units*, one per configured (device, channel) detector.

A unit is what river calls an estimator instance; a bank holds many of them at once, their
parameters and state in numpy arrays whose first axis is the unit, so one batch updates every
device together. The protocol is narrow (STYLE.md, river):

- `update(samples) -> Hits`: the raise/clear transitions this batch caused, nothing else;
- `snapshot()` / `restore(state)`: every state array, copied, first axis the unit;
- `clone()`: a fresh bank with the same parameters (constructor arguments are kept verbatim);
- `reset(units)`: back to the initial state (a person cleared the alarm: re-learn, re-raise);
- `set_active(units)`: warm start from the alarms still open in the store.

Every unit has a boolean `active` state; a transition is a change of it. Detectors whose state is
inherently sequential subclass `SequentialDetector`, which feeds at most one reading per unit per
*round*, vectorised across units: a batch is as many rounds as the most samples any one unit has in
it (one, in live traffic), so the batch path equals the one-reading-at-a-time path by construction.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from detectors.samples import Samples, group_starts

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]
State = dict[str, npt.NDArray[Any]]


@dataclass(frozen=True)
class Hits:
    """Transitions of one batch: unit, time and value (the evidence) of each, raise or clear."""

    unit: I64
    ts: F64
    value: F64
    raised: Bool

    def __len__(self) -> int:
        return int(self.unit.size)

    @staticmethod
    def empty() -> Hits:
        return Hits(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0, bool))

    @staticmethod
    def concat(parts: list[Hits]) -> Hits:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Hits.empty()
        if len(parts) == 1:
            return parts[0]
        return Hits(
            np.concatenate([p.unit for p in parts]),
            np.concatenate([p.ts for p in parts]),
            np.concatenate([p.value for p in parts]),
            np.concatenate([p.raised for p in parts]),
        )


@dataclass(frozen=True)
class Example:
    """What the conformance suite needs to exercise a detector type: a small bank and its inputs.

    `normal(n_rounds, rng)` gives benign readings (t, x) of shape (n_rounds, n_units);
    `incident(...)` readings of the same shape that make every unit raise at least once.
    """

    detector: Detector
    normal: Callable[[int, np.random.Generator], tuple[F64, F64]]
    incident: Callable[[int, np.random.Generator], tuple[F64, F64]]


class Detector(ABC):
    """A bank of units of one detector type; see the module docstring for the protocol."""

    type_name: ClassVar[str]

    def __init__(
        self, unit_slot: npt.ArrayLike, *, row: npt.ArrayLike | None = None, **params: npt.ArrayLike
    ) -> None:
        """Units on slots `unit_slot`. Without `row`, `params` are per unit (or one value for all);
        with it, each parameter is a table of rows and `row` the row of each unit: the units of one
        detector entry of one profile share their values, so a million devices hold them once."""
        slot = np.asarray(unit_slot, dtype=np.int64)
        if slot.size and (slot.min() < 0 or slot.max() > np.iinfo(np.int32).max):
            raise ValueError(f"{self.type_name}: unit slots must be within 0 .. 2**31 - 1")
        if row is None:
            tables = {k: np.broadcast_to(np.asarray(v), slot.shape).copy() for k, v in params.items()}
            codes = np.arange(slot.size, dtype=np.int64)
        else:
            tables = {k: np.asarray(v).copy() for k, v in params.items()}
            codes = np.asarray(row, dtype=np.int64)
            lengths = {t.shape[0] for t in tables.values()}
            if codes.shape != slot.shape or len(lengths) > 1:
                raise ValueError(f"{self.type_name}: a row per unit and tables of one length are needed")
            n_rows = lengths.pop() if lengths else int(codes.max(initial=-1)) + 1
            if codes.size and (codes.min() < 0 or codes.max() >= n_rows):
                raise ValueError(f"{self.type_name}: a unit's row is past the parameter tables")
            used = np.bincount(codes, minlength=n_rows) > 0
            if not used.all():  # every row is some unit's: a maximum over a table is one over units
                codes = (np.cumsum(used) - 1)[codes]
                tables = {k: t[used] for k, t in tables.items()}
        # The parameter tables, and each unit's row in them (the smallest integer type that holds it).
        self.params: dict[str, npt.NDArray[Any]] = tables
        self.row: npt.NDArray[np.integer[Any]] = codes.astype(
            np.min_scalar_type(-max(1, int(codes.max(initial=0))))
        )
        self.unit_slot = slot.astype(np.int32)
        self._route_by_slot(self.unit_slot)
        self.state: State = self.initial_state(self.n_units)

    def _route_by_slot(self, slot: npt.NDArray[np.int32]) -> None:
        """How a sample finds its units, sized to the slots the bank covers ([lo, lo + span)):

        - "direct": at most one unit per slot and the bank covers at least a quarter of its span:
          the unit of each slot (-1: none), one gather per sample;
        - "csr": several units on some slot (threshold levels), same coverage: where each slot's
          units start in `_order` (units sorted by slot), a CSR layout, two gathers per sample;
        - "search": a bank of few units over a wide span (a rare detector type): the units' sorted
          slots, searched, so a bank of fifty units does not hold an entry per registry slot.
        """
        n = slot.size
        order = np.argsort(slot, kind="stable").astype(np.int32)
        by_slot = slot[order]
        self._lo = int(by_slot[0]) if n else 0
        self._span = int(by_slot[-1]) + 1 - self._lo if n else 0
        empty = np.zeros(0, np.int32)
        self._unit_at, self._start, self._sorted, self._order = empty, empty, empty, empty
        if self._span > 4 * n:
            self._mode = "search"
            self._sorted, self._order = by_slot, order
            return
        count = np.bincount(slot - self._lo, minlength=self._span)
        if count.max(initial=0) <= 1:
            self._mode = "direct"
            self._unit_at = np.full(self._span, -1, dtype=np.int32)
            self._unit_at[slot - self._lo] = np.arange(n, dtype=np.int32)
            return
        self._mode = "csr"
        self._start = np.zeros(self._span + 1, dtype=np.int32)
        np.cumsum(count, out=self._start[1:])
        self._order = order

    @property
    def n_units(self) -> int:
        return int(self.unit_slot.size)

    @abstractmethod
    def initial_state(self, n: int) -> State:
        """Fresh state for `n` units; must contain a boolean `active`."""

    @abstractmethod
    def update(self, samples: Samples) -> Hits: ...

    @classmethod
    @abstractmethod
    def example(cls) -> Example:
        """A small bank with representative parameters, for the conformance suite and the docs."""

    def clone(self) -> Self:
        return type(self)(self.unit_slot, row=self.row, **self.params)

    def rows(self, units: npt.NDArray[np.integer[Any]]) -> npt.NDArray[np.intp]:
        """The parameter row of each of `units`: `self.params[name][rows]` is their values."""
        rows: npt.NDArray[np.intp] = self.row[units].astype(np.intp)
        return rows

    def unit_params(self, name: str) -> npt.NDArray[Any]:
        """One parameter per unit (made when asked: tests, examples, reports)."""
        values: npt.NDArray[Any] = self.params[name][self.row]
        return values

    def snapshot(self) -> State:
        return {name: array.copy() for name, array in self.state.items()}

    def restore(self, state: State) -> None:
        for name, array in self.state.items():
            if name not in state or state[name].shape != array.shape or state[name].dtype != array.dtype:
                raise ValueError(f"{self.type_name} snapshot does not match this bank (state {name!r})")
        for name, array in self.state.items():
            array[...] = state[name]

    def reset(self, units: npt.ArrayLike) -> None:
        idx = np.asarray(units, dtype=np.int64)
        fresh = self.initial_state(idx.size)
        for name, array in self.state.items():
            array[idx] = fresh[name]

    def set_active(self, units: npt.ArrayLike) -> None:
        self.state["active"][np.asarray(units, dtype=np.int64)] = True

    def state_bytes(self) -> int:
        return sum(int(a.nbytes) for a in self.state.values())

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{k}={v[0]!r}" if v.size and (v == v[0]).all() else f"{k}=[...]" for k, v in self.params.items()
        )
        return f"{type(self).__name__}({self.n_units} units, {shown})"

    def route(self, samples: Samples) -> tuple[I64, I64]:
        """(unit, sample index) pairs of the batch, in arrival order within each unit."""
        if not self._span:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        lo: npt.NDArray[np.integer[Any]]
        if self._mode == "search":
            lo = np.searchsorted(self._sorted, samples.slot, side="left")
            count = np.searchsorted(self._sorted, samples.slot, side="right") - lo
        else:
            k = samples.slot - self._lo
            inside = (k >= 0) & (k < self._span)
            k = np.where(inside, k, 0)
            if self._mode == "direct":  # the usual case: one unit per slot
                unit = self._unit_at[k]
                j = np.flatnonzero(inside & (unit >= 0))
                return unit[j].astype(np.int64), j.astype(np.int64)
            lo = self._start[k]
            count = np.where(inside, self._start[k + 1] - lo, 0)
        if not count.size or count.max(initial=0) <= 1:
            j = np.flatnonzero(count)
            return self._order[lo[j]].astype(np.int64), j.astype(np.int64)
        total = int(count.sum())
        j = np.repeat(np.arange(samples.slot.size, dtype=np.int64), count)
        within = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
        return self._order[lo[j] + within].astype(np.int64), j


def restarted_sums(init: F64, begins: Bool, *terms: F64) -> F64:
    """Running sums that restart where `begins` is true, from `init` (one per restart), each added
    in the order a loop would add them: value_i = (...((prev + terms[0][i]) + terms[1][i]) ...).

    numpy's `cumsum` along an axis adds strictly in order, so each stretch is summed on its own,
    bit for bit as a step-by-step recurrence would; stretches are padded to a power-of-two length
    class each, so one long stretch among many short ones costs no more than twice the cells.
    """
    n = begins.size
    out = np.empty(n)
    if not n:
        return out
    k = len(terms)
    stretch = np.cumsum(begins) - 1
    start = np.flatnonzero(begins)
    pos = np.arange(n) - start[stretch]
    length = np.diff(np.append(start, n))
    size_class = np.frexp(length.astype(np.float64))[1]
    for c in np.unique(size_class):
        mine = np.flatnonzero(size_class == c)
        local = np.empty(length.size, dtype=np.int64)
        local[mine] = np.arange(mine.size)
        cells = np.flatnonzero(size_class[stretch] == c)
        row = local[stretch[cells]]
        grid = np.zeros((mine.size, 1 + k * int(length[mine].max())))
        grid[:, 0] = init[mine]
        for i, term in enumerate(terms):
            grid[row, 1 + k * pos[cells] + i] = term[cells]
        out[cells] = np.cumsum(grid, axis=1)[row, k * pos[cells] + k]
    return out


@dataclass(frozen=True)
class Runs:
    """A batch's readings grouped into one row per unit, in arrival order: row i holds unit `unit[i]`'s
    readings in columns 0 .. `last[i]`; the cells after that (`valid` false) repeat the row's last
    reading, so they are finite, and a `scan` must leave the state as if they were not there."""

    unit: I64
    t: F64
    x: F64
    valid: Bool
    last: I64


class SequentialDetector(Detector):
    """A detector defined by a per-reading step, run in rounds of at most one reading per unit.

    A subclass may add `scan`, the same step over a unit's whole run of readings at once (numpy
    along the run); a batch holding several readings of a unit then takes that path, and rounds
    remain the definition it is tested against (tests/test_detector_scan.py).
    """

    @abstractmethod
    def step(self, u: I64, t: F64, x: F64) -> tuple[Bool, Bool, F64]:
        """Advance units `u` (distinct) by one reading each; return (raise, clear, evidence).

        `raise` may be true for an already active unit and `clear` for an inactive one: the base class
        keeps only real transitions. It sets `active` after the step, so `step` sees the old value.
        """

    def scan(self, runs: Runs) -> tuple[Bool, Bool, F64] | None:
        """Optional: `step` applied along each row of `runs`; (raise, clear, evidence) per cell.

        Leaves the state as after each unit's last reading (except `active`, which the base class
        sets from the raises and clears afterwards: a scan whose steps read `active` follows it
        along the run the same way), or returns None having changed nothing, and the batch runs in
        rounds. The conformance suite asks it to agree with rounds bit for bit.
        """
        return None

    def update(self, samples: Samples) -> Hits:
        unit, j = self.route(samples)
        if not unit.size:
            return Hits.empty()
        if samples.unique or np.bincount(unit, minlength=self.n_units).max() <= 1:
            return self._rounds(samples, [(unit, j)])
        if type(self).scan is not SequentialDetector.scan:
            hits = self._scan(samples, unit, j)
            if hits is not None:
                return hits
        return self.update_by_rounds(samples)

    def update_by_rounds(self, samples: Samples) -> Hits:
        """The definition: at most one reading per unit per round, `step` vectorised across units."""
        unit, j = self.route(samples)
        if not unit.size:
            return Hits.empty()
        order = np.argsort(unit, kind="stable")
        su = unit[order]
        first = np.searchsorted(su, su, side="left")
        rank = np.empty_like(order)
        rank[order] = np.arange(su.size) - first
        by_rank = np.argsort(rank, kind="stable")
        bounds = np.searchsorted(rank[by_rank], np.arange(int(rank.max()) + 2))
        rounds = [(unit[by_rank[a:b]], j[by_rank[a:b]]) for a, b in itertools.pairwise(bounds)]
        return self._rounds(samples, rounds)

    def _rounds(self, samples: Samples, rounds: list[tuple[I64, I64]]) -> Hits:
        hits = []
        active = self.state["active"]
        for u, jj in rounds:
            t = samples.ts[jj]
            x = samples.value[jj]
            up, down, evidence = self.step(u, t, x)
            was = active[u]
            now = np.where(up, True, np.where(down, False, was))
            active[u] = now
            changed = np.flatnonzero(now != was)
            if changed.size:
                hits.append(Hits(u[changed], t[changed], evidence[changed], now[changed]))
        return Hits.concat(hits)

    def _scan(self, samples: Samples, unit: I64, j: I64) -> Hits | None:
        order = np.argsort(unit, kind="stable")
        new, start = group_starts(unit[order])
        row = np.cumsum(new) - 1
        col = np.arange(order.size) - start
        length = np.bincount(row)
        m = length.size
        # Runs are padded to the longest in a grid; where lengths differ widely (one device's backlog
        # among many live ones), runs of each power-of-two length class get a grid of their own.
        if m * int(length.max()) <= 4 * order.size + 65_536:
            groups = [np.arange(m)]
        else:
            size_class = np.frexp(length.astype(np.float64))[1]
            groups = [np.flatnonzero(size_class == c) for c in np.unique(size_class)]
        saved = self.snapshot() if len(groups) > 1 else None
        parts: list[tuple[Hits, I64, I64]] = []
        for rows in groups:
            local = np.full(m, -1, dtype=np.int64)
            local[rows] = np.arange(rows.size)
            cells = np.flatnonzero(local[row] >= 0)
            part = self._scan_runs(samples, unit, j, order[cells], local[row[cells]], col[cells], rows.size)
            if part is None:
                if saved is not None:
                    self.restore(saved)
                return None
            parts.append(part)
        hits = Hits.concat([h for h, _, _ in parts])
        if not len(hits):
            return Hits.empty()
        # The order rounds give: by rank within the unit, then by arrival.
        k = np.lexsort((np.concatenate([p for _, _, p in parts]), np.concatenate([c for _, c, _ in parts])))
        return Hits(hits.unit[k], hits.ts[k], hits.value[k], hits.raised[k])

    def _scan_runs(
        self, samples: Samples, unit: I64, j: I64, order: I64, row: I64, col: I64, m: int
    ) -> tuple[Hits, I64, I64] | None:
        """Scan the readings at route positions `order`, grid cells (`row`, `col`); the hits with
        each one's rank within its unit and route position, or None if `scan` declined."""
        width = int(col.max()) + 1
        pos = np.full((m, width), -1, dtype=np.int64)  # the reading's index in route order
        pos[row, col] = order
        last = np.bincount(row, minlength=m) - 1
        valid = pos >= 0
        pos = np.where(valid, pos, pos[np.arange(m), last][:, None])
        jj = j[pos]
        unit_at = np.empty(m, dtype=np.int64)
        unit_at[row] = unit[order]
        runs = Runs(unit_at, samples.ts[jj], samples.value[jj], valid, last)
        out = self.scan(runs)
        if out is None:
            return None
        up, down, evidence = out
        active = self.state["active"]
        was0 = active[unit_at]
        # `active` after each reading: the newest raise or clear at or before it, else the old value.
        cols = np.arange(width)
        decided = valid & (up | down)
        at = np.maximum.accumulate(np.where(decided, cols, -1), axis=1)
        now = np.where(at >= 0, np.take_along_axis(up, np.maximum(at, 0), axis=1), was0[:, None])
        was = np.concatenate([was0[:, None], now[:, :-1]], axis=1)
        active[unit_at] = now[np.arange(m), last]
        r, c = np.nonzero(valid & (now != was))
        return Hits(unit_at[r], runs.t[r, c], evidence[r, c], now[r, c]), c, pos[r, c]
