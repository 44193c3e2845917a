"""A private VictoriaMetrics (Debian's /usr/bin/victoria-metrics) for the InfluxDB sink's tests and
benchmark: a free 127.0.0.1 port, a temporary data directory, never a system server.

VictoriaMetrics accepts influxdb-client's `/api/v2/write`: a point's measurement and field become
the metric name `measurement_field`, its tags become labels, and string fields are stored as 0. It
is read back with `/api/v1/export` (one JSON object per series). `-search.latencyOffset=0` and
`/internal/force_flush` make what was written readable at once.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from firewatch.broker import free_port, stop_process

BINARY = Path("/usr/bin/victoria-metrics")


class VictoriaMetrics:
    def __init__(
        self,
        *,
        port: int | None = None,
        data_dir: Path | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        if not BINARY.exists():
            raise RuntimeError(f"{BINARY} is missing: apt-get install victoria-metrics (scripts/test does)")
        self.port = port or free_port()
        self._own_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="fw-victoria-"))
        self.username = username
        self.password = password
        self._process: subprocess.Popen[bytes] | None = None
        self._log = self.data_dir / "victoria.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> VictoriaMetrics:
        args = [
            str(BINARY),
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.data_dir / 'data'}",
            "-search.latencyOffset=0",  # what was written is visible to queries at once
            "-retentionPeriod=100y",  # tests write timestamps of any age
            "-loggerLevel=ERROR",
        ]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.username:
            args += [f"-httpAuth.username={self.username}", f"-httpAuth.password={self.password or ''}"]
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                tail = self._log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"victoria-metrics exited: {tail}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"victoria-metrics did not answer on port {self.port} within {timeout} s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process, timeout=15)
            self._process = None

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> VictoriaMetrics:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- reading back ------------------------------------------------------------------------------
    def _auth(self) -> tuple[str, str] | None:
        return (self.username, self.password or "") if self.username else None

    def flush(self) -> None:
        """Make everything written so far searchable."""
        httpx.get(f"{self.url}/internal/force_flush", auth=self._auth(), timeout=10).raise_for_status()

    def export(self, match: str) -> list[dict[str, Any]]:
        """Every series matching the selector, e.g. '{__name__=~"reading_.*",site="s1"}', as
        {"metric": {labels}, "values": [...], "timestamps": [ms, ...]}."""
        self.flush()
        r = httpx.get(f"{self.url}/api/v1/export", params={"match[]": match}, auth=self._auth(), timeout=30)
        r.raise_for_status()
        return [json.loads(x) for x in r.text.splitlines() if x.strip()]

    def samples(self, match: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], dict[int, float]]:
        """(metric name, other labels sorted) -> {timestamp ms: value}."""
        out: dict[tuple[str, tuple[tuple[str, str], ...]], dict[int, float]] = {}
        for series in self.export(match):
            labels = dict(series["metric"])
            name = labels.pop("__name__")
            key = (name, tuple(sorted(labels.items())))
            out.setdefault(key, {}).update(zip(series["timestamps"], series["values"], strict=True))
        return out
