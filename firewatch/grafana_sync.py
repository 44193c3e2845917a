"""Push firewatch's Grafana provisioning tree to a running Grafana over its HTTP API, idempotently.

Grafana's own file provisioning needs the files on Grafana's disk. `firewatch grafana sync` is for a
Grafana that is only reachable over HTTP (shared, hosted, or started before the files existed): it
reads the same tree and makes Grafana match it.

    grafana/provisioning/datasources/*.yaml   Grafana's datasource provisioning format (apiVersion 1)
    grafana/provisioning/dashboards/*.yaml    the dashboard provider: folder title and folderUid
    grafana/dashboards/*.json                 one dashboard per file, each with a stable uid

Everything is keyed by uid, never by name or title, so a run never duplicates: the folder is
created or retitled, each datasource created or replaced (`PUT /api/datasources/uid/:uid`), each
dashboard posted with its uid, its folder's uid and `overwrite: true`. Before writing, every object
is read back and compared, and objects that already match are left alone and reported unchanged.

As in Grafana's provisioning, `$VAR` and `${VAR}` in the provisioning YAML are replaced from the
environment and `$$` stands for a literal `$`; dashboard JSON is not expanded (its `$var` are
Grafana's template variables). Unlike Grafana, which silently substitutes an empty string, a variable
that is not set is an error that names it, raised while loading, before anything is sent.

The order of work: `load` (files and environment, no network), `check_grafana` (`/api/health`),
`plan` (reads only), `apply` (writes). A dry run stops after `plan`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

import yaml

# grafana-client (and requests under it) is imported where it is used: `firewatch --help` and the
# other commands should not pay for it.
if TYPE_CHECKING:
    from grafana_client.api import GrafanaApi
    from grafana_client.client import GrafanaException

SYNC_MESSAGE = "firewatch grafana sync"

# Keys of a datasource in Grafana's provisioning format (docs: administration/provisioning).
_DS_KEYS = frozenset(
    {
        "name",
        "type",
        "access",
        "orgId",
        "uid",
        "url",
        "user",
        "database",
        "basicAuth",
        "basicAuthUser",
        "withCredentials",
        "isDefault",
        "jsonData",
        "secureJsonData",
        "version",
        "editable",
    }
)
_DS_STRINGS = ("url", "user", "database", "basicAuthUser")
_DS_BOOLS = ("basicAuth", "withCredentials", "isDefault")
# Grafana 10.x renamed the core PostgreSQL plugin; either id names the same datasource.
_TYPE_ALIASES = {"postgres": "grafana-postgresql-datasource"}
_UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_VARIABLE = re.compile(r"\$(?:(?P<dollar>\$)|\{(?P<braced>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Part(StrEnum):
    """What `--only` may restrict a sync to."""

    DASHBOARDS = "dashboards"
    DATASOURCES = "datasources"


class SyncError(Exception):
    """A sync that cannot go on; `exit_code` is what the command exits with."""

    exit_code = 2


class ProvisioningError(SyncError):
    """The provisioning tree is missing, unreadable or invalid (the message names the file)."""


class MissingVariablesError(ProvisioningError):
    """Provisioning values refer to environment variables that are not set."""

    def __init__(self, missing: Mapping[str, list[str]]) -> None:
        self.names = sorted(missing)
        lines = [f"  {name}: used by {', '.join(missing[name])}" for name in self.names]
        super().__init__(
            f"environment variable{'s' if len(self.names) > 1 else ''} not set: "
            + ", ".join(self.names)
            + "\n"
            + "\n".join(lines)
            + "\nSet them (as Grafana's own provisioning would read them) and run again; nothing was sent."
        )


class UnreachableError(SyncError):
    """Grafana did not answer, or what answered is not Grafana."""


class AuthError(SyncError):
    """Grafana refused the credentials (HTTP 401)."""


@dataclass(frozen=True)
class FolderSpec:
    uid: str
    title: str
    source: Path


@dataclass(frozen=True)
class DatasourceSpec:
    uid: str
    name: str
    body: dict[str, Any]  # what the API takes, secrets apart; every managed field present
    secure: dict[str, str]  # secureJsonData, expanded
    source: Path


@dataclass(frozen=True)
class DashboardSpec:
    uid: str
    title: str
    model: dict[str, Any]  # the dashboard JSON without `id` and `version`
    source: Path


@dataclass(frozen=True)
class Bundle:
    """The provisioning tree, loaded, validated and expanded."""

    root: Path
    folder: FolderSpec | None
    datasources: list[DatasourceSpec]
    dashboards: list[DashboardSpec]
    parts: frozenset[Part]


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"


@dataclass
class Step:
    """One object and what it takes to make Grafana match the file."""

    kind: str  # "folder", "datasource" or "dashboard"
    uid: str
    name: str
    action: Action
    changes: list[str]
    spec: FolderSpec | DatasourceSpec | DashboardSpec
    current: dict[str, Any] | None = None  # as read from Grafana


@dataclass
class Outcome:
    step: Step
    result: str  # created, updated, unchanged, would create, would update, failed
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.result == "failed"


# --- finding and loading the tree -------------------------------------------------------------


def default_grafana_dirs() -> list[Path]:
    """Where the tree is looked for without --dir: next to the package (a checkout or an editable
    install), then ./grafana. A wheel does not carry it (pyproject's package-data has no grafana/)."""
    checkout = Path(__file__).resolve().parent.parent / "grafana"
    here = Path.cwd() / "grafana"
    return [checkout] if checkout == here else [checkout, here]


def find_grafana_dir(explicit: Path | None) -> Path:
    candidates = [explicit] if explicit is not None else default_grafana_dirs()
    for path in candidates:
        if (path / "provisioning").is_dir() or (path / "dashboards").is_dir():
            return path
    if explicit is not None:
        raise ProvisioningError(
            f"{explicit} is not a Grafana provisioning tree: expected {explicit}/provisioning/ and "
            f"{explicit}/dashboards/ (pass --dir the grafana/ directory of a firewatch checkout)"
        )
    looked = ", ".join(str(p) for p in candidates)
    raise ProvisioningError(
        f"no grafana/ tree found (looked in {looked}); an installed firewatch package does not carry "
        "it: pass --dir /path/to/firewatch/grafana (or set FIREWATCH_GRAFANA_DIR)"
    )


def expand(value: Any, env: Mapping[str, str], where: str, missing: dict[str, list[str]]) -> Any:
    """Expand `$VAR`, `${VAR}` and `$$` in every string value (not in keys), as Grafana's
    provisioning does; names that are not set are collected in `missing` with `where` they occur."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            if match.group("dollar"):
                return "$"
            name = match.group("braced")
            if name is None:
                name = match.group("bare")
            elif not _NAME.match(name):
                raise ProvisioningError(
                    f"{where}: ${{{name}}} is not a variable reference Grafana understands: use "
                    "${NAME} or $NAME (letters, digits, _), or $$ for a literal $"
                )
            try:
                return env[name]
            except KeyError:
                missing.setdefault(name, []).append(where)
                return ""

        return _VARIABLE.sub(substitute, value)
    if isinstance(value, Mapping):
        return {k: expand(v, env, f"{where}.{k}", missing) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, env, f"{where}[{i}]", missing) for i, v in enumerate(value)]
    return value


def _yaml_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProvisioningError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProvisioningError(f"{path}{at}: not valid YAML: {problem}") from None


def _provisioning_file(path: Path, list_key: str) -> list[Any]:
    data = _read_yaml(path)
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ProvisioningError(f"{path}: expected a mapping with apiVersion: 1 and {list_key}:")
    if data.get("apiVersion") != 1:
        raise ProvisioningError(
            f"{path}: apiVersion must be 1 (Grafana's provisioning format), got {data.get('apiVersion')!r}"
        )
    items = data.get(list_key) or []
    if not isinstance(items, list):
        raise ProvisioningError(f"{path}: {list_key} must be a list")
    return items


def _fail(path: Path, what: str, problem: str) -> NoReturn:
    raise ProvisioningError(f"{path}: {what}: {problem}")


def _check_json(path: Path, what: str, value: Any) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        _fail(path, what, f"a value is not representable in JSON ({exc}); quote it")


def _load_datasources(
    folder: Path, env: Mapping[str, str], missing: dict[str, list[str]]
) -> list[DatasourceSpec]:
    specs: list[DatasourceSpec] = []
    seen: dict[str, Path] = {}
    for path in _yaml_files(folder):
        for index, raw in enumerate(_provisioning_file(path, "datasources")):
            what = f"datasources[{index}]"
            if not isinstance(raw, dict):
                _fail(path, what, "expected a mapping")
            what = f"datasource {raw.get('name', index)!r}"
            unknown = sorted(set(raw) - _DS_KEYS)
            if "password" in unknown or "basicAuthPassword" in unknown:
                _fail(path, what, "put password and basicAuthPassword under secureJsonData")
            if unknown:
                _fail(path, what, f"unknown key(s) {', '.join(unknown)}")
            item = expand(raw, env, f"{path}: {what}", missing)
            for key in ("name", "type", "uid"):
                if not isinstance(item.get(key), str) or not item[key]:
                    extra = " (the sync finds datasources by uid)" if key == "uid" else ""
                    _fail(path, what, f"{key} is required{extra}")
            uid = item["uid"]
            if not _UID.match(uid):
                _fail(path, what, f"uid {uid!r} must be 1-40 letters, digits, - or _")
            if uid in seen:
                _fail(path, what, f"uid {uid!r} is also used in {seen[uid]}")
            seen[uid] = path
            body: dict[str, Any] = {
                "uid": uid,
                "name": item["name"],
                "type": item["type"],
                "access": item.get("access") or "proxy",
            }
            for key in _DS_STRINGS:
                value = item.get(key)
                body[key] = "" if value is None else str(value)
            for key in _DS_BOOLS:
                value = item.get(key)
                if value is not None and not isinstance(value, bool):
                    _fail(path, what, f"{key} must be true or false")
                body[key] = bool(value)
            json_data = item.get("jsonData") or {}
            secure = item.get("secureJsonData") or {}
            for key, value in (("jsonData", json_data), ("secureJsonData", secure)):
                if not isinstance(value, dict):
                    _fail(path, what, f"{key} must be a mapping")
            body["jsonData"] = json_data
            _check_json(path, what, body)
            if body["isDefault"] and any(d.body["isDefault"] for d in specs):
                other = next(d for d in specs if d.body["isDefault"])
                _fail(path, what, f"isDefault is also set on {other.name!r}: Grafana keeps only one default")
            secrets = {str(k): "" if v is None else str(v) for k, v in secure.items()}
            specs.append(DatasourceSpec(uid, item["name"], body, secrets, path))
    return specs


def _load_folder(folder: Path, env: Mapping[str, str], missing: dict[str, list[str]]) -> FolderSpec | None:
    files = _yaml_files(folder)
    if not files:
        raise ProvisioningError(
            f"no dashboard provider in {folder}: the sync takes the dashboards' folder (folder, "
            "folderUid) from it"
        )
    found: list[tuple[str, str, Path]] = []
    for path in files:
        for index, raw in enumerate(_provisioning_file(path, "providers")):
            what = f"providers[{index}]"
            if not isinstance(raw, dict):
                _fail(path, what, "expected a mapping")
            if raw.get("type", "file") != "file":
                continue
            item = expand(raw, env, f"{path}: {what}", missing)
            title = item.get("folder") or ""
            uid = item.get("folderUid") or ""
            if not isinstance(title, str) or not isinstance(uid, str):
                _fail(path, what, "folder and folderUid must be strings")
            if title and not uid:
                _fail(path, what, f"folder {title!r} needs a folderUid (the sync finds the folder by uid)")
            if uid and not _UID.match(uid):
                _fail(path, what, f"folderUid {uid!r} must be 1-40 letters, digits, - or _")
            found.append((title, uid, path))
    if not found:
        raise ProvisioningError(f"no file provider (type: file) in {', '.join(map(str, files))}")
    distinct = {(t, u) for t, u, _ in found}
    if len(distinct) > 1:
        listing = "; ".join(f"{p}: folder {t!r} uid {u!r}" for t, u, p in found)
        raise ProvisioningError(
            f"dashboard providers name different folders ({listing}); the sync puts grafana/dashboards/ "
            "in one folder"
        )
    title, uid, path = found[0]
    if not title and not uid:
        return None  # the General folder
    return FolderSpec(uid=uid, title=title or uid, source=path)


def _load_dashboards(folder: Path) -> list[DashboardSpec]:
    if not folder.is_dir():
        raise ProvisioningError(f"no dashboards folder {folder}")
    specs: list[DashboardSpec] = []
    seen: dict[str, Path] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            model = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ProvisioningError(f"cannot read {path}: {exc.strerror or exc}") from None
        except json.JSONDecodeError as exc:
            raise ProvisioningError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
        if not isinstance(model, dict):
            raise ProvisioningError(f"{path}: a dashboard must be a JSON object")
        if "dashboard" in model and "panels" not in model:
            raise ProvisioningError(f"{path}: holds an API envelope; save the dashboard model itself")
        if "__inputs" in model:
            raise ProvisioningError(
                f"{path}: exported 'for sharing externally' (__inputs); export it without that option "
                "so datasources are referenced by uid"
            )
        uid, title = model.get("uid"), model.get("title")
        if not isinstance(uid, str) or not _UID.match(uid):
            raise ProvisioningError(
                f"{path}: needs a stable uid (1-40 letters, digits, - or _), got {uid!r}; without one every "
                "sync would create another copy"
            )
        if not isinstance(title, str) or not title.strip():
            raise ProvisioningError(f"{path}: needs a title")
        if uid in seen:
            raise ProvisioningError(f"{path}: uid {uid!r} is also used by {seen[uid]}")
        seen[uid] = path
        clean = {k: v for k, v in model.items() if k not in ("id", "version")}
        specs.append(DashboardSpec(uid=uid, title=title, model=clean, source=path))
    if not specs:
        raise ProvisioningError(f"no dashboards (*.json) in {folder}")
    return specs


def load(root: Path, env: Mapping[str, str], parts: Iterable[Part] = tuple(Part)) -> Bundle:
    """Read and validate the tree under `root`; raise ProvisioningError naming the file, or
    MissingVariablesError naming every unset variable. No network."""
    wanted = frozenset(parts)
    missing: dict[str, list[str]] = {}
    datasources: list[DatasourceSpec] = []
    folder: FolderSpec | None = None
    dashboards: list[DashboardSpec] = []
    try:
        if Part.DATASOURCES in wanted:
            ds_dir = root / "provisioning" / "datasources"
            datasources = _load_datasources(ds_dir, env, missing)
            if not datasources:
                raise ProvisioningError(f"no datasources in {ds_dir}/*.yaml")
        if Part.DASHBOARDS in wanted:
            folder = _load_folder(root / "provisioning" / "dashboards", env, missing)
            dashboards = _load_dashboards(root / "dashboards")
    except ProvisioningError:
        if missing:  # an unset variable (an empty uid, say) is the likelier cause: name it
            raise MissingVariablesError(missing) from None
        raise
    if missing:
        raise MissingVariablesError(missing)
    return Bundle(root, folder, datasources, dashboards, wanted)


# --- talking to Grafana -----------------------------------------------------------------------


def connect(url: str, credential: str | tuple[str, str], timeout: float = 10.0) -> GrafanaApi:
    """A grafana-client API object for `url` (http(s)://host[:port][/sub/path])."""
    from grafana_client.api import GrafanaApi

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SyncError(f"Grafana URL {url!r} must look like http://host:3000 or https://host/grafana")
    try:
        port = parts.port
    except ValueError:
        raise SyncError(f"Grafana URL {url!r} has an invalid port") from None
    prefix = parts.path.strip("/")
    return GrafanaApi(
        auth=credential,
        host=parts.hostname,
        port=port,
        url_path_prefix=f"{prefix}/" if prefix else "",
        protocol=parts.scheme,
        timeout=timeout,
    )


class _Grafana:
    """The few grafana-client calls the sync makes, with transport and auth failures made typed."""

    def __init__(self, api: GrafanaApi) -> None:
        self.api: Any = api  # grafana-client's methods are not annotated
        self.url = api.client.url.removesuffix("/api")

    def call(self, fn: Callable[[], Any]) -> Any:
        from grafana_client.client import GrafanaException, GrafanaUnauthorizedError
        from requests.exceptions import RequestException  # grafana-client 3 talks through requests

        try:
            return fn()
        except GrafanaUnauthorizedError:
            raise AuthError(f"Grafana at {self.url} refused the credentials (401 Unauthorized)") from None
        except RequestException as exc:  # refused, unresolvable, timed out
            raise UnreachableError(f"cannot reach Grafana at {self.url}: {exc}") from None
        except GrafanaException as exc:
            if exc.status_code == 0:  # grafana-client's wrapping of transport errors
                raise UnreachableError(f"cannot reach Grafana at {self.url}: {exc.message}") from None
            raise

    def get_or_none(self, fn: Callable[[], Any]) -> dict[str, Any] | None:
        from grafana_client.client import GrafanaClientError

        try:
            found = self.call(fn)
        except GrafanaClientError as exc:
            if exc.status_code == 404:
                return None
            raise
        return found if isinstance(found, dict) else None


def check_grafana(api: GrafanaApi) -> str:
    """Grafana's version from `/api/health` (no credentials needed); UnreachableError otherwise."""
    from grafana_client.client import GrafanaClientError, GrafanaServerError

    grafana = _Grafana(api)
    try:
        health = grafana.call(lambda: grafana.api.client.GET("/health"))
    except (GrafanaClientError, GrafanaServerError) as exc:
        raise UnreachableError(
            f"{grafana.url} answered /api/health with HTTP {exc.status_code}: is this Grafana's URL "
            "(including any sub-path it is served under)?"
        ) from None
    except ValueError:  # not JSON
        raise UnreachableError(f"{grafana.url}/api/health did not answer JSON: is this Grafana?") from None
    if not isinstance(health, dict) or "database" not in health:
        raise UnreachableError(f"{grafana.url}/api/health did not answer like Grafana: {health!r}")
    return str(health.get("version") or "?")


def _explain(exc: GrafanaException, kind: str) -> str:
    message = exc.message
    if isinstance(exc.response, dict) and exc.response.get("message"):
        message = str(exc.response["message"])
    if exc.status_code == 403:
        role = "Admin" if kind == "datasource" else "Editor"
        return f"{message} (403: the account needs the {role} role in this organisation)"
    return f"{message} (HTTP {exc.status_code})"


def _canonical_type(value: Any) -> str:
    text = str(value or "")
    return _TYPE_ALIASES.get(text, text)


def _datasource_changes(spec: DatasourceSpec, current: Mapping[str, Any], resend_secrets: bool) -> list[str]:
    changes: list[str] = []
    for key, want in spec.body.items():
        have = current.get(key)
        if key == "type":
            differs = _canonical_type(have) != _canonical_type(want)
        elif key == "jsonData":
            differs = (have or {}) != want
        elif key in _DS_BOOLS:
            differs = bool(have) != want
        else:
            differs = (have or "") != want
        if differs:
            changes.append(key)
    # Grafana never returns secrets, only which ones are set (secureJsonFields).
    have_secrets = {k for k, v in (current.get("secureJsonFields") or {}).items() if v}
    unset = sorted(k for k, v in spec.secure.items() if v and k not in have_secrets)
    changes.extend(f"secureJsonData.{k} (not set in Grafana)" for k in unset)
    if resend_secrets and spec.secure and not unset:
        changes.append("secrets re-sent (--update-secrets)")
    return changes


def _dashboard_changes(spec: DashboardSpec, folder_uid: str, current: Mapping[str, Any]) -> list[str]:
    stored = current.get("dashboard") or {}
    meta = current.get("meta") or {}
    have = {k: v for k, v in stored.items() if k not in ("id", "version")}
    changes = sorted(k for k in set(have) | set(spec.model) if have.get(k) != spec.model.get(k))
    have_folder = meta.get("folderUid") or ""
    if have_folder != folder_uid:
        changes.append(f"folder {have_folder or 'General'!r} -> {folder_uid or 'General'!r}")
    return changes


def plan(
    api: GrafanaApi,
    bundle: Bundle,
    *,
    update_secrets: bool = False,
    on_step: Callable[[Step], None] | None = None,
) -> list[Step]:
    """Read what Grafana holds for each object and decide create / update / unchanged. Reads only."""
    from grafana_client.client import GrafanaException

    grafana = _Grafana(api)
    steps: list[Step] = []

    def add(step: Step) -> None:
        steps.append(step)
        if on_step is not None:
            on_step(step)

    def read(kind: str, fn: Callable[[], Any]) -> dict[str, Any] | None:
        try:
            return grafana.get_or_none(fn)
        except GrafanaException as exc:
            raise SyncError(f"cannot read a {kind} from Grafana: {_explain(exc, kind)}") from None

    folder = bundle.folder
    if folder is not None:
        current = read("folder", lambda: grafana.api.folder.get_folder(folder.uid))
        if current is None:
            add(Step("folder", folder.uid, folder.title, Action.CREATE, [], folder))
        elif current.get("title") != folder.title:
            change = f"title {current.get('title')!r} -> {folder.title!r}"
            add(Step("folder", folder.uid, folder.title, Action.UPDATE, [change], folder, current))
        else:
            add(Step("folder", folder.uid, folder.title, Action.UNCHANGED, [], folder, current))

    for ds in bundle.datasources:
        current = read("datasource", partial(grafana.api.datasource.get_datasource_by_uid, ds.uid))
        if current is None:
            add(Step("datasource", ds.uid, ds.name, Action.CREATE, [], ds))
            continue
        changes = _datasource_changes(ds, current, update_secrets)
        action = Action.UPDATE if changes else Action.UNCHANGED
        add(Step("datasource", ds.uid, ds.name, action, changes, ds, current))

    folder_uid = folder.uid if folder is not None else ""
    for dash in bundle.dashboards:
        current = read("dashboard", partial(grafana.api.dashboard.get_dashboard, dash.uid))
        if current is None:
            add(Step("dashboard", dash.uid, dash.title, Action.CREATE, [], dash))
            continue
        changes = _dashboard_changes(dash, folder_uid, current)
        action = Action.UPDATE if changes else Action.UNCHANGED
        add(Step("dashboard", dash.uid, dash.title, action, changes, dash, current))
    return steps


def _write(grafana: _Grafana, step: Step, folder_uid: str) -> str:
    """Make one change; returns the detail to report."""
    spec = step.spec
    if isinstance(spec, FolderSpec):
        if step.action is Action.CREATE:
            grafana.call(lambda: grafana.api.folder.create_folder(spec.title, uid=spec.uid))
            return f"title {spec.title!r}"
        version = (step.current or {}).get("version")
        grafana.call(
            lambda: grafana.api.folder.update_folder(
                spec.uid, title=spec.title, version=version, overwrite=version is None
            )
        )
        return "; ".join(step.changes)
    if isinstance(spec, DatasourceSpec):
        payload = {**spec.body, "secureJsonData": spec.secure}
        if step.action is Action.CREATE:
            grafana.call(lambda: grafana.api.datasource.create_datasource(payload))
            return f"{spec.body['type']} at {spec.body['url'] or '(no url)'}"
        # The current version makes Grafana refuse (409) if someone changed it since we read it.
        payload["version"] = (step.current or {}).get("version") or 0
        grafana.call(lambda: grafana.api.datasource.update_datasource_by_uid(spec.uid, payload))
        return "changed: " + ", ".join(step.changes)
    envelope: dict[str, Any] = {"dashboard": spec.model, "overwrite": True, "message": SYNC_MESSAGE}
    if folder_uid:
        envelope["folderUid"] = folder_uid
    saved = grafana.call(lambda: grafana.api.dashboard.update_dashboard(envelope)) or {}
    version = saved.get("version") if isinstance(saved, dict) else None
    detail = f"version {version}"
    if step.action is Action.UPDATE:
        before = ((step.current or {}).get("dashboard") or {}).get("version")
        detail = f"version {before} -> {version}; changed: " + ", ".join(step.changes)
    if isinstance(saved, dict) and saved.get("uid") not in (None, spec.uid):
        detail += f"; Grafana saved it under uid {saved.get('uid')!r}"
    return detail


def apply(
    api: GrafanaApi, bundle: Bundle, steps: list[Step], *, on_outcome: Callable[[Outcome], None] | None = None
) -> list[Outcome]:
    """Write the steps that need it, in order (folder, datasources, dashboards). A refused object is
    reported failed and the others still go; lost connection or credentials stop everything."""
    from grafana_client.client import GrafanaException

    grafana = _Grafana(api)
    folder_uid = bundle.folder.uid if bundle.folder is not None else ""
    outcomes: list[Outcome] = []
    for step in steps:
        if step.action is Action.UNCHANGED:
            outcome = Outcome(step, "unchanged")
        else:
            try:
                detail = _write(grafana, step, folder_uid)
                outcome = Outcome(step, "created" if step.action is Action.CREATE else "updated", detail)
            except GrafanaException as exc:
                detail = _explain(exc, step.kind)
                if step.kind == "datasource" and (step.current or {}).get("readOnly"):
                    detail += "; it is provisioned from files in Grafana: change it there"
                if step.kind == "dashboard" and ((step.current or {}).get("meta") or {}).get("provisioned"):
                    detail += "; it is provisioned from files in Grafana: change it there"
                outcome = Outcome(step, "failed", detail)
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    return outcomes


def dry_run_outcomes(steps: list[Step]) -> list[Outcome]:
    """What a dry run reports: what would be written, and why."""
    results = {Action.CREATE: "would create", Action.UPDATE: "would update", Action.UNCHANGED: "unchanged"}
    return [Outcome(s, results[s.action], ", ".join(s.changes)) for s in steps]
