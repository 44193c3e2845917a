"""Drop QoS 1 redeliveries by (device, seq), and never let one message make a device deaf.

A duplicate is a message this service has already accepted, delivered again: by the broker (a QoS 1
redelivery after a reconnect or a crash, flagged DUP, MQTT 3.1.1 §3.3.1.1 / 5.0 §3.3.1.1) or by
the device itself (a publish retried before its PUBACK came back; the broker forwards that one
with DUP clear, §3.3.1.1 "not propagated"). Either way the bytes are the same as the first time.

So each device keeps the highest seq accepted, a 64-wide bitmap of the seqs just below it (late,
out-of-order readings are accepted once), and a 16-bit fingerprint of each accepted payload in that
window. A seq already in the window is a duplicate only if its payload matches: the same seq with
other content is the device counting again from a reset (a reboot), accepted as a new run.

What must not happen is a duplicate decision on the say-so of one odd message (issue 18: a reading
stamped 290 s ahead with a jump in seq made every genuine reading after it a "duplicate"). Hence:
- a seq far below the window is a counter reset, accepted, unless the broker flags it as a
  redelivery *and* its timestamp is not newer than the device's last trusted one;
- a device's "last timestamp" never runs ahead of the service's clock at receipt, so a clock jump
  into the future cannot shadow the readings after it;
- after a reset, the run before it is kept for exact matches, so a stale redelivery from before a
  reboot is still recognised.
When in doubt, accept: a stored duplicate is a nuisance, a dropped fire reading is not.

The state is saved with each telemetry commit (fingerprints included), so redeliveries after a
service crash are dropped too.
"""

from __future__ import annotations

import struct
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

WINDOW = 64
_MASK = (1 << WINDOW) - 1
_EMPTY_FPS = bytes(2 * WINDOW)


def fingerprint(payload: bytes) -> int:
    """A 16-bit digest of a message's bytes, never 0 (0 marks "not known")."""
    return (zlib.crc32(payload) & 0xFFFF) or 1


@dataclass(slots=True)
class _Run:
    """One run of a device's counter: from its first seq up to `max_seq`."""

    max_seq: int
    bits: int  # bit k set: max_seq - k was accepted
    fps: array[int]  # fingerprint of seq s at fps[s % WINDOW] while s is in the window; 0: unknown

    def seen(self, seq: int, fp: int) -> bool | None:
        """Whether `seq` was accepted with this content: True (the same message, or a seq accepted
        before fingerprints were kept), False (free, or taken by other content), None (outside
        the window)."""
        age = self.max_seq - seq
        if age < 0 or age >= WINDOW:
            return None
        if not self.bits >> age & 1:
            return False
        known = self.fps[seq % WINDOW]
        return known == 0 or known == fp

    def matches(self, seq: int, fp: int) -> bool:
        """`seq` is in the window and was accepted with exactly this (known) content."""
        age = self.max_seq - seq
        return 0 <= age < WINDOW and bool(self.bits >> age & 1) and self.fps[seq % WINDOW] == fp != 0

    def taken(self, seq: int) -> bool:
        """`seq` is in the window and was accepted (with whatever content)."""
        age = self.max_seq - seq
        return 0 <= age < WINDOW and bool(self.bits >> age & 1)


@dataclass(slots=True)
class SeqState:
    run: _Run
    last_ts: float  # newest accepted timestamp, never ahead of its receipt time
    before: _Run | None = None  # the run before the last counter reset, for exact matches only


def _new_run(seq: int, fp: int) -> _Run:
    fps = array("H", _EMPTY_FPS)
    fps[seq % WINDOW] = fp
    return _Run(seq, 1, fps)


class SeqTracker:
    def __init__(self, n_devices: int) -> None:
        self._state: list[SeqState | None] = [None] * n_devices
        self.dirty: set[int] = set()
        # What `accept` changed since `begin`: per device touched, eight values in a row (the device,
        # its state object or None, its run, and the values to put back), and the devices kept.
        self._undo: list[Any] | None = None
        self._undone: set[int] = set()

    # --- all or nothing: a batch that fails leaves no marks (firewatch/pipeline.py) ----------------
    def begin(self) -> None:
        """Keep what `accept` changes from now on, so `rollback` can put it back."""
        self._undo = []
        self._undone = set()

    def commit(self) -> None:
        self._undo = None
        self._undone = set()

    def rollback(self) -> None:
        """Forget every acceptance since `begin`: the batch will be decoded again."""
        undo = self._undo
        if undo is not None:
            for i in range(0, len(undo), 8):
                dev, st, run, max_seq, bits, fps, last_ts, before = undo[i : i + 8]
                if st is None:
                    self._state[dev] = None
                    continue
                run.max_seq, run.bits, run.fps = max_seq, bits, array("H", fps)
                st.run, st.last_ts, st.before = run, last_ts, before
                self._state[dev] = st
        self.commit()

    def accept(
        self,
        dev: int,
        seq: int,
        ts: float,
        fp: int = 0,
        *,
        received: float | None = None,
        redelivered: bool = False,
    ) -> bool:
        """True if this (device, seq, payload) is new, and records it. `ts` is the message's own
        timestamp, `received` the service's clock at receipt (default: `ts`), `redelivered` the
        MQTT DUP flag."""
        trusted = ts if received is None else min(ts, received)
        st = self._state[dev]
        self.dirty.add(dev)
        undo = self._undo
        if undo is not None and dev not in self._undone:  # inline: every device of every batch
            self._undone.add(dev)
            # Flat, into one list: a tuple per device would be kept alive and tracked by the garbage
            # collector, whose passes over the tracker's own objects then cost more than the rest.
            if st is None:
                undo.extend((dev, None, None, 0, 0, b"", 0.0, None))
            else:
                run = st.run
                undo.extend((dev, st, run, run.max_seq, run.bits, run.fps.tobytes(), st.last_ts, st.before))
        if st is None:
            self._state[dev] = SeqState(_new_run(seq, fp), trusted)
            return True
        run = st.run
        if st.before is not None and st.before.matches(seq, fp):
            return False  # a stale redelivery from before the device's last reset
        if seq > run.max_seq:
            shift = seq - run.max_seq
            if shift >= WINDOW and redelivered and ts < st.last_ts:
                return False  # the broker redelivers a reading from before a reset: older, far ahead
            run.bits = ((run.bits << shift) | 1) & _MASK if shift < WINDOW else 1
            run.max_seq = seq
            run.fps[seq % WINDOW] = fp
            st.last_ts = max(st.last_ts, trusted)
            return True
        seen = run.seen(seq, fp)
        if seen:
            return False
        if seen is False and not run.taken(seq):
            run.bits |= 1 << (run.max_seq - seq)  # a late reading, first time
            run.fps[seq % WINDOW] = fp
            st.last_ts = max(st.last_ts, trusted)
            return True
        if seen is None and redelivered and ts <= st.last_ts:
            return False  # the broker redelivers an old reading, beyond the window
        # The same seq with other content, or far below the window: the counter started again.
        self._state[dev] = SeqState(_new_run(seq, fp), max(st.last_ts, trusted), before=run)
        return True

    def accept_many(
        self,
        devs: list[int],
        seqs: list[int],
        ts: list[float],
        fps: list[int],
        received: list[float],
        redelivered: list[bool],
    ) -> list[bool]:
        """`accept` for each reading in turn, same order, same outcomes. The usual case, the next
        seq or a few ahead from a device already seen in this batch (its undo record taken) and not
        reset lately, is done inline: a call per reading costs more than the update itself."""
        state = self._state
        undo = self._undo
        undone = self._undone
        accept = self.accept
        out: list[bool] = []
        # `accept` marks every device it is given as changed, accepted or not: all at once here.
        self.dirty.update(devs)
        for dev, seq, t, fp, rec, dup in zip(devs, seqs, ts, fps, received, redelivered, strict=True):
            st = state[dev]
            if st is not None and st.before is None and (undo is None or dev in undone):
                run = st.run
                shift = seq - run.max_seq
                if 0 < shift < WINDOW:
                    run.bits = ((run.bits << shift) | 1) & _MASK
                    run.max_seq = seq
                    run.fps[seq % WINDOW] = fp
                    trusted = rec if rec < t else t  # min(t, rec), as `accept` takes it
                    if trusted > st.last_ts:
                        st.last_ts = trusted
                    out.append(True)
                    continue
            out.append(accept(dev, seq, t, fp, received=rec, redelivered=dup))
        return out

    def snapshot(self, devs: set[int] | None = None) -> list[tuple[int, int, int, float, bytes]]:
        """(dev, max_seq, bits, last_ts, fingerprints) for the given (default: changed) devices."""
        wanted = self.dirty if devs is None else devs
        out = []
        for dev in wanted:
            st = self._state[dev]
            if st is not None:
                out.append((dev, st.run.max_seq, st.run.bits, st.last_ts, _pack(st)))
        return out

    def changed_rows(self, ids: Sequence[str]) -> list[tuple[str, int, int, float, bytes]]:
        """`snapshot()` of the changed devices, each named by `ids[dev]`: the rows a batch stores.
        One pass, the fingerprints packed inline: it runs once per batch over every device the
        batch touched."""
        state = self._state
        out: list[tuple[str, int, int, float, bytes]] = []
        append = out.append
        for dev in self.dirty:
            st = state[dev]
            if st is not None:
                run = st.run
                append(
                    (
                        ids[dev],
                        run.max_seq,
                        run.bits,
                        st.last_ts,
                        run.fps.tobytes() if st.before is None else _pack(st),
                    )
                )
        return out

    def remapped(self, old_of_new: list[int]) -> SeqTracker:
        """A tracker for a rebuilt device index: new device i takes old device `old_of_new[i]`'s
        state (-1: none). The states move, not copy: this tracker is not to be used afterwards."""
        out = SeqTracker(0)
        state = self._state
        out._state = [state[o] if o >= 0 else None for o in old_of_new]
        return out

    def restore(self, rows: list[tuple[int, int, int, float, bytes | None]]) -> None:
        """Rows of `snapshot()`; fingerprints may be None (stored before they were kept): then a
        seq in the window counts as seen whatever its content, as it did then."""
        for dev, max_seq, bits, last_ts, blob in rows:
            if 0 <= dev < len(self._state):
                prints, before = _unpack(blob)
                self._state[dev] = SeqState(_Run(max_seq, bits & _MASK, prints), last_ts, before)


# The stored fingerprints: the run's 64 fingerprints, then, after a reset, the run before it (its
# max seq, its window bits and its fingerprints), so a stale redelivery from before a reboot is
# still recognised after a service restart.
_BEFORE = struct.Struct("<qQ")


def _pack(st: SeqState) -> bytes:
    blob = st.run.fps.tobytes()
    if st.before is not None:
        blob += _BEFORE.pack(st.before.max_seq, st.before.bits) + st.before.fps.tobytes()
    return blob


def _unpack(blob: bytes | None) -> tuple[array[int], _Run | None]:
    n = len(_EMPTY_FPS)
    if blob is None or len(blob) not in (n, n + _BEFORE.size + n):
        return array("H", _EMPTY_FPS), None  # stored before fingerprints were kept
    before = None
    if len(blob) > n:
        max_seq, bits = _BEFORE.unpack_from(blob, n)
        before = _Run(max_seq, bits & _MASK, array("H", blob[n + _BEFORE.size :]))
    return array("H", blob[:n]), before
