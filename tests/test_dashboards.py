"""Grafana provisioning and dashboards (grafana/), checked without a Grafana server (DESIGN §7).

- Structure: stable uids, bilingual titles, unique panel ids, only the two provisioned data sources,
  every variable a query uses defined (and defined before the variables that use it), the
  provisioning files as Grafana reads them.
- Types: every dashboard type-checks with `tsc` against @grafana/schema (grafana/check/firewatch.ts
  says how), and deliberately broken dashboards fail it.
- SQL: every PostgreSQL query (panels, annotations, variables) runs, as a read-only role, on a real
  PostgreSQL holding the schema the service migrates to and a hospital's day driven through the real
  code: decoder, detection engine, alarm service, ticket service. Key panels answer what that day
  implies, and the ticket KPIs equal tickets/kpi.py's (what the API and `firewatch report` serve).
- InfluxQL: every InfluxQL query runs on a real InfluxDB 1.6 holding the same day as the InfluxDB
  sink encodes it (storage/line_protocol.py; docs/influx.md), and key panels answer what it implies.

Queries are expanded as Grafana would expand them (tests/grafana_macros.py). The day is played
once per module.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
import shutil
import subprocess
import time
import uuid
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
import pytest
import yaml
from sqlalchemy import select

from alarms.model import Transition
from alarms.policy import Policy
from alarms.service import AlarmService
from alarms.tickets import TicketOpener
from core.domain import ACTIVE_STATES, AlarmCategory, DeviceEventKind, Role, TicketAction, TicketStatus
from core.registry import (
    BuildingSpec,
    Device,
    FloorSpec,
    Registry,
    RoomSpec,
    SiteSpec,
    ZoneSpec,
    load_registry,
)
from core.settings import AlarmPolicySettings, TicketPolicy
from detectors.engine import Engine
from detectors.liveness import OFFLINE
from device_profiles.loader import load_profiles
from ingest.decode import Decoder
from ingest.envelope import Message
from ingest.index import DeviceIndex
from simulators.devices import SimDevice
from simulators.hospital import DEMO_HOSPITAL
from storage.db import open_store
from storage.influx import alarm_row, device_tags
from storage.line_protocol import ReadingEncoder, alarm_line, line
from storage.models import AlarmRow, TicketRow
from storage.registry_sync import sync_registry
from tests.conftest import FakeClock
from tests.grafana_macros import (
    GrafanaExpansionError,
    TimeRange,
    Variable,
    expand_influxql,
    expand_sql,
)
from tests.influxdb1 import INFLUXD, InfluxDB1
from tests.postgres import PrivatePostgres
from tickets.kpi import compute_kpis
from tickets.service import ActionFields, HazardReport, TicketService

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"
CHECK = GRAFANA / "check"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
INFLUX = {"type": "influxdb", "uid": "firewatch-influxdb"}
POSTGRES = {"type": "grafana-postgresql-datasource", "uid": "firewatch-postgres"}
DATASOURCES = {INFLUX["uid"]: INFLUX, POSTGRES["uid"]: POSTGRES}
UIDS = {
    "overview.json": "firewatch-overview",
    "device.json": "firewatch-device",
    "tickets.json": "firewatch-tickets",
    "pipeline.json": "firewatch-pipeline",
}
ALL = None  # a variable's "All"


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


DASHBOARDS = {path.name: load(path) for path in DASHBOARD_FILES}
BY_UID = {d["uid"]: d for d in DASHBOARDS.values()}


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


@dataclass(frozen=True)
class Query:
    """One query of a dashboard: a panel's target, an annotation's or a variable's."""

    dashboard: str  # uid
    where: str
    datasource: str  # uid
    text: str

    def __str__(self) -> str:
        return f"{self.dashboard}: {self.where}"


def queries(dashboard: Mapping[str, Any]) -> list[Query]:
    uid = dashboard["uid"]
    found: list[Query] = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            ds = (target.get("datasource") or panel["datasource"])["uid"]
            text = target.get("rawSql") if ds == POSTGRES["uid"] else target.get("query")
            where = f"panel {panel['id']} «{panel['title']}» {target['refId']}"
            found.append(Query(uid, where, ds, text or ""))
    for annotation in dashboard["annotations"]["list"]:
        if annotation.get("builtIn"):
            continue
        target = annotation["target"]
        text = (
            target.get("rawSql")
            if annotation["datasource"]["uid"] == POSTGRES["uid"]
            else target.get("query")
        )
        found.append(
            Query(uid, f"annotation «{annotation['name']}»", annotation["datasource"]["uid"], text or "")
        )
    for variable in dashboard["templating"]["list"]:
        found.append(
            Query(uid, f"variable ${variable['name']}", variable["datasource"]["uid"], variable["query"])
        )
    return found


ALL_QUERIES = [q for d in DASHBOARDS.values() for q in queries(d)]
SQL_QUERIES = [q for q in ALL_QUERIES if q.datasource == POSTGRES["uid"]]
INFLUXQL_QUERIES = [q for q in ALL_QUERIES if q.datasource == INFLUX["uid"]]
_VARIABLE_USE = re.compile(r"\$(\w+)|\[\[(\w+)(?::\w+)?\]\]|\$\{(\w+)(?::[^}]+)?\}")
# What Grafana and its data sources define themselves (the InfluxQL and SQL macros and globals).
BUILTINS = {
    "timeFilter",
    "interval",
    "__interval",
    "__interval_ms",
    "__unixEpochFilter",
    "__unixEpochFrom",
    "__unixEpochTo",
    "__unixEpochGroupAlias",
    "__unixEpochGroup",
}


def variables_used(text: str) -> set[str]:
    return {a or b or c for a, b, c in _VARIABLE_USE.findall(text)} - BUILTINS


# --- structure -------------------------------------------------------------------------------------
def test_the_four_dashboards_exist_with_their_stable_uids() -> None:
    assert {name: d["uid"] for name, d in DASHBOARDS.items()} == UIDS


@pytest.mark.parametrize("name", sorted(UIDS))
def test_titles_are_chinese_with_english_and_the_refresh_suits_the_room(name: str) -> None:
    d = DASHBOARDS[name]
    assert re.search(r"[\u4e00-\u9fff]", d["title"]), d["title"]
    assert re.search(r"[A-Za-z]{4,}", d["title"]), d["title"]
    assert d["refresh"] in d["timepicker"]["refresh_intervals"]
    seconds = {"s": 1, "m": 60, "h": 3600}
    refresh = int(d["refresh"][:-1]) * seconds[d["refresh"][-1]]
    # The control room watches the overview and the pipeline: a fire must show within seconds.
    limit = {"overview.json": 10, "pipeline.json": 30, "device.json": 60, "tickets.json": 900}[name]
    assert refresh <= limit
    for panel in panels(d):
        assert re.search(r"[\u4e00-\u9fff]", panel["title"])
        assert re.search(r"[A-Za-z]", panel["title"])


@pytest.mark.parametrize("name", sorted(UIDS))
def test_panel_ids_are_unique_and_every_query_uses_a_provisioned_datasource(name: str) -> None:
    d = DASHBOARDS[name]
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids)), ids
    for panel in panels(d):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] in DATASOURCES.values(), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], f"{panel['title']} {target['refId']}"
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
    for annotation in d["annotations"]["list"]:
        if not annotation.get("builtIn"):
            assert annotation["datasource"] in DATASOURCES.values(), annotation["name"]
    for variable in d["templating"]["list"]:
        assert variable["datasource"] in DATASOURCES.values(), variable["name"]


@pytest.mark.parametrize("name", sorted(UIDS))
def test_every_variable_a_query_uses_is_defined_and_chained_in_order(name: str) -> None:
    d = DASHBOARDS[name]
    names = [v["name"] for v in d["templating"]["list"]]
    assert len(names) == len(set(names))
    for query in queries(d):
        used = variables_used(query.text)
        assert used <= set(names), f"{query}: undefined {used - set(names)}"
    for i, variable in enumerate(d["templating"]["list"]):
        # A variable may depend only on the variables before it (site -> building -> floor -> ...).
        assert variables_used(variable["query"]) <= set(names[:i]), variable["name"]


def test_influxql_aliases_name_only_tags_the_query_groups_by() -> None:
    for d in DASHBOARDS.values():
        for panel in panels(d):
            for target in panel.get("targets", []):
                for tag in re.findall(r"\$tag_(\w+)", target.get("alias", "")):
                    assert f'"{tag}"' in target["query"].split("GROUP BY")[-1], f"{panel['title']}: {tag}"


def test_variables_are_chained_site_building_floor_device() -> None:
    chains = {
        "firewatch-overview": ["site", "building", "floor"],
        "firewatch-device": ["site", "building", "floor", "kind", "device"],
        "firewatch-tickets": ["site", "department"],
    }
    for uid, chain in chains.items():
        variables = {v["name"]: v for v in BY_UID[uid]["templating"]["list"]}
        assert list(variables) == chain
        for earlier, later in itertools.pairwise(chain):
            assert earlier in variables_used(variables[later]["query"]), f"{uid}: ${later} ignores ${earlier}"
    device_vars = {v["name"]: v for v in BY_UID["firewatch-device"]["templating"]["list"]}
    assert not device_vars["device"]["multi"]
    assert not device_vars["device"]["includeAll"]
    for uid in ("firewatch-overview", "firewatch-tickets"):
        for v in BY_UID[uid]["templating"]["list"]:
            # All means every option (no custom all value): it expands in both SQL and InfluxQL.
            assert (v["multi"], v["includeAll"], "allValue" in v) == (True, True, False), v["name"]


def test_datasource_provisioning_uses_the_environment_and_the_two_uids() -> None:
    config = yaml.safe_load((GRAFANA / "provisioning/datasources/firewatch.yaml").read_text(encoding="utf-8"))
    assert config["apiVersion"] == 1
    by_uid = {ds["uid"]: ds for ds in config["datasources"]}
    assert set(by_uid) == set(DATASOURCES)
    influx = by_uid[INFLUX["uid"]]
    assert influx["type"] == INFLUX["type"]
    assert (influx["url"], influx["jsonData"]["dbName"]) == ("${INFLUXDB_URL}", "${INFLUXDB_BUCKET}")
    assert influx["jsonData"]["version"] == "InfluxQL"
    # InfluxDB 2 takes the token on the v1-compatible API as an Authorization header.
    assert influx["jsonData"]["httpHeaderName1"] == "Authorization"
    assert influx["secureJsonData"]["httpHeaderValue1"] == "Token ${INFLUXDB_TOKEN}"
    pg = by_uid[POSTGRES["uid"]]
    assert pg["type"] == POSTGRES["type"]
    assert (pg["url"], pg["user"]) == ("${POSTGRES_HOST}", "${POSTGRES_READER_USER}")
    assert pg["jsonData"]["database"] == "${POSTGRES_DB}"
    assert pg["secureJsonData"]["password"] == "${POSTGRES_READER_PASSWORD}"
    assert pg["jsonData"]["sslmode"] == "disable"
    assert pg["jsonData"]["postgresVersion"] >= 1500
    text = (GRAFANA / "provisioning/datasources/firewatch.yaml").read_text(encoding="utf-8")
    assert not re.search(r"\$(?!\{[A-Z][A-Z0-9_]*\})", text), "use ${VAR} for every environment variable"


def test_dashboard_provisioning_loads_the_dashboards_folder_from_disk() -> None:
    config = yaml.safe_load((GRAFANA / "provisioning/dashboards/firewatch.yaml").read_text(encoding="utf-8"))
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["folderUid"] == "firewatch"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/firewatch"
    assert provider["updateIntervalSeconds"] > 0
    assert provider["allowUiUpdates"] is False


# --- tsc against @grafana/schema -------------------------------------------------------------------
def _typescript(name: str, dashboard: Mapping[str, Any]) -> str:
    return (
        f"// {name}: generated by tests/test_dashboards.py\n"
        "import type { FirewatchDashboard } from '../../firewatch';\n\n"
        "export const dashboard: FirewatchDashboard = "
        f"{json.dumps(dashboard, ensure_ascii=False, indent=2)};\n"
    )


@pytest.fixture(scope="module")
def tsc() -> Callable[[Mapping[str, Mapping[str, Any]]], subprocess.CompletedProcess[str]]:
    """Type-check dashboards: each is written to a .ts file that assigns it to FirewatchDashboard."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.skip(
            "node and npm are needed to type-check the dashboards (Debian: apt-get install nodejs npm)"
        )
    if not (CHECK / "node_modules/typescript/bin/tsc").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=CHECK, check=True, capture_output=True)

    def run(dashboards: Mapping[str, Mapping[str, Any]]) -> subprocess.CompletedProcess[str]:
        folder = CHECK / "generated" / uuid.uuid4().hex[:8]
        folder.mkdir(parents=True)
        try:
            for name, dashboard in dashboards.items():
                (folder / f"{name}.ts").write_text(_typescript(name, dashboard), encoding="utf-8")
            (folder / "tsconfig.json").write_text(
                json.dumps({"extends": "../../tsconfig.json", "include": ["*.ts", "../../firewatch.ts"]})
            )
            return subprocess.run(
                [
                    node,
                    str(CHECK / "node_modules/typescript/bin/tsc"),
                    "-p",
                    str(folder),
                    "--pretty",
                    "false",
                ],
                capture_output=True,
                text=True,
                timeout=300,
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    return run


def test_every_dashboard_type_checks_against_grafana_schema(
    tsc: Callable[[Mapping[str, Mapping[str, Any]]], subprocess.CompletedProcess[str]],
) -> None:
    result = tsc({Path(name).stem: d for name, d in DASHBOARDS.items()})
    assert result.returncode == 0, result.stdout + result.stderr


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(d: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = d
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value

    return apply


def _rename(path: str, new: str) -> Callable[[dict[str, Any]], None]:
    def apply(d: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = d
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[new] = node.pop(last)

    return apply


# (what is broken, how, the tsc message it must cause); each in a dashboard of its own.
BREAKAGES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("misspelt_panel_field", _rename("panels.0.gridPos", "gridPoss"), "'\"gridPoss\"' does not exist"),
    (
        "graph_tooltip_out_of_enum",
        _set("graphTooltip", 3),
        "Type '3' is not assignable to type 'DashboardCursorSync",
    ),
    ("removed_style_field", _set("style", "dark"), "'\"style\"' does not exist"),
    ("threshold_mode_typo", _set("panels.0.fieldConfig.defaults.thresholds.mode", "absolut"), '"absolut"'),
    ("stat_color_mode_typo", _set("panels.0.options.colorMode", "bakground"), '"bakground"'),
    ("misspelt_sql_field", _rename("panels.0.targets.0.rawSql", "rawsql"), "rawsql"),
    ("unprovisioned_datasource", _set("panels.0.datasource.uid", "postgres"), '"postgres"'),
    ("variable_refresh_out_of_enum", _set("templating.list.0.refresh", 7), "VariableRefresh"),
    ("table_option_typo", _set("panels.6.options.showHeaders", True), "showHeaders"),
    (
        "timeseries_draw_style_typo",
        _set("panels.7.fieldConfig.defaults.custom.drawStyle", "lines"),
        '"lines"',
    ),
]


def test_a_broken_dashboard_fails_the_type_check(
    tsc: Callable[[Mapping[str, Mapping[str, Any]]], subprocess.CompletedProcess[str]],
) -> None:
    broken = {}
    for name, breakage, _ in BREAKAGES:
        d = json.loads(json.dumps(BY_UID["firewatch-overview"]))
        breakage(d)
        broken[name] = d
    result = tsc(broken)
    assert result.returncode != 0
    errors: dict[str, str] = defaultdict(str)
    for message_line in result.stdout.splitlines():
        m = re.match(r".*?([a-z_]+)\.ts\(\d+,\d+\): error TS\d+: (.*)", message_line)
        if m:
            errors[m.group(1)] += m.group(2) + "\n"
    for name, _, message in BREAKAGES:
        assert message in errors[name], f"{name}: {errors[name] or 'no error'}\n{result.stdout}"


# --- a day at the hospital, through the real code --------------------------------------------------
MIN = 60.0
HOUR = 3600.0
ROUND_S = 600.0  # every device reports once a round (detection needs no more for this day)
DAY_MIN = 480  # the day shown: eight hours, ending two minutes ago
MAIN, BRANCH = "sxzyy", "fy"

# Incidents, each on devices of the demo hospital (simulators/data/demo_hospital.yaml) or of the
# branch site built below. Times are minutes before the end of the day.
WARD_FIRE = ("b2-f2-z1-r201-smk", "b2-f2-z1-r202-smk")  # from -240: two wards of one unit: fire, confirmed
HALL_FIRE = "b1-f1-z1-hall-smk-1"  # -180 only: cleared, acknowledged as a false alarm, closed
BOILER_GAS = "b1-fb1-z1-boiler-gas-1"  # -360: first level; from -350: second level, still active
KITCHEN_GAS = "b2-f1-z2-kitchen-gas-1"  # -330..-320: first level, cleared
BRANCH_GAS = "fy-b1-f1-z1-pantry-gas"  # from -120: first level at the branch, still active
FAULTY = "b2-f3-z1-r301-smk"  # -450: reports a fault; its ticket goes overdue
REPAIRED = "b1-f2-z1-lab1-gas"  # -440: a fault, cleared at -420; its ticket rectified on time, closed
SILENT = "b1-f3-z1-f3r01-smk"  # silent from -380: offline; its ticket goes overdue
BRANCH_SILENT = "fy-b1-f1-z1-r2-smk"  # silent from -90: offline
WARD_SMOKE, HALL_SMOKE, BOILER_LEL, KITCHEN_LEL, BRANCH_LEL = 0.35, 0.3, 60.0, 30.0, 35.0
POLICY = TicketPolicy(
    plans=[], deadline_hours={"fault": 2.0, "supervisory": 1.0, "hazard": 4.0, "pre_alarm": 2.0}
)


def branch_site() -> tuple[SiteSpec, list[Device]]:
    """A small second site whose building and floor ids repeat the main site's (b1, f1)."""
    rooms = [
        RoomSpec(id="r1", name="诊室1"),
        RoomSpec(id="r2", name="诊室2"),
        RoomSpec(id="pantry", name="茶水间"),
    ]
    zone = ZoneSpec(id="z1", name="1F 门诊", department="门诊部", rooms=rooms)
    site = SiteSpec(
        id=BRANCH,
        name="城东分院",
        buildings=[
            BuildingSpec(id="b1", name="分院门诊楼", floors=[FloorSpec(id="f1", name="1F", zones=[zone])])
        ],
    )
    place = f"{BRANCH}/b1/f1/z1"
    devices = [
        Device(
            id=f"fy-b1-f1-z1-{r}-smk", profile="smoke-photoelectric", place=f"{place}/{r}", responsible="周敏"
        )
        for r in ("r1", "r2")
    ]
    devices.append(
        Device(id=BRANCH_GAS, profile="combustible-gas", place=f"{place}/pantry", responsible="周敏")
    )
    return site, devices


@dataclass
class Day:
    """What was played, and the facts the checks compare the dashboards with."""

    start: float
    end: float
    registry: Registry
    index: DeviceIndex
    # The accepted samples of each batch, as the decoder hands them to the pipeline's stores.
    samples: list[tuple[npt.NDArray[np.int32], npt.NDArray[np.float64], npt.NDArray[np.float64]]] = field(
        default_factory=list
    )
    transitions: list[Transition] = field(default_factory=list)
    tickets: dict[str, int] = field(default_factory=dict)  # label -> ticket id

    def at(self, minutes: float) -> float:
        return self.end + minutes * MIN


# The simulated devices follow the time of day (diurnal temperature, electrical load, evening
# charging): they live this fixed afternoon, whenever the tests run.
SIM_END = 1_793_520_000.0  # 2026-11-01 16:00 UTC+8


def _quiet(sim: SimDevice, ts: float, start: float, end: float) -> dict[str, float]:
    values = sim.values(ts - start, SIM_END + (ts - end))
    if "open" in values:
        values["open"] = 0.0  # fire doors stay shut: a door seen open a whole round reads as wedged
    return values


def _staged(device: str, minute: int) -> dict[str, float]:
    """The readings an incident imposes at `minute` (before the end)."""
    if device in WARD_FIRE and minute >= -240:
        return {"smoke": WARD_SMOKE}
    if device == HALL_FIRE and minute == -180:
        return {"smoke": HALL_SMOKE}
    if device == BOILER_GAS and minute >= -360:
        return {"lel": KITCHEN_LEL if minute == -360 else BOILER_LEL}
    if device == KITCHEN_GAS and -330 <= minute <= -320:
        return {"lel": KITCHEN_LEL}
    if device == BRANCH_GAS and minute >= -120:
        return {"lel": BRANCH_LEL}
    return {}


def _silent(device: str, minute: int) -> bool:
    return (device == SILENT and minute >= -380) or (device == BRANCH_SILENT and minute >= -90)


def play_day(url: str, end: float) -> Day:
    """Eight hours of a hospital and a branch site, through the decoder, the detection engine, the
    alarm service and the ticket service, on an injected clock; people act through the services."""
    demo = load_registry(DEMO_HOSPITAL)
    branch, branch_devices = branch_site()
    registry = Registry([*demo.sites, branch], [*demo.specs.values(), *branch_devices])
    profiles = load_profiles()
    start = end - DAY_MIN * MIN
    clock = FakeClock(start)
    _, sessions = open_store(url)
    sync_registry(sessions, registry, profiles)
    index = DeviceIndex.build(registry, profiles)
    alarms = AlarmService(
        sessions, index, TicketOpener(index, POLICY), clock, [], Policy(AlarmPolicySettings())
    )
    tickets = TicketService(sessions, index, POLICY, alarms=alarms, clock=clock)
    day = Day(start, end, registry, index)
    alarms.on_commit.append(day.transitions.extend)
    decoder = Decoder(index)
    engine = Engine(index, start=start)
    sims = {
        d: SimDevice(d, registry.locations[d].site, profiles[dev.profile], _rng(d), place=dev.place)
        for d, dev in registry.devices.items()
    }

    def alarm_id(device: str, alarm_type: str) -> int:
        with sessions() as s:
            found = s.scalar(
                select(AlarmRow.id).where(AlarmRow.device_id == device, AlarmRow.alarm_type == alarm_type)
            )
        assert found is not None, (device, alarm_type)
        return found

    def ticket_of(device: str) -> int:
        with sessions() as s:
            found = s.scalar(select(TicketRow.id).where(TicketRow.device_id == device))
        assert found is not None, device
        return found

    def report(label: str, place: str, problem: str) -> None:
        site = place.split("/", 1)[0]
        r = HazardReport(
            site=site,
            problem=problem,
            inspectors="保卫科 赵六",
            inspection_time=clock.now,
            department=registry.department_of(place),
            responsible="孙八",
            measures="立即整改",
            place=place,
        )
        day.tickets[label] = tickets.report(r, "保卫科 赵六", Role.SAFETY).ticket_id

    def act(label: str, action: TicketAction) -> None:
        who = {
            TicketAction.ASSIGN: ("保卫科 周九", Role.SAFETY),
            TicketAction.START: ("维修组 吴十", Role.MAINTENANCE),
            TicketAction.RECTIFY: ("维修组 吴十", Role.MAINTENANCE),
            TicketAction.VERIFY: ("保卫科 周九", Role.SAFETY),
            TicketAction.CLOSE: ("分管副院长 郑一", Role.LEADER),
            TicketAction.REJECT: ("保卫科 周九", Role.SAFETY),
        }[action]
        fields = ActionFields(assignee="维修组 吴十", feedback="已整改")
        note = "复查不合格：仍有串接" if action is TicketAction.REJECT else ""
        tickets.act(day.tickets[label], action, who[0], who[1], note, fields)

    # People's doings, by minute: hazards found on patrol (A-F), the loop worked on some of them
    # (F rectified, then failing its re-inspection), the repaired gas detector's ticket (R), and
    # the control room acknowledging alarms.
    people: dict[int, list[Callable[[], object]]] = defaultdict(list)

    def walk(label: str, *steps: tuple[int, TicketAction]) -> None:
        for minute, step in steps:
            people[minute].append(partial(act, label, step))

    a, s, r, v, c = (
        TicketAction.ASSIGN,
        TicketAction.START,
        TicketAction.RECTIFY,
        TicketAction.VERIFY,
        TicketAction.CLOSE,
    )
    people[-460].append(partial(report, "A", "sxzyy/b1/f1/z2/hazmat", "危化品库房灭火器压力不足"))
    walk("A", (-455, a), (-450, s), (-400, r), (-395, v), (-390, c))  # on time, closed
    people[-420].append(partial(report, "B", "sxzyy/b1/f2/z1/reagent", "试剂库安全出口堆放杂物"))
    walk("B", (-410, a), (-400, s), (-120, r))  # rectified late
    people[-420].append(lambda: day.tickets.update(R=ticket_of(REPAIRED)))
    walk("R", (-410, a), (-400, s), (-390, r), (-380, v), (-370, c))
    people[-340].append(partial(report, "F", "sxzyy/b2/f4/z1/ns", "护士站插线板串接"))
    walk("F", (-335, a), (-330, s), (-300, r), (-290, TicketAction.REJECT))
    people[-300].append(partial(report, "C", "sxzyy/b1/f3/z1/chem", "病理科危化品间通风不良"))  # overdue
    people[-200].append(partial(report, "E", "fy/b1/f1/z1/pantry", "茶水间电热水器线路老化"))
    people[-60].append(partial(report, "D", "sxzyy/b2/f2/z1/ns", "护士站走廊堆放杂物"))
    people[-230].append(
        lambda: alarms.acknowledge(
            alarm_id(WARD_FIRE[0], "smoke.alarm"), actor="值班员 钱二", note="已派人到场"
        )
    )
    people[-160].append(
        lambda: alarms.acknowledge(
            alarm_id(HALL_FIRE, "smoke.alarm"), actor="值班员 钱二", note="误报：保洁粉尘", false_alarm=True
        )
    )
    # A fire alarm latches until reset (GB 4717): reset on site, then closed.
    people[-150].append(lambda: alarms.reset(alarm_id(HALL_FIRE, "smoke.alarm"), actor="值班员 钱二"))
    people[-150].append(lambda: alarms.close(alarm_id(HALL_FIRE, "smoke.alarm"), actor="值班员 钱二"))
    device_events = {
        -450: [(FAULTY, DeviceEventKind.FAULT)],
        -440: [(REPAIRED, DeviceEventKind.FAULT)],
        -420: [(REPAIRED, DeviceEventKind.FAULT_CLEAR)],
    }

    for minute in range(-DAY_MIN, 1, int(ROUND_S // MIN)):
        for extra in sorted(m for m in people if minute - 10 < m < minute):
            clock.now = day.at(extra)
            for action in people.pop(extra):
                action()
        ts = day.at(minute)
        clock.now = ts
        messages: list[Message] = []
        for d, sim in sims.items():
            if _silent(d, minute):
                continue
            values = _quiet(sim, ts, start, end) | _staged(d, minute)
            frame = sim.telemetry(values, ts)
            messages.append(Message(frame.topic, frame.payload, ts))
        for d, kind in device_events.get(minute, []):
            frame = sims[d].event(kind, ts, code=3)
            messages.append(Message(frame.topic, frame.payload, ts))
        batch = decoder.decode(messages, ts)
        assert not batch.rejects, batch.rejects[:3]
        day.samples.append((batch.sample_slot, batch.sample_ts, batch.sample_value))
        alarms.apply(engine.process(batch) + engine.check(ts))
        for action in people.pop(minute, []):
            action()
        tickets.tick()
    assert not people, f"unplayed: {sorted(people)}"
    return day


def _rng(device: str) -> random.Random:
    return random.Random(zlib.crc32(device.encode()))


# --- the day in InfluxDB (docs/influx.md) ---------------------------------------------------------
INSTANCES = {"firewatch-1": 50, "firewatch-2": 20}  # messages per second
LATENCY_SPIKE_S = 12.5  # one interval over the 10 s budget (GB 26875.1-2011 §4.1.2.1)


def influx_lines(day: Day) -> list[str]:
    """The day as the InfluxDB sink writes it (storage/line_protocol.py, storage/influx.py): a
    `reading` per accepted message, an `alarm_event` per alarm transition; and a `pipeline` point a
    minute for two service instances, one of which restarts (its counters start again from zero)
    and loses its broker at the end."""
    tags = device_tags(day.index)
    encoder = ReadingEncoder(day.index.series_keys(), tags)
    lines: list[str] = []
    for slot, ts, value in day.samples:
        lines += encoder.encode(slot, ts, value).data.decode().splitlines()
    for t in day.transitions:
        alarm = alarm_line(alarm_row(t), tags)
        assert alarm is not None
        lines.append(alarm)
    for instance, rate in INSTANCES.items():
        counters: dict[str, int] = defaultdict(int)
        for minute in range(-DAY_MIN, 1):
            if instance == "firewatch-2" and minute == -120:
                counters.clear()  # a restart
            connected = not (instance == "firewatch-2" and minute > -5)
            for name, per_minute in (
                ("messages", 60 * rate),
                ("readings", 60 * rate),
                ("samples", 120 * rate),
                ("rejects", rate),
                ("duplicates", 2 * rate),
                ("sink_written", 60 * rate),
                ("sink_dropped", 0),
                ("alarm_transitions", 3),
                ("queue_dropped", 0 if connected else 30),
            ):
                counters[name] += per_minute
            fields: dict[str, float | int | str] = {
                **counters,
                "queue_depth": 12 + minute % 7,
                "telemetry_pending": 40,
                "sink_buffered": 0 if connected else 300,
                "mqtt_connected": int(connected),
                "alarm_latency_max_s": LATENCY_SPIKE_S if minute == -240 else 0.8,
            }
            point = line("pipeline", {"instance": instance}, fields, round(day.at(minute) * 1000))
            assert point is not None
            lines.append(point)
    return lines


# --- the databases ---------------------------------------------------------------------------------
@dataclass
class State:
    day: Day
    url: str  # the owner's (the service's) URL
    reader_url: str  # the read-only role Grafana uses

    def run(self, sql: str) -> list[dict[str, Any]]:
        with psycopg.connect(self.reader_url, autocommit=True) as conn:
            cur = conn.execute(sql.encode())
            columns = [c.name for c in cur.description or []]
            return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]


@pytest.fixture(scope="module")
def state(postgres: PrivatePostgres) -> Iterator[State]:
    name = postgres.create_database()
    reader = f"grafana_reader_{uuid.uuid4().hex[:8]}"
    url = postgres.url(name)
    try:
        day = play_day(url, float(math.floor(time.time())) - 2 * MIN)
        with psycopg.connect(url, autocommit=True) as conn:
            # What the compose stack gives Grafana: a role that may only read.
            conn.execute(f"CREATE ROLE {reader} LOGIN")
            conn.execute(f"GRANT CONNECT ON DATABASE {name} TO {reader}")
            conn.execute(f"GRANT USAGE ON SCHEMA public TO {reader}")
            conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader}")
            conn.execute(f"ALTER ROLE {reader} SET default_transaction_read_only = on")
        yield State(day, url, url.replace("postgres@", f"{reader}@"))
    finally:
        postgres.drop_database(name)
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {reader}")


@pytest.fixture(scope="module")
def influx(state: State) -> Iterator[InfluxDB1]:
    if not INFLUXD.exists():
        pytest.skip("InfluxDB 1.x (Debian package influxdb) is not installed; scripts/test installs it")
    db = InfluxDB1().start()
    try:
        db.create_database("firewatch")
        db.write("firewatch", influx_lines(state.day))
        yield db
    finally:
        db.close()


# --- expanding and running a dashboard's queries ---------------------------------------------------
def sql_range(state: State, hours: float = 24.0, ago: float = 0.0) -> TimeRange:
    """`hours` ending `ago` hours before the day ended (plus a minute, after its last round): which
    rounds fall in the range does not depend on how long the tests take."""
    end = state.day.end + MIN - ago * HOUR
    return TimeRange(end - hours * HOUR, end)


def influx_range(state: State, hours: float = 6.0) -> TimeRange:
    return sql_range(state, hours)


def run_query(
    query: Query | str,
    datasource: str,
    variables: Mapping[str, Variable],
    state: State,
    influx: InfluxDB1 | None,
    time_range: TimeRange,
) -> list[dict[str, Any]]:
    """Expand as Grafana would and run; InfluxDB series are flattened to rows (tags as columns)."""
    text = query.text if isinstance(query, Query) else query
    if datasource == POSTGRES["uid"]:
        return state.run(expand_sql(text, variables, time_range))
    assert influx is not None
    rows = []
    for series in influx.query(expand_influxql(text, variables, time_range), "firewatch"):
        for values in series["values"]:
            rows.append({**series.get("tags", {}), **dict(zip(series["columns"], values, strict=True))})
    return rows


def resolve(
    dashboard: Mapping[str, Any],
    choices: Mapping[str, tuple[str, ...] | None],
    state: State,
    influx: InfluxDB1 | None,
    time_range: TimeRange,
) -> dict[str, Variable]:
    """Run the dashboard's variable queries in order, each with the variables before it, and
    select as `choices` says (All where it says nothing and the variable has All)."""
    resolved: dict[str, Variable] = {}
    for v in dashboard["templating"]["list"]:
        rows = run_query(v["query"], v["datasource"]["uid"], resolved, state, influx, time_range)
        options = tuple(
            str(
                row["__value"]
                if "__value" in row
                else row["value"]
                if "value" in row
                else next(iter(row.values()))
            )
            for row in rows
        )
        choice = choices.get(v["name"], ALL)
        if choice is ALL and not v["includeAll"]:
            raise AssertionError(f"${v['name']} has no All: the test must choose a value")
        if choice is not ALL:
            assert set(choice) <= set(options), f"${v['name']}: {choice} not among {options}"
        resolved[v["name"]] = Variable(v["name"], v["multi"], v["includeAll"], options, choice)
    return resolved


SELECTIONS: dict[str, dict[str, dict[str, tuple[str, ...] | None]]] = {
    "firewatch-overview": {"all": {}, "b2/f2": {"site": (MAIN,), "building": ("b2",), "floor": ("f2",)}},
    "firewatch-device": {
        "all": {"site": (MAIN,), "device": (WARD_FIRE[0],)},
        "narrow": {
            "site": (MAIN,),
            "building": ("b2",),
            "floor": ("f2",),
            "kind": ("smoke",),
            "device": (WARD_FIRE[0],),
        },
    },
    "firewatch-tickets": {"all": {}, "one department": {"site": (MAIN,), "department": ("病理科",)}},
    "firewatch-pipeline": {"all": {}, "one instance": {"instance": ("firewatch-1",)}},
}


def panel_rows(
    uid: str,
    title_start: str,
    choices: Mapping[str, tuple[str, ...] | None],
    state: State,
    influx: InfluxDB1 | None = None,
    time_range: TimeRange | None = None,
) -> list[dict[str, Any]]:
    """The rows of the (first) target of the panel whose title starts with `title_start`."""
    dashboard = BY_UID[uid]
    (panel,) = [p for p in panels(dashboard) if p["title"].startswith(title_start)]
    target = panel["targets"][0]
    ds = panel["datasource"]["uid"]
    tr = time_range or (sql_range(state) if ds == POSTGRES["uid"] else influx_range(state))
    variables = resolve(dashboard, choices, state, influx, tr)
    text = target["rawSql"] if ds == POSTGRES["uid"] else target["query"]
    return run_query(text, ds, variables, state, influx, tr)


def one(rows: list[dict[str, Any]]) -> Any:
    (row,) = rows
    (value,) = row.values()
    return value


# --- SQL: every query runs; the key panels answer what the day implies ----------------------------
def needs_influx(uid: str) -> bool:
    return any(v["datasource"]["uid"] == INFLUX["uid"] for v in BY_UID[uid]["templating"]["list"])


@pytest.mark.integration
@pytest.mark.parametrize("query", SQL_QUERIES, ids=str)
def test_every_sql_query_runs_on_postgresql_with_the_real_schema(
    query: Query, state: State, request: pytest.FixtureRequest
) -> None:
    dashboard = BY_UID[query.dashboard]
    # The device dashboard's variables come from InfluxDB (the devices that have reported).
    influx = request.getfixturevalue("influx") if needs_influx(query.dashboard) else None
    for label, choices in SELECTIONS[query.dashboard].items():
        tr = sql_range(state)
        variables = resolve(dashboard, choices, state, influx, tr)
        try:
            run_query(query, query.datasource, variables, state, influx, tr)
        except (psycopg.Error, GrafanaExpansionError) as exc:
            pytest.fail(f"{query} with {label} variables: {exc}")


def active_alarms(state: State) -> list[AlarmRow]:
    _, sessions = open_store(state.url)
    with sessions() as s:
        return list(s.scalars(select(AlarmRow).where(AlarmRow.state.in_(ACTIVE_STATES))))


@pytest.mark.integration
def test_the_day_left_the_alarms_it_was_staged_to_leave(state: State) -> None:
    """The premise of the panel checks below: what the real code made of the day."""
    active = {(a.device_id, a.alarm_type) for a in active_alarms(state)}
    assert {(WARD_FIRE[0], "smoke.alarm"), (WARD_FIRE[1], "smoke.alarm")} <= active
    assert (BOILER_GAS, "lel.level2") in active
    assert (BRANCH_GAS, "lel.level1") in active
    assert {(SILENT, OFFLINE), (BRANCH_SILENT, OFFLINE), (FAULTY, "device.fault")} <= active
    assert not {k for k in active if k[0] in (HALL_FIRE, KITCHEN_GAS, REPAIRED)}


def expected_counts(state: State, building: str | None = None) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for a in active_alarms(state):
        if building is not None and a.place.split("/")[1:2] != [building]:
            continue
        gas = a.system == "combustible_gas"
        if a.category == AlarmCategory.FIRE and not gas:
            counts["fire"] += 1
        elif gas and a.category in (AlarmCategory.FIRE, AlarmCategory.PRE_ALARM):
            counts["gas"] += 1
        else:
            counts[a.category] += 1
    return counts


@pytest.mark.integration
def test_overview_counts_fire_gas_and_faults_as_staged(state: State) -> None:
    uid = "firewatch-overview"
    everywhere = expected_counts(state)
    # Two ward heads and the zone's fusion confirmation (GB 50116 §4.1.6): three fire alarms, all in b2.
    assert everywhere["fire"] == 3 == expected_counts(state, "b2")["fire"]
    assert one(panel_rows(uid, "火警", {}, state)) == 3
    assert one(panel_rows(uid, "火警", {"site": (MAIN,), "building": ("b2",), "floor": ("f2",)}, state)) == 3
    assert one(panel_rows(uid, "火警", {"site": (MAIN,), "building": ("b1",)}, state)) == 0  # cleared, closed
    # Gas apart from fire: the boiler's second level (its first superseded by it, 已升级) and the
    # branch pantry's first level.
    assert one(panel_rows(uid, "可燃气体", {}, state)) == everywhere["gas"] == 2
    assert one(panel_rows(uid, "可燃气体", {"site": (BRANCH,)}, state)) == 1
    assert one(panel_rows(uid, "故障", {}, state)) == everywhere["fault"] >= 3  # the fault and two offline


@pytest.mark.integration
def test_overview_devices_online_are_registered_less_offline(state: State) -> None:
    registered = len(state.day.registry.devices)
    (row,) = panel_rows("firewatch-overview", "在线", {}, state)
    assert row == {"在线 online": registered - 2, "注册 registered": registered}
    (row,) = panel_rows("firewatch-overview", "在线", {"site": (BRANCH,)}, state)
    assert row == {"在线 online": 2, "注册 registered": 3}


@pytest.mark.integration
def test_overview_by_floor_puts_the_ward_fire_first(state: State) -> None:
    rows = panel_rows("firewatch-overview", "在报警分布", {}, state)
    top = rows[0]
    assert (top["院区 site"], top["building id"], top["floor id"], top["火警 fire"]) == (MAIN, "b2", "f2", 3)
    places = state.day.registry.places
    assert (top["楼栋 building"], top["楼层 floor"]) == (places["sxzyy/b2"].name, places["sxzyy/b2/f2"].name)
    by_place = {(r["院区 site"], r["building id"], r["floor id"]): r for r in rows}
    assert by_place[(MAIN, "b1", "fb1")]["可燃气体 gas"] == 1  # the boiler's level 1 superseded by level 2
    assert by_place[(BRANCH, "b1", "f1")]["可燃气体 gas"] == 1
    assert sum(r["合计 total"] for r in rows) == len(active_alarms(state))


@pytest.mark.integration
def test_overview_active_alarm_list_is_complete_and_fire_first(state: State) -> None:
    rows = panel_rows("firewatch-overview", "当前报警", {}, state)
    assert len(rows) == len(active_alarms(state))
    categories = [r["类别 category"] for r in rows]
    assert categories[:3] == ["火警 fire"] * 3
    assert categories[3:5] == ["可燃气体 gas"] * 2
    assert "火警 fire" not in categories[3:]
    states = {
        r["设备编号 device id"]: r["状态 state"] for r in rows if r["报警类型 alarm type"] == "smoke.alarm"
    }
    assert states == {WARD_FIRE[0]: "已确认 acknowledged", WARD_FIRE[1]: "未确认 unacknowledged"}


def kpi_report(state: State, tr: TimeRange, department: str | None = None) -> Any:
    _, sessions = open_store(state.url)
    with sessions() as s:
        return compute_kpis(s, math.floor(tr.start), math.floor(tr.end), None, department, now=time.time())


@pytest.mark.integration
@pytest.mark.parametrize(
    ("hours", "ago", "found"),
    [(24.0, 0.0, 10), (6.0, 0.0, 5), (20.0, 4.0, 7)],
    ids=["last 24 h", "last 6 h", "a past period"],  # as of its end: later rectifications do not count
)
def test_ticket_kpis_equal_the_kpi_code_on_the_same_data(
    state: State, hours: float, ago: float, found: int
) -> None:
    uid = "firewatch-tickets"
    tr = sql_range(state, hours, ago)
    report = kpi_report(state, tr)
    k = report.tickets
    assert k.found == found  # the day's tickets: A-F, four from devices

    def panel(title: str) -> Any:
        return one(panel_rows(uid, title, {}, state, time_range=tr))

    assert panel("发现隐患") == k.found
    assert panel("整改率") == pytest.approx(k.rectification_rate)
    assert panel("按时整改率") == (None if k.on_time_rate is None else pytest.approx(k.on_time_rate))
    assert panel("逾期") == k.overdue
    assert panel("平均整改用时") == (
        None if k.mean_time_to_rectify_s is None else pytest.approx(k.mean_time_to_rectify_s)
    )
    rows = panel_rows(uid, "各科室", {}, state, time_range=tr)
    got = {r["科室 department"]: r for r in rows}
    assert set(got) == {d.department or "（未指定）" for d in report.by_department}
    for d in report.by_department:
        r = got[d.department or "（未指定）"]
        assert (r["发现 found"], r["已整改 rectified"], r["按时 on time"], r["逾期 overdue"]) == (
            d.found,
            d.rectified,
            d.on_time,
            d.overdue,
        )
        assert (r["未整改 outstanding"], r["已关闭 closed"]) == (d.outstanding, d.closed)
        assert r["整改率 rate"] == pytest.approx(d.rectification_rate)


@pytest.mark.integration
def test_ticket_kpis_of_one_department(state: State) -> None:
    tr = sql_range(state)
    k = kpi_report(state, tr, "病理科").tickets
    choices = {"site": (MAIN,), "department": ("病理科",)}
    uid = "firewatch-tickets"
    # 病理科: the silent detector's ticket (overdue) and hazard C (overdue), none rectified.
    assert (k.found, k.rectified, k.overdue) == (2, 0, 2)
    assert one(panel_rows(uid, "发现隐患", choices, state, time_range=tr)) == 2
    assert one(panel_rows(uid, "整改率", choices, state, time_range=tr)) == 0
    assert one(panel_rows(uid, "逾期", choices, state, time_range=tr)) == 2


@pytest.mark.integration
def test_open_tickets_by_status_and_the_ticket_list(state: State) -> None:
    uid = "firewatch-tickets"
    _, sessions = open_store(state.url)
    with sessions() as s:
        tickets = list(s.scalars(select(TicketRow)))
    open_by_status: dict[str, int] = defaultdict(int)
    for t in tickets:
        if t.status != TicketStatus.CLOSED:
            open_by_status[t.status] += 1
    rows = panel_rows(uid, "在办整改单", {}, state)
    assert {r["状态 status"].split()[1]: r["数量 tickets"] for r in rows} == open_by_status
    assert one(panel_rows(uid, "在办 Open now", {}, state)) == sum(open_by_status.values())
    listing = panel_rows(uid, "隐患整改单", {}, state)
    assert {r["编号 number"] for r in listing} == {t.number for t in tickets}
    assert [r["状态 status"] for r in listing][-2:] == ["已关闭 closed"] * 2  # the two closed ones last


@pytest.mark.integration
def test_device_alarm_history_and_sql_annotations(state: State, influx: InfluxDB1) -> None:
    uid = "firewatch-device"
    choices = SELECTIONS[uid]["narrow"]
    rows = panel_rows(uid, "报警历史", choices, state, influx, sql_range(state))
    # The pre-alarm crossed in the fire's reading is superseded by it before it shows (docs/alarms.md).
    assert {r["报警类型 alarm type"] for r in rows} >= {"smoke.alarm"}
    assert {r["状态 state"] for r in rows if r["报警类型 alarm type"] == "smoke.alarm"} == {
        "已确认 acknowledged"
    }
    (annotation,) = [a for a in BY_UID[uid]["annotations"]["list"] if a["datasource"] == POSTGRES]
    tr = sql_range(state)
    variables = resolve(BY_UID[uid], choices, state, influx, tr)
    events = run_query(annotation["target"]["rawSql"], POSTGRES["uid"], variables, state, influx, tr)
    texts = [e["text"] for e in events]
    assert "fire smoke.alarm raised" in texts
    assert "fire smoke.alarm acknowledged: 已派人到场" in texts
    assert all(tr.start - 1 <= e["time"] <= tr.end for e in events)


# --- InfluxQL: every query runs; the key panels answer what the day implies -----------------------
@pytest.mark.integration
@pytest.mark.parametrize("query", INFLUXQL_QUERIES, ids=str)
def test_every_influxql_query_runs_on_influxdb(query: Query, state: State, influx: InfluxDB1) -> None:
    dashboard = BY_UID[query.dashboard]
    for label, choices in SELECTIONS[query.dashboard].items():
        tr = influx_range(state)
        variables = resolve(dashboard, choices, state, influx, tr)
        try:
            rows = run_query(query, query.datasource, variables, state, influx, tr)
        except (RuntimeError, GrafanaExpansionError) as exc:
            pytest.fail(f"{query} with {label} variables: {exc}")
        assert rows, f"{query} with {label} variables returned nothing"


@pytest.mark.integration
def test_device_variables_chain_down_to_the_devices_of_a_floor(state: State, influx: InfluxDB1) -> None:
    tr = influx_range(state)
    variables = resolve(
        BY_UID["firewatch-device"], SELECTIONS["firewatch-device"]["narrow"], state, influx, tr
    )
    index = state.day.index
    expected = {
        d
        for d, loc in state.day.registry.locations.items()
        if (loc.site, loc.building, loc.floor) == (MAIN, "b2", "f2")
        and index.profiles[index.dev_of[d]].kind.value == "smoke"
    }
    assert set(variables["device"].options) == expected
    assert set(variables["building"].options) == {"b1", "b2", "eb"}  # site sxzyy only: not the branch's


@pytest.mark.integration
def test_device_channels_latest_values_and_alarm_annotations(state: State, influx: InfluxDB1) -> None:
    uid = "firewatch-device"
    choices = SELECTIONS[uid]["narrow"]
    (latest,) = panel_rows(uid, "最新值", choices, state, influx)
    assert latest["last_smoke"] == WARD_SMOKE
    assert 10 < latest["last_temp"] < 40
    rows = panel_rows(uid, "通道读数", choices, state, influx)
    assert {"mean_smoke", "mean_temp"} <= set(rows[0])
    assert max(r["mean_smoke"] for r in rows if r["mean_smoke"] is not None) == WARD_SMOKE
    (annotation,) = [a for a in BY_UID[uid]["annotations"]["list"] if a["datasource"] == INFLUX]
    tr = influx_range(state)
    variables = resolve(BY_UID[uid], choices, state, influx, tr)
    events = run_query(annotation["target"]["query"], INFLUX["uid"], variables, state, influx, tr)
    assert annotation["target"]["textColumn"] in events[0]
    for tag in annotation["target"]["tagsColumn"].split(","):
        assert tag in events[0]
    assert {(e["alarm_type"], e["action"]) for e in events} >= {
        ("smoke.alarm", "raised"),
        ("smoke.alarm", "acknowledged"),
    }


@pytest.mark.integration
def test_overview_latest_readings_has_every_device_of_the_floor(state: State, influx: InfluxDB1) -> None:
    rows = panel_rows(
        "firewatch-overview", "最新读数", SELECTIONS["firewatch-overview"]["b2/f2"], state, influx
    )
    expected = {
        d
        for d, loc in state.day.registry.locations.items()
        if (loc.site, loc.building, loc.floor) == (MAIN, "b2", "f2")
    }
    assert {r["device"] for r in rows} == expected
    fire = {r["device"]: r for r in rows if r["device"] in WARD_FIRE}
    assert {d: r["last_smoke"] for d, r in fire.items()} == dict.fromkeys(WARD_FIRE, WARD_SMOKE)


@pytest.mark.integration
def test_alarm_trend_counts_raised_alarms_by_category(state: State, influx: InfluxDB1) -> None:
    rows = panel_rows("firewatch-overview", "报警趋势", {}, state, influx)
    raised: dict[str, int] = defaultdict(int)
    start = influx_range(state).start
    for t in state.day.transitions:
        # Device alarms and the overdue-ticket alarms (tagged with their ticket's place) alike.
        if t.action.value == "raised" and t.ts >= start:
            raised[t.after["category"]] += 1
    got: dict[str, int] = defaultdict(int)
    for r in rows:
        got[r["category"]] += r["count"]
    assert got == raised
    assert got["fire"] >= 3
    assert got["hazard"] >= 1


@pytest.mark.integration
def test_pipeline_rates_survive_a_restart_and_latency_shows_the_budget(
    state: State, influx: InfluxDB1
) -> None:
    uid = "firewatch-pipeline"
    rows = panel_rows(uid, "接收速率", {}, state, influx)
    for instance, rate in INSTANCES.items():
        mine = [r["messages"] for r in rows if r["instance"] == instance]
        assert mine, instance
        assert all(v == pytest.approx(rate) for v in mine), instance  # the restart is not negative
    latency = panel_rows(uid, "报警延迟", {}, state, influx)
    assert max(r["alarm_latency_max_s"] for r in latency) == LATENCY_SPIKE_S
    (panel,) = [p for p in panels(BY_UID[uid]) if p["title"].startswith("报警延迟")]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1] == {"color": "red", "value": 10}
    assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "line"
    mqtt = panel_rows(uid, "MQTT", {}, state, influx)
    assert {r["instance"]: r["mqtt_connected"] for r in mqtt} == {"firewatch-1": 1, "firewatch-2": 0}


def test_an_unknown_macro_or_variable_fails_the_expansion() -> None:
    tr = TimeRange(1_700_000_000.0, 1_700_003_600.0)
    with pytest.raises(GrafanaExpansionError, match="unknown macro"):
        expand_sql("SELECT 1 WHERE $__timeFiltr(ts)", {}, tr)
    with pytest.raises(GrafanaExpansionError, match="unexpanded"):
        expand_sql("SELECT 1 WHERE site IN ($sites)", {}, tr)
    with pytest.raises(GrafanaExpansionError, match="unexpanded"):
        expand_influxql('SELECT last(*) FROM "reading" WHERE $timefilter', {}, tr)


def test_expansion_follows_grafanas_interpolation() -> None:
    tr = TimeRange(1_700_000_000.4, 1_700_086_400.9)
    site = Variable("site", True, True, ("a", "b'c"), None)
    device = Variable("device", False, False, ("d-1.x",), ("d-1.x",))
    assert expand_sql("x IN ($site) AND y = ${device:sqlstring}", {"site": site, "device": device}, tr) == (
        "x IN ('a','b''c') AND y = 'd-1.x'"
    )
    assert expand_sql("$__unixEpochFilter(t.ts) GROUP BY $__unixEpochGroupAlias(ts, '1d')", {}, tr) == (
        't.ts >= 1700000000 AND t.ts <= 1700086400 GROUP BY floor((ts)/86400)*86400 AS "time"'
    )
    assert expand_influxql(
        '"s" =~ /^$site$/ AND "d" =~ /^$device$/ AND $timeFilter', {"site": site, "device": device}, tr
    ) == (
        '"s" =~ /^(a|b\'c)$/ AND "d" =~ /^d-1\\.x$/ AND time >= 1700000000400ms and time <= 1700086400900ms'
    )
    with pytest.raises(GrafanaExpansionError, match="needs a time column and an interval"):
        expand_sql("$__unixEpochGroup(ts)", {}, tr)
