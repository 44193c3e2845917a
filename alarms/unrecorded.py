"""Alarms detected while the state store cannot record them: shown at once, recorded later.

No fire alarm may depend on the state store being up at the moment it happens (issue 18). When the
store fails, the pipeline keeps detecting, keeps each batch's alarm events in the local journal
(firewatch/recorder.py records them in order once the store is back) and hands them here, where
they become provisional transitions — `recorded` false, no event or alarm id — for the live
streams, the console and the MQTT alarm topic. Once recorded, the real transitions follow and the
provisional entry is dropped.

Pure bookkeeping: where transitions go is the caller's list of consumers, each of which must
return at once (they run on the pipeline's thread).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from alarms.model import Transition
from core.domain import SEVERITY_OF, AlarmAction, AlarmState, DetectorEvent, DetectorEventKind, latches
from ingest.index import DeviceIndex

logger = logging.getLogger(__name__)

SYSTEM_ACTOR = "firewatch"
UNRECORDED_MAX = 100_000  # keys kept at most; past it the oldest are forgotten (the journal has them)

Consumer = Callable[[list[Transition]], None]


class UnrecordedAlarms:
    """One provisional alarm per (device, alarm type), as the alarm service would keep it."""

    def __init__(self, index: Callable[[], DeviceIndex], clock: Callable[[], float]) -> None:
        self._index = index
        self.clock = clock
        self.consumers: list[Consumer] = []
        self._alarms: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._alarms)

    def add(self, events: Iterable[DetectorEvent]) -> list[Transition]:
        """Show `events` now: each raise as a provisional alarm (a repeat counts an occurrence),
        each clear of a provisional alarm as its clearing. Returns what was published."""
        now = self.clock()
        out: list[Transition] = []
        with self._lock:
            for e in events:
                key = (e.device_id, e.alarm_type)
                before = self._alarms.get(key)
                if e.kind is DetectorEventKind.RAISE:
                    after = self._raised(e, before, now)
                    action = (
                        AlarmAction.RAISED if before is None or not _active(before) else AlarmAction.REPEATED
                    )
                elif e.kind is DetectorEventKind.RESET or latches(e.category):
                    # A fire alarm latches here too (GB 4717): the reading falling back does not end
                    # it, and a reset is applied to the recorded alarms once the store is back.
                    continue
                elif before is not None and _active(before):
                    after = {**before, "state": AlarmState.CLEARED_UNACKNOWLEDGED.value, "cleared_ts": e.ts}
                    action = AlarmAction.CLEARED
                else:
                    continue  # a clear of an alarm the store has: it is recorded in its turn
                self._alarms[key] = after
                out.append(
                    Transition(
                        0,
                        0,
                        action,
                        dict(before) if before else None,
                        after,
                        SYSTEM_ACTOR,
                        now,
                        recorded=False,
                    )
                )
            while len(self._alarms) > UNRECORDED_MAX:
                self._alarms.pop(next(iter(self._alarms)))
        self._publish(out)
        return out

    def recorded(self, events: Iterable[DetectorEvent]) -> None:
        """The store has recorded these events: their provisional alarms are no longer needed."""
        with self._lock:
            for e in events:
                self._alarms.pop((e.device_id, e.alarm_type), None)

    def snapshot(self) -> list[dict[str, Any]]:
        """The provisional alarms, fire first, then newest first."""
        with self._lock:
            alarms = [dict(a) for a in self._alarms.values()]
        alarms.sort(key=lambda a: (a["category"] != "fire", -float(a["last_ts"])))
        return alarms

    def _raised(self, e: DetectorEvent, before: dict[str, Any] | None, now: float) -> dict[str, Any]:
        if before is not None and _active(before):
            peak = before["peak"]
            if e.value is not None:
                peak = e.value if peak is None else max(peak, e.value)
            return {
                **before,
                "occurrences": before["occurrences"] + 1,
                "last_ts": max(before["last_ts"], e.ts),
                "value": e.value,
                "peak": peak,
                "detail": e.detail,
            }
        index = self._index()
        dev = index.dev_of.get(e.device_id)
        device = index.devices[dev] if dev is not None else None
        return {
            "id": None,
            "recorded": False,
            "device_id": e.device_id,
            "alarm_type": e.alarm_type,
            "category": e.category.value,
            "severity": SEVERITY_OF[e.category].value,
            "system": index.profiles[dev].system.value if dev is not None else "",
            "site": index.sites[dev] if dev is not None else str(e.extra.get("site", "")),
            "place": device.place if device is not None else str(e.extra.get("place", "")),
            "department": device.department if device is not None else str(e.extra.get("department", "")),
            "state": AlarmState.ACTIVE_UNACKNOWLEDGED.value,
            "occurrences": 1,
            "first_ts": e.ts,
            "last_ts": e.ts,
            "raised_ts": now,
            "cleared_ts": None,
            "acked_ts": None,
            "acked_by": None,
            "value": e.value,
            "peak": e.value,
            "channel": e.channel,
            "detail": e.detail,
            "basis": e.basis,
        }

    def _publish(self, transitions: list[Transition]) -> None:
        if not transitions:
            return
        for consumer in self.consumers:
            try:
                consumer(transitions)
            except Exception:  # one broken consumer must not keep the alarm from the others
                logger.exception("unrecorded alarm consumer %r failed", consumer)


def _active(alarm: dict[str, Any]) -> bool:
    return AlarmState(alarm["state"]).is_active
