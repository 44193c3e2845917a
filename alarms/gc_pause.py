"""The cyclic garbage collector held off while a bulk alarm write, or a batch's decoding and
detection, runs.

A batch of detector events makes tens of thousands of short-lived containers (snapshots, log rows,
parameter tuples, ORM state) that reference counting frees, and keeps a few thousand alive until its
end (the batch's index). While it runs, the cyclic collector's young collections keep scanning what
the batch holds and its full collections scan the whole heap, and they find nothing to free: with
`bench.alarm_burst` that was 10–20 % of the CPU per transition (gc callbacks: three full collections
of about 70 ms each in a run, and some 600 young ones). Held off for the batch, the collector runs
again at the first allocation after it, over what is still alive then. Start-up does the same
(firewatch/service.py).

The pipeline's thread (decode and detect) and the alarm writer's thread hold it off at the same
time, and the collector is one switch for the whole process: the pause is counted, so the first to
start turns it off and the last to end turns it back on. Under a steady load the two can overlap
without a gap for long stretches, so a pause held longer than `MAX_HELD_S` runs one young
collection as a holder ends: cycles made meanwhile are found within seconds, not only when the
load stops.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

MAX_HELD_S = 2.0

_lock = threading.Lock()
_holders = 0
_restore = False  # the collector was on when the first holder took it off
_since = 0.0  # when the collector was last taken off, or last ran a young collection in a pause


@contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic cyclic collection inside the block, in any thread; afterwards the collector is
    as it was before the first of the blocks open at the same time began (left off if something
    else had turned it off)."""
    global _holders, _restore, _since
    with _lock:
        if _holders == 0:
            _restore = gc.isenabled()
            _since = time.monotonic()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        collect = False
        with _lock:
            _holders -= 1
            if _holders == 0:
                if _restore:
                    gc.enable()
            elif _restore and time.monotonic() - _since > MAX_HELD_S:
                collect = True
                _since = time.monotonic()
        if collect:
            # Another holder is still inside: everything allocated since the pause began is in
            # the youngest generation (nothing collected it), so one young collection finds the
            # cycles made meanwhile. Outside the lock: a finaliser it runs may pause in turn.
            gc.collect(0)


def holders() -> int:
    """How many blocks hold the collector off now (for tests and diagnostics)."""
    return _holders
