"""`firewatch users` and `firewatch api-keys`, run as an operator runs them, on a store of their own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from accounts.service import AccountService
from storage.db import open_store
from storage.models import AuditRow


def firewatch(
    store: str, *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FIREWATCH_DATABASE_URL": store, "COLUMNS": "200", **(env or {})}
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


def audit_rows(store: str) -> list[AuditRow]:
    _, sessions = open_store(store)
    with sessions() as s:
        return list(s.scalars(select(AuditRow).order_by(AuditRow.id)))


def test_every_account_change_from_the_command_line_is_audited(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'state.sqlite'}"
    env_user = {"USER": "wangfang", "LOGNAME": "wangfang"}
    steps = [
        (("users", "add", "ops", "--role", "admin", "--password-stdin"), "a-Long-secret-9\n"),
        (("users", "roles", "ops", "--role", "safety"), ""),
        (("users", "disable", "ops"), ""),
        (("users", "enable", "ops"), ""),
        (("users", "passwd", "ops", "--password-stdin"), "another-Long-secret-7\n"),
        (("api-keys", "create", "bms-gateway", "--role", "viewer"), ""),
        (("api-keys", "revoke", "1"), ""),
    ]
    for args, stdin in steps:
        result = firewatch(store, *args, stdin=stdin, env=env_user)
        assert result.returncode == 0, result.stderr
    rows = audit_rows(store)
    assert [(r.action, r.subject, r.detail["outcome"]) for r in rows] == [
        ("create_user", "user:ops", "done"),
        ("update_user", "user:ops", "done"),
        ("update_user", "user:ops", "done"),
        ("update_user", "user:ops", "done"),
        ("set_password", "user:ops", "done"),
        ("create_api_key", "api_key:1", "done"),
        ("revoke_api_key", "api_key:1", "done"),
    ]
    assert {r.actor for r in rows} == {"cli:wangfang"}
    assert rows[0].detail["roles"] == ["admin"]
    assert rows[1].detail["change"] == {"roles": ["safety"]}
    assert rows[2].detail["change"] == {"disabled": True}
    assert all(r.source.startswith("cli@") for r in rows)
    # Passwords and keys never reach the trail.
    text = repr([(r.detail, r.subject) for r in rows])
    assert "a-Long-secret-9" not in text
    assert "another-Long-secret-7" not in text


def test_a_refused_command_line_change_is_audited_too(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'state.sqlite'}"
    weak = firewatch(
        store, "users", "add", "ops", "--role", "admin", "--password-stdin", stdin="admin123456\n"
    )
    assert weak.returncode == 2
    assert firewatch(store, "users", "disable", "nobody").returncode == 1
    rows = audit_rows(store)
    assert [(r.action, r.subject) for r in rows] == [
        ("create_user", "user:ops"),
        ("update_user", "user:nobody"),
    ]
    assert rows[0].detail["outcome"].startswith("refused: that password is a default")
    assert "admin123456" not in repr(rows[0].detail)
    assert rows[1].detail["outcome"] == "refused: user 'nobody' does not exist"
