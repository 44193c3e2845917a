"""What a running `firewatch demo` tells the commands run beside it, and what its last run left.

A demo keeps its state store in its data folder (`data/demo/` by default), not in `data/` where
`firewatch serve` and the commands that touch the state store (`users`, `api-keys`, `report`)
look by default. So the demo writes `demo.json` in its data folder while it runs (its pid, its
database, API and broker), and those commands, when no database is configured, use the database of
the demo running from the same folder (firewatch/store_choice.py). The file is removed when the
demo stops; one left by a demo that was killed names a pid that is no longer running and is
ignored.

The demo's own files, which `firewatch demo --fresh` removes and nothing else: its SQLite state
store and telemetry (with their journal files), the detectors' snapshot, its embedded mosquitto's
folder (retained device statuses) and `demo.json`.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from core.domain import AlarmState, TicketStatus
from core.settings import Settings
from storage.models import AlarmRow, TicketRow

STATE_FILE = "demo.json"
DEFAULT_DATA_DIR = Path("data/demo")  # `firewatch demo`'s default --data-dir
BROKER_DIR = "mosquitto"
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


@dataclass(frozen=True)
class DemoState:
    pid: int
    database_url: str
    database_path: str  # the SQLite file in its data folder (if database_url names another, unused)
    api_url: str
    broker_url: str
    data_dir: str
    started_at: float


def write_state(settings: Settings, *, api_url: str, broker_url: str) -> Path:
    """Say where this demo is, for the commands run beside it (written once its API answers)."""
    path = settings.data_dir / STATE_FILE
    database = (settings.data_dir / "firewatch.sqlite").resolve()
    state = DemoState(
        pid=os.getpid(),
        # Absolute: the commands beside it need not resolve paths from where the demo started.
        database_url=settings.database_url or f"sqlite:///{database}",
        database_path=str(database),
        api_url=api_url,
        broker_url=broker_url,
        data_dir=str(settings.data_dir),
        started_at=time.time(),
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)  # whole or not at all: a command beside it never reads half a file
    return path


def remove_state(data_dir: Path) -> None:
    """The demo's last word: only the file this process wrote (another demo's stays)."""
    state = _read(data_dir)
    if state is not None and state.pid == os.getpid():
        (data_dir / STATE_FILE).unlink(missing_ok=True)


def running_demo(data_dir: Path = DEFAULT_DATA_DIR) -> DemoState | None:
    """The demo running with this data folder, if one is (its pid alive and a firewatch process)."""
    state = _read(data_dir)
    if state is None or not _alive(state.pid):
        return None
    return state


def _read(data_dir: Path) -> DemoState | None:
    try:
        raw = json.loads((data_dir / STATE_FILE).read_text(encoding="utf-8"))
        return DemoState(**raw)
    except (OSError, ValueError, TypeError):  # none, half-written by hand, or of another version
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # running, as another user
    # A pid is reused after a reboot: on Linux, check it is still firewatch.
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        return b"firewatch" in cmdline.read_bytes()
    except OSError:
        return not cmdline.parent.parent.is_dir()  # no /proc (not Linux): trust the pid


@dataclass(frozen=True)
class LastRun:
    """What the last demo left in its data folder."""

    open_alarms: int | None  # None: the counts could not be read (the message says why)
    open_tickets: int | None
    unreadable: str = ""

    def describe(self) -> str:
        if self.open_alarms is None or self.open_tickets is None:
            return f"its counts could not be read ({self.unreadable})"
        return f"{self.open_alarms} open alarms, {self.open_tickets} open tickets"


def last_run(settings: Settings) -> LastRun | None:
    """The last demo's state store, if it left one in the data folder (None: nothing to keep)."""
    path = settings.data_dir / "firewatch.sqlite"
    if not path.is_file():
        return None
    try:
        # Read-only, and no migration: looking must change nothing.
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            alarms = db.execute(
                f"SELECT count(*) FROM {AlarmRow.__tablename__} WHERE state != ?",
                (AlarmState.CLOSED.value,),
            ).fetchone()[0]
            tickets = db.execute(
                f"SELECT count(*) FROM {TicketRow.__tablename__} WHERE status != ?",
                (TicketStatus.CLOSED.value,),
            ).fetchone()[0]
    except sqlite3.Error as exc:
        return LastRun(None, None, str(exc))
    return LastRun(int(alarms), int(tickets))


def demo_files(settings: Settings) -> list[Path]:
    """The demo's own files in its data folder, as they are now (what --fresh removes)."""
    d = settings.data_dir
    files = [d / STATE_FILE, settings.detector_snapshot_path]
    for store in (d / "firewatch.sqlite", settings.resolved_telemetry_path):
        files += [store, *(store.with_name(store.name + side) for side in SQLITE_SIDE_FILES)]
    files.append(d / BROKER_DIR)
    inside = d.resolve()
    return [f for f in files if f.exists() and f.resolve().is_relative_to(inside)]


def remove_demo_files(settings: Settings) -> list[Path]:
    """Start from nothing: remove the demo's own files (and only those); returns what went."""
    gone = demo_files(settings)
    for f in gone:
        if f.is_dir():
            shutil.rmtree(f)
        else:
            f.unlink()
    return gone
