"""The service process's C heap (firewatch/memory.py): arenas capped before its threads start, and
memory freed at start-up handed back to the system."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from firewatch.memory import _glibc

glibc_only = pytest.mark.skipif(_glibc() is None, reason="mallopt and malloc_trim are glibc's")

# Every child reads its own resident memory the same way.
_RSS = textwrap.dedent(
    """
    import sys

    def rss_mib():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")
    """
)

# A child process fills the C heap with 2 KiB blocks (above pymalloc's 512 bytes, below malloc's
# mmap threshold, so they come from the heap), frees all but the last (which keeps the heap's top
# in place, so free() alone cannot shrink it), and reports resident memory before and after.
_CHILD = _RSS + textwrap.dedent(
    """
    from firewatch.memory import trim_freed_memory

    blocks = [bytes(2048) for _ in range(100_000)]  # about 200 MiB
    last = blocks[-1]
    del blocks
    freed = rss_mib()
    released = trim_freed_memory()
    print(freed, rss_mib(), released)
    """
)


@glibc_only
def test_memory_freed_in_the_c_heap_is_handed_back_to_the_system() -> None:
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True)
    before, after, released = out.stdout.split()
    assert released == "True"
    assert float(before) - float(after) > 100, out.stdout  # of about 200 MiB freed


@glibc_only
def test_the_arena_cap_is_taken_by_the_c_library() -> None:
    child = "from firewatch.memory import limit_malloc_arenas; print(limit_malloc_arenas())"
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


# A child frees one 1 MiB block (by default glibc then raises its mapping threshold to 1 MiB, so
# later blocks of that size come from the heap), makes 200 more and a 256 KiB block after them (from
# the heap's top by default, so free() cannot shrink the heap past it), frees the 200 and reports
# resident memory before and after.
_LARGE = _RSS + textwrap.dedent(
    """
    from firewatch.memory import limit_malloc_arenas

    if sys.argv[1] == "limited":
        limit_malloc_arenas()
    first = bytearray(1 << 20)
    del first
    blocks = [bytearray(1 << 20) for _ in range(200)]
    pin = bytearray(256 << 10)
    held = rss_mib()
    del blocks
    print(held, rss_mib())
    """
)


@glibc_only
def test_large_blocks_go_back_to_the_system_when_freed_in_a_limited_process() -> None:
    def freed(mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", _LARGE, mode], capture_output=True, text=True, check=True)
        held, after = map(float, out.stdout.split())
        return held - after

    assert freed("limited") > 150  # of 200 MiB
    assert freed("default") < 50  # glibc's own threshold kept them in the heap
