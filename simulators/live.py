"""Run a fleet continuously against a clock: the demo's hospital and `firewatch simulate devices`.

Simulated time is the clock's time since the start, so a service and its devices that share a
scaled clock (core/clock.py) stay in step however fast it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from simulators.claims import ClaimWatch
from simulators.fleet import Fleet

TICK_S = 0.05


class LiveFleet:
    def __init__(self, fleet: Fleet, clock: Callable[[], float] = time.time, name: str = "fleet") -> None:
        self.fleet = fleet
        self.name = name  # how it answers a scenario's claim (simulators/claims.py)
        self.clock = clock
        self.origin = clock()
        self._stop = asyncio.Event()

    @property
    def t(self) -> float:
        """Simulated seconds since the start."""
        return self.clock() - self.origin

    @property
    def published(self) -> int:
        return self.fleet.stats.published

    async def run(
        self,
        host: str,
        port: int,
        *,
        duration: float | None = None,
        on_tick: Callable[[LiveFleet], None] | None = None,
    ) -> None:
        """Publish until `duration` simulated seconds pass or stop() is called. Devices a scenario
        run claims (simulators/claims.py) fall quiet here until it releases them."""
        await asyncio.to_thread(self.fleet.connect, host, port)
        watch = ClaimWatch(host, port, self.name)
        await asyncio.to_thread(watch.start)
        self.origin = self.clock()
        try:
            while not self._stop.is_set():
                t = self.t
                claimed, new_runs = watch.claimed()
                if claimed != self.fleet.yielded or new_runs:
                    yielded = self.fleet.yield_to(claimed, t)
                    for run in new_runs:
                        watch.answer(run, yielded)
                self.fleet.step(t, self.origin)
                if on_tick is not None:
                    on_tick(self)
                if duration is not None and t >= duration:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), TICK_S)
        finally:
            await asyncio.to_thread(watch.stop)
            await asyncio.to_thread(self.fleet.close)

    def stop(self) -> None:
        self._stop.set()
