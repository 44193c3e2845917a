"""A second `firewatch demo` over the last one's data, through the real command line: asked on a
terminal whether to start fresh (Enter: yes), `--fresh` and `--keep` without a question, and,
with no terminal and no flag, the data kept and the way to a fresh start said in one line.

Fresh removes the demo's own files in its data folder and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firewatch.broker import free_port, mosquitto_binary
from tests.demo_cli import cli_env, firewatch, one_line

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("accelerated")]

# A fire and a fault staged at once, 12 s at 10 times real time: alarms and tickets to come back to.
FIRST_RUN = ("--duration", "12", "--speed", "10", "--incident-at", "1")
SHORT_RUN = ("--duration", "1", "--incident-at", "100000")
ANSWER_TIMEOUT_S = 120.0


def open_counts(folder: Path) -> tuple[int, int]:
    # Closed here, not when collected: closing the last connection removes the -wal and -shm files,
    # and a collection in the middle of a copy of the folder (`last_run`) failed it once.
    with contextlib.closing(sqlite3.connect(folder / "data" / "demo" / "firewatch.sqlite")) as db:
        alarms = db.execute("SELECT count(*) FROM alarms WHERE state != 'closed'").fetchone()[0]
        tickets = db.execute("SELECT count(*) FROM tickets WHERE status != 'closed'").fetchone()[0]
    return int(alarms), int(tickets)


def alarms_of(folder: Path) -> set[tuple[int, float]]:
    """Each alarm in the demo's state store, by id and first reading (a fresh store reuses ids)."""
    with contextlib.closing(sqlite3.connect(folder / "data" / "demo" / "firewatch.sqlite")) as db:
        return {(int(i), float(ts)) for i, ts in db.execute("SELECT id, first_ts FROM alarms")}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where a demo ran, left its alarms and tickets, and stopped (its state file gone).
    One run for the module: each test gets a copy of the folder (`last_run`)."""
    folder = tmp_path_factory.mktemp("first-run")
    done = firewatch(folder, "demo", "--port", str(free_port()), *FIRST_RUN)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "The last demo's data" not in done.stdout + done.stderr  # nothing to ask about the first time
    assert not (folder / "data" / "demo" / "demo.json").exists()  # removed when it stopped
    alarms, tickets = open_counts(folder)
    assert alarms > 0
    assert tickets > 0
    return folder


@pytest.fixture
def last_run(first_run: Path, tmp_path: Path) -> Path:
    """This test's own copy of the folder the first demo left (a second demo changes it)."""
    folder = tmp_path / "last-run"
    shutil.copytree(first_run, folder)
    return folder


def demo_on_a_terminal(folder: Path, answer: bytes) -> tuple[int, str]:
    """`firewatch demo` with a terminal for its input and output; `answer` is typed at the question."""
    main, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "firewatch.cli", "demo", "--port", str(free_port()), *SHORT_RUN],
        cwd=folder,
        env=cli_env(),
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    seen = b""
    answered = False
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(main, 4096)
                except OSError:  # the other side closed: the demo ended
                    break
                if not chunk:
                    break
                seen += chunk
            if not answered and b"Start fresh? [Y/n]" in seen:
                os.write(main, answer)
                answered = True
            if process.poll() is not None and not ready:
                break
        code = process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(main)
    return code, one_line(seen.decode("utf-8", "replace"))


def test_on_a_terminal_the_demo_asks_and_enter_starts_fresh(last_run: Path) -> None:
    alarms, tickets = open_counts(last_run)
    before = alarms_of(last_run)
    code, screen = demo_on_a_terminal(last_run, b"\r")
    assert code == 0, screen
    assert (
        f"The last demo's data is still here: {alarms} open alarms, {tickets} open tickets. "
        "Start fresh? [Y/n]" in screen
    )
    assert "starting fresh" in screen
    assert not before & alarms_of(last_run)  # none of the last run's alarms is left


def test_on_a_terminal_answering_no_keeps_the_last_demos_data(last_run: Path) -> None:
    before = alarms_of(last_run)
    code, screen = demo_on_a_terminal(last_run, b"n\r")
    assert code == 0, screen
    assert "carrying on with the last demo's data in data/demo" in screen
    assert before <= alarms_of(last_run)  # every one of the last run's alarms is still there


def test_fresh_removes_the_demos_own_files_and_nothing_else_without_asking(last_run: Path) -> None:
    demo_dir = last_run / "data" / "demo"
    (demo_dir / "notes.txt").write_text("the operator's own notes")
    (last_run / "data" / "firewatch.sqlite").write_text("another service's state store")
    before = alarms_of(last_run)
    done = firewatch(last_run, "demo", "--port", str(free_port()), "--fresh", *SHORT_RUN)
    assert done.returncode == 0, done.stdout + done.stderr
    said = one_line(done.stdout + done.stderr)
    assert "Start fresh?" not in said
    assert "starting fresh: removed the last demo's" in said
    assert not before & alarms_of(last_run)  # none of the last run's alarms is left
    assert (demo_dir / "notes.txt").read_text() == "the operator's own notes"
    assert (last_run / "data" / "firewatch.sqlite").read_text() == "another service's state store"


def test_keep_carries_on_with_the_last_demos_alarms_without_asking(last_run: Path) -> None:
    before = alarms_of(last_run)
    done = firewatch(last_run, "demo", "--port", str(free_port()), "--keep", *SHORT_RUN)
    assert done.returncode == 0, done.stdout + done.stderr
    said = one_line(done.stdout + done.stderr)
    assert "Start fresh?" not in said
    assert "carrying on with the last demo's data in data/demo" in said
    assert before <= alarms_of(last_run)  # every one of the last run's alarms is still there


def test_without_a_terminal_or_a_flag_the_data_is_kept_and_the_way_to_start_fresh_said(
    last_run: Path,
) -> None:
    alarms, tickets = open_counts(last_run)
    before = alarms_of(last_run)
    done = firewatch(last_run, "demo", "--port", str(free_port()), *SHORT_RUN)
    assert done.returncode == 0, done.stdout + done.stderr
    said = one_line(done.stderr)
    assert (
        f"keeping the last demo's data in data/demo ({alarms} open alarms, {tickets} open tickets); "
        "firewatch demo --fresh starts from nothing"
    ) in said
    assert before <= alarms_of(last_run)  # every one of the last run's alarms is still there


def test_fresh_and_keep_together_are_refused(tmp_path: Path) -> None:
    done = firewatch(tmp_path, "demo", "--port", str(free_port()), "--fresh", "--keep")
    assert done.returncode == 2
    assert "--fresh and --keep contradict each other" in done.stderr


@pytest.mark.skipif(mosquitto_binary() is None, reason="needs mosquitto (apt-get install mosquitto)")
def test_a_registry_that_cannot_be_read_is_said_plainly_and_the_broker_is_not_left_running(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "no-such-registry.yaml"
    done = firewatch(
        tmp_path, "demo", "--port", str(free_port()), env=cli_env(FIREWATCH_REGISTRY=str(missing))
    )
    assert done.returncode == 2
    said = one_line(done.stderr)
    assert f"cannot start the demo: {missing}: cannot read registry" in said
    assert "unset FIREWATCH_REGISTRY" in said
    assert "Traceback" not in done.stdout + done.stderr
    # The embedded broker it had started (its config in the data folder) was stopped with it.
    assert (tmp_path / "data" / "demo" / "mosquitto" / "mosquitto.conf").exists()
    assert processes_naming(str(tmp_path)) == []


def processes_naming(text: str) -> list[str]:
    """The command lines of running processes that name `text` (Linux /proc)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:  # it ended while we looked
            continue
        if text in line:
            found.append(line)
    return found
