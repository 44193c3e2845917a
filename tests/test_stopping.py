"""Stops are bounded (issue 18, item 11): `firewatch demo` and `firewatch serve` as real processes,
stopped by real signals and by --duration, in the states that used to hang them: a child killed,
a child stuck (SIGSTOP). Every child must be gone afterwards, none left running or unreaped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.settings import InfluxSettings, MqttSettings, Settings
from firewatch.broker import Mosquitto, free_port
from firewatch.service import STEP_FLOOR_S, Service
from storage.compactor import Compactor
from storage.influx import InfluxSink, Tables
from tests.conftest import PROFILES, small_registry
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
# A graceful stop takes about 2 s here; a stuck compactor adds its grace, SIGTERM and SIGKILL (4 s).
STOP_BOUND_S = 10.0


@dataclass(frozen=True)
class Child:
    pid: int
    start: bytes  # /proc/PID/stat's start time: tells the same process from a reused pid

    def running(self) -> bool:
        """Still there and not a zombie (a zombie is a child nobody reaped)."""
        stat = _stat(self.pid)
        return stat is not None and stat[19] == self.start and stat[0] != b"Z"


def _stat(pid: int) -> list[bytes] | None:
    """/proc/PID/stat's fields from the state on (field 3 of proc(5) is index 0)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return raw.rsplit(b")", 1)[-1].split()


def children(pid: int) -> dict[str, Child]:
    """The children of `pid` we care about, by role: the embedded mosquitto, the compactor."""
    found: dict[str, Child] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or (stat := _stat(int(entry))) is None or int(stat[1]) != pid:
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if b"mosquitto" in cmdline.split(b"\0")[0]:
            found["mosquitto"] = Child(int(entry), stat[19])
        elif b"spawn_main" in cmdline:  # a multiprocessing child: the demo's only one is the compactor
            found["compactor"] = Child(int(entry), stat[19])
    return found


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    log: Path
    port: int
    kids: dict[str, Child] = field(default_factory=dict)  # as last seen, for the cleanup

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, sig: int) -> float:
        os.kill(self.proc.pid, sig)
        return time.monotonic()

    def wait_exit(self, since: float, bound: float = STOP_BOUND_S) -> int:
        """The exit code; fails if it has not come `bound` seconds after `since`."""
        try:
            code = self.proc.wait(timeout=bound + since - time.monotonic())
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {bound:.0f} s after the stop began:\n{self.output()[-3000:]}")
        print(f"exit {code} after {time.monotonic() - since:.2f} s")  # the stop time (pytest -s shows it)
        return code


def start(tmp_path: Path, command: list[str], env: dict[str, str] | None = None) -> Running:
    port = free_port()
    log = tmp_path / "out.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "firewatch.cli",
                *command,
                *(["--port", str(port)] if command[0] == "demo" else []),
            ],
            cwd=ROOT,
            env={
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "FIREWATCH_LOG": "1",
                "COLUMNS": "120",
                **(env or {}),
            },
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our signals only, never the test runner's terminal's
        )
    return Running(proc, log, port)


def demo(tmp_path: Path, *extra: str) -> Running:
    # --speed 5: the service's clock and the simulated devices run five times faster.
    return start(
        tmp_path, ["demo", "--data-dir", str(tmp_path / "demo"), "--speed", "5", "--incident-at", "1", *extra]
    )


def wait_serving(run: Running, roles: tuple[str, ...] = ("mosquitto", "compactor")) -> dict[str, Child]:
    """Until the API answers and the children are up; returns them."""

    def up() -> dict[str, Child] | None:
        assert run.proc.poll() is None, run.output()[-3000:]
        kids = children(run.proc.pid)
        if not all(r in kids for r in roles):
            return None
        try:
            ok = httpx.get(f"http://127.0.0.1:{run.port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return None
        return kids if ok else None

    run.kids = wait_until(up, timeout=30, what="the API and the child processes")
    return run.kids


@pytest.fixture
def cleanup() -> Iterator[list[Running]]:
    """Whatever a failed test left running is killed, with its children."""
    runs: list[Running] = []
    yield runs
    for run in runs:
        kids = {**run.kids, **(children(run.proc.pid) if run.proc.poll() is None else {})}
        run.proc.kill()
        run.proc.wait()
        for child in kids.values():
            if child.running():
                os.kill(child.pid, signal.SIGKILL)


def assert_gone(kids: dict[str, Child]) -> None:
    for role, child in kids.items():
        assert not child.running(), f"the {role} (pid {child.pid}) outlived the stop"


def test_duration_ends_the_demo_by_itself(tmp_path: Path, cleanup: list[Running]) -> None:
    run = demo(tmp_path, "--duration", "4")
    cleanup.append(run)
    kids = wait_serving(run)
    since = time.monotonic()  # the API is up: the 4 s have begun (a little earlier)
    code = run.wait_exit(since, 4.0 + STOP_BOUND_S)
    assert code == 0, run.output()[-3000:]
    assert "demo finished" in run.output()
    assert_gone(kids)


@pytest.mark.parametrize(
    ("sig", "group"),
    [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGINT, True)],
    ids=["SIGTERM", "SIGINT", "Ctrl-C"],
)
def test_a_signal_stops_the_demo_and_its_children_within_seconds(
    tmp_path: Path, cleanup: list[Running], sig: int, group: bool
) -> None:
    """Ctrl-C in a terminal sends SIGINT to the whole foreground process group: the compactor
    gets it too (and ignores it); mosquitto, in a session of its own, does not."""
    run = demo(tmp_path)
    cleanup.append(run)
    kids = wait_serving(run)
    if group:
        os.killpg(run.proc.pid, sig)  # the demo leads its own group (start_new_session)
        since = time.monotonic()
    else:
        since = run.signal(sig)
    code = run.wait_exit(since)
    assert code == 0, run.output()[-3000:]
    assert "stopped" in run.output()
    assert "Traceback" not in run.output()
    assert_gone(kids)


@pytest.mark.parametrize("fault", ["killed", "stuck"])
def test_the_demo_stops_within_seconds_whatever_its_compactor_did(
    tmp_path: Path, cleanup: list[Running], fault: str
) -> None:
    """The hang of issue 18: a compactor killed (or stuck) used to block the stop for good."""
    run = demo(tmp_path)
    cleanup.append(run)
    kids = wait_serving(run)
    compactor = kids["compactor"].pid
    if fault == "killed":
        os.kill(compactor, signal.SIGKILL)
    else:
        os.kill(compactor, signal.SIGSTOP)
        wait_until(lambda: _stat(compactor) and _stat(compactor)[0] == b"T", what="the compactor stopped")  # type: ignore[index]
    time.sleep(0.5)  # let the demo run on with it so for a moment
    code = run.wait_exit(run.signal(signal.SIGTERM))
    assert code == 0, run.output()[-3000:]
    assert_gone(kids)


def test_a_second_signal_exits_at_once_and_kills_the_children(tmp_path: Path, cleanup: list[Running]) -> None:
    run = demo(tmp_path)
    cleanup.append(run)
    kids = wait_serving(run)
    os.kill(kids["compactor"].pid, signal.SIGSTOP)  # the stop now takes seconds: time for a second signal
    run.signal(signal.SIGTERM)
    time.sleep(0.5)
    code = run.wait_exit(run.signal(signal.SIGINT), bound=3.0)
    assert code == 128 + signal.SIGINT, run.output()[-3000:]
    assert "SIGINT again while stopping" in run.output()
    assert_gone(kids)


def test_sigterm_stops_serve_within_seconds_an_open_alarm_stream_included(
    tmp_path: Path, cleanup: list[Running], mosquitto: Mosquitto
) -> None:
    port = free_port()
    password = f"stop-test-{uuid.uuid4().hex}"
    run = start(
        tmp_path,
        ["serve"],
        env={
            "FIREWATCH_MQTT__URL": mosquitto.url,
            "FIREWATCH_DATA_DIR": str(tmp_path / "serve"),
            "FIREWATCH_API__PORT": str(port),
            "FIREWATCH_AUTH__ADMIN_PASSWORD": password,
        },
    )
    run.port = port
    cleanup.append(run)
    kids = wait_serving(run, roles=("compactor",))
    api = f"http://127.0.0.1:{port}/api/v1"
    login = httpx.post(f"{api}/auth/login", json={"username": "admin", "password": password}, timeout=10)
    token = login.raise_for_status().json()["token"]
    # An SSE client never ends its request: the stop must end it rather than wait for it.
    opened, ended = threading.Event(), threading.Event()

    def listen() -> None:
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.stream(
                "GET", f"{api}/stream/alarms", headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as stream,
        ):
            opened.set()
            for _ in stream.iter_lines():
                pass
        ended.set()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert opened.wait(10)
    code = run.wait_exit(run.signal(signal.SIGTERM))
    assert code == 0, run.output()[-3000:]
    assert ended.wait(1)
    # The streams were closed before uvicorn's graceful wait, which otherwise waits its 3 s for them
    # and then cancels them (3.8 s to stop, measured, against 1.1 s).
    assert "timeout graceful shutdown exceeded" not in run.output()
    assert "firewatch stopped in" in run.output()
    assert_gone(kids)


@pytest.mark.parametrize("fault", ["killed", "stuck"])
def test_a_compactor_stops_within_its_bound_whatever_its_child_did(tmp_path: Path, fault: str) -> None:
    compactor = Compactor(tmp_path / "t.sqlite", every_s=0.05, retention_s=0)
    compactor.start()
    pid = compactor.pid
    assert pid is not None
    wait_until(compactor.started, what="the compactor past its imports")
    time.sleep(0.2)  # in its loop, waiting for the stop signal: where an Event deadlocked
    os.kill(pid, signal.SIGKILL if fault == "killed" else signal.SIGSTOP)
    since = time.monotonic()
    compactor.stop(grace_s=0.5)
    assert time.monotonic() - since < (0.2 if fault == "killed" else 0.5 + 2.2)
    assert not compactor.alive()
    stat = _stat(pid)
    assert stat is None, f"pid {pid} left as {stat[0]!r}"


def test_a_compactor_still_importing_is_ended_at_once_not_after_its_grace(tmp_path: Path) -> None:
    """A service stopped right after it started: its compactor child is still importing (seconds on
    a busy machine) and has nothing to finish, so the stop does not wait out the grace for it."""
    compactor = Compactor(tmp_path / "t.sqlite", every_s=0.05, retention_s=0)
    compactor.start()
    pid = compactor.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # held mid-import: a spawned interpreter takes far longer to get here
    assert not compactor.started()
    since = time.monotonic()
    compactor.stop(grace_s=30.0)
    assert time.monotonic() - since < 5.0  # SIGTERM waits while it is stopped; SIGKILL 1 s later
    assert not compactor.alive()
    assert _stat(pid) is None


def test_a_demo_killed_outright_leaves_no_child_running(tmp_path: Path, cleanup: list[Running]) -> None:
    """SIGKILL cannot be handled: the children notice by themselves (the compactor: the end of its
    stop pipe; mosquitto: the parent-death signal)."""
    run = demo(tmp_path)
    cleanup.append(run)
    kids = wait_serving(run)
    run.proc.kill()
    run.proc.wait()
    wait_until(lambda: not any(c.running() for c in kids.values()), timeout=5, what="the children gone")


def _hold(lock: Any) -> None:
    lock.acquire()
    time.sleep(60)


@pytest.mark.parametrize("fault", ["killed", "stuck"])
def test_the_influx_sink_stops_within_its_bound_whatever_its_worker_did(fault: str) -> None:
    sink = InfluxSink(InfluxSettings(url=f"http://127.0.0.1:{free_port()}"), instance="test")
    sink.start(Tables(0, [], {}))
    process = sink._process
    assert process is not None
    assert process.pid is not None
    time.sleep(0.5)  # in its receive loop
    os.kill(process.pid, signal.SIGKILL if fault == "killed" else signal.SIGSTOP)
    since = time.monotonic()
    sink.stop(drain_s=0.5)
    took = time.monotonic() - since
    # killed: the join returns at once; stuck: drain 0.5 + 2 s, SIGTERM (ignored while stopped), SIGKILL
    assert took < (1.0 if fault == "killed" else 0.5 + 2.0 + 2.5), took
    assert not process.is_alive()


def test_the_sink_status_does_not_wait_on_an_error_lock_a_dead_process_holds() -> None:
    sink = InfluxSink(InfluxSettings(url=f"http://127.0.0.1:{free_port()}"), instance="test")
    holder = mp.get_context("spawn").Process(target=_hold, args=(sink._error.get_lock(),), daemon=True)
    holder.start()
    time.sleep(1.0)  # it has the lock
    os.kill(holder.pid or 0, signal.SIGKILL)
    holder.join()
    since = time.monotonic()
    assert sink.status().last_error == ""
    assert time.monotonic() - since < 0.5
    sink.start(Tables(0, [], {}))  # a (re)started worker gets an error text it can write
    try:
        assert sink._error_lock_free()
    finally:
        sink.stop(drain_s=0.1)


async def test_a_stuck_stop_step_is_logged_and_skipped_within_the_budget(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        data_dir=tmp_path, mqtt=MqttSettings(url=mosquitto.url, client_id=f"fw-stop-{uuid.uuid4().hex[:8]}")
    )
    svc = Service(settings, registry=small_registry(), profiles=PROFILES)
    await svc.start()
    await asyncio.wait_for(svc.source.connected.wait(), 10)
    stuck = threading.Event()
    close = svc.dispatcher.close
    svc.dispatcher.close = stuck.wait  # type: ignore[assignment,method-assign]
    caplog.set_level(logging.INFO)
    since = time.monotonic()
    try:
        await svc.stop(budget_s=2.0)
    finally:
        stuck.set()
        close()
    took = time.monotonic() - since
    print(f"Service.stop with a stuck step: {took:.2f} s")
    assert took < 2.0 + 3 * STEP_FLOOR_S + 0.5
    assert "the push dispatcher did not finish" in caplog.text
    assert "firewatch stopped in" in caplog.text  # the steps after it ran
    assert not svc.compactor.alive()


STUCK_PROGRAM = """
import subprocess, sys, threading
from firewatch.stopping import StopSignals

with StopSignals(deadline_s=1.0):
    child = subprocess.Popen(["sleep", "60"])
    print(child.pid, flush=True)
    threading.Event().wait()  # the main thread never gets anywhere again
"""


def test_a_stop_stuck_in_the_main_thread_ends_at_the_deadline_with_its_children_killed() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", STUCK_PROGRAM],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
        child = Child(pid, (_stat(pid) or [b""] * 20)[19])
        since = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=5)
        took = time.monotonic() - since
        print(f"exit {code} after {took:.2f} s")
        assert code == 1
        assert 0.9 < took < 3.0
        assert b"did not finish within 1 s" in (proc.stderr.read() if proc.stderr else b"")
        wait_until(lambda: not child.running(), timeout=2, what="the child killed")
    finally:
        proc.kill()
        proc.wait()
