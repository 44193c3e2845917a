"""A message that could not be accepted: kept with its raw bytes and the reason."""

from __future__ import annotations

from dataclasses import dataclass

from core.domain import RejectReason


@dataclass(frozen=True, slots=True)
class Reject:
    received: float
    topic: str
    payload: bytes
    reason: RejectReason
    detail: str
    device_id: str | None = None
