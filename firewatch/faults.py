"""Which failures mean "a dependency is unavailable" (wait and retry) rather than "this input is
bad" (isolate it), and the service's own fault alarms for conditions a control room must see."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from core.domain import AlarmCategory, DetectorEvent, DetectorEventKind
from storage.unavailable import is_unavailable as is_unavailable  # re-exported: the service names it here

SERVICE_KEY = "service:ingest"  # the key of the pipeline's fault alarms: not a device


def fault_key(worker_id: str | None = None) -> str:
    """The key of a service's own fault alarms: `service:ingest` on one node; with several workers
    on one database (docs/scale.md), each worker's own (`service:ingest:<worker id>`). One key for
    all would make worker A's clear end the alarm worker B still raises, and B's raise a mere repeat
    of A's; the alarms of the keys still join one fault incident (alarms/incidents.py)."""
    return SERVICE_KEY if worker_id is None else f"{SERVICE_KEY}:{worker_id}"


class Condition(StrEnum):
    """What makes the service unready (`/readyz`) and raises a fault alarm while it lasts."""

    STORAGE_FAILING = "ingest.storage_failing"  # the state store refuses or cannot be reached
    UNACKED_BACKLOG = "ingest.unacked_backlog"  # a received message has waited too long for its ack
    STALLED = "ingest.stalled"  # messages wait, but no batch has gone through for a while
    BROKER_DOWN = "ingest.broker_down"  # the MQTT connection has been down for a while


DETAIL = {
    Condition.STORAGE_FAILING: "状态库不可用 / the state store is failing",
    Condition.UNACKED_BACKLOG: "消息确认积压 / received messages wait too long for their acknowledgement",
    Condition.STALLED: "接入停滞 / ingest has stalled",
    Condition.BROKER_DOWN: "MQTT 代理连接中断 / the MQTT broker connection is down",
}


@dataclass(frozen=True)
class Finding:
    condition: Condition
    why: str  # for /readyz and the alarm's detail


class FaultAlarms:
    """Turn the conditions found at each check into fault alarm raises and clears (one alarm per
    condition, keyed `key`: `fault_key`), raising each once and clearing it once it is gone."""

    def __init__(self, *, site: str, place: str, active: Iterable[str] = (), key: str = SERVICE_KEY) -> None:
        self.site = site
        self.place = place
        self.key = key
        self.active: set[str] = set(active)

    def decide(self, findings: list[Finding], ts: float) -> list[DetectorEvent]:
        now = {f.condition.value: f for f in findings}
        events = []
        for cond, f in now.items():
            if cond not in self.active:
                events.append(
                    DetectorEvent(
                        device_id=self.key,
                        alarm_type=cond,
                        kind=DetectorEventKind.RAISE,
                        category=AlarmCategory.FAULT,
                        ts=ts,
                        detail=f"{DETAIL[f.condition]}: {f.why}",
                        basis="docs/reliability.md",
                        extra={"site": self.site, "place": self.place},
                    )
                )
        for cond in sorted(self.active - now.keys()):
            events.append(
                DetectorEvent(
                    device_id=self.key,
                    alarm_type=cond,
                    kind=DetectorEventKind.CLEAR,
                    category=AlarmCategory.FAULT,
                    ts=ts,
                )
            )
        return events

    def applied(self, events: list[DetectorEvent]) -> None:
        for e in events:
            if e.kind is DetectorEventKind.RAISE:
                self.active.add(e.alarm_type)
            else:
                self.active.discard(e.alarm_type)
