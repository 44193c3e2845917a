"""The InfluxDB sink's fault alarm: raised while writes have failed for `influx.alarm_after_s`,
cleared once one succeeds (docs/influx.md)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from core.domain import AlarmCategory, DetectorEvent, DetectorEventKind

if TYPE_CHECKING:
    from storage.influx import SinkStatus


ALARM_KEY = "service:influx"  # the fault alarm's key: not a device, like "ticket:YH-..."
ALARM_TYPE = "influx.write_failing"


class SinkAlarm:
    """A FAULT alarm while writes have failed for longer than `after_s`, cleared once one succeeds.

    Its key is not a device: like the overdue-ticket alarms it says where it belongs in `extra`
    (the registry's site when there is one, else none: the sink serves every site)."""

    def __init__(self, *, after_s: float, url: str, site: str, place: str, active: bool) -> None:
        self.after_s = after_s
        self.url = url
        self.site = site
        self.place = place
        self.active = active  # as in the alarm store (an alarm left active by a previous run counts)

    def decide(self, status: SinkStatus, wall_now: float, ts: float) -> DetectorEvent | None:
        """The event to apply now, if any (then call `applied`)."""
        since = status.failing_since
        if since is not None and not self.active and wall_now - since >= self.after_s:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
            detail = (
                f"InfluxDB 写入失败 / writes to {self.url} failing since {when} "
                f"({wall_now - since:.0f} s): {status.last_error} — {status.buffered} points buffered, "
                f"{status.dropped_total} dropped so far. Alarms and the local telemetry store are not "
                "affected; Grafana's InfluxDB data is."
            )
            return DetectorEvent(
                device_id=ALARM_KEY,
                alarm_type=ALARM_TYPE,
                kind=DetectorEventKind.RAISE,
                category=AlarmCategory.FAULT,
                ts=ts,
                detail=detail,
                basis="influx.alarm_after_s",
                extra={"site": self.site, "place": self.place},
            )
        if since is None and self.active:
            return clear_event(ts)
        return None

    def applied(self, event: DetectorEvent) -> None:
        self.active = event.kind is DetectorEventKind.RAISE


def clear_event(ts: float) -> DetectorEvent:
    return DetectorEvent(
        device_id=ALARM_KEY,
        alarm_type=ALARM_TYPE,
        kind=DetectorEventKind.CLEAR,
        category=AlarmCategory.FAULT,
        ts=ts,
    )


def registry_site(sites: Iterable[str]) -> tuple[str, str]:
    """(site, place) for the fault alarm: the registry's site when it has exactly one."""
    distinct = sorted(set(sites))
    return (distinct[0], distinct[0]) if len(distinct) == 1 else ("", "")
