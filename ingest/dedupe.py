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
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

WINDOW = 64
_MASK = (1 << WINDOW) - 1
_EMPTY_FPS = bytes(2 * WINDOW)
_NO_FPS = array("H", _EMPTY_FPS)


def fingerprint(payload: bytes) -> int:
    """A 16-bit digest of a message's bytes, never 0 (0 marks "not known")."""
    return (zlib.crc32(payload) & 0xFFFF) or 1


@dataclass(slots=True)
class _Run:
    """The run of a device's counter before its last reset: from its first seq up to `max_seq`."""

    max_seq: int
    bits: int  # bit k set: max_seq - k was accepted
    fps: array[int]  # fingerprint of seq s at fps[s % WINDOW] while s is in the window; 0: unknown

    def matches(self, seq: int, fp: int) -> bool:
        """`seq` is in the window and was accepted with exactly this (known) content."""
        age = self.max_seq - seq
        return 0 <= age < WINDOW and bool(self.bits >> age & 1) and self.fps[seq % WINDOW] == fp != 0


@dataclass(slots=True)
class SeqState:
    """A device's current run of its counter (`max_seq`, `bits` as in `_Run`; its fingerprints are
    the tracker's, at `dev * WINDOW`), its newest accepted time, and the run before a reset."""

    max_seq: int
    bits: int
    last_ts: float  # newest accepted timestamp, never ahead of its receipt time
    before: _Run | None = None  # the run before the last counter reset, for exact matches only


def _zeros(n_devices: int) -> array[int]:
    """WINDOW zero fingerprints per device, made by repetition (no temporary of the full size)."""
    return array("H", [0]) * (n_devices * WINDOW)


def _rows(fps: array[int]) -> npt.NDArray[np.uint16]:
    """The fingerprints as a (device, WINDOW) numpy view of the same memory."""
    return np.frombuffer(fps, dtype=np.uint16).reshape(-1, WINDOW)


class SeqTracker:
    def __init__(self, n_devices: int) -> None:
        self._state: list[SeqState | None] = [None] * n_devices
        # Every device's current fingerprints in one array, WINDOW apiece (128 bytes): an array
        # object per device cost about 220 bytes, and a run object 56 more (docs/benchmarks.md,
        # "Registry at scale"). A device not heard from yet has zeros there.
        self._fp = _zeros(n_devices)
        self.dirty: set[int] = set()
        # What `accept` changed since `begin`: per device touched, seven values in a row (the device,
        # its state object or None, and the values to put back), and the devices kept.
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
            fp = self._fp
            for i in range(0, len(undo), 7):
                dev, st, max_seq, bits, fps, last_ts, before = undo[i : i + 7]
                base = dev * WINDOW
                fp[base : base + WINDOW] = array("H", fps)
                if st is None:
                    self._state[dev] = None
                    continue
                st.max_seq, st.bits, st.last_ts, st.before = max_seq, bits, last_ts, before
                self._state[dev] = st
        self.commit()

    def _fingerprints(self, dev: int) -> array[int]:
        base = dev * WINDOW
        return self._fp[base : base + WINDOW]  # an array slice is a copy

    def _new_run(self, dev: int, seq: int, fp: int) -> None:
        base = dev * WINDOW
        self._fp[base : base + WINDOW] = _NO_FPS
        self._fp[base + seq % WINDOW] = fp

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
                undo.extend((dev, None, 0, 0, _EMPTY_FPS, 0.0, None))
            else:
                # As bytes: an array (the slice) is tracked by the garbage collector, and thousands
                # of them a batch made its young collections run more often.
                prints = self._fp[dev * WINDOW : (dev + 1) * WINDOW].tobytes()
                undo.extend((dev, st, st.max_seq, st.bits, prints, st.last_ts, st.before))
        if st is None:
            self._new_run(dev, seq, fp)
            self._state[dev] = SeqState(seq, 1, trusted)
            return True
        if st.before is not None and st.before.matches(seq, fp):
            return False  # a stale redelivery from before the device's last reset
        fps, base = self._fp, dev * WINDOW
        if seq > st.max_seq:
            shift = seq - st.max_seq
            if shift >= WINDOW and redelivered and ts < st.last_ts:
                return False  # the broker redelivers a reading from before a reset: older, far ahead
            st.bits = ((st.bits << shift) | 1) & _MASK if shift < WINDOW else 1
            st.max_seq = seq
            fps[base + seq % WINDOW] = fp
            st.last_ts = max(st.last_ts, trusted)
            return True
        age = st.max_seq - seq
        if age < WINDOW:
            if st.bits >> age & 1:
                known = fps[base + seq % WINDOW]
                if known == 0 or known == fp:
                    return False  # the same message (or a seq accepted before fingerprints were kept)
            else:
                st.bits |= 1 << age  # a late reading, first time
                fps[base + seq % WINDOW] = fp
                st.last_ts = max(st.last_ts, trusted)
                return True
        elif redelivered and ts <= st.last_ts:
            return False  # the broker redelivers an old reading, beyond the window
        # The same seq with other content, or far below the window: the counter started again.
        before = _Run(st.max_seq, st.bits, self._fingerprints(dev))
        self._new_run(dev, seq, fp)
        self._state[dev] = SeqState(seq, 1, max(st.last_ts, trusted), before)
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
        dirty = self.dirty
        undo = self._undo
        undone = self._undone
        accept = self.accept
        prints = self._fp
        out: list[bool] = []
        for dev, seq, t, fp, rec, dup in zip(devs, seqs, ts, fps, received, redelivered, strict=True):
            st = state[dev]
            if st is not None and st.before is None and (undo is None or dev in undone):
                shift = seq - st.max_seq
                if 0 < shift < WINDOW:
                    dirty.add(dev)
                    st.bits = ((st.bits << shift) | 1) & _MASK
                    st.max_seq = seq
                    prints[dev * WINDOW + seq % WINDOW] = fp
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
        state = self._state
        known = [dev for dev in wanted if state[dev] is not None]
        # The fingerprints of all of them in one gather, made into a bytes object each by numpy (as
        # raw 128-byte items): a slice per device, of the array or of one bytes, cost several times
        # what an array per device's `tobytes` did, and this runs with every batch.
        rows = _rows(self._fp)[np.array(known, dtype=np.int64)]
        prints: list[bytes] = rows.view(f"V{2 * WINDOW}").reshape(-1).tolist()
        out = []
        for dev, blob in zip(known, prints, strict=True):
            st = state[dev]
            assert st is not None
            out.append(
                (dev, st.max_seq, st.bits, st.last_ts, blob if st.before is None else _pack(blob, st.before))
            )
        return out

    def remapped(self, old_of_new: list[int]) -> SeqTracker:
        """A tracker for a rebuilt device index: new device i takes old device `old_of_new[i]`'s
        state (-1: none). The states move, not copy: this tracker is not to be used afterwards."""
        out = SeqTracker(0)
        state = self._state
        out._state = [state[o] if o >= 0 else None for o in old_of_new]
        # The fingerprints follow with one numpy gather (this runs between two batches).
        src = np.asarray(old_of_new, dtype=np.int64).reshape(-1)
        out._fp = _zeros(src.size)
        _rows(out._fp)[src >= 0] = _rows(self._fp)[src[src >= 0]]
        return out

    def restore(self, rows: list[tuple[int, int, int, float, bytes | None]]) -> None:
        """Rows of `snapshot()`; fingerprints may be None (stored before they were kept): then a
        seq in the window counts as seen whatever its content, as it did then."""
        for dev, max_seq, bits, last_ts, blob in rows:
            if 0 <= dev < len(self._state):
                prints, before = _unpack(blob)
                base = dev * WINDOW
                self._fp[base : base + WINDOW] = prints
                self._state[dev] = SeqState(max_seq, bits & _MASK, last_ts, before)


# The stored fingerprints: the run's 64 fingerprints, then, after a reset, the run before it (its
# max seq, its window bits and its fingerprints), so a stale redelivery from before a reboot is
# still recognised after a service restart.
_BEFORE = struct.Struct("<qQ")


def _pack(fps: bytes, before: _Run | None) -> bytes:
    if before is not None:
        return fps + _BEFORE.pack(before.max_seq, before.bits) + before.fps.tobytes()
    return fps


def _unpack(blob: bytes | None) -> tuple[array[int], _Run | None]:
    n = len(_EMPTY_FPS)
    if blob is None or len(blob) not in (n, n + _BEFORE.size + n):
        return array("H", _EMPTY_FPS), None  # stored before fingerprints were kept
    before = None
    if len(blob) > n:
        max_seq, bits = _BEFORE.unpack_from(blob, n)
        before = _Run(max_seq, bits & _MASK, array("H", blob[n + _BEFORE.size :]))
    return array("H", blob[:n]), before
