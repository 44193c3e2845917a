"""The service's clock, optionally running faster than real time.

Scenario tests and demos compress time (DESIGN §8): a smouldering fire that takes twenty minutes, or
a device declared offline after three missed 30 s heartbeats, plays out in seconds when every
component reads the same scaled clock. In production the scale is 1 and this is `time.time`.
"""

from __future__ import annotations

import time


class ScaledClock:
    """Epoch seconds that advance `scale` times faster than the wall clock, from `origin` on.

    At construction the clock reads the wall time; afterwards `now = origin + scale * elapsed`.
    """

    def __init__(self, scale: float = 1.0, origin: float | None = None) -> None:
        if not scale > 0:
            raise ValueError(f"time scale must be positive, got {scale}")
        self.scale = scale
        self.origin = time.time() if origin is None else origin
        self._wall0 = time.monotonic()

    def __call__(self) -> float:
        return self.origin + (time.monotonic() - self._wall0) * self.scale
