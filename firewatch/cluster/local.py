"""A cluster's workers as processes on this machine, and what they keep in PostgreSQL: for the
cluster test and the scale-out benchmark (docs/scale.md). Each worker is `firewatch serve` with
the cluster settings, its own data directory and API port, on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text

from firewatch.broker import free_port
from storage.db import make_engine

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class WorkerProcess:
    worker_id: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """kill -9: no goodbye, its leases expire."""
        if self.alive:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM, a graceful stop (it hands its partitions on); SIGKILL if it does not end."""
        if self.alive:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start_worker(
    worker_id: str,
    *,
    engine: list[str],
    database_url: str,
    registry: Path,
    data_dir: Path,
    partitions: int,
    admin_password: str,
    env: dict[str, str] | None = None,
) -> WorkerProcess:
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = data_dir / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "firewatch.cli", "serve"],
            cwd=ROOT,
            env={
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "FIREWATCH_LOG": "1",
                "FIREWATCH_DATA_DIR": str(data_dir),
                "FIREWATCH_REGISTRY": str(registry),
                "FIREWATCH_DATABASE_URL": database_url,
                "FIREWATCH_API__PORT": str(port),
                "FIREWATCH_AUTH__ADMIN_PASSWORD": admin_password,
                "FIREWATCH_CLUSTER__ENABLED": "true",
                "FIREWATCH_CLUSTER__ENGINE": json.dumps(engine),
                "FIREWATCH_CLUSTER__PARTITIONS": str(partitions),
                "FIREWATCH_CLUSTER__WORKER_ID": worker_id,
                "FIREWATCH_CLUSTER__API_URL": f"http://127.0.0.1:{port}",
                **(env or {}),
            },
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return WorkerProcess(worker_id, port, proc, log)


class ClusterState:
    """What the workers keep in PostgreSQL, read for tests and benchmarks."""

    def __init__(self, database_url: str) -> None:
        self.db: Engine = make_engine(database_url)

    def close(self) -> None:
        self.db.dispose()

    def owners(self) -> dict[int, str | None]:
        """Partition -> owner whose lease is unexpired (server clock); none before the first
        worker has made the tables."""
        with self.db.connect() as c:
            if not c.execute(text("SELECT to_regclass('partition_leases')")).scalar():
                return {}
            rows = c.execute(
                text(
                    "SELECT partition, CASE WHEN expires_at > extract(epoch from clock_timestamp()) "
                    "THEN owner END FROM partition_leases WHERE partition >= 0"
                )
            ).all()
        return {int(p): o for p, o in rows}

    def readings(self) -> int:
        with self.db.connect() as c:
            return int(c.execute(text("SELECT count(*) FROM readings")).scalar_one())

    def fire_raises(self) -> dict[str, int]:
        """Per device, how many times a fire alarm of it was raised (alarm event log)."""
        with self.db.connect() as c:
            rows = c.execute(
                text(
                    "SELECT a.device_id, count(*) FROM alarm_events e JOIN alarms a ON a.id = e.alarm_id "
                    "WHERE a.category = 'fire' AND e.action = 'raised' GROUP BY a.device_id"
                )
            ).all()
        return {str(d): int(n) for d, n in rows}

    def wait_owned(self, workers: set[str], partitions: int, timeout_s: float) -> float:
        """Wait until every partition has an unexpired owner among `workers` and each of them owns
        some (the balance is reached); the seconds it took."""
        began = time.monotonic()
        while time.monotonic() - began < timeout_s:
            owners = self.owners()
            held = [owners.get(p) for p in range(partitions)]
            # Every partition owned by one of them, and (balance reached) each of them owning some.
            if all(o in workers for o in held) and set(held) >= set(list(workers)[:partitions]):
                return time.monotonic() - began
            time.sleep(0.1)
        raise TimeoutError(f"partitions not all owned by {sorted(workers)} in {timeout_s} s: {self.owners()}")
