"""Multi-level thresholds with a clear band (hysteresis), vectorised over every slot of the registry.

Each level of each threshold detector of each device is a *rule* with its own on/clear values and
state. A batch is expanded to (rule, sample) pairs, ordered by rule then arrival, and each rule's
state sequence is resolved at once: a sample at or past `on` sets the rule, one back past `clear`
resets it, anything between holds the previous state (a forward fill). Only the rare transitions
reach Python, as DetectorEvents.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.domain import AlarmCategory, DetectorEvent, DetectorEventKind
from detectors.samples import Samples, group_starts
from device_profiles.schema import Direction, ThresholdDetector
from ingest.index import DeviceIndex


@dataclass(frozen=True)
class RuleInfo:
    device_id: str
    alarm_type: str
    category: AlarmCategory
    channel: str
    basis: str
    detail: str


class ThresholdBank:
    def __init__(self, index: DeviceIndex) -> None:
        dev_rule_slot: list[int] = []
        sign: list[float] = []
        on: list[float] = []
        clear: list[float] = []
        self.info: list[RuleInfo] = []
        for dev, profile in enumerate(index.profiles):
            for det in profile.detectors:
                if not isinstance(det, ThresholdDetector):
                    continue  # type: ignore[unreachable]  # the union grows with the detector set
                slot = int(index.slot_base[dev]) + index.channel_offsets[dev][det.channel]
                unit = profile.channels[det.channel].unit
                s = 1.0 if det.direction is Direction.ABOVE else -1.0
                for level in det.levels:
                    dev_rule_slot.append(slot)
                    sign.append(s)
                    on.append(level.at * s)
                    clear.append(level.clear * s)
                    cmp = ">=" if s > 0 else "<="
                    self.info.append(
                        RuleInfo(
                            device_id=index.device_ids[dev],
                            alarm_type=f"{det.channel}.{level.name}",
                            category=level.category,
                            channel=det.channel,
                            basis=level.basis,
                            detail=f"{det.channel} {cmp} {level.at:g} {unit} (clears past {level.clear:g})",
                        )
                    )
        rule_slot = np.array(dev_rule_slot, dtype=np.int32)
        # Rules are created slot by slot, so each slot's rules are contiguous: a CSR layout.
        order = np.argsort(rule_slot, kind="stable")
        self.rule_slot = rule_slot[order]
        self.sign = np.array(sign, dtype=np.float64)[order]
        self.on = np.array(on, dtype=np.float64)[order]
        self.clear = np.array(clear, dtype=np.float64)[order]
        self.info = [self.info[i] for i in order.tolist()]
        self.slot_count = np.bincount(self.rule_slot, minlength=index.n_slots).astype(np.int32)
        self.slot_start = (np.cumsum(self.slot_count) - self.slot_count).astype(np.int32)
        self.active = np.zeros(self.rule_slot.size, dtype=bool)
        self._key = {(r.device_id, r.alarm_type): i for i, r in enumerate(self.info)}

    @property
    def n_rules(self) -> int:
        return int(self.rule_slot.size)

    def update(self, s: Samples) -> list[DetectorEvent]:
        if not len(s) or not self.n_rules:
            return []
        count = self.slot_count[s.slot]
        total = int(count.sum())
        if not total:
            return []
        rep = np.repeat(np.arange(len(s)), count)
        within = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
        rule = self.slot_start[s.slot[rep]] + within
        order = np.argsort(rule, kind="stable")  # by rule, arrival order kept within a rule
        rule = rule[order]
        rep = rep[order]
        x = s.value[rep] * self.sign[rule]
        code = np.where(x >= self.on[rule], 1, np.where(x < self.clear[rule], 0, -1)).astype(np.int8)

        new, start = group_starts(rule)
        n = rule.size
        last = np.maximum.accumulate(np.where(code >= 0, np.arange(n), -1))
        init = self.active[rule]
        after = np.where(last >= start, code[np.maximum(last, 0)] == 1, init)
        before = np.empty(n, dtype=bool)
        before[0] = init[0]
        before[1:] = after[:-1]
        before[new] = init[new]

        ends = np.flatnonzero(np.append(new[1:], True))
        self.active[rule[ends]] = after[ends]

        events: list[DetectorEvent] = []
        for i in np.flatnonzero(after != before).tolist():
            r = int(rule[i])
            info = self.info[r]
            j = int(rep[i])
            events.append(
                DetectorEvent(
                    device_id=info.device_id,
                    alarm_type=info.alarm_type,
                    kind=DetectorEventKind.RAISE if after[i] else DetectorEventKind.CLEAR,
                    category=info.category,
                    ts=float(s.ts[j]),
                    value=float(s.value[j]),
                    channel=info.channel,
                    detail=info.detail,
                    basis=info.basis,
                )
            )
        return events

    def restore_active(self, keys: set[tuple[str, str]]) -> None:
        """Resume from the state store: the rules whose alarms are active start active."""
        self.active[:] = False
        for key in keys:
            rule = self._key.get(key)
            if rule is not None:
                self.active[rule] = True

    def forget(self, device_id: str, alarm_type: str) -> None:
        rule = self._key.get((device_id, alarm_type))
        if rule is not None:
            self.active[rule] = False

    def snapshot(self) -> dict[str, npt.NDArray[np.bool_]]:
        return {"active": self.active.copy()}

    def restore(self, state: dict[str, npt.NDArray[np.bool_]]) -> None:
        if state["active"].shape != self.active.shape:
            raise ValueError("threshold snapshot does not match this registry")
        self.active[:] = state["active"]
