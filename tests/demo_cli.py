"""The `firewatch` command line as a user runs it: another process, from a folder of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cli_env(**extra: str) -> dict[str, str]:
    """The environment a user has: no database configured, this checkout's code, a wide terminal."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **extra}
    for name in ("FIREWATCH_CONFIG", "FIREWATCH_DATABASE_URL", "FIREWATCH_DATA_DIR", "FIREWATCH_API_TOKEN"):
        if name not in extra:
            env.pop(name, None)
    return env


def firewatch(
    cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "firewatch.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env or cli_env(),
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )


def one_line(text: str) -> str:
    return " ".join(text.split())
