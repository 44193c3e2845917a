"""`firewatch demo` and `firewatch simulate` as a user runs them (time-compressed)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from core.settings import Settings
from firewatch import demo as demo_module
from firewatch.broker import Mosquitto, free_port
from firewatch.cli import app
from storage.db import open_store
from storage.plan_models import FloorPlanRow

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("broker", ["mosquitto", "in-process"])
async def test_the_demo_stages_a_fire_and_a_fault_that_become_alarms_and_a_ticket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broker: str
) -> None:
    if broker == "in-process":  # what a machine without mosquitto gets
        monkeypatch.setattr(demo_module, "mosquitto_binary", lambda: None)
    settings = Settings(data_dir=tmp_path / "demo")
    settings.api.port = free_port()
    # speed 5: the service's clock and its devices run five times faster (a 75 s demo)
    summary = await demo_module.run_demo(settings, duration=15.0, incident_at=2.0, speed=5.0)
    assert summary["published"] > 215
    assert summary["ingested"] >= 1000
    assert summary["rejected"] == 0
    assert summary["open fire alarms"] >= 1
    # The zone fire is one incident holding its alarms, not a card per detector.
    assert summary["open fire incidents"] == 1
    assert summary["tickets"] >= 1  # the gas detector's fault
    # The fire alarm panel's transmission device, over GB/T 26875.3: a point disabled (屏蔽).
    assert summary["disabled points"] == 1
    # A drawn floor plan for every floor of the demo hospital, kept in its store (issue 22).
    _, sessions = open_store(settings.resolved_database_url)
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(FloorPlanRow)) == 12


def test_simulate_publishes_the_demo_hospital_and_injects_a_fire(mosquitto: Mosquitto) -> None:
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "devices",
            "--broker",
            mosquitto.url,
            "--duration",
            "2",
            "--fire",
            "sxzyy/b2/f4/z2",
            "--incident-at",
            "0.5",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "published" in result.output
    assert "flaming fire at sxzyy/b2/f4/z2" in result.output


def test_simulate_refuses_a_zone_that_does_not_exist(mosquitto: Mosquitto) -> None:
    result = CliRunner().invoke(app, ["simulate", "devices", "--broker", mosquitto.url, "--fire", "nowhere"])
    assert result.exit_code == 2
    assert "no place 'nowhere'" in result.output


def test_simulate_says_when_the_broker_is_unreachable() -> None:
    result = CliRunner().invoke(
        app, ["simulate", "devices", "--broker", f"mqtt://127.0.0.1:{free_port()}", "--duration", "1"]
    )
    assert result.exit_code == 1
    assert "cannot reach the broker" in result.output


def test_simulate_refuses_a_broker_url_that_is_not_mqtt() -> None:
    result = CliRunner().invoke(app, ["simulate", "devices", "--broker", "http://x"])
    assert result.exit_code == 2
    assert "mqtt://host:port" in result.output


def test_a_busy_port_is_named_with_the_way_out_and_nothing_is_left_running(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["demo", "--port", str(port), "--data-dir", str(tmp_path / "demo")])
    assert result.exit_code == 1
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr
    assert f"firewatch demo --port {port + 1}" in result.stderr
    assert not (tmp_path / "demo" / "mosquitto").exists()  # the broker was never started
