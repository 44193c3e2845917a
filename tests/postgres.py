"""A private PostgreSQL cluster for the tests: initdb in a temporary directory, started on a free
loopback port, removed afterwards. The machine's own PostgreSQL is never touched.

Debian's server binaries live in /usr/lib/postgresql/<version>/bin (package `postgresql`, which
scripts/test installs when missing). PostgreSQL refuses to run as root, so as root the cluster runs
as the `postgres` user the package creates.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg

from firewatch.broker import free_port


class PostgresUnavailableError(RuntimeError):
    pass


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if not found:
        raise PostgresUnavailableError(
            "PostgreSQL server binaries not found: apt-get install postgresql (scripts/test does this)"
        )
    return Path(found[-1]).parent


class PrivatePostgres:
    def __init__(self, *, durable: bool = False) -> None:
        """`durable`: fsync and synchronous commit on, as a production server runs (benchmarks);
        by default off, as tests need no crash safety of the operating system's."""
        self.durable = durable
        self.bindir = _bindir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="fw-pg-"))
        self.data = self.root / "data"
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = "postgres"
            entry = pwd.getpwnam(self._user)
            os.chmod(self.root, 0o755)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._user is not None:
            cmd = ["runuser", "-u", self._user, "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise PostgresUnavailableError(
                f"{args[0]} failed: {result.stderr.strip() or result.stdout.strip()}"
            )

    def start(self) -> PrivatePostgres:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--locale=C", "--no-sync")  # fmt: skip
        return self.resume()

    def resume(self) -> PrivatePostgres:
        """Start the cluster's server (again, after `halt`), on the same port and data."""
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=100"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")
        return self

    def halt(self) -> None:
        """Stop the server at once, as a crash or an operator would (`-m immediate`): connections
        drop, new ones are refused, until `resume`."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, template: str | None = None) -> str:
        """A new database: empty, or a copy of `template` (PostgreSQL's CREATE DATABASE ... TEMPLATE,
        a file copy: much cheaper than running the migrations again)."""
        name = f"fw_{uuid.uuid4().hex[:12]}"
        copy = f' TEMPLATE "{template}"' if template is not None else ""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{copy}')
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        with contextlib.suppress(PostgresUnavailableError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
