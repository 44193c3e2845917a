"""The versioned topic scheme `fw/v1/{site}/{device_id}/{kind}` (DESIGN §2)."""

from __future__ import annotations

from enum import StrEnum


class MessageKind(StrEnum):
    TELEMETRY = "telemetry"
    EVENT = "event"
    STATUS = "status"


KINDS: dict[str, MessageKind] = {k.value: k for k in MessageKind}


OUTPUTS = frozenset(
    {"alarms", "incidents", "tickets"}
)  # fw/v1/{site}/alarms|incidents|tickets: what firewatch itself publishes


def subscriptions(prefix: str = "fw/v1") -> list[str]:
    """Everything under the scheme's prefix, so a device publishing to a malformed topic is rejected
    visibly (bad_topic) instead of vanishing; the decoder skips firewatch's own output topics."""
    return [f"{prefix}/#"]


def device_topic(site: str, device_id: str, kind: MessageKind, prefix: str = "fw/v1") -> str:
    return f"{prefix}/{site}/{device_id}/{kind}"
