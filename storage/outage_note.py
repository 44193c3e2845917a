"""What a shared count that falls back while PostgreSQL fails says in the log: one warning when the
failures begin and one line when the store answers again, not one per request (a sign-in or a
rate-limited request may come many times a second while the store is out)."""

from __future__ import annotations

import logging
import threading


class OutageNote:
    def __init__(self, logger: logging.Logger, what: str, meanwhile: str) -> None:
        self.logger = logger
        self.what = what  # "the shared sign-in throttle"
        self.meanwhile = meanwhile  # what is done instead while the store fails
        self.failing = False
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            first, self.failing = not self.failing, True
        if first:
            self.logger.warning(
                "%s: PostgreSQL failed (%s); %s until it answers", self.what, exc, self.meanwhile
            )
        else:
            self.logger.debug("%s: PostgreSQL still failing (%s)", self.what, exc)

    def answered(self) -> None:
        if not self.failing:  # the common case: no lock taken
            return
        with self._lock:
            was, self.failing = self.failing, False
        if was:
            self.logger.warning("%s: PostgreSQL answers again; counting in the cluster", self.what)
