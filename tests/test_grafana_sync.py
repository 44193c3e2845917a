"""`firewatch grafana sync`: the grafana/ tree pushed to Grafana over its HTTP API, idempotently.

No Grafana server can be installed here, so the tests talk to `StandIn`: an in-memory HTTP server
implementing only the endpoints the sync uses, with the request and response shapes and the status
codes of Grafana's HTTP API documentation (docs/sources/developers/http_api/{folder,data_source,
dashboard}.md in grafana/grafana) and of its handlers where the docs are silent (409 for a
datasource name or uid that exists, 403 for a read-only datasource, the datasource version rule).
The client under test is the real grafana-client over real HTTP.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from typer.testing import CliRunner

from firewatch.cli import app
from firewatch.grafana_sync import (
    Action,
    MissingVariablesError,
    ProvisioningError,
    apply,
    check_grafana,
    connect,
    expand,
    find_grafana_dir,
    load,
    plan,
)

REPO = Path(__file__).resolve().parent.parent
TOKEN = "glsa_standin_0123456789abcdef"
USER, PASSWORD = "sync-admin", "a-long-admin-secret"


# --- the stand-in ------------------------------------------------------------------------------


class StandIn:
    """Grafana's state for one organisation, and every request received."""

    def __init__(self) -> None:
        self.folders: dict[str, dict[str, Any]] = {}
        self.datasources: dict[str, dict[str, Any]] = {}  # uid -> stored, secrets in clear
        self.dashboards: dict[str, dict[str, Any]] = {}  # uid -> {"model", "folderUid"}
        self.requests: list[tuple[str, str, Any]] = []
        self.lock = threading.Lock()
        self._ids = 0
        self.url = ""

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    @property
    def writes(self) -> list[tuple[str, str, Any]]:
        return [r for r in self.requests if r[0] != "GET"]

    def datasource_dto(self, ds: Mapping[str, Any]) -> dict[str, Any]:
        dto = {k: v for k, v in ds.items() if k != "secureJsonData"}
        dto.update(password="", basicAuthPassword="", typeLogoUrl="")
        dto["secureJsonFields"] = {k: True for k, v in ds["secureJsonData"].items() if v}
        return dto

    def add_datasource(self, **fields: Any) -> None:
        """Put a datasource in place as if someone (or Grafana's file provisioning) had made it."""
        ds: dict[str, Any] = {
            "id": self.next_id(),
            "orgId": 1,
            "access": "proxy",
            "url": "",
            "user": "",
            "database": "",
            "basicAuth": False,
            "basicAuthUser": "",
            "withCredentials": False,
            "isDefault": False,
            "jsonData": {},
            "secureJsonData": {},
            "version": 1,
            "readOnly": False,
        }
        ds.update(fields)
        self.datasources[ds["uid"]] = ds

    # Each handler returns (status, body).

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if parts[:1] != ["api"]:
            return 404, {"message": "Not found"}
        route = parts[1:]
        if method == "POST" and route == ["folders"]:
            return self.create_folder(body)
        if route[:1] == ["folders"] and len(route) == 2:
            return self.get_folder(route[1]) if method == "GET" else self.update_folder(route[1], body)
        if method == "POST" and route == ["datasources"]:
            return self.create_datasource(body)
        if method == "GET" and route == ["datasources"]:
            return 200, [self.datasource_dto(ds) for ds in self.datasources.values()]
        if route[:2] == ["datasources", "uid"] and len(route) == 3:
            uid = route[2]
            if uid not in self.datasources:
                return 404, {"message": "Data source not found"}
            if method == "GET":
                return 200, self.datasource_dto(self.datasources[uid])
            return self.update_datasource(uid, body)
        if method == "POST" and route == ["dashboards", "db"]:
            return self.save_dashboard(body)
        if method == "GET" and route[:2] == ["dashboards", "uid"] and len(route) == 3:
            return self.get_dashboard(route[2])
        if method == "GET" and route == ["search"]:
            return 200, [
                {"uid": uid, "title": d["model"]["title"], "type": "dash-db", "folderUid": d["folderUid"]}
                for uid, d in self.dashboards.items()
                if query.get("type", ["dash-db"])[0] == "dash-db"
            ]
        return 404, {"message": "Not found"}

    def get_folder(self, uid: str) -> tuple[int, Any]:
        if uid not in self.folders:
            return 404, {"message": "folder not found", "status": "not-found"}
        return 200, self.folders[uid]

    def create_folder(self, body: Mapping[str, Any]) -> tuple[int, Any]:
        title, uid = body.get("title") or "", body.get("uid") or f"gen{self._ids + 1}"
        if not title:
            return 400, {"message": "folder title cannot be empty"}
        if uid in self.folders:
            return 409, {"message": "a folder with the same uid already exists"}
        if any(f["title"] == title for f in self.folders.values()):
            return 409, {
                "message": "a folder or dashboard in the general folder with the same name already exists"
            }
        self.folders[uid] = {
            "id": self.next_id(),
            "uid": uid,
            "title": title,
            "url": f"/dashboards/f/{uid}/",
            "version": 1,
        }
        return 200, self.folders[uid]

    def update_folder(self, uid: str, body: Mapping[str, Any]) -> tuple[int, Any]:
        if uid not in self.folders:
            return 404, {"message": "folder not found", "status": "not-found"}
        folder = self.folders[uid]
        if not body.get("overwrite") and body.get("version") != folder["version"]:
            return 412, {
                "message": "the folder has been changed by someone else",
                "status": "version-mismatch",
            }
        folder["title"] = body.get("title") or folder["title"]
        folder["version"] += 1
        return 200, folder

    def create_datasource(self, body: Mapping[str, Any]) -> tuple[int, Any]:
        if not body.get("name") or not body.get("type"):
            return 400, {"message": "bad request data"}
        if any(ds["name"] == body["name"] for ds in self.datasources.values()):
            return 409, {"message": "data source with the same name already exists"}
        uid = body.get("uid") or f"gen{self._ids + 1}"
        if uid in self.datasources:
            return 409, {"message": "data source with the same uid already exists"}
        fields = {
            k: body.get(k) for k in ("name", "type", "access", "url", "user", "database", "basicAuthUser")
        }
        self.add_datasource(
            uid=uid,
            **{k: v or "" for k, v in fields.items()},
            **{k: bool(body.get(k)) for k in ("basicAuth", "withCredentials", "isDefault")},
            jsonData=body.get("jsonData") or {},
            secureJsonData=dict(body.get("secureJsonData") or {}),
        )
        ds = self.datasources[uid]
        return 200, {
            "datasource": self.datasource_dto(ds),
            "id": ds["id"],
            "message": "Datasource added",
            "name": ds["name"],
        }

    def update_datasource(self, uid: str, body: Mapping[str, Any]) -> tuple[int, Any]:
        ds = self.datasources[uid]
        if ds["readOnly"]:
            return 403, {"message": "Cannot update read-only data source"}
        version = body.get("version") or 0
        if version and ds["version"] > version:  # Grafana: a version older than the stored one
            return 409, {
                "message": "Datasource has already been updated by someone else. Please reload and try again"
            }
        if any(o["name"] == body.get("name") and o is not ds for o in self.datasources.values()):
            return 409, {"message": "data source with the same name already exists"}
        # The command replaces every field; absent ones become empty. Secrets not sent are kept.
        for key in ("name", "type", "access", "url", "user", "database", "basicAuthUser"):
            ds[key] = body.get(key) or ""
        for key in ("basicAuth", "withCredentials", "isDefault"):
            ds[key] = bool(body.get(key))
        ds["jsonData"] = body.get("jsonData") or {}
        ds["secureJsonData"] = {**ds["secureJsonData"], **(body.get("secureJsonData") or {})}
        ds["version"] = version + 1
        ds["uid"] = body.get("uid") or uid
        return 200, {
            "datasource": self.datasource_dto(ds),
            "id": ds["id"],
            "message": "Datasource updated",
            "name": ds["name"],
        }

    def save_dashboard(self, body: Mapping[str, Any]) -> tuple[int, Any]:
        model = body.get("dashboard")
        if not isinstance(model, dict) or not model.get("title"):
            return 400, {"message": "Dashboard title cannot be empty"}
        folder_uid = body.get("folderUid") or ""
        if folder_uid and folder_uid not in self.folders:
            return 400, {"message": "folder not found"}
        uid = model.get("uid") or f"gen{self._ids + 1}"
        existing = self.dashboards.get(uid)
        if existing is not None and not body.get("overwrite"):
            if model.get("id") is None:
                return 412, {
                    "message": "A dashboard with the same uid already exists",
                    "status": "name-exists",
                }
            if model.get("version") != existing["model"]["version"]:
                return 412, {
                    "message": "The dashboard has been changed by someone else",
                    "status": "version-mismatch",
                }
        dash_id = existing["model"]["id"] if existing else self.next_id()
        version = existing["model"]["version"] + 1 if existing else 1
        stored = {**model, "id": dash_id, "uid": uid, "version": version}
        self.dashboards[uid] = {"model": stored, "folderUid": folder_uid}
        return 200, {
            "id": dash_id,
            "uid": uid,
            "url": f"/d/{uid}/x",
            "status": "success",
            "version": version,
            "slug": "x",
        }

    def get_dashboard(self, uid: str) -> tuple[int, Any]:
        if uid not in self.dashboards:
            return 404, {"message": "Dashboard not found"}
        d = self.dashboards[uid]
        folder = self.folders.get(d["folderUid"], {})
        meta = {
            "url": f"/d/{uid}/x",
            "folderUid": d["folderUid"],
            "folderTitle": folder.get("title", "General"),
            "provisioned": False,
            "version": d["model"]["version"],
        }
        return 200, {"dashboard": d["model"], "meta": meta}


def _authorised(header: str | None) -> bool:
    if header == f"Bearer {TOKEN}":
        return True
    if header and header.startswith("Basic "):
        return base64.b64decode(header[6:]).decode() == f"{USER}:{PASSWORD}"
    return False


def _handler(standin: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            with standin.lock:
                standin.requests.append((self.command, split.path, body))
                if split.path == "/api/health":
                    status, answer = 200, {"commit": "stand-in", "database": "ok", "version": "11.3.0"}
                elif not _authorised(self.headers.get("Authorization")):
                    status, answer = 401, {"message": "Unauthorized"}
                else:
                    status, answer = standin.handle(self.command, split.path, parse_qs(split.query), body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_PUT(self) -> None:
            self._serve()

    return Handler


@pytest.fixture
def grafana() -> Iterator[StandIn]:
    standin = StandIn()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(standin))
    standin.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield standin
    server.shutdown()
    server.server_close()


# --- a small provisioning tree -----------------------------------------------------------------

ENV = {
    "FW_TEST_INFLUX_URL": "http://influxdb:8086",
    "FW_TEST_INFLUX_PASSWORD": "influx-secret-1",
    "FW_TEST_PG_USER": "grafana_reader",
    "FW_TEST_PG_PASSWORD": "pg-secret-1",
}

DATASOURCES = """\
apiVersion: 1
datasources:
  - name: firewatch InfluxDB
    type: influxdb
    uid: firewatch-influxdb
    access: proxy
    url: ${FW_TEST_INFLUX_URL}
    database: firewatch
    user: grafana
    editable: false
    jsonData:
      httpMode: POST
      timeInterval: 10s
    secureJsonData:
      password: ${FW_TEST_INFLUX_PASSWORD}
  - name: firewatch PostgreSQL
    type: grafana-postgresql-datasource
    uid: firewatch-postgres
    url: db:5432
    user: $FW_TEST_PG_USER
    jsonData:
      database: firewatch
      sslmode: disable
      note: costs $$0
    secureJsonData:
      password: "${FW_TEST_PG_PASSWORD}"
"""

PROVIDERS = """\
apiVersion: 1
providers:
  - name: firewatch
    type: file
    folder: 消防 firewatch
    folderUid: firewatch
    options:
      path: /var/lib/grafana/dashboards
"""


def dashboard(uid: str, title: str, panel: str = "Open fire alarms") -> dict[str, Any]:
    return {
        "id": 41,
        "uid": uid,
        "title": title,
        "version": 7,
        "schemaVersion": 39,
        "templating": {
            "list": [{"name": "site", "query": 'SHOW TAG VALUES WITH KEY = "site"', "current": {}}]
        },
        "panels": [
            {
                "id": 1,
                "type": "stat",
                "title": panel,
                "datasource": {"type": "grafana-postgresql-datasource", "uid": "firewatch-postgres"},
                "targets": [{"rawSql": "SELECT count(*) FROM alarms WHERE site = '$site'", "refId": "A"}],
            }
        ],
    }


def write_tree(root: Path) -> Path:
    (root / "provisioning" / "datasources").mkdir(parents=True)
    (root / "provisioning" / "dashboards").mkdir(parents=True)
    (root / "dashboards").mkdir()
    (root / "provisioning" / "datasources" / "firewatch.yaml").write_text(DATASOURCES, encoding="utf-8")
    (root / "provisioning" / "dashboards" / "firewatch.yaml").write_text(PROVIDERS, encoding="utf-8")
    for uid, title in (("fw-control-room", "Control room"), ("fw-device-history", "Device history")):
        text = json.dumps(dashboard(uid, title), ensure_ascii=False, indent=2)
        (root / "dashboards" / f"{uid}.json").write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "grafana")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The provisioning variables set, and no Grafana settings leaking in from the outside."""
    for name in ("GRAFANA_URL", "GRAFANA_TOKEN", "GRAFANA_USER", "GRAFANA_PASSWORD", "FIREWATCH_GRAFANA_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    return dict(ENV)


class Run:
    def __init__(self, exit_code: int, output: str) -> None:
        self.exit_code = exit_code
        self.output = output
        self.text = " ".join(output.split())  # rich wraps long lines: compare words, not layout


def sync(standin: StandIn, tree: Path, *args: str, token: str | None = TOKEN) -> Run:
    auth = ["--token", token] if token is not None else []
    result = CliRunner().invoke(
        app, ["grafana", "sync", "--url", standin.url, "--dir", str(tree), *auth, *args]
    )
    return Run(result.exit_code, result.output)


def results(run: Run) -> dict[str, str]:
    """uid -> result, read from the summary table."""
    found: dict[str, str] = {}
    for line in run.output.splitlines():
        m = re.search(
            r"│\s*(folder|datasource|dashboard)\s*│\s*(\S+)\s*│.*?│\s*(would create|would update|created|"
            r"updated|unchanged|failed)\s*│",
            line,
        )
        if m:
            found[m.group(2)] = m.group(3)
    return found


ALL_UIDS = {"firewatch", "firewatch-influxdb", "firewatch-postgres", "fw-control-room", "fw-device-history"}


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    from firewatch import cli_grafana

    monkeypatch.setattr(cli_grafana.console, "width", 220)
    monkeypatch.setattr(cli_grafana.err, "width", 400)  # long paths in messages stay whole


# --- specifications ----------------------------------------------------------------------------


def test_the_first_sync_creates_the_folder_the_datasources_and_the_dashboards_by_uid(
    grafana: StandIn, tree: Path, env: dict[str, str]
) -> None:
    run = sync(grafana, tree)

    assert run.exit_code == 0, run.output
    assert results(run) == dict.fromkeys(ALL_UIDS, "created")
    assert grafana.folders["firewatch"]["title"] == "消防 firewatch"

    influx = grafana.datasources["firewatch-influxdb"]
    assert (influx["name"], influx["type"], influx["url"]) == (
        "firewatch InfluxDB",
        "influxdb",
        env["FW_TEST_INFLUX_URL"],
    )
    assert influx["secureJsonData"] == {"password": env["FW_TEST_INFLUX_PASSWORD"]}
    assert influx["jsonData"] == {"httpMode": "POST", "timeInterval": "10s"}
    pg = grafana.datasources["firewatch-postgres"]
    assert pg["user"] == env["FW_TEST_PG_USER"]
    assert pg["secureJsonData"] == {"password": env["FW_TEST_PG_PASSWORD"]}
    assert pg["jsonData"]["note"] == "costs $0"  # $$ is a literal $, as in Grafana's provisioning
    assert pg["access"] == "proxy"

    assert set(grafana.dashboards) == {"fw-control-room", "fw-device-history"}
    assert {d["folderUid"] for d in grafana.dashboards.values()} == {"firewatch"}
    posted = [
        body for method, path, body in grafana.requests if (method, path) == ("POST", "/api/dashboards/db")
    ]
    assert len(posted) == 2
    for body in posted:
        assert body["overwrite"] is True
        assert body["folderUid"] == "firewatch"
        assert "id" not in body["dashboard"]
    stored = grafana.dashboards["fw-control-room"]["model"]
    # Dashboard JSON is not expanded: its $site is Grafana's template variable.
    assert stored["panels"][0]["targets"][0]["rawSql"].endswith("site = '$site'")
    assert "influx-secret-1" not in run.output
    assert "pg-secret-1" not in run.output


def test_a_second_sync_writes_nothing_and_reports_everything_unchanged(
    grafana: StandIn, tree: Path, env: dict[str, str]
) -> None:
    assert sync(grafana, tree).exit_code == 0
    writes_before = len(grafana.writes)
    versions = {uid: d["model"]["version"] for uid, d in grafana.dashboards.items()}

    again = sync(grafana, tree)

    assert again.exit_code == 0, again.output
    assert results(again) == dict.fromkeys(ALL_UIDS, "unchanged")
    assert "5 unchanged" in again.text
    assert len(grafana.writes) == writes_before
    assert {uid: d["model"]["version"] for uid, d in grafana.dashboards.items()} == versions
    assert len(grafana.datasources) == 2
    assert len(grafana.folders) == 1


def test_a_changed_dashboard_file_updates_that_dashboard_in_place_with_the_next_version(
    grafana: StandIn, tree: Path, env: dict[str, str]
) -> None:
    assert sync(grafana, tree).exit_code == 0
    path = tree / "dashboards" / "fw-control-room.json"
    path.write_text(
        json.dumps(dashboard("fw-control-room", "Control room", panel="火警 now")), encoding="utf-8"
    )

    run = sync(grafana, tree)

    assert run.exit_code == 0, run.output
    assert results(run) == {**dict.fromkeys(ALL_UIDS, "unchanged"), "fw-control-room": "updated"}
    assert "version 1 -> 2; changed: panels" in run.text
    stored = grafana.dashboards["fw-control-room"]
    assert stored["model"]["version"] == 2
    assert stored["model"]["panels"][0]["title"] == "火警 now"
    assert stored["folderUid"] == "firewatch"
    client: Any = connect(grafana.url, TOKEN)
    listed = client.search.search_dashboards(type_="dash-db")
    assert sorted(d["uid"] for d in listed) == ["fw-control-room", "fw-device-history"]  # not duplicated


def test_a_dashboard_moved_out_of_the_folder_in_grafana_is_moved_back(
    grafana: StandIn, tree: Path, env: dict[str, str]
) -> None:
    assert sync(grafana, tree).exit_code == 0
    grafana.dashboards["fw-device-history"]["folderUid"] = ""

    run = sync(grafana, tree)

    assert results(run)["fw-device-history"] == "updated"
    assert "folder 'General' -> 'firewatch'" in run.text
    assert grafana.dashboards["fw-device-history"]["folderUid"] == "firewatch"


def test_a_changed_variable_updates_the_datasource_and_keeps_its_uid(
    grafana: StandIn, tree: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sync(grafana, tree).exit_code == 0
    monkeypatch.setenv("FW_TEST_INFLUX_URL", "http://influx-2:8086")

    run = sync(grafana, tree)

    assert results(run) == {**dict.fromkeys(ALL_UIDS, "unchanged"), "firewatch-influxdb": "updated"}
    assert "changed: url" in run.text
    influx = grafana.datasources["firewatch-influxdb"]
    assert influx["url"] == "http://influx-2:8086"
    assert influx["version"] == 2
    assert influx["secureJsonData"] == {"password": "influx-secret-1"}
    assert len(grafana.datasources) == 2


def test_a_changed_password_alone_is_only_sent_with_update_secrets(
    grafana: StandIn, tree: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Grafana never returns secrets, so a new password cannot be told from the old one."""
    assert sync(grafana, tree).exit_code == 0
    monkeypatch.setenv("FW_TEST_PG_PASSWORD", "pg-secret-2")

    unseen = sync(grafana, tree)
    assert results(unseen)["firewatch-postgres"] == "unchanged"
    assert grafana.datasources["firewatch-postgres"]["secureJsonData"]["password"] == "pg-secret-1"

    forced = sync(grafana, tree, "--update-secrets")
    assert forced.exit_code == 0, forced.output
    assert results(forced)["firewatch-postgres"] == "updated"
    assert grafana.datasources["firewatch-postgres"]["secureJsonData"]["password"] == "pg-secret-2"
    assert results(forced)["fw-control-room"] == "unchanged"


def test_a_secret_removed_in_grafana_is_put_back(grafana: StandIn, tree: Path, env: dict[str, str]) -> None:
    assert sync(grafana, tree).exit_code == 0
    grafana.datasources["firewatch-influxdb"]["secureJsonData"] = {}

    run = sync(grafana, tree)

    assert results(run)["firewatch-influxdb"] == "updated"
    assert "secureJsonData.password (not set in Grafana)" in run.text
    assert grafana.datasources["firewatch-influxdb"]["secureJsonData"] == {"password": "influx-secret-1"}


def test_a_renamed_folder_is_retitled_under_the_same_uid(
    grafana: StandIn, tree: Path, env: dict[str, str]
) -> None:
    assert sync(grafana, tree).exit_code == 0
    provider = tree / "provisioning" / "dashboards" / "firewatch.yaml"
    provider.write_text(PROVIDERS.replace("消防 firewatch", "Fire safety"), encoding="utf-8")

    run = sync(grafana, tree)

    assert results(run)["firewatch"] == "updated"
    assert grafana.folders == {
        "firewatch": {**grafana.folders["firewatch"], "title": "Fire safety", "version": 2}
    }


def test_an_unset_variable_stops_the_sync_naming_it_before_anything_is_sent(
    grafana: StandIn, tree: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FW_TEST_INFLUX_PASSWORD")
    monkeypatch.delenv("FW_TEST_PG_USER")

    run = sync(grafana, tree)

    assert run.exit_code == 2
    assert "environment variables not set: FW_TEST_INFLUX_PASSWORD, FW_TEST_PG_USER" in run.text
    assert "datasource 'firewatch InfluxDB'.secureJsonData.password" in run.text
    assert "firewatch.yaml" in run.text
    assert grafana.requests == []


def test_only_dashboards_needs_no_datasource_variables(
    grafana: StandIn, tree: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FW_TEST_INFLUX_PASSWORD")

    run = sync(grafana, tree, "--only", "dashboards")

    assert run.exit_code == 0, run.output
    assert results(run) == {
        "firewatch": "created",
        "fw-control-room": "created",
        "fw-device-history": "created",
    }
    assert grafana.datasources == {}


def test_only_datasources_leaves_folders_and_dashboards_alone(
    grafana: StandIn, tree: Path, env: dict[str, str]
) -> None:
    (tree / "provisioning" / "dashboards" / "firewatch.yaml").unlink()

    run = sync(grafana, tree, "--only", "datasources")

    assert run.exit_code == 0, run.output
    assert set(results(run)) == {"firewatch-influxdb", "firewatch-postgres"}
    assert grafana.folders == {}
    assert grafana.dashboards == {}


def test_a_dry_run_reads_grafana_shows_the_plan_and_writes_nothing(
    grafana: StandIn, tree: Path, env: dict[str, str]
) -> None:
    first = sync(grafana, tree, "--dry-run")
    assert first.exit_code == 0, first.output
    assert results(first) == dict.fromkeys(ALL_UIDS, "would create")
    assert "dry run, nothing written" in first.text
    assert grafana.writes == []
    assert grafana.requests  # it did read

    assert sync(grafana, tree).exit_code == 0
    path = tree / "dashboards" / "fw-device-history.json"
    path.write_text(json.dumps(dashboard("fw-device-history", "Device history v2")), encoding="utf-8")
    writes = len(grafana.writes)

    second = sync(grafana, tree, "--dry-run")

    assert results(second)["fw-device-history"] == "would update"
    row = next(line for line in second.output.splitlines() if "fw-device-history" in line)
    assert row.split("│")[-2].strip() == "title"  # what would change, and nothing else
    assert len(grafana.writes) == writes
    assert grafana.dashboards["fw-device-history"]["model"]["title"] == "Device history"


def test_a_refused_token_exits_2_and_names_GRAFANA_TOKEN(
    grafana: StandIn, tree: Path, env: dict[str, str]
) -> None:
    run = sync(grafana, tree, token="glsa_revoked")

    assert run.exit_code == 2
    assert "refused the credentials (401 Unauthorized)" in run.text
    assert "GRAFANA_TOKEN" in run.text
    assert grafana.writes == []


def test_refused_basic_auth_names_GRAFANA_USER_and_GRAFANA_PASSWORD(
    grafana: StandIn, tree: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAFANA_USER", USER)
    monkeypatch.setenv("GRAFANA_PASSWORD", "wrong")
    refused = sync(grafana, tree, token=None)
    assert refused.exit_code == 2
    assert "GRAFANA_USER" in refused.text
    assert "GRAFANA_PASSWORD" in refused.text

    monkeypatch.setenv("GRAFANA_PASSWORD", PASSWORD)
    accepted = sync(grafana, tree, token=None)
    assert accepted.exit_code == 0, accepted.output
    assert len(grafana.dashboards) == 2


def test_no_credentials_says_which_variables_to_set(
    grafana: StandIn, tree: Path, env: dict[str, str]
) -> None:
    run = sync(grafana, tree, token=None)

    assert run.exit_code == 2
    assert "set GRAFANA_TOKEN" in run.text
    assert "GRAFANA_USER and GRAFANA_PASSWORD" in run.text
    assert grafana.requests == []


def test_an_unreachable_grafana_exits_2(tree: Path, env: dict[str, str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    nobody = StandIn()
    nobody.url = f"http://127.0.0.1:{port}"

    run = sync(nobody, tree)

    assert run.exit_code == 2
    assert f"cannot reach Grafana at http://127.0.0.1:{port}" in run.text


def test_a_url_that_is_not_grafana_exits_2_and_asks_about_the_sub_path(
    grafana: StandIn, tree: Path, env: dict[str, str]
) -> None:
    elsewhere = StandIn()
    elsewhere.url = grafana.url + "/not-grafana"

    run = sync(elsewhere, tree)

    assert run.exit_code == 2
    assert "answered /api/health with HTTP 404" in run.text
    assert grafana.writes == []


@pytest.mark.parametrize(
    ("file", "content", "expected"),
    [
        (
            "dashboards/fw-control-room.json",
            '{"uid": "fw-control-room",\n "title": }',
            "fw-control-room.json:2:11: not valid JSON",
        ),
        (
            "dashboards/fw-control-room.json",
            '{"title": "no uid"}',
            "fw-control-room.json: needs a stable uid",
        ),
        (
            "dashboards/fw-control-room.json",
            '{"uid": "fw-device-history", "title": "twin"}',
            "is also used by",
        ),
        (
            "provisioning/datasources/firewatch.yaml",
            "apiVersion: 1\ndatasources:\n  - name: x\n    type: [\n",
            "firewatch.yaml:5:1: not valid YAML",
        ),
        (
            "provisioning/datasources/firewatch.yaml",
            "apiVersion: 1\ndatasources:\n  - {name: x, type: influxdb}\n",
            "datasource 'x': uid is required",
        ),
        (
            "provisioning/datasources/firewatch.yaml",
            "apiVersion: 1\ndatasources:\n  - {name: x, type: influxdb, uid: x, urll: y}\n",
            "unknown key(s) urll",
        ),
        ("provisioning/datasources/firewatch.yaml", "datasources: []\n", "apiVersion must be 1"),
        (
            "provisioning/dashboards/firewatch.yaml",
            "apiVersion: 1\nproviders:\n  - {name: a, folder: F}\n",
            "needs a folderUid",
        ),
    ],
)
def test_an_invalid_file_is_named_and_nothing_is_sent(
    grafana: StandIn, tree: Path, env: dict[str, str], file: str, content: str, expected: str
) -> None:
    (tree / file).write_text(content, encoding="utf-8")

    run = sync(grafana, tree)

    assert run.exit_code == 2
    assert expected in run.text
    assert str(tree / file) in run.text
    assert grafana.requests == []


def test_a_datasource_grafana_refuses_is_reported_and_the_rest_is_written(
    grafana: StandIn, tree: Path, env: dict[str, str]
) -> None:
    grafana.add_datasource(uid="someone-elses", name="firewatch InfluxDB", type="influxdb")

    run = sync(grafana, tree)

    assert run.exit_code == 1
    assert results(run) == {**dict.fromkeys(ALL_UIDS, "created"), "firewatch-influxdb": "failed"}
    assert "data source with the same name already exists (HTTP 409)" in run.text
    assert "1 object(s) not written" in run.text
    assert set(grafana.datasources) == {"someone-elses", "firewatch-postgres"}


def test_a_datasource_provisioned_from_files_in_grafana_is_not_overwritten(
    grafana: StandIn, tree: Path, env: dict[str, str]
) -> None:
    grafana.add_datasource(
        uid="firewatch-postgres",
        name="firewatch PostgreSQL",
        type="postgres",
        url="old-db:5432",
        readOnly=True,
    )

    run = sync(grafana, tree)

    assert run.exit_code == 1
    assert results(run)["firewatch-postgres"] == "failed"
    assert "Cannot update read-only data source" in run.text
    assert "provisioned from files in Grafana" in run.text
    assert grafana.datasources["firewatch-postgres"]["url"] == "old-db:5432"


def test_the_old_postgres_plugin_id_counts_as_the_same_type(
    grafana: StandIn, tree: Path, env: dict[str, str]
) -> None:
    bundle = load(tree, env)
    pg = next(ds for ds in bundle.datasources if ds.uid == "firewatch-postgres")
    grafana.add_datasource(**{**pg.body, "type": "postgres"}, secureJsonData=dict(pg.secure))

    steps = plan(connect(grafana.url, TOKEN), bundle)

    assert next(s for s in steps if s.uid == "firewatch-postgres").action is Action.UNCHANGED


def test_variables_expand_as_in_grafana_provisioning() -> None:
    env = {"HOST": "db", "PORT": "5432", "EMPTY": ""}
    missing: dict[str, list[str]] = {}

    assert expand("postgres://$HOST:${PORT}/x", env, "w", missing) == "postgres://db:5432/x"
    assert expand("$$HOST costs $$5", env, "w", missing) == "$HOST costs $5"
    assert expand({"a": ["${EMPTY}", 3, True]}, env, "w", missing) == {"a": ["", 3, True]}
    assert expand("50$ and $/", env, "w", missing) == "50$ and $/"
    assert missing == {}
    expand({"k": "$NOPE and ${NOPE2}"}, env, "file.yaml: ds", missing)
    assert missing == {"NOPE": ["file.yaml: ds.k"], "NOPE2": ["file.yaml: ds.k"]}
    with pytest.raises(ProvisioningError, match=r"\$\{PORT:-5432\} is not a variable reference"):
        expand("${PORT:-5432}", env, "w", {})


def test_load_reports_every_unset_variable_at_once(tree: Path) -> None:
    with pytest.raises(MissingVariablesError) as caught:
        load(tree, {"FW_TEST_PG_USER": "u"})
    assert caught.value.names == ["FW_TEST_INFLUX_PASSWORD", "FW_TEST_INFLUX_URL", "FW_TEST_PG_PASSWORD"]


def test_a_missing_tree_asks_for_dir(tmp_path: Path) -> None:
    with pytest.raises(ProvisioningError, match="pass --dir the grafana/ directory"):
        find_grafana_dir(tmp_path / "nowhere")


def test_the_command_runs_as_an_operator_runs_it(grafana: StandIn, tree: Path) -> None:
    environ = {**os.environ, **ENV, "GRAFANA_URL": grafana.url, "GRAFANA_TOKEN": TOKEN, "COLUMNS": "200"}
    environ["FIREWATCH_GRAFANA_DIR"] = str(tree)
    for name in ("GRAFANA_USER", "GRAFANA_PASSWORD"):
        environ.pop(name, None)

    def firewatch(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "firewatch.cli", *args],
            capture_output=True,
            text=True,
            env=environ,
            timeout=60,
            check=False,
        )

    first = firewatch("grafana", "sync")
    assert first.returncode == 0, first.stderr
    assert "5 created" in first.stdout
    second = firewatch("grafana", "sync")
    assert second.returncode == 0, second.stderr
    assert "5 unchanged" in second.stdout
    environ.pop("FW_TEST_PG_PASSWORD")
    third = firewatch("grafana", "sync")
    assert third.returncode == 2
    assert "FW_TEST_PG_PASSWORD" in third.stderr


class AnyValue(dict[str, str]):
    """An environment in which every variable is set (the real tree's names are not ours to know)."""

    def __missing__(self, key: str) -> str:
        return f"test-value-of-{key}"


@pytest.mark.skipif(
    not (REPO / "grafana").is_dir(), reason="grafana/ (the provisioning tree) is not in this checkout yet"
)
def test_the_shipped_grafana_tree_syncs_and_then_reports_unchanged(grafana: StandIn) -> None:
    root = find_grafana_dir(REPO / "grafana")
    bundle = load(root, AnyValue())
    api = connect(grafana.url, TOKEN)
    assert check_grafana(api) == "11.3.0"

    first = apply(api, bundle, plan(api, bundle))

    assert [o.detail for o in first if o.failed] == []
    assert {o.result for o in first} == {"created"}
    assert {"firewatch-influxdb", "firewatch-postgres"} <= set(grafana.datasources)
    assert bundle.folder is not None
    assert bundle.folder.uid == "firewatch"
    assert set(grafana.dashboards) == {d.uid for d in bundle.dashboards}
    assert {d["folderUid"] for d in grafana.dashboards.values()} == {"firewatch"}
    again = plan(api, bundle)
    assert {(s.uid, s.action) for s in again} == {(s.uid, Action.UNCHANGED) for s in again}


def test_the_grafana_client_leaves_the_installed_urllib3_alone() -> None:
    """grafana-client 4+ brings urllib3-future, which overwrites the `urllib3` package at interpreter
    start and broke requests-based libraries here (docs/decisions/0008-grafana-client-3.md)."""
    import importlib.metadata

    import urllib3

    assert importlib.metadata.version("grafana-client").startswith("3.")
    version = str(vars(urllib3)["__version__"])  # the module's own, not pip's metadata (which lies)
    assert int(version.split(".")[-1]) < 900, f"urllib3 {version} is urllib3-future"
