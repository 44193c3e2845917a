"""Which state store a command run by hand uses, said in one line.

A command that reads or changes the state store (`users`, `api-keys`, `report`) uses the database
the settings name (database_url, or the SQLite file in data_dir) when either is set, by the
config file or the environment. When neither is set and a demo is running from this folder
(`data/demo/demo.json`, its pid alive), it uses the demo's database: a key or a user made beside
the demo then works against the demo's API. Otherwise the default, `data/firewatch.sqlite`.
Either way the command says which database it uses, on stderr (stdout stays for what it prints,
e.g. a new API key).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from core.settings import Settings
from firewatch.demo_state import DEFAULT_DATA_DIR, running_demo


@dataclass(frozen=True)
class StoreChoice:
    url: str
    line: str  # "using the ... database at ...", for the person at the terminal


def shown(url: str) -> str:
    """A database URL as a person reads it: a SQLite file's path (relative to here when inside),
    another database without its password."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database)
        try:
            return str(path.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(path)
    return parsed.render_as_string(hide_password=True)


def choose_store(settings: Settings) -> StoreChoice:
    explicit = {"database_url", "data_dir"} & settings.model_fields_set
    if not explicit:
        demo = running_demo(DEFAULT_DATA_DIR)
        if demo is not None:
            return StoreChoice(
                demo.database_url,
                f"using the demo's database at {shown(demo.database_url)} "
                f"(the demo running as pid {demo.pid}, API {demo.api_url})",
            )
    url = settings.resolved_database_url
    how = (
        "set by database_url"
        if "database_url" in explicit
        else "in data_dir"
        if "data_dir" in explicit
        else "the default; no demo is running from this folder"
    )
    return StoreChoice(url, f"using the database at {shown(url)} ({how})")
