"""What the service's worker processes (the telemetry compactor, the InfluxDB sink's worker) share
about signals.

Ctrl-C in a terminal sends SIGINT to the whole foreground process group, children included. The
service decides when its children stop (and stops them within a bound, docs/architecture.md), so
they ignore SIGINT from the moment they exist: a spawned child takes seconds to import before it
runs any code of ours, and a SIGINT then would end it with a KeyboardInterrupt traceback.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def sigint_ignored_by_children() -> Iterator[None]:
    """Processes started inside inherit SIGINT ignored (an ignored signal stays ignored across exec,
    and Python keeps it so). Only the main thread may change a handler: elsewhere this does nothing,
    and the child ignores SIGINT once its own code runs (`ignore_sigint`). A SIGINT to this process
    while inside (the few milliseconds of a process start) is lost."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def ignore_sigint() -> None:
    """In the child, first thing: in case it was started outside the main thread."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
