"""What the detectors forget after a person's action on an alarm, so a condition that persists raises
it again (when in doubt, alarm).

One rule for the worker that served the request and, with several workers (docs/scale.md), for
the worker that owns the device's partition, which runs its detectors and hears of the transition
on the cluster's live feed: the serving worker's detectors may not hold the device at all.
"""

from __future__ import annotations

from typing import Protocol

from alarms.model import Transition
from core.domain import AlarmAction, AlarmState


class Forgetful(Protocol):
    """What of the detector engine (detectors/engine.py) the rule uses."""

    def forget(self, device_id: str, alarm_type: str) -> None: ...

    def forget_device(self, device_id: str) -> None: ...


def forget_after(engine: Forgetful, t: Transition) -> bool:
    """Make `engine` forget what `t` ended; whether it was a transition that asks for it."""
    device_id, alarm_type = str(t.after["device_id"]), str(t.after["alarm_type"])
    if t.action is AlarmAction.RESET:
        # A person reset (复位) a latched fire alarm: its device's fire and pre-alarm units start
        # afresh, so a condition that persists raises a new alarm.
        engine.forget_device(device_id)
        engine.forget(device_id, alarm_type)
        return True
    if (
        t.action in (AlarmAction.CLEARED, AlarmAction.CLOSED)
        and t.before
        and AlarmState(t.before["state"]).is_active
    ):
        # A person cleared an alarm whose condition may persist: the detector raises it afresh on
        # the next reading rather than stay silent.
        engine.forget(device_id, alarm_type)
        return True
    return False
