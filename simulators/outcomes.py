"""Judge a scenario's expected outcomes against what the service reported: pure, no I/O.

Times are simulated seconds from the scenario's start. An alarm's time is its first raise as the
device stamped it (exact in simulated time, also during fast-forward), or, for an alarm that was
already known before this run, the service's raise mapped onto simulated time. A ticket an alarm
opened is timed as that alarm; any other ticket when the service opened it, mapped the same way
(simulators/runner.py: alarm_sim_time, ticket_sim_time).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any

from simulators.scenario import AlarmMatch, Expectation, ExpectKind, Scenario, TicketMatch

STAMP_TOLERANCE_S = 0.01


class Verdict(StrEnum):
    PENDING = "pending"
    PASSED = "passed"
    FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    expectation: Expectation
    verdict: Verdict
    at: float | None  # simulated seconds when it was met (or violated)
    detail: str


def _place_matches(place: str, prefix: str | None) -> bool:
    return prefix is None or place == prefix or place.startswith(prefix + "/")


def alarm_matches(alarm: Mapping[str, Any], m: AlarmMatch) -> bool:
    return (
        (m.category is None or alarm["category"] == m.category.value)
        and (m.type is None or fnmatchcase(alarm["alarm_type"], m.type))
        and (m.device is None or alarm["device_id"] == m.device)
        and _place_matches(alarm["place"], m.place)
    )


def ticket_matches(ticket: Mapping[str, Any], m: TicketMatch) -> bool:
    return (
        (m.category is None or ticket["category"] == m.category.value)
        and (m.hazard_type is None or fnmatchcase(ticket["hazard_type"], m.hazard_type))
        and (m.device is None or ticket["device_id"] == m.device)
        and (m.source is None or ticket["source"] == m.source)
        and _place_matches(ticket["place"], m.place)
    )


@dataclass(frozen=True)
class Observed:
    """What the service has reported so far, with times already in simulated seconds."""

    alarms: Sequence[tuple[float, Mapping[str, Any]]]  # (sim time, alarm)
    tickets: Sequence[tuple[float, Mapping[str, Any]]]  # (sim time, ticket)
    rejects: Mapping[str, int]  # reason -> count during this run


def judge(scenario: Scenario, observed: Observed, now: float, *, final: bool) -> list[Outcome]:
    """The verdict on every expectation at simulated time `now`; `final` once the run is over."""
    return [_judge_one(scenario, e, observed, now, final) for e in scenario.expect]


def _judge_one(scenario: Scenario, e: Expectation, obs: Observed, now: float, final: bool) -> Outcome:
    start = scenario.step_time(e.after)
    deadline = start + e.within if e.within is not None else scenario.end
    if e.kind is ExpectKind.REJECTS:
        assert e.rejects is not None
        got = obs.rejects.get(e.rejects.reason, 0)
        if got >= e.rejects.at_least:
            return Outcome(e, Verdict.PASSED, None, f"{got} rejected as {e.rejects.reason}")
        return _late(e, now, deadline, final, f"{got} of {e.rejects.at_least} rejected as {e.rejects.reason}")
    if e.kind is ExpectKind.NO_ALARM:
        assert e.no_alarm is not None
        bad = _matching(obs.alarms, lambda a: alarm_matches(a, e.no_alarm), start, deadline)  # type: ignore[arg-type]
        if bad:
            t, alarm = bad[0]
            return Outcome(
                e, Verdict.FAILED, t, f"{alarm['alarm_type']} on {alarm['device_id']} at {t:.0f} s"
            )
        if now >= deadline or final:
            return Outcome(e, Verdict.PASSED, None, "none raised")
        return Outcome(e, Verdict.PENDING, None, "none so far")
    if e.kind is ExpectKind.ALARM:
        assert e.alarm is not None
        hits = _matching(obs.alarms, lambda a: alarm_matches(a, e.alarm), start, None)  # type: ignore[arg-type]
        key = "device_id"
    else:
        assert e.ticket is not None
        hits = _matching(obs.tickets, lambda t: ticket_matches(t, e.ticket), start, None)  # type: ignore[arg-type]
        key = "number"
    seen: dict[str, float] = {}
    for t, item in hits:
        seen.setdefault(str(item["device_id"] if e.kind is ExpectKind.ALARM else item[key]), t)
    if len(seen) >= e.devices:
        at = sorted(seen.values())[e.devices - 1]
        first = hits[0][1]
        what = (
            first["alarm_type"] if e.kind is ExpectKind.ALARM else f"{first['number']} {first['hazard_type']}"
        )
        where = first["device_id"] or first["place"]
        detail = f"{what} on {where} at {at - start:.0f} s" + (
            f" ({len(seen)} devices)" if e.devices > 1 else ""
        )
        if at <= deadline:
            return Outcome(e, Verdict.PASSED, at, detail)
        return Outcome(e, Verdict.FAILED, at, f"too late: {detail}, deadline {deadline - start:.0f} s")
    return _late(
        e, now, deadline, final, f"{len(seen)} of {e.devices} so far" if e.devices > 1 else "not yet"
    )


def _late(e: Expectation, now: float, deadline: float, final: bool, detail: str) -> Outcome:
    if now > deadline or final:
        return Outcome(e, Verdict.FAILED, None, f"missed: {detail}")
    return Outcome(e, Verdict.PENDING, None, detail)


def _matching(
    items: Sequence[tuple[float, Mapping[str, Any]]],
    pred: Callable[[Mapping[str, Any]], bool],
    start: float,
    end: float | None,
) -> list[tuple[float, Mapping[str, Any]]]:
    # Devices stamp milliseconds: an event sent at its step's instant may read a hair earlier.
    lo = start - STAMP_TOLERANCE_S
    out = [(t, item) for t, item in items if t >= lo and (end is None or t <= end) and pred(item)]
    return sorted(out, key=lambda x: x[0])


def decided(outcomes: Sequence[Outcome]) -> bool:
    return all(o.verdict is not Verdict.PENDING for o in outcomes)
