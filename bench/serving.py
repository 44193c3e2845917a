"""The API of a service object served by uvicorn on a free loopback port, in a thread, for benchmarks
that measure over real HTTP."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import uvicorn

from api.app import create_app
from api.context import AppContext
from firewatch.broker import free_port, wait_for_port


@contextlib.contextmanager
def serving(ctx: AppContext) -> Iterator[str]:
    """Yield the base URL while the app over `ctx` is served; the caller owns the service's
    lifecycle (`ctx.start`/`ctx.stop` are not run)."""
    ctx.start = ctx.stop = None
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(ctx), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port("127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
