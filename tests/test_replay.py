"""`firewatch replay`: a recorded CSV through the live detectors and alarm logic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bench.fsri import DATASET
from firewatch.cli import app
from firewatch.replay import ReplayError, load_spec, replay

SPEC = """
time_column: t
devices:
  - id: heat-1
    profile: heat-a1r
    zone: ward
    channels:
      temp: {column: T1}
  - id: heat-2
    profile: heat-a1r
    zone: ward
    channels:
      temp: {column: T2_F, scale: 0.5555555556, offset: -17.7777777778}   # recorded in °F
"""


def write_case(tmp_path: Path, rows: list[str], spec: str = SPEC) -> tuple[Path, Path]:
    data = tmp_path / "fire.csv"
    data.write_text("t,T1,T2_F\n" + "\n".join(rows) + "\n", encoding="utf-8")
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(spec, encoding="utf-8")
    return data, spec_path


def fire_rows() -> list[str]:
    rows = []
    for t in range(-60, 200):
        c = 22.0 + max(0, t) * 0.3  # 18 °C/min from t = 0
        rows.append(f"{t},{c:.2f},{c * 1.8 + 32:.2f}")
    return rows


def test_replay_writes_one_json_line_per_transition_in_csv_time(tmp_path: Path) -> None:
    data, spec = write_case(tmp_path, fire_rows())
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(app, ["replay", str(data), "--spec", str(spec), "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines, "a fire raised nothing"
    for line in lines:
        assert {"time", "device", "alarm_type", "category", "severity", "state"} <= line.keys()
    fire = [x for x in lines if x["alarm_type"] == "temp.alarm" and x["action"] == "raised"]
    # 57 °C is reached at t = (57 - 22) / 0.3 = 116.7 s: both heads (one via the °F scale) at t = 117.
    assert sorted((x["device"], x["time"]) for x in fire) == [("heat-1", 117.0), ("heat-2", 117.0)]
    assert all(x["category"] == "fire" and x["severity"] == "critical" for x in fire)
    assert not [x for x in lines if x["time"] < 0]
    assert "readings/s" in result.output


def test_the_result_does_not_depend_on_batching(tmp_path: Path) -> None:
    data, spec_path = write_case(tmp_path, fire_rows())
    spec = load_spec(spec_path)
    one = replay(data, spec, chunk_rows=1).transitions
    many = replay(data, spec, chunk_rows=5000).transitions
    assert [(t["device"], t["alarm_type"], t["action"], t["time"]) for t in one] == [
        (t["device"], t["alarm_type"], t["action"], t["time"]) for t in many
    ]


def test_empty_cells_are_skipped_not_read_as_zero(tmp_path: Path) -> None:
    rows = [f"{t},,{71.6:.1f}" for t in range(0, 60)]
    data, spec = write_case(tmp_path, rows)
    result = replay(data, load_spec(spec))
    assert result.samples == 60  # only heat-2's column has values
    assert result.transitions == []


def test_iso_times_are_written_back_as_they_were_read(tmp_path: Path) -> None:
    rows = [f"2026-11-23T10:{m:02d}:00,{22 + max(0, m - 5) * 10},71.6" for m in range(0, 12)]
    data, spec = write_case(
        tmp_path, rows, SPEC.replace("time_column: t", "time_column: t\ntime_format: iso")
    )
    lines = replay(data, load_spec(spec)).transitions
    assert lines[0]["time"].startswith("2026-11-23T10:")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (SPEC.replace("heat-a1r", "no-such-profile", 1), "unknown profile"),
        (SPEC.replace("temp: {column: T1}", "smoke: {column: T1}"), "has no channel"),
        (SPEC.replace("{column: T1}", "{column: Missing}"), "no column"),
        (SPEC.replace("time_column: t", "time_colum: t"), "time_column"),
        (SPEC.replace("id: heat-2", "id: heat-1"), "unique"),
    ],
)
def test_a_bad_spec_is_refused_with_what_to_fix(tmp_path: Path, spec: str, message: str) -> None:
    data, spec_path = write_case(tmp_path, fire_rows(), spec)
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(app, ["replay", str(data), "--spec", str(spec_path), "--out", str(out)])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())  # rich wraps long lines


def test_a_missing_csv_is_a_clear_error(tmp_path: Path) -> None:
    _, spec = write_case(tmp_path, fire_rows())
    with pytest.raises(ReplayError, match="cannot read"):
        replay(tmp_path / "nope.csv", load_spec(spec))


@pytest.mark.skipif(
    not DATASET.exists(), reason="the FSRI development data is not checked out beside the repo"
)
def test_a_real_chair_fire_raises_a_fire_alarm_after_ignition_and_none_before(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "time_column: Time\ndevices:\n"
        + "".join(
            f"  - {{id: heat-{q}, profile: heat-a1r, zone: room, channels: "
            f'{{temp: "Quadrant {q} Temperature 25 mm Below Ceiling"}}}}\n'
            for q in "ABCD"
        ),
        encoding="utf-8",
    )
    result = replay(DATASET / "data" / "RedAccent_Closed_Back_1.csv", load_spec(spec))
    fires = [t for t in result.transitions if t["category"] == "fire" and t["action"] == "raised"]
    assert fires
    assert min(t["time"] for t in fires) >= 0


def test_a_log_sampled_faster_than_the_device_reports_keeps_whole_windows() -> None:
    from device_profiles.loader import load_profiles
    from firewatch.replay import _at_recorded_rate

    profiles = load_profiles()
    faster = _at_recorded_rate(profiles, {"heat-a1r"}, np.arange(0.0, 100.0))  # 1 Hz log, 10 s device
    assert faster["heat-a1r"].report_interval_s == 1.0
    assert faster["smoke-photoelectric"] is profiles["smoke-photoelectric"]
    slower = _at_recorded_rate(profiles, {"heat-a1r"}, np.arange(0.0, 1000.0, 60.0))
    assert slower["heat-a1r"] is profiles["heat-a1r"]
