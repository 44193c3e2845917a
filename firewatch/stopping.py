"""Bounded stops for the long-running commands, `firewatch serve` and `firewatch demo`.

The first SIGINT or SIGTERM begins a graceful stop and starts a deadline; a second one, or the
deadline passing, ends the process at once: every child process of ours is sent SIGKILL and reaped,
then `os._exit`. So a stop ends within the deadline whatever a child, a thread or the event loop is
stuck in.

The signals are counted by a thread of ours, not by a Python signal handler: a handler runs only
when the main thread gets back to Python code, and a stuck stop is exactly when it may not. The C
level signal handler writes each signal's number to a pipe (`signal.set_wakeup_fd`); the thread
reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Generator
from multiprocessing import resource_tracker
from types import FrameType, TracebackType
from typing import NoReturn, TypeVar

import uvicorn

logger = logging.getLogger(__name__)

STOP_DEADLINE_S = 15.0  # from the first signal (or --duration) to a forced exit
SIGNALS = (signal.SIGINT, signal.SIGTERM)

T = TypeVar("T")


class StopSignals:
    """SIGINT/SIGTERM handling for one command, as a context manager (main thread only).

    `attach(loop, callback)` says how to begin a graceful stop; `begin(reason)` starts the deadline
    for a stop the command began by itself (`--duration`)."""

    def __init__(self, deadline_s: float = STOP_DEADLINE_S) -> None:
        self.deadline_s = deadline_s
        self.requested = threading.Event()  # a stop signal arrived
        self._signals = 0
        self._lock = threading.Lock()
        self._callback: tuple[asyncio.AbstractEventLoop, Callable[[], None]] | None = None
        self._timer: threading.Timer | None = None
        self._old_handlers: dict[int, signal._HANDLER] = {}
        self._old_wakeup_fd = -1
        self._pipe: tuple[int, int] | None = None

    def __enter__(self) -> StopSignals:
        r, w = os.pipe()
        os.set_blocking(w, False)  # set_wakeup_fd requires it: a signal handler must never block
        self._pipe = (r, w)
        self._old_wakeup_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        for sig in SIGNALS:
            # A Python-level handler must be set for the C handler to write the wakeup byte; this one
            # does nothing, so the main thread carries on (and asyncio.run adds no SIGINT handler).
            self._old_handlers[sig] = signal.signal(sig, _ignore)
        threading.Thread(target=self._watch, args=(r,), name="stop-signals", daemon=True).start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        signal.set_wakeup_fd(self._old_wakeup_fd)
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        with self._lock:
            if self._timer is not None:  # the command is done: nothing left to bound
                self._timer.cancel()
            self._callback = None
        if self._pipe is not None:
            os.close(self._pipe[1])  # the watcher reads end-of-file and ends
            self._pipe = None

    def attach(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        """Run `callback` on `loop` at the first signal (at once if one has already come)."""
        with self._lock:
            self._callback = (loop, callback)
            if not self.requested.is_set():
                return
        loop.call_soon_threadsafe(callback)

    def begin(self, reason: str) -> None:
        """A stop has begun: exit by force if the process is still there in `deadline_s`."""
        with self._lock:
            if self._timer is not None:
                return
            logger.info("stopping (%s); a forced exit in %.0f s if not done by then", reason, self.deadline_s)
            self._timer = threading.Timer(self.deadline_s, self._expired, args=(reason,))
            self._timer.daemon = True
            self._timer.start()

    def _watch(self, fd: int) -> None:
        with contextlib.closing(os.fdopen(fd, "rb", buffering=0)) as pipe:
            while data := pipe.read(1):
                sig = data[0]
                if sig not in SIGNALS:
                    continue
                self._signals += 1
                if self._signals > 1:
                    force_exit(128 + sig, f"{signal.Signals(sig).name} again while stopping")
                name = signal.Signals(sig).name
                self.requested.set()
                self.begin(name)
                with self._lock:
                    callback = self._callback
                if callback is not None:
                    with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to tell
                        callback[0].call_soon_threadsafe(callback[1])

    def _expired(self, reason: str) -> None:
        force_exit(1, f"the stop ({reason}) did not finish within {self.deadline_s:.0f} s")


def _ignore(signum: int, frame: FrameType | None) -> None:
    """The Python-level handler: the watcher thread does the work."""


def child_pids() -> list[int]:
    """The pids of this process's children (Linux: from /proc), multiprocessing's resource tracker
    left out: it removes the semaphores a killed child leaves behind, then exits after us."""
    me = os.getpid()
    pids: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:  # no /proc: the multiprocessing children at least
        return [p.pid for p in multiprocessing.active_children() if p.pid is not None]
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # gone meanwhile
            continue
        # `pid (comm) state ppid ...`; comm may hold spaces and parentheses: split after the last ')'.
        fields = stat.rsplit(b")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == me:
            pids.append(int(entry))
    tracker = getattr(resource_tracker._resource_tracker, "_pid", None)  # no public accessor
    return [p for p in pids if p != tracker]


def kill_children() -> list[int]:
    """SIGKILL every child (`child_pids`); returns their pids. Not waited for: the caller exits
    next, and init reaps the orphans (waiting here would let a finishing stop race the exit)."""
    pids = child_pids()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def force_exit(code: int, why: str) -> NoReturn:
    """Kill every child, then end this process at once with `code` (from any thread)."""
    # os.write, not logging: a stuck thread may hold a logging handler's lock.
    with contextlib.suppress(OSError):
        os.write(2, f"firewatch: {why}; killing child processes and exiting\n".encode())
    pids = kill_children()
    with contextlib.suppress(OSError):
        os.write(2, f"firewatch: killed {pids or 'no child processes'}; exit {code}\n".encode())
    os._exit(code)


async def bounded(name: str, step: Callable[[], T], timeout_s: float) -> T | None:
    """Run a blocking stop step in a daemon thread and wait `timeout_s` for it at most: one that is
    stuck is logged and skipped (its thread is left behind and cannot keep the process alive)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
            loop.call_soon_threadsafe(lambda: None if done.done() else outcome())

    def run() -> None:
        try:
            result = step()
        except BaseException as exc:  # handed to the waiting coroutine, which logs it
            settle(functools.partial(done.set_exception, exc))
        else:
            settle(functools.partial(done.set_result, result))

    threading.Thread(target=run, name=f"stop: {name}", daemon=True).start()
    try:
        return await asyncio.wait_for(asyncio.shield(done), max(0.0, timeout_s))
    except TimeoutError:
        logger.error("stopping: %s did not finish within %.1f s; skipped", name, timeout_s)
    except Exception:
        logger.exception("stopping: %s failed; skipped", name)
    return None


async def wait_bounded(name: str, awaitable: Awaitable[T], timeout_s: float) -> None:
    """Await `awaitable` for `timeout_s` at most (then cancel it); log a failure or a timeout."""
    try:
        await asyncio.wait_for(awaitable, max(0.0, timeout_s))
    except TimeoutError:
        logger.error("stopping: %s did not finish within %.1f s; cancelled", name, timeout_s)
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("stopping: %s failed", name)


class ApiServer(uvicorn.Server):
    """uvicorn's server without its own signal handling: `StopSignals` does it (uvicorn's would
    replace ours while serving, and raise the signal again once stopped, killing the process
    before the rest of the stop has run)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield
