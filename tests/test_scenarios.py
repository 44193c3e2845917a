"""Scenarios: the declarative format, the judge of expected outcomes, and every shipped scenario
played end to end against a real mosquitto and the real service, time-compressed.

One scenario per incident kind (flaming and smouldering fire, sprinkler, slow leak, pump failure,
gas leak, cable overheating, dirty chamber, silent devices, power cut, replay of a recorded fire,
device faults and broken frames); each must produce exactly the alarms and tickets it expects.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import numpy as np
import pytest

from api.app import create_app
from core.domain import Role
from core.registry import load_registry
from core.settings import Gb26875Settings, IngestSettings, MqttSettings, Settings
from device_profiles.loader import load_profiles
from firewatch.broker import Mosquitto, free_port, wait_for_port
from firewatch.service import Service
from simulators.hospital import DEMO_HOSPITAL
from simulators.outcomes import Observed, Verdict, judge
from simulators.runner import (
    RunReport,
    ScenarioRun,
    alarm_sim_time,
    check_scenario,
    scenario_registry,
    ticket_sim_time,
)
from simulators.scenario import (
    Scenario,
    ScenarioError,
    load_scenario,
    parse_duration,
    resolve_scenario,
    shipped_scenarios,
)

PROFILES = load_profiles()
SHIPPED = shipped_scenarios()

# Scenarios run 30 times faster than real time: a few seconds' stall reads as minutes of device
# silence. Under pytest-xdist (scripts/test) they share one worker, so two never compete.
pytestmark = pytest.mark.xdist_group("accelerated-scenarios")


def scenario(text: str, tmp_path: Path) -> Scenario:
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    return load_scenario(path)


# --- the format -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [(90, 90.0), ("90s", 90.0), ("12m", 720.0), ("1h30m", 5400.0), ("2.5h", 9000.0), ("45", 45.0)],
)
def test_durations_read_as_people_write_them(raw: object, seconds: float) -> None:
    assert parse_duration(raw) == seconds


@pytest.mark.parametrize("raw", ["soon", "1d", True, None, "-5m"])
def test_a_duration_that_is_not_one_is_refused(raw: object) -> None:
    with pytest.raises(ValueError, match=r"not a duration|a duration is"):
        parse_duration(raw)


def test_a_typo_an_unknown_step_or_a_dangling_reference_is_an_error_that_says_where(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"s.yaml: timeline.0.flaming_fire.grwoth: Extra inputs"):
        scenario(
            "name: t\nduration: 1m\ntimeline:\n  - {at: 1s, do: flaming_fire, place: x, grwoth: fast}\n",
            tmp_path,
        )
    with pytest.raises(ScenarioError, match="does not match any of the expected tags"):
        scenario("name: t\nduration: 1m\ntimeline:\n  - {at: 1s, do: earthquake}\n", tmp_path)
    with pytest.raises(ScenarioError, match="no timeline step has id 'fire'"):
        scenario("name: t\nduration: 1m\nexpect:\n  - alarm: {category: fire}\n    after: fire\n", tmp_path)
    with pytest.raises(ScenarioError, match="exactly one of"):
        scenario("name: t\nduration: 1m\nexpect:\n  - {alarm: {category: fire}, ticket: {}}\n", tmp_path)
    with pytest.raises(ScenarioError, match="after the scenario's end"):
        scenario("name: t\nduration: 1m\ntimeline:\n  - {at: 2m, do: pump_failure, place: s}\n", tmp_path)


def test_a_place_or_device_the_registry_lacks_is_found_before_anything_runs(tmp_path: Path) -> None:
    spec = scenario(
        "name: t\nduration: 1m\ntimeline:\n  - {at: 1s, do: gas_leak, place: sxzyy/b9}\n", tmp_path
    )
    with pytest.raises(ScenarioError, match=r"gas_leak.*no place 'sxzyy/b9'"):
        check_scenario(spec, load_registry(DEMO_HOSPITAL), PROFILES)


def test_shipped_scenarios_are_found_by_name_and_a_wrong_name_lists_them() -> None:
    assert resolve_scenario("sprinkler-opening").name == "sprinkler-opening.yaml"
    with pytest.raises(ScenarioError, match="flaming-fire-ward"):
        resolve_scenario("no-such-scenario")


def test_one_scenario_ships_for_every_incident_kind() -> None:
    steps = {step.do for path in SHIPPED for step in load_scenario(path).timeline}
    assert {
        "flaming_fire",
        "smouldering_fire",
        "sprinkler",
        "slow_leak",
        "pump_failure",
        "gas_leak",
        "cable_overheat",
        "dirty_chamber",
        "silent",
        "power_cut",
        "replay",
        "malformed",
        "network",
        "gb",
        "gb_reset",
        "gb_reconnect",
        "gb_garbage",
    } <= steps


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_scenario_names_only_what_its_registry_has(path: Path) -> None:
    spec = load_scenario(path)
    check_scenario(spec, scenario_registry(spec), PROFILES)
    assert any(e.alarm or e.ticket or e.rejects for e in spec.expect), "a scenario must expect something"


# --- the judge --------------------------------------------------------------------------------------


def alarm(device: str, alarm_type: str, category: str, place: str = "s/b1/f1/z1") -> dict[str, Any]:
    return {"device_id": device, "alarm_type": alarm_type, "category": category, "place": place}


JUDGED = """
name: t
duration: 10m
timeline:
  - {id: fire, at: 1m, do: flaming_fire, place: s/b1/f1/z1}
expect:
  - alarm: {category: fire, place: s/b1/f1/z1}
    after: fire
    within: 1m
  - alarm: {category: fire}
    devices: 2
    after: fire
    within: 3m
  - no_alarm: {category: fire, place: s/b2}
  - rejects: {reason: bad_json, at_least: 2}
"""


def test_an_outcome_passes_once_met_in_time_and_fails_when_late(tmp_path: Path) -> None:
    spec = scenario(JUDGED, tmp_path)
    on_time = Observed([(90.0, alarm("a", "smoke.alarm", "fire"))], [], {"bad_json": 2})
    verdicts = [o.verdict for o in judge(spec, on_time, 100.0, final=False)]
    assert verdicts == [Verdict.PASSED, Verdict.PENDING, Verdict.PENDING, Verdict.PASSED]
    late = Observed([(150.0, alarm("a", "smoke.alarm", "fire"))], [], {})
    first = judge(spec, late, 200.0, final=False)[0]
    assert first.verdict is Verdict.FAILED
    assert "too late" in first.detail


def test_an_alarm_before_its_incident_does_not_count_and_devices_are_counted_once(tmp_path: Path) -> None:
    spec = scenario(JUDGED, tmp_path)
    observed = Observed(
        [
            (30.0, alarm("x", "smoke.alarm", "fire")),  # before the fire started: not caused by it
            (70.0, alarm("a", "smoke.alarm", "fire")),
            (80.0, alarm("a", "zone.fire_confirmed", "fire")),
        ],
        [],
        {},
    )
    outcomes = judge(spec, observed, 600.0, final=True)
    assert outcomes[0].verdict is Verdict.PASSED
    assert outcomes[1].verdict is Verdict.FAILED  # one device twice is not two devices
    assert outcomes[3].verdict is Verdict.FAILED  # no rejects at all


def test_an_event_stamped_at_its_step_s_instant_counts_despite_millisecond_rounding(tmp_path: Path) -> None:
    spec = scenario(JUDGED, tmp_path)
    stamped = Observed([(59.9996, alarm("a", "device.fault", "fire"))], [], {})
    assert judge(spec, stamped, 100.0, final=False)[0].verdict is Verdict.PASSED


def test_a_forbidden_alarm_fails_at_once_and_silence_passes_only_at_the_end(tmp_path: Path) -> None:
    spec = scenario(JUDGED, tmp_path)
    quiet = Observed([], [], {})
    assert judge(spec, quiet, 300.0, final=False)[2].verdict is Verdict.PENDING
    assert judge(spec, quiet, 600.0, final=True)[2].verdict is Verdict.PASSED
    noisy = Observed([(200.0, alarm("b", "smoke.alarm", "fire", "s/b2/f1/z1"))], [], {})
    assert judge(spec, noisy, 300.0, final=False)[2].verdict is Verdict.FAILED


def test_a_ticket_an_alarm_opens_is_timed_as_its_alarm_not_as_when_the_service_caught_up() -> None:
    # A fast-forward plays 5 h 30 min in about half a minute: one wall second of queueing in the
    # service is ten simulated minutes on this map (service clock -> simulated time).
    origin = 1_000_000.0
    service, simulated = [origin + 19_800.0, origin + 20_400.0], [0.0, 19_800.0]

    def to_sim(ts: float) -> float:
        return float(np.interp(ts, service, simulated))

    reading = origin + 18_000.0  # the back-dated reading that raised the hazard
    caught_up = origin + 20_390.0  # the service raised it and opened the ticket, in one transaction
    hazard = {"first_ts": reading, "raised_ts": caught_up}
    ticket = {"source": "alarm", "inspection_time": reading, "created_at": caught_up}
    assert alarm_sim_time(hazard, origin, to_sim) == 18_000.0
    assert ticket_sim_time(ticket, origin, to_sim) == alarm_sim_time(hazard, origin, to_sim)
    # A ticket no alarm opened has no reading behind it: timed by when the service opened it.
    patrol = {"source": "patrol", "inspection_time": origin + 5.0, "created_at": caught_up}
    assert ticket_sim_time(patrol, origin, to_sim) == pytest.approx(19_470.0)
    # An alarm of the service's own (a reading from before the run): when it was raised.
    own = {"first_ts": origin - 60.0, "raised_ts": caught_up}
    assert alarm_sim_time(own, origin, to_sim) == pytest.approx(19_470.0)


# --- end to end ---------------------------------------------------------------------------------------


async def play(
    spec: Scenario, broker: Mosquitto, data: Path, then: Callable[[Service], None] | None = None
) -> RunReport:
    """The real service (its clock scaled as the scenario asks, its GB/T 26875.3 listener on) and
    the scenario played against it; `then` looks at the service after the run, before it stops."""
    registry = scenario_registry(spec)
    settings = Settings(
        data_dir=data,
        mqtt=MqttSettings(url=broker.url, client_id=f"fw-scn-{uuid.uuid4().hex[:8]}"),
        ingest=IngestSettings(liveness_check_s=0.2),
        gb26875=Gb26875Settings(enabled=True, port=0),
        time_scale=spec.time_scale,
    )
    service = Service(settings, registry=registry)
    # The runner reads the API as an integration does: with a viewer's API key.
    key, _ = service.accounts.create_api_key("scenario-runner", [Role.VIEWER], by="test")
    await service.start()
    try:
        await asyncio.wait_for(service.source.connected.wait(), 10)
        ctx = service.app_context()
        ctx.start = ctx.stop = None
        transport = httpx.ASGITransport(app=create_app(ctx))
        auth = {"Authorization": f"Bearer {key.token}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://firewatch", headers=auth) as api:
            assert service.gb26875 is not None
            gb = ("127.0.0.1", service.gb26875.port)
            run = ScenarioRun(
                spec, registry, service.profiles, api=api, broker=(broker.host, broker.port), gb26875=gb
            )
            report = await run.run()
            if then is not None:
                then(service)
            return report
    finally:
        await service.stop()


def explain(report: RunReport) -> str:
    return "\n".join(f"{o.verdict.value:8} {o.expectation.describe()}: {o.detail}" for o in report.outcomes)


# gb-panel-fire is played once, by tests/test_gb26875_simulator.py, which checks what this test does
# (via `check_played`) and what its transmission device did besides.
PLAYED_ELSEWHERE = {"gb-panel-fire"}


def check_played(report: RunReport) -> None:
    """A shipped scenario's run: every outcome it expects met, judged once the service had taken in
    everything the devices sent."""
    assert report.passed, explain(report)
    assert all(o.verdict is Verdict.PASSED for o in report.outcomes)
    assert report.published > 0
    assert report.untaken == 0


@pytest.mark.integration
@pytest.mark.parametrize("path", [p for p in SHIPPED if p.stem not in PLAYED_ELSEWHERE], ids=lambda p: p.stem)
async def test_the_shipped_scenario_produces_the_alarms_and_tickets_it_expects(
    path: Path, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    spec = load_scenario(path)
    report = await play(spec, mosquitto, tmp_path)
    check_played(report)


@pytest.mark.integration
async def test_a_scenario_whose_expectation_is_not_met_fails(mosquitto: Mosquitto, tmp_path: Path) -> None:
    spec = scenario(
        "name: quiet\ntime_scale: 30\nduration: 2m\n"
        "expect:\n  - alarm: {category: fire}\n    label: a fire nobody started\n",
        tmp_path,
    )
    report = await play(spec, mosquitto, tmp_path / "data")
    assert not report.passed
    assert report.outcomes[0].verdict is Verdict.FAILED
    assert report.outcomes[0].detail == "missed: not yet"


def firewatch(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "firewatch.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


class Served(NamedTuple):
    url: str
    token: str  # an API key with the viewer role, made with `firewatch api-keys create`
    broker: Mosquitto  # the service's broker: the simulator publishes there


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`firewatch serve` as an operator starts it, on a free port, its clock 30 times real time,
    with a broker of its own, and a viewer's API key for the simulator made as an admin makes one.
    One service for the module's `simulate run` tests: each judges only what happens during its
    own run (the runner ignores alarms raised before it began)."""
    broker = Mosquitto(data_dir=tmp_path_factory.mktemp("served-mosquitto")).start()
    port = free_port()
    env = {
        "FIREWATCH_MQTT__URL": broker.url,
        "FIREWATCH_DATA_DIR": str(tmp_path_factory.mktemp("served")),
        "FIREWATCH_API__PORT": str(port),
        "FIREWATCH_TIME_SCALE": "30",
    }
    try:
        key = firewatch("api-keys", "create", "simulator", "--role", "viewer", env=env)
        assert key.returncode == 0, key.stderr
        proc = subprocess.Popen(
            [sys.executable, "-m", "firewatch.cli", "serve"],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for_port("127.0.0.1", port, timeout=30)
            yield Served(f"http://127.0.0.1:{port}", key.stdout.strip(), broker)
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    finally:
        broker.close()


@pytest.mark.integration
def test_simulate_run_plays_a_scenario_against_a_running_service_and_reports(
    served: Served, tmp_path: Path
) -> None:
    out = tmp_path / "report.json"
    result = firewatch(
        "simulate",
        "run",
        "sprinkler-opening",
        "--api",
        served.url,
        "--broker",
        served.broker.url,
        "--json",
        str(out),
        env={"FIREWATCH_API_TOKEN": served.token},  # as a script holds the key: not on the command line
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED sprinkler-opening" in result.stdout
    assert "管网压力骤降" in result.stdout
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["passed"] is True
    assert report["time_scale"] == 30
    assert {o["verdict"] for o in report["outcomes"]} == {"passed"}


@pytest.mark.integration
def test_simulate_run_exits_1_when_an_outcome_fails_and_2_when_it_cannot_start(
    served: Served, tmp_path: Path
) -> None:
    failing = tmp_path / "quiet.yaml"
    failing.write_text(
        "name: quiet\ntime_scale: 30\nduration: 1m\nexpect:\n  - alarm: {category: fire}\n", encoding="utf-8"
    )
    token = ("--token", served.token)
    result = firewatch(
        "simulate", "run", str(failing), "--api", served.url, *token, "--broker", served.broker.url
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED quiet" in result.stdout
    bad = firewatch(
        "simulate", "run", "no-such-scenario", "--api", served.url, *token, "--broker", served.broker.url
    )
    assert bad.returncode == 2
    assert "no shipped scenario" in bad.stderr
    unreachable = firewatch(
        "simulate",
        "run",
        "sprinkler-opening",
        "--api",
        f"http://127.0.0.1:{free_port()}",
        *token,
        "--broker",
        served.broker.url,
    )
    assert unreachable.returncode == 2
    assert "cannot reach the firewatch API" in unreachable.stderr


@pytest.mark.integration
def test_simulate_run_without_a_valid_token_exits_2_saying_how_to_get_one(served: Served) -> None:
    run = ("simulate", "run", "sprinkler-opening", "--api", served.url, "--broker", served.broker.url)
    anonymous = firewatch(*run, env={"FIREWATCH_API_TOKEN": ""})
    assert anonymous.returncode == 2, anonymous.stdout + anonymous.stderr
    said = " ".join(anonymous.stderr.split())  # as printed, wrapped to the terminal
    assert "(401)" in said
    assert "pass --token" in said
    assert "firewatch api-keys create simulator --role viewer" in said
    unknown = firewatch(*run, "--token", "fw_no-such-key")
    assert unknown.returncode == 2, unknown.stdout + unknown.stderr
    assert "unknown, expired or revoked" in " ".join(unknown.stderr.split())


def test_simulate_list_and_check_show_the_shipped_scenarios() -> None:
    listed = firewatch("simulate", "list")
    assert listed.returncode == 0, listed.stderr
    for path in SHIPPED:
        assert path.stem in listed.stdout
    checked = firewatch("simulate", "check", *(p.stem for p in SHIPPED))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.count("ok ") == len(SHIPPED)
