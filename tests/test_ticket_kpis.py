"""KPIs of the hazard-rectification loop (tickets/kpi.py), on SQLite and PostgreSQL, through the API
and through `firewatch report`.

One small ledger is used throughout: four tickets of site s1 found in a ten-day period, of which
three were rectified (75 %), one of them late, and one is still open past its deadline; plus
tickets just outside the period or at another site, which every figure must leave out.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from alarms.service import AlarmService
from alarms.tickets import TicketOpener
from core.domain import AlarmCategory, AlarmState, Severity, TicketSource, TicketStatus
from core.settings import TicketPolicy
from firewatch.broker import free_port
from firewatch.cli import app
from ingest.index import DeviceIndex
from storage.db import open_store
from storage.models import AlarmRow, TicketRow
from storage.registry_sync import sync_registry
from tests.conftest import PROFILES, FakeClock, asgi_api, small_registry
from tickets.kpi import (
    AlarmKpis,
    CategoryKpis,
    DepartmentKpis,
    DeviceFalseAlarms,
    KpiReport,
    TicketKpis,
    compute_kpis,
)

# Local midnight of 1 June 2023, so that `--since 2023-06-01 --until 2023-06-11` is exactly the
# period [T0, T0 + 10 days) in any time zone (no DST change in those days), and well in the past,
# so the CLI's real clock is after it.
T0 = datetime(2023, 6, 1).timestamp()
H = 3600.0
D = 86400.0
SINCE, UNTIL = T0, T0 + 10 * D
NOW = T0 + 20 * D  # the report is asked for ten days after the period: as of UNTIL

_alarm_types = itertools.count(1)


def ticket(
    number: str,
    *,
    created: float,
    deadline: float,
    department: str = "心内科",
    category: AlarmCategory = AlarmCategory.FAULT,
    site: str = "s1",
    assigned: float | None = None,
    rectified: float | None = None,
    closed: float | None = None,
) -> TicketRow:
    """A ticket with the loop times given; status follows from the last step reached."""
    status = (
        TicketStatus.CLOSED
        if closed is not None
        else TicketStatus.RECTIFIED
        if rectified is not None
        else TicketStatus.ASSIGNED
        if assigned is not None
        else TicketStatus.OPEN
    )
    times = [t for t in (created, assigned, rectified, closed) if t is not None]
    return TicketRow(
        number=number,
        source=TicketSource.INSPECTION.value,
        status=status.value,
        category=category.value,
        hazard_type="inspection.hazard",
        device_id=None,
        site=site,
        place=f"{site}/b1/f1",
        department=department,
        responsible="张三",
        inspection_time=created,
        inspectors="保卫科 李四",
        problem=f"{number}：疏散通道堆放杂物",
        measures="清理杂物，保持通道畅通",
        deadline=deadline,
        feedback="已清理" if rectified is not None else "",
        occurrences=1,
        created_at=created,
        updated_at=max(times),
        closed_at=closed,
        assignee="王五" if assigned is not None else None,
        assigned_at=assigned,
        rectified_at=rectified,
        overdue=False,
    )


def alarm(
    device_id: str,
    *,
    first: float,
    acked: float | None = None,
    false_alarms: int = 0,
    department: str = "心内科",
    site: str = "s1",
) -> AlarmRow:
    """A fault alarm as the alarm service would have stored it (a distinct alarm type per row, so
    several open alarms of one device do not collide on the one-open-alarm key)."""
    state = AlarmState.ACTIVE_ACKNOWLEDGED if acked is not None else AlarmState.ACTIVE_UNACKNOWLEDGED
    return AlarmRow(
        device_id=device_id,
        alarm_type=f"test.fault.{next(_alarm_types)}",
        category=AlarmCategory.FAULT.value,
        severity=Severity.MINOR.value,
        system="fire_alarm",
        site=site,
        place=f"{site}/b1/f1",
        department=department,
        state=state.value,
        occurrences=1,
        first_ts=first,
        last_ts=first,
        raised_ts=first,
        acked_ts=acked,
        acked_by="值班员" if acked is not None else None,
        false_alarm=false_alarms > 0,
        false_alarms=false_alarms,
        detail="",
        basis="",
        escalation_step=0,
        flapping=False,
    )


def ward_ledger() -> list[TicketRow | AlarmRow]:
    return [
        # In the period at s1: A on time, B late, C open past its deadline, D on time.
        ticket(
            "YH-A",
            created=T0 + 1 * H,
            assigned=T0 + 2 * H,
            rectified=T0 + 5 * H,
            closed=T0 + 6 * H,
            deadline=T0 + 1 * D,
        ),
        ticket(
            "YH-B",
            category=AlarmCategory.SUPERVISORY,
            created=T0 + 1 * D,
            assigned=T0 + 1 * D + 3 * H,
            rectified=T0 + 3 * D,
            deadline=T0 + 2 * D,
        ),
        ticket("YH-C", department="急诊科", created=T0 + 2 * D, deadline=T0 + 3 * D),
        ticket(
            "YH-D",
            department="急诊科",
            category=AlarmCategory.HAZARD,
            created=T0 + 4 * D,
            assigned=T0 + 4 * D + 1 * H,
            rectified=T0 + 4 * D + 10 * H,
            closed=T0 + 5 * D,
            deadline=T0 + 5 * D,
        ),
        # Outside: found the day before, found at the end of the period (excluded), another site.
        ticket("YH-E", created=T0 - 1 * D, rectified=T0 - 1 * D + H, deadline=T0),
        ticket("YH-F", created=UNTIL, deadline=UNTIL + 1 * D),
        ticket("YH-G", site="s2", department="急诊科", created=T0 + 1 * D, deadline=T0 + 2 * D),
        # Alarms first raised in the period at s1 (a5 acknowledged only after the period).
        alarm("smk-1", first=T0 + 1 * H, acked=T0 + 1 * H + 60, false_alarms=1),
        alarm("smk-1", first=T0 + 2 * D, acked=T0 + 2 * D + 240),
        alarm("smk-2", first=T0 + 3 * D),
        alarm("prs-1", first=T0 + 4 * D, acked=T0 + 4 * D + 30, false_alarms=1, department="急诊科"),
        alarm("smk-2", first=T0 + 9 * D, acked=T0 + 11 * D),
        # Outside: before the period, another site.
        alarm("smk-1", first=T0 - 1 * H, acked=T0, false_alarms=3),
        alarm(
            "smk-9", first=T0 + 1 * D, acked=T0 + 1 * D + 10, false_alarms=5, site="s2", department="急诊科"
        ),
    ]


def insert(sessions: sessionmaker[Session], rows: list[TicketRow | AlarmRow]) -> None:
    with sessions.begin() as s:
        s.add_all(rows)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def ward(store_url: str) -> Iterator[sessionmaker[Session]]:
    """The ward ledger in a fresh store (SQLite, then PostgreSQL)."""
    engine, sessions = open_store(store_url)
    insert(sessions, ward_ledger())
    try:
        yield sessions
    finally:
        engine.dispose()


def kpis(
    sessions: sessionmaker[Session],
    since: float | None = SINCE,
    until: float | None = UNTIL,
    site: str | None = "s1",
    department: str | None = None,
    now: float = NOW,
    top: int = 20,
) -> KpiReport:
    with sessions() as s:
        return compute_kpis(s, since, until, site, department, now, top=top)


# --- the computation, on both databases -------------------------------------------------------------


def test_four_found_three_rectified_is_75_percent_with_one_late_and_one_overdue(
    ward: sessionmaker[Session],
) -> None:
    report = kpis(ward)
    assert report.as_of == UNTIL  # asked after the period: the state as of its end
    assert report.tickets == TicketKpis(
        found=4,
        rectified=3,
        rectification_rate=0.75,
        on_time=2,  # A and D
        on_time_rate=2 / 3,
        rectified_late=1,  # B: rectified on day 3, deadline day 2
        overdue=1,  # C: never rectified, deadline day 3
        outstanding=1,
        closed=2,
        assigned=3,
        mean_time_to_assign_s=(1 * H + 3 * H + 1 * H) / 3,
        mean_time_to_rectify_s=(4 * H + 2 * D + 10 * H) / 3,  # A, B, D: 74,400 s
    )
    assert report.tickets.mean_time_to_rectify_s == 74_400.0


def test_each_department_and_category_has_its_own_figures_sorted_by_name(
    ward: sessionmaker[Session],
) -> None:
    report = kpis(ward)
    assert report.by_department == (
        DepartmentKpis(
            department="心内科",
            found=2,
            rectified=2,
            rectification_rate=1.0,
            on_time=1,
            on_time_rate=0.5,
            rectified_late=1,
            overdue=0,
            outstanding=0,
            closed=1,
            assigned=2,
            mean_time_to_assign_s=2 * H,
            mean_time_to_rectify_s=(4 * H + 2 * D) / 2,
        ),
        DepartmentKpis(
            department="急诊科",
            found=2,
            rectified=1,
            rectification_rate=0.5,
            on_time=1,
            on_time_rate=1.0,
            rectified_late=0,
            overdue=1,
            outstanding=1,
            closed=1,
            assigned=1,
            mean_time_to_assign_s=1 * H,
            mean_time_to_rectify_s=10 * H,
        ),
    )
    assert report.by_category == (
        CategoryKpis(
            category="fault",
            found=2,
            rectified=1,
            rectification_rate=0.5,
            on_time=1,
            on_time_rate=1.0,
            rectified_late=0,
            overdue=1,
            outstanding=1,
            closed=1,
            assigned=1,
            mean_time_to_assign_s=1 * H,
            mean_time_to_rectify_s=4 * H,
        ),
        CategoryKpis(
            category="hazard",
            found=1,
            rectified=1,
            rectification_rate=1.0,
            on_time=1,
            on_time_rate=1.0,
            rectified_late=0,
            overdue=0,
            outstanding=0,
            closed=1,
            assigned=1,
            mean_time_to_assign_s=1 * H,
            mean_time_to_rectify_s=10 * H,
        ),
        CategoryKpis(
            category="supervisory",
            found=1,
            rectified=1,
            rectification_rate=1.0,
            on_time=0,
            on_time_rate=0.0,
            rectified_late=1,
            overdue=0,
            outstanding=0,
            closed=0,
            assigned=1,
            mean_time_to_assign_s=3 * H,
            mean_time_to_rectify_s=2 * D,
        ),
    )


def test_alarms_acknowledged_after_the_period_do_not_count_and_false_alarms_rank_devices(
    ward: sessionmaker[Session],
) -> None:
    report = kpis(ward)
    assert report.alarms == AlarmKpis(
        alarms=5, false_alarms=2, alarms_acknowledged=3, mean_time_to_acknowledge_s=(60 + 240 + 30) / 3
    )
    assert report.false_alarms_by_device == (
        # smk-1 and prs-1 tie on false alarms: more alarms first.
        DeviceFalseAlarms(device_id="smk-1", alarms=2, false_alarms=1, false_alarm_rate=0.5),
        DeviceFalseAlarms(device_id="prs-1", alarms=1, false_alarms=1, false_alarm_rate=1.0),
        DeviceFalseAlarms(device_id="smk-2", alarms=2, false_alarms=0, false_alarm_rate=0.0),
    )
    assert [d.device_id for d in kpis(ward, top=2).false_alarms_by_device] == ["smk-1", "prs-1"]


def test_a_drills_alarms_are_in_no_alarm_figure_nor_false_alarm_ranking(ward: sessionmaker[Session]) -> None:
    before = kpis(ward)
    drill_alarm = alarm("smk-9", first=SINCE + 60, acked=SINCE + 90, false_alarms=1)
    drill_alarm.drill_id = 1  # raised in a drill (docs/drills.md)
    insert(ward, [drill_alarm])
    after = kpis(ward)
    assert after.alarms == before.alarms
    assert "smk-9" not in [d.device_id for d in after.false_alarms_by_device]


def test_the_period_is_half_open_and_filters_by_site_and_department(ward: sessionmaker[Session]) -> None:
    # Without a site, the other site's ticket and alarm are in.
    everywhere = kpis(ward, site=None)
    assert (everywhere.tickets.found, everywhere.alarms.alarms, everywhere.alarms.false_alarms) == (5, 6, 7)
    # One department, at any site: C and D at s1, G at s2; the emergency department's two alarms.
    emergency = kpis(ward, site=None, department="急诊科")
    assert (emergency.tickets.found, emergency.tickets.overdue, emergency.alarms.alarms) == (3, 2, 2)
    assert [d.department for d in emergency.by_department] == ["急诊科"]
    # No bounds: every s1 ticket, E before the period and F at its end included.
    assert kpis(ward, since=None, until=None).tickets.found == 6
    # [day 1, day 4): B (found at day 1 exactly) and C, not D (found at day 4 exactly).
    days_1_to_4 = kpis(ward, since=T0 + 1 * D, until=T0 + 4 * D)
    assert (days_1_to_4.tickets.found, days_1_to_4.tickets.rectified, days_1_to_4.tickets.overdue) == (
        2,
        1,
        1,
    )


def test_a_past_period_reports_the_state_as_of_its_end_not_later_rectifications(
    ward: sessionmaker[Session],
) -> None:
    # Until day 2.5: B (rectified on day 3) was still open then, past its day-2 deadline; C's
    # deadline (day 3) had not passed yet.
    report = kpis(ward, until=T0 + 2.5 * D)
    assert report.as_of == T0 + 2.5 * D
    t = report.tickets
    assert (t.found, t.rectified, t.on_time, t.overdue, t.outstanding, t.closed) == (3, 1, 1, 1, 2, 1)
    assert t.rectification_rate == 1 / 3
    assert t.mean_time_to_rectify_s == 4 * H
    # Without an end, the report is as of now.
    assert kpis(ward, until=None, now=T0 + 30 * D).as_of == T0 + 30 * D


def test_an_empty_period_has_zero_counts_and_no_rates_or_means(ward: sessionmaker[Session]) -> None:
    report = kpis(ward, since=T0 + 100 * D, until=T0 + 101 * D, now=T0 + 200 * D)
    assert report.tickets == TicketKpis(
        found=0,
        rectified=0,
        rectification_rate=None,
        on_time=0,
        on_time_rate=None,
        rectified_late=0,
        overdue=0,
        outstanding=0,
        closed=0,
        assigned=0,
        mean_time_to_assign_s=None,
        mean_time_to_rectify_s=None,
    )
    assert report.alarms == AlarmKpis(
        alarms=0, false_alarms=0, alarms_acknowledged=0, mean_time_to_acknowledge_s=None
    )
    assert (report.by_department, report.by_category, report.false_alarms_by_device) == ((), (), ())


def test_a_period_that_ends_before_it_starts_is_refused(ward: sessionmaker[Session]) -> None:
    with pytest.raises(ValueError, match="must be before"):
        kpis(ward, since=UNTIL, until=SINCE)


# --- the API ----------------------------------------------------------------------------------------


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The API over a SQLite store holding the ward ledger; the alarm service's clock reads NOW."""
    _, sessions = open_store(f"sqlite:///{tmp_path / 'state.sqlite'}")
    registry = small_registry()
    sync_registry(sessions, registry, PROFILES)
    index = DeviceIndex.build(registry, PROFILES)
    alarms = AlarmService(sessions, index, TicketOpener(index, TicketPolicy()), FakeClock(NOW))
    insert(sessions, ward_ledger())
    async with asgi_api(alarms, tmp_path) as client:
        # the report is for reading: a leader, not an admin, asks for it
        client.headers.update(client.as_("zhengyi", "leader", display_name="分管副院长 郑一"))
        yield client


async def test_the_api_answers_the_report_for_a_period_site_and_department(api: httpx.AsyncClient) -> None:
    r = await api.get("/api/v1/kpis", params={"since": SINCE, "until": UNTIL, "site": "s1"})
    assert r.status_code == 200, r.text
    report = KpiReport.model_validate(r.json())
    assert (report.tickets.found, report.tickets.rectified, report.tickets.rectification_rate) == (4, 3, 0.75)
    assert [d.department for d in report.by_department] == ["心内科", "急诊科"]
    r = await api.get(
        "/api/v1/kpis", params={"since": SINCE, "until": UNTIL, "department": "急诊科", "top": 1}
    )
    report = KpiReport.model_validate(r.json())
    assert (report.tickets.found, len(report.false_alarms_by_device)) == (3, 1)


async def test_the_api_reports_as_of_the_alarm_service_clock_without_an_end(api: httpx.AsyncClient) -> None:
    r = await api.get("/api/v1/kpis", params={"since": SINCE, "site": "s1"})
    assert r.json()["as_of"] == NOW
    assert r.json()["tickets"]["found"] == 5  # F, found at the end of the period, is in now


async def test_the_api_refuses_a_period_that_ends_before_it_starts_and_bad_parameters(
    api: httpx.AsyncClient,
) -> None:
    r = await api.get("/api/v1/kpis", params={"since": UNTIL, "until": UNTIL})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert "must be before until" in r.json()["detail"]
    bad_params = (
        {"top": 0},
        {"top": 1001},
        {"since": -1},
        {"since": "nan"},
        {"until": 1e12},
        {"site": "x" * 101},
    )
    for bad in bad_params:
        r = await api.get("/api/v1/kpis", params=bad)
        assert r.status_code == 422, bad
        assert r.headers["content-type"] == "application/problem+json"


async def test_the_route_is_documented_as_ticket_kpis(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    assert spec["paths"]["/api/v1/kpis"]["get"]["operationId"] == "ticket_kpis"


# --- `firewatch report` -----------------------------------------------------------------------------


def write_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Path:
    """A config file naming the database. load_settings exports FIREWATCH_CONFIG for the process;
    setting it through monkeypatch first removes it again after the test."""
    config = tmp_path / "firewatch.toml"
    config.write_text(f'database_url = "{database_url}"\n', encoding="utf-8")
    monkeypatch.setenv("FIREWATCH_CONFIG", str(config))
    monkeypatch.delenv("FIREWATCH_DATABASE_URL", raising=False)
    return config


@pytest.fixture
def ward_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    engine, sessions = open_store(url)
    insert(sessions, ward_ledger())
    engine.dispose()
    return write_config(tmp_path, monkeypatch, url)


def report(config: Path, *args: str) -> tuple[int, str, bytes]:
    result = CliRunner().invoke(
        app,
        [
            "report",
            "--since",
            "2023-06-01",
            "--until",
            "2023-06-11",
            "--site",
            "s1",
            "-c",
            str(config),
            *args,
        ],
    )
    return result.exit_code, result.stderr, result.stdout_bytes


def cells(table: str, first: str) -> list[str]:
    """The cells of the table row that starts with `first`."""
    line = next(line for line in table.splitlines() if line.startswith(f"│ {first}"))
    return [cell.strip() for cell in line.split("│")[1:-1]]


def test_report_prints_a_table_with_chinese_headers_per_department_and_the_totals(ward_config: Path) -> None:
    code, stderr, stdout = report(ward_config)
    assert code == 0, stderr
    out = stdout.decode("utf-8")
    for header in ("科室", "发现隐患", "已整改", "整改率", "按时整改率", "逾期", "平均整改时长"):
        assert header in out
    assert cells(out, "心内科") == ["心内科", "2", "2", "100.0%", "50.0%", "0", "26.0 小时"]
    assert cells(out, "急诊科") == ["急诊科", "2", "1", "50.0%", "100.0%", "1", "10.0 小时"]
    assert cells(out, "合计") == ["合计", "4", "3", "75.0%", "66.7%", "1", "20.7 小时"]
    assert "平均确认时长 1.8 分钟" in out  # 110 s
    assert cells(out, "smk-1") == ["smk-1", "2", "1", "50.0%"]


def test_report_in_english(ward_config: Path) -> None:
    code, _, stdout = report(ward_config, "--lang", "en")
    assert code == 0
    out = stdout.decode("utf-8")
    assert cells(out, "total") == ["total", "4", "3", "75.0%", "66.7%", "1", "20.7 h"]
    assert "mean time to acknowledge 1.8 min" in out


def test_report_as_csv_has_a_bom_one_row_per_department_and_a_total(ward_config: Path) -> None:
    code, _, stdout = report(ward_config, "--format", "csv")
    assert code == 0
    assert stdout.startswith(b"\xef\xbb\xbf")  # for Excel on Chinese Windows
    rows = list(csv.reader(io.StringIO(stdout.decode("utf-8-sig"))))
    assert rows == [
        ["科室", "发现隐患", "已整改", "整改率(%)", "按时整改率(%)", "逾期", "平均整改时长(小时)"],
        ["心内科", "2", "2", "100.0", "50.0", "0", "26.00"],
        ["急诊科", "2", "1", "50.0", "100.0", "1", "10.00"],
        ["合计", "4", "3", "75.0", "66.7", "1", "20.67"],
    ]


def test_report_writes_an_english_csv_to_a_file(ward_config: Path, tmp_path: Path) -> None:
    target = tmp_path / "kpi.csv"
    code, _, stdout = report(ward_config, "--format", "csv", "--lang", "en", "--output", str(target))
    assert (code, stdout) == (0, b"")
    rows = list(csv.reader(io.StringIO(target.read_bytes().decode("utf-8-sig"))))
    assert rows[0][:3] == ["department", "found", "rectified"]
    assert rows[-1] == ["total", "4", "3", "75.0", "66.7", "1", "20.67"]


def test_report_as_json_is_the_whole_report(ward_config: Path) -> None:
    code, _, stdout = report(ward_config, "--format", "json")
    assert code == 0
    data = json.loads(stdout)
    assert (data["since"], data["until"], data["as_of"]) == (SINCE, UNTIL, UNTIL)
    report_ = KpiReport.model_validate(data)
    assert report_.tickets.mean_time_to_rectify_s == 74_400.0
    assert [d.department for d in report_.by_department] == ["心内科", "急诊科"]


def test_report_defaults_to_the_last_30_days(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    engine, sessions = open_store(url)
    now = time.time()
    insert(
        sessions,
        [
            ticket("YH-1", created=now - 1 * D, deadline=now + 1 * D),
            ticket("YH-2", created=now - 40 * D, deadline=now - 39 * D),
        ],
    )
    engine.dispose()
    config = write_config(tmp_path, monkeypatch, url)
    result = CliRunner().invoke(app, ["report", "--format", "json", "--config", str(config)])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["tickets"]["found"] == 1
    assert data["until"] is None
    assert now - 30 * D - 60 < data["since"] < now - 30 * D + 60
    # With only an end, the period is the 30 days before it.
    result = CliRunner().invoke(app, ["report", "-f", "json", "--until", "2023-06-11", "-c", str(config)])
    assert json.loads(result.stdout)["since"] == UNTIL - 30 * D


def test_report_explains_a_bad_date_and_exits_2(ward_config: Path) -> None:
    result = CliRunner().invoke(app, ["report", "--since", "2023-13-01", "-c", str(ward_config)])
    assert result.exit_code == 2
    assert "--since '2023-13-01' is not a date" in result.stderr
    assert "YYYY-MM-DD" in result.stderr
    result = CliRunner().invoke(app, ["report", "--since", "2023-06-11", "--until", "2023-06-01"])
    assert result.exit_code == 2
    assert "--since must be before --until" in result.stderr


def test_report_explains_an_unreachable_database_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, monkeypatch, f"postgresql://firewatch@127.0.0.1:{free_port()}/firewatch")
    result = CliRunner().invoke(app, ["report", "-c", str(config)])
    assert result.exit_code == 2
    assert "cannot open the state store at postgresql" in result.stderr
    assert "Is the database running" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    # A SQLite file that does not exist is not created (it would report zeros).
    missing = tmp_path / "nowhere" / "state.sqlite"
    config = write_config(tmp_path, monkeypatch, f"sqlite:///{missing}")
    result = CliRunner().invoke(app, ["report", "-c", str(config)])
    assert result.exit_code == 2
    assert "no state store at" in result.stderr
    assert not missing.exists()


def test_report_help_explains_every_option() -> None:
    result = CliRunner().invoke(app, ["report", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in (
        "--since",
        "--until",
        "--site",
        "--department",
        "--format",
        "--lang",
        "--output",
        "--config",
    ):
        assert option in result.stdout
    assert "2026-11-01T08:00" in result.stdout
    assert "table|csv|json" in result.stdout
