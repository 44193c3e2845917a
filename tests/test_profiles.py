"""Device profiles: the shipped ones are valid and cite their basis; a broken one is reported with
the file, line and column to edit, never silently accepted."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.domain import AlarmCategory, SystemType
from device_profiles.loader import (
    ProfileError,
    ProfileIssue,
    load_profile,
    load_profiles,
    shipped_profiles_dir,
    validate_profiles,
)
from device_profiles.schema import Direction, ThresholdDetector
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
      - name: level1
        category: pre_alarm
        at: 25
        clear: 20
        basis: "GB/T 50493-2019 §5.5 (S)"
"""


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, snippet: str) -> int:
    """The 1-based line on which `snippet` first appears: the line an issue must point at."""
    return next(n for n, line in enumerate(text.splitlines(), start=1) if snippet in line)


def only_issue(path: Path) -> ProfileIssue:
    issues = validate_profiles([path])
    assert len(issues) == 1, issues
    return issues[0]


# --- the shipped profiles ----------------------------------------------------------------------------


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


@pytest.mark.parametrize("path", sorted(shipped_profiles_dir().glob("*.yaml")), ids=lambda p: p.stem)
def test_each_shipped_file_loads_on_its_own_and_is_named_after_its_id(path: Path) -> None:
    profile = load_profile(path)
    assert profile.id == path.stem
    assert profile.name_zh
    assert all(channel.label_zh for channel in profile.channels.values())


HONEST_WITHOUT_A_CLAUSE = ("site policy", "site design", "unverified; site-tunable default")


def test_every_shipped_threshold_cites_a_clause_and_a_tag_or_says_it_is_site_policy() -> None:
    for profile in load_profiles().values():
        for detector in profile.thresholds():
            for level in detector.levels:
                where = (profile.id, detector.channel, level.name)
                if not re.search(r"\bGB|EN 54", level.basis):
                    assert any(word in level.basis for word in HONEST_WITHOUT_A_CLAUSE), where
                    continue
                tags = set(re.findall(r"\b([VSU])\)", level.basis))
                assert tags, f"{where}: basis names no V/S/U tag"
                if "U" in tags:
                    assert "unverified; site-tunable default" in level.basis, where


# The defaults as specified: (profile, channel, direction, level, category, at).
SHIPPED_LEVELS = [
    ("smoke-photoelectric", "smoke", "above", "pre_alarm", "pre_alarm", 0.08),
    ("smoke-photoelectric", "smoke", "above", "alarm", "fire", 0.15),  # GB 4715-2024 §5.7 B-type
    ("heat-a1r", "temp", "above", "pre_alarm", "pre_alarm", 50.0),  # A1 max application temperature
    ("heat-a1r", "temp", "above", "alarm", "fire", 57.0),  # inside A1's 54-65 °C static response
    ("water-pressure", "pressure", "below", "low", "supervisory", 0.10),  # GB 50974 §5.2.2
    ("water-pressure", "pressure", "above", "high", "supervisory", 0.70),  # GB 50974 §7.4.12
    ("electrical-fire", "residual_current", "above", "pre_alarm", "pre_alarm", 300.0),
    ("electrical-fire", "residual_current", "above", "alarm", "fire", 500.0),  # GB 50116 §9.2.3
    ("electrical-fire", "temp_l1", "above", "pre_alarm", "pre_alarm", 70.0),
    ("electrical-fire", "temp_l1", "above", "alarm", "fire", 80.0),
    ("combustible-gas", "lel", "above", "level1", "pre_alarm", 25.0),  # GB/T 50493 §5.5
    ("combustible-gas", "lel", "above", "level2", "fire", 50.0),
]


@pytest.mark.parametrize(("profile_id", "channel", "direction", "name", "category", "at"), SHIPPED_LEVELS)
def test_the_shipped_defaults_are_the_specified_ones(
    profile_id: str, channel: str, direction: str, name: str, category: str, at: float
) -> None:
    profile = load_profiles()[profile_id]
    levels = {(d.channel, d.direction, level.name): level for d in profile.thresholds() for level in d.levels}
    level = levels[(channel, Direction(direction), name)]
    assert (level.category, level.at) == (AlarmCategory(category), at)


def test_every_conductor_of_the_electrical_fire_detector_is_watched_alike() -> None:
    profile = load_profiles()["electrical-fire"]
    cable = {d.channel: [(lv.name, lv.at, lv.clear) for lv in d.levels] for d in profile.thresholds()}
    assert cable["temp_l1"] == cable["temp_l2"] == cable["temp_l3"] == cable["temp_n"]


def test_gas_and_electrical_fire_alarms_keep_their_own_system_apart_from_fire_alarms() -> None:
    profiles = load_profiles()
    assert profiles["combustible-gas"].system is SystemType.COMBUSTIBLE_GAS
    assert profiles["electrical-fire"].system is SystemType.ELECTRICAL_FIRE
    assert profiles["smoke-photoelectric"].system is SystemType.FIRE_ALARM


def test_a_detectors_own_alarm_bit_is_a_fire_and_tamper_a_fault() -> None:
    smoke = load_profiles()["smoke-photoelectric"]
    assert smoke.alarm_types()["device.alarm"] is AlarmCategory.FIRE
    assert smoke.alarm_types()["device.fault"] is AlarmCategory.FAULT
    assert smoke.alarm_types()["device.tamper"] is AlarmCategory.FAULT
    assert smoke.battery is not None


# --- reporting a broken profile ----------------------------------------------------------------------


def test_a_valid_file_has_no_issues(tmp_path: Path) -> None:
    assert validate_profiles([write(tmp_path, GOOD)]) == []


def test_an_unknown_key_is_reported_at_the_key_with_a_suggestion(tmp_path: Path) -> None:
    text = GOOD.replace("  heartbeat_s: 30\n", "  heartbeat_s: 30\n  heartbeet: 5\n")
    path = write(tmp_path, text)
    issue = only_issue(path)
    assert (issue.file, issue.line, issue.column) == (str(path), line_of(text, "heartbeet"), 3)
    assert issue.location == "liveness.heartbeet"
    assert "unknown key 'heartbeet'" in issue.message
    assert "did you mean 'heartbeat_s'" in issue.message
    assert str(issue).startswith(f"{path}:{issue.line}:3: liveness.heartbeet: unknown key")


def test_a_wrong_type_is_reported_at_the_value(tmp_path: Path) -> None:
    text = GOOD.replace("at: 25", "at: high")
    issue = only_issue(write(tmp_path, text))
    assert (issue.line, issue.column) == (line_of(text, "at: high"), 13)  # the `high`
    assert issue.location == "detectors[0].levels[0].at"
    assert "number" in issue.message


def test_a_wrong_type_inside_a_flow_mapping_is_reported_at_its_column(tmp_path: Path) -> None:
    text = GOOD.replace("resolution: 0.1}", "resolution: fine}")
    issue = only_issue(write(tmp_path, text))
    assert (issue.line, issue.column) == (line_of(text, "fine"), text.splitlines()[9].index("fine") + 1)
    assert issue.location == "channels.lel.resolution"


def test_a_missing_key_points_at_the_mapping_that_lacks_it(tmp_path: Path) -> None:
    text = GOOD.replace("  heartbeat_s: 30\n", "  offline_after: 3\n")
    issue = only_issue(write(tmp_path, text))
    assert issue.line == line_of(text, "offline_after")  # where the liveness mapping starts
    assert issue.location == "liveness.heartbeat_s"
    assert issue.message == "missing required key 'heartbeat_s'"


def test_a_detector_on_a_channel_that_does_not_exist_is_refused_at_its_channel(tmp_path: Path) -> None:
    text = GOOD.replace("    channel: lel", "    channel: co")
    issue = only_issue(write(tmp_path, text))
    assert (issue.line, issue.location) == (line_of(text, "channel: co"), "detectors[0].channel")
    assert "'co'" in issue.message
    assert "['lel']" in issue.message


def test_hysteresis_pointing_the_wrong_way_is_refused_at_the_clear_value(tmp_path: Path) -> None:
    text = GOOD.replace("clear: 20", "clear: 30")  # direction above: clearing above `at` never clears
    issue = only_issue(write(tmp_path, text))
    assert (issue.line, issue.location) == (line_of(text, "clear: 30"), "detectors[0].levels[0].clear")
    assert issue.message == "level 'level1': clear (30.0) must be <= at (25.0)"


def test_a_below_threshold_must_clear_above_its_level(tmp_path: Path) -> None:
    text = GOOD.replace("    levels:", "    direction: below\n    levels:")  # clear 20 < at 25
    issue = only_issue(write(tmp_path, text))
    assert issue.line == line_of(text, "clear: 20")
    assert "must be >= at" in issue.message


def test_a_yaml_syntax_error_is_reported_with_its_line(tmp_path: Path) -> None:
    text = GOOD.replace("kind: combustible_gas", "kind: [combustible_gas")
    issue = only_issue(write(tmp_path, text))
    assert issue.line == line_of(text, "system:")  # where the parser found the list was not closed
    assert issue.message.startswith("YAML syntax:")


def test_a_key_given_twice_is_refused_not_silently_overridden(tmp_path: Path) -> None:
    text = GOOD + "report_interval_s: 600\n"
    issue = only_issue(write(tmp_path, text))
    assert (issue.line, issue.column) == (len(text.splitlines()), 1)
    first = line_of(GOOD, "report_interval_s")
    assert issue.message.startswith(f"key 'report_interval_s' given twice (first on line {first})")


def test_an_unquoted_on_key_is_caught_as_yaml_reads_it_as_a_boolean(tmp_path: Path) -> None:
    text = GOOD.replace("        at: 25\n", "        on: 25\n")
    issues = validate_profiles([write(tmp_path, text)])
    assert [(i.line, i.location) for i in issues] == [
        (line_of(text, "name: level1"), "detectors[0].levels[0].at"),  # the level now lacks `at`
        (line_of(text, "on: 25"), "detectors[0].levels[0].on"),
    ]
    assert "boolean" in issues[1].message


def test_an_error_in_a_merged_mapping_points_where_the_value_is_written(tmp_path: Path) -> None:
    text = (
        GOOD.replace("  lel: {", "  lel2: {unit: '%LEL', range: [0, 100], resolution: 0.1}\n  lel: {")
        .replace("  - type: threshold", "  - &gas\n    type: threshold")
        .replace("clear: 20", "clear: 30")
        + "  - {<<: *gas, channel: lel2}\n"
    )
    issues = validate_profiles([write(tmp_path, text)])
    assert [(i.line, i.location) for i in issues] == [
        (line_of(text, "clear: 30"), "detectors[0].levels[0].clear"),
        (line_of(text, "clear: 30"), "detectors[1].levels[0].clear"),
    ]


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    issue = only_issue(write(tmp_path, "- smoke\n- heat\n"))
    assert (issue.line, issue.message) == (1, "a profile must be a YAML mapping")


def test_duplicate_ids_across_files_are_an_error_at_the_second_id(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, "# the same sensor again\n" + GOOD, "b.yaml")
    issue = only_issue(tmp_path)
    assert (Path(issue.file).name, issue.line, issue.location) == ("b.yaml", 2, "id")
    assert f"also defined in {tmp_path / 'a.yaml'}" in issue.message
    with pytest.raises(ProfileError) as raised:
        load_profiles(tmp_path)
    assert raised.value.issues == [issue]


def test_files_and_folders_mix_and_issues_come_sorted_by_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "more"
    folder.mkdir()
    write(
        folder,
        GOOD.replace("t-gas", "t-b").replace("at: 25", "at: x").replace("clear: 20", "clear: y"),
        "b.yaml",
    )
    single = write(
        tmp_path, GOOD.replace("t-gas", "t-a").replace("  heartbeat_s: 30\n", "  hb: 1\n"), "a.yaml"
    )
    issues = validate_profiles([folder, single, tmp_path / "missing.yaml"])
    assert issues == sorted(issues)
    assert [(Path(i.file).relative_to(tmp_path).as_posix(), i.location) for i in issues] == [
        ("a.yaml", "liveness.hb"),
        ("a.yaml", "liveness.heartbeat_s"),
        ("missing.yaml", ""),
        ("more/b.yaml", "detectors[0].levels[0].at"),
        ("more/b.yaml", "detectors[0].levels[0].clear"),
    ]


def test_loading_a_bad_profile_raises_with_every_issue(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("at: 25", "at: x").replace("name_zh: 测试\n", ""))
    with pytest.raises(ProfileError) as raised:
        load_profile(path)
    assert {i.location for i in raised.value.issues} == {"name_zh", "detectors[0].levels[0].at"}
    assert str(path) in str(raised.value)


def test_the_cli_prints_file_line_and_fails(tmp_path: Path) -> None:
    text = GOOD.replace("  heartbeat_s: 30\n", "  heartbeat_s: 30\n  heartbeet: 5\n")
    path = write(tmp_path, text)
    result = CliRunner().invoke(app, ["profiles", "validate", str(path)])
    assert result.exit_code == 1
    assert f"{path}:{line_of(text, 'heartbeet')}:3" in result.output.replace("\n", "")
    ok = CliRunner().invoke(app, ["profiles", "validate"])
    assert ok.exit_code == 0
    assert f"{len(list(shipped_profiles_dir().glob('*.yaml')))} profile file(s) valid" in ok.output


def test_every_shipped_detector_basis_is_honest_about_where_its_numbers_come_from() -> None:
    for profile in load_profiles().values():
        for detector in profile.detectors:
            basis = (
                " ".join(level.basis for level in detector.levels)
                if isinstance(detector, ThresholdDetector)
                else detector.basis
            )
            where = (profile.id, detector.type, detector.channel)
            cites = re.search(r"\bGB|EN 54|STANDARDS\.md", basis) and re.search(r"\b[VSU]\)", basis)
            assert cites or any(word in basis for word in HONEST_WITHOUT_A_CLAUSE), where
