"""A private InfluxDB 1.x for the tests: Debian's `influxd` (package `influxdb`, 1.6) with a generated
config whose meta, data and WAL directories live in a temporary directory, listening on free
loopback ports, with usage reporting and the self-monitoring store off. The machine's own InfluxDB
is never touched.

It speaks InfluxQL through the 1.x HTTP API (`/query`, `/write`): what Grafana's InfluxDB data source
in InfluxQL mode sends, and what InfluxDB 2 answers through its v1-compatible API.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from firewatch.broker import free_port, stop_process

INFLUXD = Path("/usr/bin/influxd")


class InfluxUnavailableError(RuntimeError):
    pass


class InfluxQueryError(RuntimeError):
    """InfluxDB answered a statement with an error; the message carries the statement."""


class InfluxDB1:
    def __init__(self, binary: Path = INFLUXD) -> None:
        if not binary.exists():
            raise InfluxUnavailableError(
                f"{binary} not found: apt-get install influxdb (scripts/test does this)"
            )
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="fw-influx-"))
        self.http_port = free_port()
        self.rpc_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = self.root / "influxd.log"

    def config(self) -> str:
        r = self.root
        return f"""reporting-enabled = false
bind-address = "127.0.0.1:{self.rpc_port}"

[meta]
  dir = "{r / "meta"}"
  logging-enabled = false

[data]
  dir = "{r / "data"}"
  wal-dir = "{r / "wal"}"
  wal-fsync-delay = "0s"
  query-log-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{self.http_port}"
  auth-enabled = false
  log-enabled = false
  pprof-enabled = false

[monitor]
  store-enabled = false

[continuous_queries]
  enabled = false

[subscriber]
  enabled = false
"""

    def start(self, timeout: float = 30.0) -> InfluxDB1:
        path = self.root / "influxdb.conf"
        path.write_text(self.config(), encoding="utf-8")
        with self._log.open("wb") as log:
            self._proc = subprocess.Popen(
                [str(self.binary), "-config", str(path)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise InfluxUnavailableError(
                    f"influxd exited: {self._log.read_text(errors='replace')[-2000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/ping", timeout=1.0).status_code == 204:
                    return self
            time.sleep(0.05)
        self.close()
        raise InfluxUnavailableError(f"influxd did not answer /ping within {timeout} s")

    def create_database(self, name: str) -> None:
        self.query(f'CREATE DATABASE "{name}"', method="POST")

    def write(self, database: str, lines: list[str], precision: str = "ms") -> None:
        """Write line protocol through the 1.x `/write` endpoint, in chunks."""
        for i in range(0, len(lines), 5000):
            r = httpx.post(
                f"{self.url}/write",
                params={"db": database, "precision": precision},
                content="\n".join(lines[i : i + 5000]).encode(),
                timeout=30.0,
            )
            if r.status_code != 204:
                raise InfluxQueryError(f"write refused ({r.status_code}): {r.text}")

    def query(self, q: str, database: str | None = None, method: str = "GET") -> list[dict[str, Any]]:
        """Run InfluxQL; return the series of its (single) statement. Raise on any error."""
        params = {"q": q, "epoch": "ms"}
        if database is not None:
            params["db"] = database
        if method == "POST":
            r = httpx.post(f"{self.url}/query", params=params, timeout=30.0)
        else:
            r = httpx.get(f"{self.url}/query", params=params, timeout=30.0)
        body = r.json()
        if r.status_code != 200 or "error" in body:
            raise InfluxQueryError(f"{body.get('error', r.status_code)}\n  in: {q}")
        results = body.get("results", [])
        errors = [res["error"] for res in results if "error" in res]
        if errors:
            raise InfluxQueryError(f"{errors[0]}\n  in: {q}")
        series: list[dict[str, Any]] = []
        for res in results:
            series.extend(res.get("series", []))
        return series

    def close(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)
        shutil.rmtree(self.root, ignore_errors=True)
