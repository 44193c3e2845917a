"""A registry change reaches every worker of a cluster (docs/scale.md, "Registry changes").

The shared PostgreSQL holds the cluster's registry whole, numbered by change
(storage/shared_registry.py). The worker whose API makes a change takes the cluster's registry
lock, catches up with the shared registry first (the change is made on the latest), stores the
result as the next version, applies it as a single node does, and says so on the NATS core subject
`fw.registry`. Every other worker, on that notice or on a slow poll of the version (a notice is
not stored: a worker cut off from NATS, or not yet subscribed, misses it), reads the document,
writes its own registry file and applies it the same way (detector state carries over).

The notice goes over the engine connection each worker already holds, not PostgreSQL
LISTEN/NOTIFY: that would need a connection per worker held open outside the pool (and does not
pass a pooler in transaction mode), while the engine connection reconnects to another node by
itself and the live bus already uses it. The notice only wakes the reader; the shared row decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from enum import Enum

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from storage.shared_registry import Head

logger = logging.getLogger(__name__)

SUBJECT = "fw.registry"
# Held (PostgreSQL session advisory lock) while a worker changes the shared registry: changes made
# through two workers' APIs at once are made one after the other, each on the other's result.
REGISTRY_LOCK = 0x66770003


class AtStart(Enum):
    """What a starting worker does with its registry file and the shared registry."""

    SAME = "same"  # they are the same registry
    ADOPT = "adopt"  # the shared one is newer: it replaces the file
    PUBLISH = "publish"  # none is shared yet, or the file was changed since: it becomes the shared one


def at_start(head: Head | None, fingerprint: str, file_changed_at: float | None) -> AtStart:
    """Decide by the shared registry's fingerprint and change time against the file's own and
    its modification time (None: no file, the built-in demo registry). A file written after the
    cluster's last change (a person deployed a new registry file, then restarted the worker) wins;
    otherwise the shared registry does (the worker was down, or behind, while the cluster changed).
    Times are two hosts' clocks: NTP keeps them within far less than a person's edits apart."""
    if head is None:
        return AtStart.PUBLISH
    if head.fingerprint == fingerprint:
        return AtStart.SAME
    if file_changed_at is not None and file_changed_at > head.changed_at:
        return AtStart.PUBLISH
    return AtStart.ADOPT


class RegistryNotices:
    """The `fw.registry` subject: this worker's notices out, other workers' in (`on_notice`, on the
    loop). `announce` may be called from any thread and never blocks or raises: a notice that
    cannot be sent is caught up by the other workers' poll."""

    def __init__(self, nc: Client, worker_id: str, on_notice: Callable[[], None]) -> None:
        self.nc = nc
        self.worker_id = worker_id
        self.on_notice = on_notice
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sub: Subscription | None = None
        self.received = 0  # other workers' notices

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(SUBJECT, cb=self._on_msg)
        self._loop = asyncio.get_running_loop()

    async def stop(self) -> None:
        self._loop = None
        if self._sub is not None:
            with contextlib.suppress(Exception):  # NATS may be gone: nothing to unsubscribe from
                await self._sub.unsubscribe()
            self._sub = None

    def announce(self, head: Head) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        payload = orjson.dumps({"w": self.worker_id, "v": head.version, "f": head.fingerprint})
        with contextlib.suppress(RuntimeError):  # the loop closed in between
            loop.call_soon_threadsafe(lambda: loop.create_task(self._send(payload)))

    async def _send(self, payload: bytes) -> None:
        try:
            await self.nc.publish(SUBJECT, payload)
        except Exception as exc:
            logger.warning("registry notice not sent (%s); the other workers' poll finds the change", exc)

    async def _on_msg(self, msg: Msg) -> None:
        try:
            worker = str(orjson.loads(msg.data)["w"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        if worker != self.worker_id:
            self.received += 1
            self.on_notice()
