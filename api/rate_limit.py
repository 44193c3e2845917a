"""A per-address limit on anonymous submissions (the staff hazard report): at most `limit` in any
`window_s`, then 429 with the seconds to wait. Kept in memory like the sign-in throttle
(accounts/throttle.py): a restart forgets it, and the remembered addresses are bounded."""

from __future__ import annotations

import threading
from collections import deque

MAX_ADDRESSES = 10_000


class RateLimit:
    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def wait_s(self, address: str, now: float) -> float:
        """0 and the submission is counted; otherwise the seconds until one more is allowed."""
        with self._lock:
            times = self._seen.setdefault(address, deque())
            while times and times[0] <= now - self.window_s:
                times.popleft()
            if len(times) >= self.limit:
                return times[0] + self.window_s - now
            times.append(now)
            if len(self._seen) > MAX_ADDRESSES:  # forget the addresses with nothing recent
                for key in [k for k, v in self._seen.items() if not v or v[-1] <= now - self.window_s]:
                    del self._seen[key]
            return 0.0
