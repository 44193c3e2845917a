"""A device's own alarm, fault and tamper bits map straight to alarms, undelayed.

STANDARDS.md (design rule): a detector's own "fire" bit is an event, not an analog value; no
duration filter, smoothing or fusion may stand between it and the alarm.
"""

from __future__ import annotations

from core.domain import AlarmCategory, DetectorEvent, DetectorEventKind, DeviceEventKind, latches
from device_profiles.schema import Codec, event_alarm_type
from ingest.decode import DeviceEventMsg
from ingest.index import DeviceIndex

DEVICE_RESET = "device.reset"  # the alarm type a device's RESET event carries (it raises nothing)
_RAISES = {
    DeviceEventKind.ALARM,
    DeviceEventKind.FAULT,
    DeviceEventKind.TAMPER,
    DeviceEventKind.SUPERVISORY,
    DeviceEventKind.DISABLED,
    DeviceEventKind.POWER_FAULT,
    DeviceEventKind.UNREGISTERED,
}
_RESET_CLEARS = (DeviceEventKind.FAULT, DeviceEventKind.TAMPER)  # a device of its own, on its reset
_CLEARS = {
    DeviceEventKind.ALARM_CLEAR: DeviceEventKind.ALARM,
    DeviceEventKind.FAULT_CLEAR: DeviceEventKind.FAULT,
    DeviceEventKind.TAMPER_CLEAR: DeviceEventKind.TAMPER,
    DeviceEventKind.SUPERVISORY_CLEAR: DeviceEventKind.SUPERVISORY,
    DeviceEventKind.DISABLED_CLEAR: DeviceEventKind.DISABLED,
    DeviceEventKind.POWER_FAULT_CLEAR: DeviceEventKind.POWER_FAULT,
}


class DeviceEventMapper:
    def __init__(self, index: DeviceIndex) -> None:
        self.index = index

    def map(self, events: list[DeviceEventMsg]) -> list[DetectorEvent]:
        out: list[DetectorEvent] = []
        for e in events:
            profile = self.index.profiles[e.dev]
            detail = " ".join(
                part
                for part in (f"channel {e.channel}" if e.channel else "", f"code {e.code}" if e.code else "")
                if part
            )
            if e.event in _RAISES:
                targets = [(e.event, DetectorEventKind.RAISE)]
            elif e.event in _CLEARS:
                targets = [(_CLEARS[e.event], DetectorEventKind.CLEAR)]
            elif e.event is DeviceEventKind.RESET:
                # The device was reset on site (复位): every latched fire alarm of the device ends (one
                # RESET for the device, whatever raised them), and a device of its own clears its fault
                # and tamper alarms. A fire alarm panel's point keeps them: a panel reset ends fires and
                # linkage, while its faults, disablements (屏蔽) and supervisory states stand until the
                # panel reports them gone (GB/T 26875.3 status words, ingest/gb26875/).
                targets = (
                    []
                    if profile.codec is Codec.GB26875
                    else [
                        (k, DetectorEventKind.CLEAR)
                        for k in _RESET_CLEARS
                        if k in profile.events and not latches(profile.events[k].category)
                    ]
                )
                out.append(
                    DetectorEvent(
                        device_id=e.device_id,
                        alarm_type=DEVICE_RESET,
                        kind=DetectorEventKind.RESET,
                        category=AlarmCategory.FIRE,  # sorted with the fire events, ahead of any re-raise
                        ts=e.ts,
                        detail="device reported reset",
                        basis="the device's own signal, passed through undelayed",
                    )
                )
            else:  # TEST, HEARTBEAT, linkage, delays, operations: in the device's event log, no alarm
                continue
            for source, kind in targets:
                mapping = profile.events.get(source)
                if mapping is None:
                    continue
                out.append(
                    DetectorEvent(
                        device_id=e.device_id,
                        alarm_type=event_alarm_type(source),
                        kind=kind,
                        category=mapping.category,
                        ts=e.ts,
                        value=float(e.code) if e.code is not None else None,
                        channel=e.channel,
                        detail=f"device reported {e.event.value}" + (f" ({detail})" if detail else ""),
                        basis=mapping.basis or "the device's own signal, passed through undelayed",
                    )
                )
        return out
