"""`firewatch users` and `firewatch api-keys`: accounts, straight in the state store.

These work without a running service (the first admin has to come from somewhere), on the database
the settings name, or, when none is set, on the database of a demo running from this folder
(firewatch/store_choice.py); each says which on stderr. Passwords are read from a hidden prompt,
or from stdin with --password-stdin for scripts; they are never taken as an argument (it would
land in the shell history).

Every change, and every refused one, is written to the audit trail like the API's: the actor is
`cli:<operating-system user>`, the action the API's operation id for the same change.
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from accounts.model import AccountError, AccountNotFoundError, UserInfo
from core.domain import Role

if TYPE_CHECKING:  # the store and the password hasher load only for a command that needs them
    from accounts.service import AccountService

users_app = typer.Typer(
    help="People who sign in to the API and console: add, list, set passwords, roles, disable.",
    no_args_is_help=True,
)
keys_app = typer.Typer(
    help="API keys for integrations (a BMS gateway, a reporting job): create, list, revoke.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file (also FIREWATCH_CONFIG)")
]
RolesOpt = Annotated[
    list[Role],
    typer.Option(
        "--role",
        "-r",
        help="a role (repeat for several): viewer, operator, maintenance, safety, leader, admin",
    ),
]
StdinOpt = Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin (scripts)")]


def _fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[red]{escape(message)}[/]")
    raise typer.Exit(code)


def _accounts(config: Path | None) -> AccountService:
    from accounts.service import AccountService
    from core.settings import SettingsError, load_settings
    from firewatch.store_choice import choose_store
    from storage.db import DatabaseError, open_store

    try:
        settings = load_settings(config)
    except SettingsError as exc:
        _fail(str(exc))
    store = choose_store(settings)
    err.print(escape(store.line), soft_wrap=True)  # one line, to grep
    try:
        _engine, sessions = open_store(store.url)
    except DatabaseError as exc:
        _fail(f"{exc} (check database_url / FIREWATCH_DATABASE_URL)")
    return AccountService(sessions)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        return f"uid {os.getuid()}"


def cli_actor() -> str:
    """Who the audit trail names for a command-line change."""
    return f"cli:{_os_user()}"[:100]


def _audit(accounts: AccountService, action: str, subject: str, outcome: str, **detail: Any) -> None:
    """One audit row for a change made here (the API's audit middleware never sees these)."""
    from storage.models import AuditRow

    sudo_user = os.environ.get("SUDO_USER")
    if sudo_user:
        detail["sudo_user"] = sudo_user[:100]
    row = AuditRow(
        ts=time.time(),
        actor=cli_actor(),
        role="command line",
        action=action,
        subject=subject[:400],
        source=f"cli@{socket.gethostname()}"[:100],
        detail={"outcome": outcome[:400], "via": "cli", **detail},
    )
    with accounts.sessions.begin() as s:
        s.add(row)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    if not password:
        _fail("no password given")
    return password


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


@users_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="the sign-in name, e.g. zhangwei")],
    role: RolesOpt,
    display_name: Annotated[str, typer.Option(help="shown in the console, e.g. 张伟 (消控室)")] = "",
    password_stdin: StdinOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Add a person. The password needs 10+ characters and must not be a default or common one."""
    accounts = _accounts(config)
    roles = [r.value for r in role]
    try:
        accounts.create_user(name, _password(password_stdin), role, display_name=display_name)
    except AccountError as exc:
        _audit(accounts, "create_user", f"user:{name}", f"refused: {exc}", roles=roles)
        _fail(str(exc))
    _audit(accounts, "create_user", f"user:{name}", "done", roles=roles)
    console.print(f"added [cyan]{escape(name)}[/] ({', '.join(r.value for r in role)})")


@users_app.command("passwd")
def passwd(
    name: Annotated[str, typer.Argument(help="whose password")],
    password_stdin: StdinOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Set a new password; the user's sessions end. A demo account becomes a normal one."""
    accounts = _accounts(config)
    try:
        accounts.set_password(name, _password(password_stdin))
    except (AccountError, AccountNotFoundError) as exc:
        _audit(accounts, "set_password", f"user:{name}", f"refused: {exc}")
        _fail(str(exc), 1 if isinstance(exc, AccountNotFoundError) else 2)
    _audit(accounts, "set_password", f"user:{name}", "done")
    console.print(f"password of [cyan]{escape(name)}[/] set; their sessions ended")


def _update(config: Path | None, name: str, **changes: Any) -> UserInfo:
    accounts = _accounts(config)
    change = {k: [r.value for r in v] if k == "roles" else v for k, v in changes.items()}
    try:
        info = accounts.update_user(name, **changes)
    except (AccountError, AccountNotFoundError) as exc:
        _audit(accounts, "update_user", f"user:{name}", f"refused: {exc}", change=change)
        _fail(str(exc), 1 if isinstance(exc, AccountNotFoundError) else 2)
    _audit(accounts, "update_user", f"user:{name}", "done", change=change)
    return info


@users_app.command("roles")
def roles(name: Annotated[str, typer.Argument()], role: RolesOpt, config: ConfigOpt = None) -> None:
    """Replace a user's roles."""
    info = _update(config, name, roles=role)
    console.print(f"[cyan]{escape(name)}[/]: {', '.join(r.value for r in info.roles)}")


@users_app.command("disable")
def disable(name: Annotated[str, typer.Argument()], config: ConfigOpt = None) -> None:
    """Disable a user: sign-in refused, sessions ended at once."""
    _update(config, name, disabled=True)
    console.print(f"[cyan]{escape(name)}[/] disabled")


@users_app.command("enable")
def enable(name: Annotated[str, typer.Argument()], config: ConfigOpt = None) -> None:
    """Enable a disabled user again."""
    _update(config, name, disabled=False)
    console.print(f"[cyan]{escape(name)}[/] enabled")


@users_app.command("list")
def list_users(config: ConfigOpt = None) -> None:
    """Every user, with roles and state."""
    table = Table("name", "display name", "roles", "state", "password set")
    for u in _accounts(config).list_users():
        state = "disabled" if u.disabled else "demo (refused outside demo)" if u.demo else "active"
        table.add_row(
            u.name, u.display_name, ", ".join(r.value for r in u.roles), state, _when(u.password_changed_at)
        )
    console.print(table)


@keys_app.command("create")
def create_key(
    name: Annotated[str, typer.Argument(help="what integration holds it, e.g. bms-gateway")],
    role: RolesOpt,
    expires_days: Annotated[
        float | None, typer.Option(help="expire after this many days (default never)")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Issue a key and print it once: it is stored only as a digest."""
    expires = None if expires_days is None else time.time() + expires_days * 86_400.0
    accounts = _accounts(config)
    roles = [r.value for r in role]
    try:
        issued, info = accounts.create_api_key(name, role, by=cli_actor(), expires_at=expires)
    except AccountError as exc:
        _audit(accounts, "create_api_key", f"api_key:{name}", f"refused: {exc}", roles=roles)
        _fail(str(exc))
    _audit(accounts, "create_api_key", f"api_key:{info.id}", "done", name=name, roles=roles)
    err.print(
        f"API key {info.id} [cyan]{escape(name)}[/] ({', '.join(r.value for r in info.roles)}); "
        "shown only now, send it as `Authorization: Bearer <key>`:"
    )
    print(issued.token)  # alone on stdout, for `KEY=$(firewatch api-keys create ...)`


@keys_app.command("list")
def list_keys(
    revoked: Annotated[bool, typer.Option(help="include revoked keys")] = False, config: ConfigOpt = None
) -> None:
    """Every key: name, roles, its first characters, when last used."""
    table = Table("id", "name", "roles", "key", "created", "last used", "expires", "revoked")
    for k in _accounts(config).list_api_keys(include_revoked=revoked):
        table.add_row(
            str(k.id),
            k.name,
            ", ".join(r.value for r in k.roles),
            k.hint + "…",
            _when(k.created_at),
            _when(k.last_used_at),
            _when(k.expires_at),
            _when(k.revoked_at),
        )
    console.print(table)


@keys_app.command("revoke")
def revoke_key(
    key_id: Annotated[int, typer.Argument(help="the key's id (see list)")], config: ConfigOpt = None
) -> None:
    """Revoke a key: it stops working within seconds."""
    accounts = _accounts(config)
    try:
        info = accounts.revoke_api_key(key_id)
    except AccountNotFoundError as exc:
        _audit(accounts, "revoke_api_key", f"api_key:{key_id}", f"refused: {exc}")
        _fail(str(exc), 1)
    _audit(accounts, "revoke_api_key", f"api_key:{key_id}", "done", name=info.name)
    console.print(f"API key {key_id} [cyan]{escape(info.name)}[/] revoked")
