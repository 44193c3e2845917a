"""The detection engine: every detector bank over the whole registry, one batch at a time."""

from __future__ import annotations

from core.domain import AlarmCategory, DetectorEvent
from detectors.device_events import DeviceEventMapper
from detectors.liveness import OFFLINE, LivenessWatch
from detectors.samples import Samples
from detectors.threshold import ThresholdBank
from ingest.decode import DecodedBatch
from ingest.index import DeviceIndex


class Engine:
    def __init__(self, index: DeviceIndex, *, start: float) -> None:
        self.index = index
        self.threshold = ThresholdBank(index)
        self.liveness = LivenessWatch(index, start)
        self.device_events = DeviceEventMapper(index)

    def process(self, batch: DecodedBatch) -> list[DetectorEvent]:
        """Events for one decoded batch, fire-category events first so nothing queues ahead of them."""
        events = self.device_events.map(batch.events)
        events += self.threshold.update(Samples(batch.sample_slot, batch.sample_ts, batch.sample_value))
        events += self.liveness.seen(batch.seen_dev, batch.seen_at)
        events.sort(key=lambda e: e.category is not AlarmCategory.FIRE)
        return events

    def check(self, now: float) -> list[DetectorEvent]:
        """Time-driven checks (liveness), run on a timer independent of traffic."""
        return self.liveness.check(now)

    def resume(self, active: set[tuple[str, str]]) -> None:
        """Warm start from the alarms that are still active in the state store."""
        self.threshold.restore_active(active)
        self.liveness.restore_offline({device for device, alarm_type in active if alarm_type == OFFLINE})

    def forget(self, device_id: str, alarm_type: str) -> None:
        """Drop the active state behind an alarm a person cleared, so a persisting condition re-raises."""
        if alarm_type == OFFLINE:
            dev = self.index.dev_of.get(device_id)
            if dev is not None:
                self.liveness.offline[dev] = False
            return
        self.threshold.forget(device_id, alarm_type)
