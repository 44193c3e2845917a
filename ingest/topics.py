"""The versioned topic scheme `fw/v1/{site}/{device_id}/{kind}` (DESIGN §2)."""

from __future__ import annotations

from enum import StrEnum


class MessageKind(StrEnum):
    TELEMETRY = "telemetry"
    EVENT = "event"
    STATUS = "status"


KINDS: dict[str, MessageKind] = {k.value: k for k in MessageKind}


def subscriptions(prefix: str = "fw/v1") -> list[str]:
    """Topic filters the ingest subscribes to: device messages only, not our own alarm output."""
    return [f"{prefix}/+/+/{kind}" for kind in MessageKind]


def device_topic(site: str, device_id: str, kind: MessageKind, prefix: str = "fw/v1") -> str:
    return f"{prefix}/{site}/{device_id}/{kind}"


def alarms_topic(site: str, prefix: str = "fw/v1") -> str:
    return f"{prefix}/{site}/alarms"


def tickets_topic(site: str, prefix: str = "fw/v1") -> str:
    return f"{prefix}/{site}/tickets"
