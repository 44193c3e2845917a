"""A one-thread worker that can never hold up the process's exit.

Writes and queries to the state store run on such a worker when the caller waits for them only so
long (the alarm path, readiness, metrics): a store that hangs leaves the call stuck in its thread,
and a `ThreadPoolExecutor` thread stuck there would keep the interpreter from exiting after a stop
(it joins its threads at exit). This thread is a daemon: the process ends whatever it is stuck in.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class DaemonWorker:
    """Runs submitted calls one at a time, in order, on a daemon thread of its own."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, call: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._calls.put((future, lambda: call(*args)))
        return future

    def shutdown(self) -> None:
        """No more calls: the thread ends after those queued (a stuck one never ends it)."""
        self._calls.put(None)

    def _run(self) -> None:
        while (item := self._calls.get()) is not None:
            future, call = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:  # handed to whoever waits for it
                future.set_exception(exc)
