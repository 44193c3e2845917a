"""`firewatch grafana sync`: push the datasources and dashboards under grafana/ to a running Grafana.

The logic is in firewatch/grafana_sync.py; this module turns options and environment into its
inputs, shows progress and the per-object table, and maps failures to exit codes:

    0  Grafana matches the files (or, with --dry-run, the plan was shown)
    1  Grafana refused some objects (each one's reason is in the table); the others were written
    2  nothing could be done: invalid files, unset variables, no credentials, Grafana unreachable,
       credentials refused
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Annotated, NoReturn
from urllib.parse import unquote, urlsplit

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from firewatch.grafana_sync import (
    Action,
    AuthError,
    Outcome,
    Part,
    SyncError,
    apply,
    check_grafana,
    connect,
    dry_run_outcomes,
    find_grafana_dir,
    load,
    plan,
)

grafana_app = typer.Typer(
    help="Grafana: push firewatch's datasources and dashboards (the grafana/ tree) to a running Grafana.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)

_STYLE = {
    "created": "green",
    "updated": "yellow",
    "unchanged": "dim",
    "failed": "red",
    "would create": "cyan",
    "would update": "cyan",
}


def _fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[red]{escape(message)}[/]")
    raise typer.Exit(code)


def _credential(
    url: str, token: str | None, user: str | None, password: str | None
) -> tuple[str | tuple[str, str], str]:
    """The credential grafana-client takes, and what to say when Grafana refuses it."""
    if token:
        return token, (
            "the service account token from --token / GRAFANA_TOKEN. Check that GRAFANA_TOKEN holds a "
            "current token (glsa_...) of a service account in this Grafana organisation"
        )
    if user:
        if password is None:
            _fail(f"--user {user} needs a password: set GRAFANA_PASSWORD (or pass --password)")
        return (user, password), (
            f"user {user!r} from --user / GRAFANA_USER with the password from --password / "
            "GRAFANA_PASSWORD. Check GRAFANA_USER and GRAFANA_PASSWORD, and that Grafana allows basic auth"
        )
    parts = urlsplit(url)
    if parts.username and parts.password is not None:
        return (unquote(parts.username), unquote(parts.password)), (
            "the user and password in the URL (--url / GRAFANA_URL). Check them, or set GRAFANA_TOKEN instead"
        )
    _fail(
        "no credentials for Grafana: set GRAFANA_TOKEN to a service account token (role Admin to write "
        "datasources, Editor is enough with --only dashboards), or GRAFANA_USER and GRAFANA_PASSWORD"
    )


def _table(outcomes: list[Outcome], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("kind", "uid", "name", "result", "detail"):
        table.add_column(column, overflow="fold")
    for o in outcomes:
        style = _STYLE.get(o.result, "")
        table.add_row(
            o.step.kind,
            escape(o.step.uid),
            escape(o.step.name),
            f"[{style}]{o.result}[/]" if style else o.result,
            escape(o.detail),
        )
    return table


def _shown(url: str) -> str:
    """The URL without any user:password in it."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}".rstrip("/")


def _totals(outcomes: list[Outcome]) -> str:
    counts = Counter(o.result for o in outcomes)
    order = ("created", "updated", "would create", "would update", "unchanged", "failed")
    return ", ".join(f"{counts[r]} {r}" for r in order if counts[r])


@grafana_app.command("sync")
def sync(
    url: Annotated[
        str,
        typer.Option(envvar="GRAFANA_URL", help="Grafana's base URL, with any sub-path it is served under"),
    ] = "http://localhost:3000",
    token: Annotated[
        str | None,
        typer.Option(
            envvar="GRAFANA_TOKEN",
            show_default=False,
            help="service account token (prefer the environment variable: options land in shell history)",
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            envvar="GRAFANA_USER", show_default=False, help="basic auth user, when there is no token"
        ),
    ] = None,
    password: Annotated[
        str | None,
        typer.Option(
            envvar="GRAFANA_PASSWORD", show_default=False, help="basic auth password (prefer the variable)"
        ),
    ] = None,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            envvar="FIREWATCH_GRAFANA_DIR",
            show_default=False,
            help="the grafana/ tree (provisioning/ and dashboards/); default: the checkout firewatch runs "
            "from, then ./grafana",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="read Grafana and show what would change; write nothing")
    ] = False,
    only: Annotated[
        Part | None, typer.Option(help="sync only the dashboards (and their folder) or only the datasources")
    ] = None,
    update_secrets: Annotated[
        bool,
        typer.Option(
            "--update-secrets",
            help="re-send every datasource's secureJsonData even if nothing else changed (Grafana never "
            "returns secrets, so a changed password cannot be seen otherwise)",
        ),
    ] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait for each Grafana request")] = 10.0,
) -> None:
    """Make a running Grafana hold firewatch's datasources and dashboards, as the files say.

    Idempotent: the dashboards' folder, each datasource and each dashboard is found by its uid,
    compared, and created, updated or left alone; a second run reports everything unchanged and
    nothing is ever duplicated. `$VAR` / `${VAR}` in the provisioning YAML are read from the
    environment, as Grafana's own provisioning does; an unset one stops the sync before anything is
    sent. Example:

    \b
        export GRAFANA_URL=https://grafana.example.org GRAFANA_TOKEN=glsa_...
        export FIREWATCH_INFLUX_PASSWORD=... FIREWATCH_PG_PASSWORD=...
        firewatch grafana sync --dry-run
        firewatch grafana sync

    Exit codes: 0 in sync; 1 Grafana refused some objects (reasons in the table); 2 invalid files,
    unset variables, no or refused credentials, Grafana unreachable.
    """
    parts = (only,) if only is not None else tuple(Part)
    try:
        root = find_grafana_dir(directory)
        bundle = load(root, os.environ, parts)
    except SyncError as exc:
        _fail(str(exc), exc.exit_code)
    credential, named = _credential(url, token, user, password)
    try:
        api = connect(url, credential, timeout)
        version = check_grafana(api)
        total = (1 if bundle.folder else 0) + len(bundle.datasources) + len(bundle.dashboards)
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err
        ) as bar:
            reading = bar.add_task(f"reading Grafana {version}", total=total)
            steps = plan(api, bundle, update_secrets=update_secrets, on_step=lambda _s: bar.advance(reading))
            if dry_run:
                outcomes = dry_run_outcomes(steps)
            else:
                to_write = sum(1 for s in steps if s.action is not Action.UNCHANGED)
                writing = bar.add_task("writing", total=to_write, visible=to_write > 0)
                outcomes = apply(
                    api,
                    bundle,
                    steps,
                    on_outcome=lambda o: (
                        bar.advance(writing) if o.step.action is not Action.UNCHANGED else None
                    ),
                )
    except AuthError as exc:
        _fail(f"{exc}: {named}.", exc.exit_code)
    except SyncError as exc:
        _fail(str(exc), exc.exit_code)
    mode = "dry run, nothing written" if dry_run else "synced"
    console.print(_table(outcomes, f"Grafana {version} at {_shown(url)} ({mode}) from {root}"))
    console.print(_totals(outcomes))
    failures = [o for o in outcomes if o.failed]
    if failures:
        _fail(f"{len(failures)} object(s) not written: see the table; the others were", 1)
