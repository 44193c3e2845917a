"""The C heap of a long-running service process: fewer malloc arenas, freed memory handed back.

A service holding a million devices makes most of its memory at start-up (registry, index,
detector state) and then runs a handful of threads (the detection and storage hand-offs, the
alarm writer, the dispatcher) that each allocate and free batch-sized buffers. glibc gives a
thread that finds the main heap busy an arena of its own, up to eight per core, and an arena's
freed memory stays in the process; and glibc maps a large block on its own only until one is
freed, after which it raises that size to the freed block's, so later large blocks come from the
heap and stay there. At 1,001,255 devices, after every device reported twice, the service held
2,279 MiB with glibc's defaults and 1,923 MiB with two arenas, a fixed mapping threshold and the
heap trimmed after start-up (docs/benchmarks.md, "Registry at scale"; decision 0010 item 13).

Only glibc has these calls; elsewhere (musl, macOS) both functions do nothing and say so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

logger = logging.getLogger(__name__)

# glibc's malloc.h: mallopt's parameter numbers for the most arenas malloc may create, and for
# the size from which a block is its own mapping (unmapped, so returned, when freed).
_M_ARENA_MAX = -8
_M_MMAP_THRESHOLD = -3
# Two arenas: the main thread's heap and one the worker threads share. One would make every
# worker wait on the main heap's lock; the workers' allocations are per batch, not per message.
ARENAS = 2


@functools.cache  # find_library asks ldconfig in a child process: once per process is enough
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
        return None
    return libc


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap the arenas malloc makes for threads from now on; True if the C library took it. Call it
    before the service starts its threads (arenas made earlier stay)."""
    libc = _glibc()
    if libc is None:
        logger.debug("malloc arenas not limited: not glibc")
        return False
    # glibc raises the mapping threshold each time a mapped block is freed (up to 32 MiB), after
    # which freed large blocks (a start-up column, a sync's list) stay in the heap; fixed at its
    # initial 128 KiB they go back to the system when freed. Batch-sized arrays are smaller.
    mapped = libc.mallopt(ctypes.c_int(_M_MMAP_THRESHOLD), ctypes.c_int(128 * 1024))
    return bool(libc.mallopt(ctypes.c_int(_M_ARENA_MAX), ctypes.c_int(arenas))) and bool(mapped)


def trim_freed_memory() -> bool:
    """Hand the C heap's free pages back to the system (every arena's, not only the top of the
    main heap); True if any memory was released. It walks the heap holding each arena's lock in
    turn, so it is called once start-up is over, not on the alarm path."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.malloc_trim(ctypes.c_size_t(0)))
