"""Device profiles: the shipped ones are valid and cite their basis; a broken one is reported with
file, line and column."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from device_profiles.loader import ProfileError, load_profiles, shipped_profiles_dir, validate_profiles
from firewatch.cli import app

GOOD = """\
id: t-gas
name: test gas
name_zh: 测试
kind: combustible_gas
system: combustible_gas
report_interval_s: 10
liveness:
  heartbeat_s: 30
channels:
  lel: {unit: "%LEL", range: [0, 100], resolution: 0.1}
detectors:
  - type: threshold
    channel: lel
    levels:
      - {name: level1, category: pre_alarm, at: 25, clear: 20, basis: "GB/T 50493-2019 §5.5"}
"""


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_profiles_cover_the_five_kinds_and_are_valid() -> None:
    profiles = load_profiles()
    assert {p.kind.value for p in profiles.values()} >= {
        "smoke",
        "heat",
        "water_pressure",
        "electrical_fire",
        "combustible_gas",
    }
    assert validate_profiles([shipped_profiles_dir()]) == []


def test_every_shipped_threshold_cites_its_basis_and_unverified_ones_say_so() -> None:
    for profile in load_profiles().values():
        for detector in profile.detectors:
            for level in detector.levels:
                assert "GB" in level.basis or "EN 54" in level.basis or "unverified" in level.basis, (
                    profile.id,
                    level.name,
                )
                if "(U)" in level.basis and "EN 54" not in level.basis:
                    assert "unverified" in level.basis


def test_gas_alarm_levels_follow_gb_t_50493() -> None:
    gas = load_profiles()["combustible-gas"]
    levels = {lv.name: lv.at for lv in gas.detectors[0].levels}
    assert levels == {"level1": 25.0, "level2": 50.0}
    assert gas.system.value == "combustible_gas"  # shown apart from fire alarms


def test_a_valid_file_has_no_issues(tmp_path: Path) -> None:
    assert validate_profiles([write(tmp_path, GOOD)]) == []


def test_an_unknown_key_is_reported_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("  heartbeat_s: 30\n", "  heartbeat_s: 30\n  heartbeet: 5\n"))
    (issue,) = validate_profiles([path])
    assert (issue.file, issue.line, issue.column) == (str(path), 9, 3)
    assert issue.location == "liveness.heartbeet"
    assert "unknown key" in issue.message
    assert str(issue).startswith(f"{path}:9:3: liveness.heartbeet:")


def test_a_wrong_type_is_reported_at_the_value(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("at: 25", "at: high"))
    (issue,) = validate_profiles([path])
    assert (issue.line, issue.column) == (15, 49)  # the `high` inside the flow mapping
    assert issue.location == "detectors[0].levels[0].at"


def test_a_missing_key_points_at_the_mapping_that_lacks_it(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("  heartbeat_s: 30\n", "  offline_after: 3\n"))
    (issue,) = validate_profiles([path])
    assert issue.line == 8
    assert "heartbeat_s" in issue.message


def test_a_detector_on_a_channel_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    issues = validate_profiles([write(tmp_path, GOOD.replace("    channel: lel", "    channel: co"))])
    assert any("'co'" in i.message for i in issues)


def test_hysteresis_pointing_the_wrong_way_is_refused(tmp_path: Path) -> None:
    issues = validate_profiles([write(tmp_path, GOOD.replace("clear: 20", "clear: 30"))])
    assert any("clear (30.0) must be <= at (25.0)" in i.message for i in issues)


def test_a_yaml_syntax_error_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("kind: combustible_gas", "kind: [combustible_gas"))
    (issue,) = validate_profiles([path])
    assert issue.line >= 4
    assert "YAML syntax" in issue.message


def test_duplicate_ids_across_files_are_an_error(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, GOOD, "b.yaml")
    (issue,) = validate_profiles([tmp_path])
    assert issue.file.endswith("b.yaml")
    assert "also defined" in issue.message
    with pytest.raises(ProfileError):
        load_profiles(tmp_path)


def test_the_cli_prints_file_line_and_fails(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("  heartbeat_s: 30\n", "  heartbeat_s: 30\n  heartbeet: 5\n"))
    result = CliRunner().invoke(app, ["profiles", "validate", str(path)])
    assert result.exit_code == 1
    assert f"{path}:9:3" in result.output.replace("\n", "")
    ok = CliRunner().invoke(app, ["profiles", "validate"])
    assert ok.exit_code == 0
    assert "5 profile file(s) valid" in ok.output
