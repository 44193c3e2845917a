"""What the local journal holds (storage/telemetry.py `journal`), encoded and decoded.

Entries are written in the transaction that stores their batch's telemetry and de-duplication state,
so once a batch is acknowledged its alarm events and rejects are durable even though the state store
has not taken them yet. JSON (orjson), with raw payloads as base64: readable with sqlite3 by hand.
"""

from __future__ import annotations

import base64
from enum import StrEnum
from typing import Any

import orjson

from core.domain import AlarmCategory, DetectorEvent, DetectorEventKind
from storage.rejects import RejectRecord


class EntryKind(StrEnum):
    EVENTS = "events"  # detector events for the alarm service, in detection order
    REJECTS = "rejects"  # rejected messages and unregistered devices for the reject store


def encode_events(events: list[DetectorEvent]) -> bytes:
    return orjson.dumps(
        [
            {
                "device_id": e.device_id,
                "alarm_type": e.alarm_type,
                "kind": e.kind.value,
                "category": e.category.value,
                "ts": e.ts,
                "value": e.value,
                "channel": e.channel,
                "detail": e.detail,
                "basis": e.basis,
                "extra": e.extra,
                "members": e.members,
            }
            for e in events
        ]
    )


def decode_events(body: bytes) -> list[DetectorEvent]:
    out = []
    for d in orjson.loads(body):
        out.append(
            DetectorEvent(
                device_id=d["device_id"],
                alarm_type=d["alarm_type"],
                kind=DetectorEventKind(d["kind"]),
                category=AlarmCategory(d["category"]),
                ts=d["ts"],
                value=d["value"],
                channel=d["channel"],
                detail=d["detail"],
                basis=d["basis"],
                extra=d["extra"],
                members=tuple(d.get("members", ())),  # journals written before outages listed them
            )
        )
    return out


def encode_rejects(rejects: list[RejectRecord], unknown: list[tuple[str, str, float]]) -> bytes:
    return orjson.dumps(
        {
            "rejects": [
                {
                    "received": r.received,
                    "topic": r.topic,
                    "payload": base64.b64encode(r.payload).decode(),
                    "reason": r.reason,
                    "detail": r.detail,
                    "device_id": r.device_id,
                }
                for r in rejects
            ],
            "unknown": unknown,
        }
    )


def decode_rejects(body: bytes) -> tuple[list[RejectRecord], list[tuple[str, str, float]]]:
    d: dict[str, Any] = orjson.loads(body)
    rejects = [
        RejectRecord(
            r["received"],
            r["topic"],
            base64.b64decode(r["payload"]),
            r["reason"],
            r["detail"],
            r["device_id"],
        )
        for r in d["rejects"]
    ]
    return rejects, [(site, dev, float(seen)) for site, dev, seen in d["unknown"]]
