"""`firewatch broker`: credentials for the production broker (docker-compose.yml, docs/deploy.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from firewatch.broker_auth import (
    PasswordFileError,
    format_password_file,
    parse_password_file,
    plan_passwords,
    secrets_csv,
    write_private,
)

broker_app = typer.Typer(
    help="The production MQTT broker (mosquitto): device passwords. See docs/deploy.md.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)


def _fail(message: str) -> NoReturn:
    err.print(f"[red]{escape(message)}[/]")
    raise typer.Exit(2)


@broker_app.command()
def passwords(
    registry: Annotated[Path, typer.Option(help="the registry YAML whose devices get passwords")] = Path(
        "deploy/firewatch/registry.yaml"
    ),
    out: Annotated[
        Path, typer.Option(help="mosquitto password file to create or update (hashes only)")
    ] = Path("deploy/mosquitto/passwd"),
    secrets: Annotated[
        Path,
        typer.Option(
            help="CSV written with each new password in clear text (mode 0600), for provisioning the "
            "devices; must not exist yet"
        ),
    ] = Path("deploy/device-passwords.csv"),
    rotate: Annotated[
        list[str] | None,
        typer.Option(
            metavar="DEVICE", help="give this device a new password (repeat for several), e.g. after a leak"
        ),
    ] = None,
    rotate_all: Annotated[bool, typer.Option(help="give every device a new password")] = False,
    prune: Annotated[
        bool,
        typer.Option(help="remove users that are no longer devices of the registry (decommissioned)"),
    ] = False,
    prefix: Annotated[str, typer.Option(help="topic prefix, as mqtt.topic_prefix")] = "fw/v1",
    dry_run: Annotated[bool, typer.Option(help="say what would change, write nothing")] = False,
) -> None:
    """Write the mosquitto password file for every device of the registry.

    Each device signs in with its device id as the user name; the broker's ACL
    (deploy/mosquitto/acl) lets it publish only to fw/v1/<site>/<its id>/telemetry, /event and
    /status. Devices already in the file keep their password: running this again after adding
    devices only adds theirs. --rotate DEVICE or --rotate-all issue new ones. Users no longer in
    the registry are reported, and removed with --prune.

    New passwords (random, 32 letters and digits) are written in clear text once, to the --secrets
    CSV, readable by you only: hand them to whoever provisions the devices, then delete it. The
    password file holds only hashes (mosquitto 2's PBKDF2-SHA512 format, as mosquitto_passwd
    writes them). This file is for the devices' listener only: the service's own user,
    'firewatch', gets a password file of its own for the service's listener, made by the stack
    from MQTT_FIREWATCH_PASSWORD in .env; no device may be called that.

    After a change, load it into the running broker:
    docker compose run --rm mosquitto-init && docker compose kill -s SIGHUP mosquitto
    """
    from core.registry import RegistryError, load_registry  # loaded by the command, not by --help

    try:
        reg = load_registry(registry)
    except RegistryError as exc:
        _fail(str(exc))
    try:
        existing = parse_password_file(out.read_text(encoding="utf-8"), str(out)) if out.exists() else {}
    except OSError as exc:
        _fail(f"cannot read {out}: {exc}")
    except PasswordFileError as exc:
        _fail(str(exc))
    try:
        plan = plan_passwords(existing, reg.devices, rotate=rotate or (), rotate_all=rotate_all, prune=prune)
    except PasswordFileError as exc:
        _fail(str(exc))

    summary = f"{len(plan.added)} new, {len(plan.rotated)} rotated, {len(plan.kept)} kept" + (
        f", {len(plan.removed)} removed" if plan.removed else ""
    )
    if plan.stale:
        shown = ", ".join(plan.stale[:10]) + (" ..." if len(plan.stale) > 10 else "")
        err.print(
            f"[yellow]{len(plan.stale)} user(s) in {escape(str(out))} are not devices of the registry "
            f"and can still sign in:[/] {escape(shown)} (remove them with --prune)"
        )
    if dry_run:
        console.print(f"dry run: {summary}; nothing written")
        return
    if plan.issued and secrets.exists():
        _fail(
            f"{secrets} exists: it may hold passwords not yet given to devices. Move it away (or "
            f"choose another --secrets) and run again; nothing was written"
        )
    changed = format_password_file(plan.entries) != format_password_file(existing) or not out.exists()
    if plan.issued:
        sites = {d: reg.locations[d].site for d in plan.issued}
        try:
            write_private(secrets, secrets_csv(plan.issued, sites, prefix), exclusive=True)
        except OSError as exc:
            _fail(f"cannot write {secrets}: {exc}; nothing was written")
    if changed:
        try:
            write_private(out, format_password_file(plan.entries), exclusive=False)
        except OSError as exc:
            if plan.issued:
                secrets.unlink(missing_ok=True)  # those passwords were never activated
            _fail(f"cannot write {out}: {exc}; nothing was changed")
    console.print(f"{escape(str(out))}: {summary} ({len(plan.entries)} users)")
    if plan.issued:
        console.print(
            f"new passwords in {escape(str(secrets))} (mode 0600): give them to the installers, then "
            "delete the file"
        )
    if changed:
        console.print(
            "load into a running broker: docker compose run --rm mosquitto-init && "
            "docker compose kill -s SIGHUP mosquitto"
        )
