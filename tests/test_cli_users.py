"""`firewatch users` and `firewatch api-keys`, run as an operator runs them, on a store of their own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from accounts.service import AccountService
from storage.db import open_store


def firewatch(store: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FIREWATCH_DATABASE_URL": store, "COLUMNS": "200"}
    env.pop("FIREWATCH_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "firewatch.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_the_first_admin_is_added_from_the_command_line_and_can_sign_in(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'state.sqlite'}"
    weak = firewatch(
        store, "users", "add", "ops", "--role", "admin", "--password-stdin", stdin="admin123456\n"
    )
    assert weak.returncode == 2
    assert "default or commonly used" in weak.stderr
    added = firewatch(
        store, "users", "add", "ops", "--role", "admin", "--password-stdin", stdin="a-Long-secret-9\n"
    )
    assert added.returncode == 0, added.stderr
    _, sessions = open_store(store)
    _, principal = AccountService(sessions).login("ops", "a-Long-secret-9")
    assert [r.value for r in principal.roles] == ["admin"]
    listed = firewatch(store, "users", "list")
    assert "ops" in listed.stdout
    assert "active" in listed.stdout


def test_an_api_key_is_printed_once_on_stdout_and_revoked_by_id(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'state.sqlite'}"
    created = firewatch(store, "api-keys", "create", "bms-gateway", "--role", "viewer")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("fwk_")
    _, sessions = open_store(store)
    assert AccountService(sessions).resolve(token).name == "key:bms-gateway"
    assert token not in firewatch(store, "api-keys", "list").stdout
    assert firewatch(store, "api-keys", "revoke", "1").returncode == 0
    assert firewatch(store, "api-keys", "revoke", "99").returncode == 1


def test_changing_an_unknown_user_says_so(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'state.sqlite'}"
    result = firewatch(store, "users", "disable", "nobody")
    assert result.returncode == 1
    assert "does not exist" in result.stderr
