"""CPU time and peak memory of a child process and everything it starts (Linux /proc and wait4).

`run_measured` starts a command, samples the CPU time of its process tree every `every` seconds
(so the CPU spent between two instants, e.g. a drain's first and last message, can be read off),
and reaps it with wait4, whose rusage holds the whole run's CPU time including the children it
reaped, and its peak resident set.
"""

from __future__ import annotations

import bisect
import os
import resource
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process plus its reaped children), None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and brackets
    # fields[1] ppid; [11] utime, [12] stime, [13] cutime, [14] cstime (proc(5), counted from state)
    return int(fields[1]), sum(int(f) for f in fields[11:15]) * TICK_S


def descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            parents.setdefault(st[0], []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        out.extend(children)
        todo.extend(children)
    return out


@dataclass
class Usage:
    started: float  # epoch seconds, just before the process was started
    ended: float  # epoch seconds, when it was reaped
    returncode: int
    cpu_s: float  # user + system CPU of the whole run, reaped children included
    peak_rss_mib: float
    samples: list[tuple[float, float]] = field(default_factory=list)  # (epoch s, tree CPU s so far)

    def cpu_between(self, t0: float, t1: float) -> float:
        """CPU seconds the process tree spent between epoch instants t0 and t1 (interpolated)."""
        return self._cpu_at(t1) - self._cpu_at(t0)

    def _cpu_at(self, t: float) -> float:
        points = [(self.started, 0.0), *self.samples, (self.ended, self.cpu_s)]
        times = [p[0] for p in points]
        i = bisect.bisect_left(times, t)
        if i <= 0:
            return 0.0
        if i >= len(points):
            return self.cpu_s
        (ta, ca), (tb, cb) = points[i - 1], points[i]
        return ca if tb <= ta else ca + (cb - ca) * (t - ta) / (tb - ta)


def run_measured(
    cmd: list[str],
    *,
    timeout: float,
    done: Callable[[], bool] | None = None,
    stdout: IO[bytes] | int | None = subprocess.DEVNULL,
    stderr: IO[bytes] | int | None = subprocess.DEVNULL,
    env: dict[str, str] | None = None,
    every: float = 0.1,
) -> Usage:
    """Run `cmd` until it exits, or, with `done`, until `done()` is true, then SIGTERM it.
    TimeoutError (after killing it) when neither happens within `timeout` seconds."""
    started = time.time()
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, env=env)
    reaped: list[tuple[float, int, resource.struct_rusage]] = []
    exited = threading.Event()

    def reap() -> None:
        _pid, status, rusage = os.wait4(proc.pid, 0)
        reaped.append((time.time(), status, rusage))
        exited.set()

    reaper = threading.Thread(target=reap, name="reaper", daemon=True)
    reaper.start()
    samples: list[tuple[float, float]] = []
    tree: list[int] = []
    refreshed = 0.0
    deadline = time.monotonic() + timeout
    timed_out = False
    while not exited.wait(every):
        now = time.monotonic()
        if now - refreshed > 1.0:  # children come and go rarely; scanning /proc is not free
            tree, refreshed = [proc.pid, *descendants(proc.pid)], now
        stats = [_stat(p) for p in tree]
        t = time.time()
        if stats[0] is not None and not exited.is_set():
            samples.append((t, sum(s[1] for s in stats if s is not None)))
        if done is not None and done():
            proc.terminate()
            done = None
        elif now > deadline and not timed_out:
            timed_out = True
            proc.kill()
    reaper.join()
    ended, status, rusage = reaped[0]
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
    if timed_out:
        raise TimeoutError(f"{cmd[0]} did not finish within {timeout:.0f} s")
    return Usage(
        started=started,
        ended=ended,
        returncode=proc.returncode,
        cpu_s=rusage.ru_utime + rusage.ru_stime,
        peak_rss_mib=rusage.ru_maxrss / 1024,  # KiB on Linux
        samples=samples,
    )
