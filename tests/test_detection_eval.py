"""The detection scoring harness: false alarms before ignition, delay after it, fire-out respected."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from bench.detection_eval import fixed_temperature, rate_of_rise, score
from bench.fsri import DATASET, Experiment, load_experiment


def synthetic(temps: Sequence[float], start: float = -5.0, fire_out: float = float("inf")) -> Experiment:
    time = np.arange(start, start + len(temps), dtype=np.float64)
    ceiling = np.repeat(np.array(temps, dtype=np.float64)[:, None], 4, axis=1)
    return Experiment("synthetic", "test", time, ceiling, fire_out)


def test_fixed_temperature_alarms_at_the_first_reading_past_the_limit() -> None:
    s = score(synthetic([20, 20, 20, 20, 20, 30, 50, 58, 70]), fixed_temperature(57.0))
    assert not s.false_alarm
    assert s.delay == 2.0


def test_an_alarm_before_ignition_is_a_false_alarm() -> None:
    assert score(synthetic([60, 20, 20, 20, 20, 20]), fixed_temperature(57.0)).false_alarm


def test_alarms_after_the_fire_is_out_do_not_count_as_detection() -> None:
    s = score(synthetic([20] * 5 + [20, 20, 90], fire_out=2.0), fixed_temperature(57.0))
    assert s.delay is None


def test_rate_of_rise_needs_a_sustained_rise_not_one_noisy_step() -> None:
    slow = [20.0 + 0.1 * i for i in range(200)]  # 6 °C/min: below 8.3
    fast = [20.0] * 70 + [20.0 + 0.2 * i for i in range(130)]  # 12 °C/min from t=65
    assert score(synthetic(slow, start=-70), rate_of_rise()).delay is None
    delay = score(synthetic(fast, start=-70), rate_of_rise()).delay
    assert delay is not None
    assert 0 < delay < 60


@pytest.mark.skipif(
    not (DATASET / "data").is_dir(), reason="the shared datasets are not beside this checkout"
)
def test_a_real_chair_fire_loads_with_its_ceiling_thermocouples_and_ignition_at_zero() -> None:
    exp = load_experiment(DATASET / "data" / "RedAccent_Closed_Back_1.csv")
    assert exp.fuel == "RedAccent"
    assert exp.ceiling.shape[1] == 4
    assert exp.time.min() < 0 < exp.time.max()


def test_firewatch_is_scored_through_the_live_engine_on_the_same_channels() -> None:
    from bench.detection_eval import firewatch

    quiet = [21.0 + 0.05 * (i % 3) for i in range(120)]
    rising = [21.0 + max(0, i - 120) * 0.1 for i in range(120, 300)]  # 6 °C/min from ignition
    s = score(synthetic(quiet + rising, start=-120.0), firewatch())
    assert not s.false_alarm
    assert s.delay is not None
    assert s.delay <= 60.0
    # The classic 8.3 °C/min element never sees a 6 °C/min fire at all.
    assert score(synthetic(quiet + rising, start=-120.0), rate_of_rise()).delay is None
