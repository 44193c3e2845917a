"""The commands a new user runs beside `firewatch demo`, as they run them: the demo in one process
started from a folder of its own (its data in `data/demo/`), the commands as other processes from
the same folder, through the real command line.

A key made with `firewatch api-keys create` beside the demo opens the demo's API; `report` and
`users` read the demo's database and say so; a second demo on the same data is refused; a
scenario played with `firewatch simulate run` against the demo's API and broker passes, its devices
yielded by the demo's own simulated hospital (a device the scenario silences goes offline).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from core.registry import load_registry
from device_profiles.loader import load_profiles
from firewatch.broker import free_port
from simulators.fleet import Fleet
from simulators.hospital import DEMO_HOSPITAL
from tests.demo_cli import cli_env, firewatch, one_line

# The scenarios play at 30 times real time: one at a time with the other accelerated scenarios.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("accelerated-scenarios")]

START_TIMEOUT_S = 90.0
# Its own incidents far off (a scenario beside it is judged on its own); stopped by the fixture.
DEMO_ARGS = ("--incident-at", "100000", "--duration", "900")


@dataclass(frozen=True)
class RunningDemo:
    folder: Path  # where it was started; its data is in folder/data/demo
    api_url: str
    broker_url: str
    process: subprocess.Popen[str]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDemo]:
    """`firewatch demo --speed 30` as a user starts it, its own incidents far off (a scenario
    beside it is judged on its own)."""
    folder = tmp_path_factory.mktemp("beside")
    port = free_port()
    log = (folder / "demo.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "firewatch.cli", "demo", "--speed", "30", "--port", str(port), *DEMO_ARGS],
        cwd=folder,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    state = folder / "data" / "demo" / "demo.json"
    deadline = time.monotonic() + START_TIMEOUT_S
    while not state.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the demo did not start:\n" + (folder / "demo.log").read_text())
        time.sleep(0.2)
    written = json.loads(state.read_text())
    try:
        yield RunningDemo(folder, written["api_url"], written["broker_url"], process)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        finally:
            if process.poll() is None:
                process.kill()
            log.close()


def test_the_demo_prints_its_broker_and_how_to_play_a_scenario_beside_it(demo: RunningDemo) -> None:
    out = one_line((demo.folder / "demo.log").read_text())
    assert f"mosquitto on {demo.broker_url}" in out
    assert f"firewatch simulate run flaming-fire-ward --api {demo.api_url} --broker {demo.broker_url}" in out


def test_a_key_created_beside_a_running_demo_opens_the_demos_api(demo: RunningDemo) -> None:
    made = firewatch(demo.folder, "api-keys", "create", "dashboard", "--role", "viewer")
    assert made.returncode == 0, made.stderr
    assert (
        f"using the demo's database at data/demo/firewatch.sqlite (the demo running as pid {demo.process.pid}"
        in (made.stderr)
    )
    key = made.stdout.strip()
    answer = httpx.get(
        f"{demo.api_url}/api/v1/alarms", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert answer.status_code == 200


def test_every_state_store_command_beside_the_demo_says_it_uses_the_demos_database(demo: RunningDemo) -> None:
    for args in (["users", "list"], ["api-keys", "list"], ["report", "--format", "json"]):
        done = firewatch(demo.folder, *args)
        assert done.returncode == 0, (args, done.stderr)
        assert "using the demo's database at data/demo/firewatch.sqlite" in done.stderr, args
    users = firewatch(demo.folder, "users", "list")
    assert "operator" in users.stdout  # the demo's own accounts


def test_a_database_set_explicitly_wins_over_the_running_demos_and_is_named(
    demo: RunningDemo, tmp_path: Path
) -> None:
    done = firewatch(
        demo.folder,
        "api-keys",
        "create",
        "elsewhere",
        "--role",
        "viewer",
        env=cli_env(FIREWATCH_DATA_DIR=str(tmp_path)),
    )
    assert done.returncode == 0, done.stderr
    assert f"using the database at {tmp_path / 'firewatch.sqlite'} (in data_dir)" in done.stderr
    answer = httpx.get(
        f"{demo.api_url}/api/v1/alarms",
        headers={"Authorization": f"Bearer {done.stdout.strip()}"},
        timeout=10,
    )
    assert answer.status_code == 401  # not the demo's key


def test_without_a_demo_the_default_database_is_named(tmp_path: Path) -> None:
    done = firewatch(tmp_path, "users", "list")
    assert done.returncode == 0, done.stderr
    assert (
        "using the database at data/firewatch.sqlite (the default; no demo is running from this folder)"
        in (done.stderr)
    )


def test_a_second_demo_on_the_running_demos_data_is_refused_with_the_way_out(demo: RunningDemo) -> None:
    second = firewatch(demo.folder, "demo", "--port", str(free_port()), "--fresh")
    assert second.returncode == 1
    said = one_line(second.stderr)
    assert f"a demo is already running on data/demo (pid {demo.process.pid}, API {demo.api_url})" in said
    assert "another --data-dir" in said
    assert (demo.folder / "data" / "demo" / "firewatch.sqlite").exists()  # --fresh removed nothing


@pytest.mark.parametrize("scenario", ["flaming-fire-ward", "silent-device"])
def test_a_scenario_played_against_the_running_demo_passes_with_the_demos_devices_yielded(
    demo: RunningDemo, scenario: str
) -> None:
    made = firewatch(demo.folder, "api-keys", "create", f"simulator-{scenario}", "--role", "viewer")
    assert made.returncode == 0, made.stderr
    report = demo.folder / f"{scenario}.json"
    played = firewatch(
        demo.folder,
        "simulate",
        "run",
        scenario,
        "--api",
        demo.api_url,
        "--broker",
        demo.broker_url,
        "--json",
        str(report),
        env=cli_env(FIREWATCH_API_TOKEN=made.stdout.strip()),
        timeout=300,
    )
    assert played.returncode == 0, played.stdout + played.stderr
    result = json.loads(report.read_text())
    assert result["passed"]
    # The demo's hospital stopped publishing every device the scenario played, and said so.
    played_devices = len(Fleet(load_registry(DEMO_HOSPITAL), load_profiles()).devices)
    assert list(result["yielded_by"].values()) == [played_devices]
    assert f"stopped publishing {played_devices} of these devices meanwhile" in one_line(played.stdout)
    # Nothing of the scenario's was dropped as a duplicate beyond what it sent twice on purpose.
    assert result["dropped_as_duplicates"] is not None
    # (A QoS 1 message the broker delivered again on a loaded machine is dropped too: a few are
    # allowed, as many as `simulate run` allows before it warns of another publisher.)
    unexplained = result["dropped_as_duplicates"] - result["duplicated"]
    assert unexplained <= max(10, result["published"] // 100), result
    assert "another publisher is using the same device ids" not in one_line(played.stdout)
