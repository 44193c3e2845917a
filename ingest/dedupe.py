"""Drop QoS 1 redeliveries by (device, seq).

Each device keeps the highest seq seen and a 64-wide bitmap of the seqs just below it, so late
(out-of-order) readings are accepted once and repeats are dropped. A seq far below the window with a
timestamp newer than anything seen means the device restarted its counter: accepted, window reset;
after such a restart, a far jump *forward* in seq with an older timestamp is a stale redelivery from
before it, and dropped.
The state is saved with each telemetry commit, so redeliveries after a service crash are dropped too.
"""

from __future__ import annotations

from dataclasses import dataclass

WINDOW = 64
_MASK = (1 << WINDOW) - 1


@dataclass(slots=True)
class SeqState:
    max_seq: int
    bits: int  # bit k set: max_seq - k was seen
    last_ts: float


class SeqTracker:
    def __init__(self, n_devices: int) -> None:
        self._state: list[SeqState | None] = [None] * n_devices
        self.dirty: set[int] = set()

    def accept(self, dev: int, seq: int, ts: float) -> bool:
        """True if this (device, seq) is new; records it."""
        st = self._state[dev]
        self.dirty.add(dev)
        if st is None:
            self._state[dev] = SeqState(seq, 1, ts)
            return True
        if seq > st.max_seq:
            shift = seq - st.max_seq
            if shift >= WINDOW and ts < st.last_ts:
                return False  # a far jump forward in seq but back in time: a stale pre-restart redelivery
            st.bits = ((st.bits << shift) | 1) & _MASK if shift < WINDOW else 1
            st.max_seq = seq
            st.last_ts = max(st.last_ts, ts)
            return True
        age = st.max_seq - seq
        if age < WINDOW:
            bit = 1 << age
            if st.bits & bit:
                return False
            st.bits |= bit
            return True
        if ts > st.last_ts:  # counter restarted (device reboot)
            self._state[dev] = SeqState(seq, 1, ts)
            return True
        return False

    def snapshot(self, devs: set[int] | None = None) -> list[tuple[int, int, int, float]]:
        """(dev, max_seq, bits, last_ts) for the given (default: changed) devices."""
        wanted = self.dirty if devs is None else devs
        out = []
        for dev in wanted:
            st = self._state[dev]
            if st is not None:
                out.append((dev, st.max_seq, st.bits, st.last_ts))
        return out

    def remapped(self, old_of_new: list[int]) -> SeqTracker:
        """A tracker for a rebuilt device index: new device i takes old device `old_of_new[i]`'s
        state (-1: none). The states move, not copy: this tracker is not to be used afterwards."""
        out = SeqTracker(0)
        state = self._state
        out._state = [state[o] if o >= 0 else None for o in old_of_new]
        return out

    def restore(self, rows: list[tuple[int, int, int, float]]) -> None:
        for dev, max_seq, bits, last_ts in rows:
            if 0 <= dev < len(self._state):
                self._state[dev] = SeqState(max_seq, bits, last_ts)
