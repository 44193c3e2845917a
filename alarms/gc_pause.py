"""The cyclic garbage collector held off while a bulk alarm write runs.

A batch of detector events makes tens of thousands of short-lived containers (snapshots, log rows,
parameter tuples, ORM state) that reference counting frees, and keeps a few thousand alive until its
end (the batch's index). While it runs, the cyclic collector's young collections keep scanning what
the batch holds and its full collections scan the whole heap, and they find nothing to free: with
`bench.alarm_burst` that was 10–20 % of the CPU per transition (gc callbacks: three full collections
of about 70 ms each in a run, and some 600 young ones). Held off for the batch, the collector runs
again at the first allocation after it, over what is still alive then. A batch is bounded (one drain
batch of events), so what waits for the collector meanwhile is too. Start-up does the same
(firewatch/service.py).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic collection inside the block; afterwards the collector is as it was (left off if
    something else had turned it off)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
