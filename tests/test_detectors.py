"""The detection engine skeleton: thresholds with hysteresis, device events, liveness."""

from __future__ import annotations

import numpy as np
import pytest

from core.domain import AlarmCategory, DetectorEvent, DetectorEventKind, DeviceEventKind
from detectors.device_events import DeviceEventMapper
from detectors.engine import Engine
from detectors.liveness import LivenessWatch
from detectors.samples import Samples
from ingest.decode import DeviceEventMsg
from ingest.index import DeviceIndex
from tests.conftest import PROFILES, small_registry

T0 = 1_800_000_000.0


@pytest.fixture
def index() -> DeviceIndex:
    return DeviceIndex.build(small_registry(), PROFILES)


def samples(index: DeviceIndex, values: list[tuple[str, str, float]]) -> Samples:
    slot = np.array([index.slot(d, c) for d, c, _ in values], dtype=np.int32)
    value = np.array([v for _, _, v in values], dtype=np.float64)
    return Samples(slot, T0 + np.arange(len(values), dtype=np.float64), value)


class ThresholdBank:
    """The engine's threshold bank alone, speaking DetectorEvents."""

    def __init__(self, index: DeviceIndex) -> None:
        self.engine = Engine(index, start=T0)
        self.bank = next(b for b in self.engine.banks if b.name == "threshold")

    def update(self, s: Samples) -> list[DetectorEvent]:
        return self.engine._events(self.bank, self.bank.detector.update(s))


def kinds(events: list[DetectorEvent]) -> list[tuple[str, str, str]]:
    return [(e.device_id, e.alarm_type, e.kind.value) for e in events]


def test_smoke_crossing_both_levels_raises_pre_alarm_and_fire(index: DeviceIndex) -> None:
    bank = ThresholdBank(index)
    events = bank.update(samples(index, [("smk-1-1", "smoke", 0.02), ("smk-1-1", "smoke", 0.2)]))
    assert sorted(kinds(events)) == [
        ("smk-1-1", "smoke.alarm", "raise"),
        ("smk-1-1", "smoke.pre_alarm", "raise"),
    ]
    fire = next(e for e in events if e.alarm_type == "smoke.alarm")
    assert fire.category is AlarmCategory.FIRE
    assert fire.value == 0.2
    assert "GB 4715" in fire.basis


def test_hysteresis_holds_the_alarm_inside_the_clear_band(index: DeviceIndex) -> None:
    bank = ThresholdBank(index)
    bank.update(samples(index, [("smk-1-1", "smoke", 0.2)]))
    held = bank.update(
        samples(index, [("smk-1-1", "smoke", 0.12), ("smk-1-1", "smoke", 0.16), ("smk-1-1", "smoke", 0.11)])
    )
    assert held == []  # 0.11..0.16 never drops below the fire level's clear value 0.10
    cleared = bank.update(samples(index, [("smk-1-1", "smoke", 0.05)]))
    assert sorted(kinds(cleared)) == [
        ("smk-1-1", "smoke.alarm", "clear"),
        ("smk-1-1", "smoke.pre_alarm", "clear"),
    ]


def test_raise_and_clear_in_one_batch_both_reported_in_order(index: DeviceIndex) -> None:
    bank = ThresholdBank(index)
    events = bank.update(
        samples(index, [("smk-1-1", "smoke", 0.3), ("smk-1-1", "smoke", 0.01), ("smk-1-1", "smoke", 0.3)])
    )
    fire = [e.kind for e in events if e.alarm_type == "smoke.alarm"]
    assert fire == [DetectorEventKind.RAISE, DetectorEventKind.CLEAR, DetectorEventKind.RAISE]
    assert bank.engine.is_active("smk-1-1", "smoke.alarm")


def test_below_direction_thresholds_catch_low_pressure(index: DeviceIndex) -> None:
    bank = ThresholdBank(index)
    events = bank.update(samples(index, [("prs-1", "pressure", 0.4), ("prs-1", "pressure", 0.08)]))
    assert kinds(events) == [("prs-1", "pressure.low", "raise")]
    assert events[0].category is AlarmCategory.SUPERVISORY
    assert bank.update(samples(index, [("prs-1", "pressure", 0.11)])) == []  # inside the clear band
    assert kinds(bank.update(samples(index, [("prs-1", "pressure", 0.3)]))) == [
        ("prs-1", "pressure.low", "clear")
    ]


def test_a_batch_gives_the_same_events_as_one_reading_at_a_time(index: DeviceIndex) -> None:
    rng = np.random.default_rng(7)
    devices = [d for d in index.device_ids if d.startswith("smk")]
    values = [
        (str(rng.choice(devices)), "smoke", float(rng.choice([0.01, 0.08, 0.12, 0.2]))) for _ in range(400)
    ]
    batched = ThresholdBank(index).update(samples(index, values))
    single_bank = ThresholdBank(index)
    one_by_one: list[DetectorEvent] = []
    whole = samples(index, values)
    for i in range(len(values)):
        one_by_one += single_bank.update(
            Samples(whole.slot[i : i + 1], whole.ts[i : i + 1], whole.value[i : i + 1])
        )
    key = lambda e: (e.ts, e.device_id, e.alarm_type, e.kind)  # noqa: E731
    assert sorted(batched, key=key) == sorted(one_by_one, key=key)
    assert len(batched) > 10


def test_the_bank_does_not_modify_its_input(index: DeviceIndex) -> None:
    s = samples(index, [("smk-1-1", "smoke", 0.3), ("prs-1", "pressure", 0.01)])
    slot, ts, value = s.slot.copy(), s.ts.copy(), s.value.copy()
    ThresholdBank(index).update(s)
    assert np.array_equal(slot, s.slot)
    assert np.array_equal(ts, s.ts)
    assert np.array_equal(value, s.value)


def test_resume_restores_active_rules_so_a_restart_does_not_raise_again(index: DeviceIndex) -> None:
    bank = ThresholdBank(index)
    bank.engine.resume({("smk-1-1", "smoke.alarm"), ("smk-1-1", "smoke.pre_alarm")})
    assert bank.update(samples(index, [("smk-1-1", "smoke", 0.3)])) == []


def test_device_alarm_bits_pass_straight_through(index: DeviceIndex) -> None:
    mapper = DeviceEventMapper(index)
    dev = index.dev_of["smk-1-1"]
    events = mapper.map(
        [
            DeviceEventMsg(dev, "smk-1-1", T0, DeviceEventKind.ALARM, "smoke", 0),
            DeviceEventMsg(dev, "smk-1-1", T0 + 1, DeviceEventKind.FAULT, None, 7),
            DeviceEventMsg(dev, "smk-1-1", T0 + 2, DeviceEventKind.TEST, None, None),
            DeviceEventMsg(dev, "smk-1-1", T0 + 3, DeviceEventKind.RESET, None, None),
        ]
    )
    assert [(e.alarm_type, e.kind.value, e.category.value) for e in events[:2]] == [
        ("device.alarm", "raise", "fire"),
        ("device.fault", "raise", "fault"),
    ]
    # RESET: the fault clears; the fire alarm bit latches, so the device's reset is passed on as
    # such and ends its latched fire alarms (GB 4717 复位).
    assert {(e.alarm_type, e.kind.value) for e in events[2:]} == {
        ("device.reset", "reset"),
        ("device.fault", "clear"),
    }


def test_a_device_silent_for_k_heartbeats_goes_offline_and_comes_back(index: DeviceIndex) -> None:
    watch = LivenessWatch(index, start=T0)
    dev = np.array([index.dev_of["smk-1-1"]], dtype=np.int32)
    others = np.array([d for d in range(index.n_devices) if d != dev[0]], dtype=np.int32)
    watch.seen(others, np.full(others.size, T0 + 25))
    assert watch.check(T0 + 29) == []  # 3 x 10 s heartbeat not yet exceeded
    offline = watch.check(T0 + 31)
    assert kinds(offline) == [("smk-1-1", "device.offline", "raise")]
    assert watch.check(T0 + 40) == []  # raised once, not every check
    back = watch.seen(dev, np.array([T0 + 41]))
    assert kinds(back) == [("smk-1-1", "device.offline", "clear")]


def test_engine_puts_fire_events_first(index: DeviceIndex) -> None:
    from ingest.decode import Decoder
    from ingest.envelope import Message

    engine = Engine(index, start=T0)
    decoder = Decoder(index)
    batch = decoder.decode(
        [
            Message("fw/v1/s1/prs-1/telemetry", b'{"ts": 1800000000, "seq": 1, "v": {"pressure": 0.01}}', T0),
            Message("fw/v1/s1/smk-1-1/telemetry", b'{"ts": 1800000000, "seq": 1, "v": {"smoke": 0.5}}', T0),
        ],
        T0,
    )
    events = engine.process(batch)
    assert events[0].category is AlarmCategory.FIRE
    assert {e.alarm_type for e in events} == {"pressure.low", "smoke.alarm", "smoke.pre_alarm"}


def test_a_service_starting_gives_every_device_a_fresh_grace_period(index: DeviceIndex) -> None:
    watch = LivenessWatch(index, start=T0)
    watch.grace(T0 + 1000)  # down for 1000 s: nobody knows whether the devices were quiet meanwhile
    assert watch.check(T0 + 1029) == []
    assert len(watch.check(T0 + 1031)) == index.n_devices
