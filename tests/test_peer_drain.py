"""bench.peer_drain on a tiny backlog: the datasets are what they claim, the publisher and the
measuring work, and each consumer drains everything. No rates are asserted (never timed tests)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import node_red
from bench.peer_backlog import (
    FIRE_AT,
    PRE_ALARM_AT,
    SITE,
    make_backlog,
    raises,
)
from bench.peer_drain import ratios, run_benchmark
from bench.proc_usage import Usage
from core.settings import IngestSettings
from ingest.topics import MessageKind, device_topic


def test_crossings_cross_the_fire_level_three_times_per_device() -> None:
    backlog = make_backlog("crossings", devices=40, messages=8000)
    assert [raises(backlog.smoke[d]) for d in range(40)] == [3] * 40
    assert raises(np.array([0.02, 0.16, 0.12, 0.16, 0.09, 0.2, 0.02])) == 2  # hysteresis: 0.12 holds it


def test_quiet_stays_well_below_the_pre_alarm_level() -> None:
    backlog = make_backlog("quiet", devices=40, messages=8000)
    assert backlog.smoke.max() < PRE_ALARM_AT < FIRE_AT
    assert all(raises(backlog.smoke[d], at=PRE_ALARM_AT, clear=0.05) == 0 for d in range(40))


def test_messages_are_firewatch_envelopes_in_time_order() -> None:
    backlog = make_backlog("crossings", devices=5, messages=50)
    messages = backlog.messages()
    assert len(messages) == 50
    topic, payload = messages[6]  # the second reading of the second device
    assert topic.decode() == device_topic(SITE, "d000001", MessageKind.TELEMETRY)
    body = json.loads(payload)
    assert body["seq"] == 2
    assert set(body["v"]) == {"smoke", "temp"}
    stamps = [json.loads(p)["ts"] for _t, p in messages]
    assert stamps == sorted(stamps)
    assert stamps[0] > 0
    assert stamps[-1] - stamps[0] < IngestSettings().max_past_s


def test_cpu_between_interpolates_the_samples() -> None:
    usage = Usage(started=0.0, ended=4.0, returncode=0, cpu_s=4.0, peak_rss_mib=1.0, samples=[(1.0, 0.5)])
    assert usage.cpu_between(1.0, 4.0) == pytest.approx(3.5)
    assert usage.cpu_between(0.5, 2.5) == pytest.approx(0.25 + 1.75)


@pytest.mark.integration
def test_raw_and_firewatch_drain_a_tiny_backlog() -> None:
    runs = run_benchmark(messages=1000, devices=50, rounds=1, consumers=("firewatch", "raw"))
    assert {(r.consumer, r.dataset) for r in runs} == {
        (c, d) for c in ("firewatch", "raw") for d in ("crossings", "quiet")
    }
    for run in runs:
        assert run.messages == 1000
        assert run.seconds > 0
        assert run.cpu_s > 0
        assert run.peak_rss_mib > 0
        assert 0 <= run.drain_cpu_s <= run.cpu_s + 0.05
    fw = {r.dataset: r.details for r in runs if r.consumer == "firewatch"}
    assert fw["quiet"]["acked"] == 1000
    assert fw["quiet"]["stored_samples"] == 2000
    assert fw["quiet"]["transitions"] == 0
    transitions = fw["crossings"]["transitions"]
    assert isinstance(transitions, int)
    assert transitions > 0  # firewatch saw the fire levels
    assert len(ratios(runs, "crossings", "raw")) == 1


@pytest.mark.integration
@pytest.mark.skipif(
    node_red.installed_version() is None,
    reason="Node-RED is not installed: `python -m bench.peer_drain` installs it (tests never do)",
)
def test_node_red_drains_a_tiny_backlog() -> None:
    runs = run_benchmark(
        messages=1000, devices=50, rounds=1, consumers=("node-red",), datasets=("crossings",)
    )
    assert len(runs) == 1
    assert runs[0].seconds > 0
    assert runs[0].peak_rss_mib > 0
