"""`firewatch simulate run` says how many of the messages were dropped as duplicates, and warns when
far more were dropped than the run sent twice on purpose (another publisher with the same device
ids), rather than passing or failing without a word."""

from __future__ import annotations

from firewatch.cli_simulate import duplicates_said
from simulators.runner import RunReport


def report(*, published: int, duplicated: int, dropped: int | None) -> RunReport:
    return RunReport(
        scenario="flaming-fire-ward",
        passed=True,
        outcomes=[],
        simulated_s=360.0,
        wall_s=14.0,
        time_scale=30.0,
        published=published,
        lost=0,
        duplicated=duplicated,
        reordered=0,
        malformed={},
        steps=[],
        untaken=0,
        dropped_as_duplicates=dropped,
    )


def test_the_duplicates_dropped_are_said_beside_those_sent_twice_on_purpose() -> None:
    said, warning = duplicates_said(report(published=8_993, duplicated=7, dropped=7))
    assert said == (
        "the service dropped 7 messages as duplicates by (device, seq) while this ran "
        "(7 sent twice on purpose)"
    )
    assert warning == ""


def test_far_more_duplicates_than_the_run_sent_twice_are_a_warning_about_another_publisher() -> None:
    said, warning = duplicates_said(report(published=8_993, duplicated=7, dropped=8_687))
    assert "dropped 8,687 messages as duplicates" in said
    assert warning.startswith("8,680 more messages than this run sent twice were dropped as duplicates")
    assert "another publisher is using the same device ids" in warning


def test_a_few_stray_duplicates_are_no_warning() -> None:
    assert duplicates_said(report(published=8_993, duplicated=7, dropped=17))[1] == ""


def test_a_service_that_does_not_count_duplicates_gets_no_line() -> None:
    assert duplicates_said(report(published=8_993, duplicated=7, dropped=None)) == ("", "")
