"""The history search (历史查询) over the alarm and incident lists, on SQLite and PostgreSQL: a place
covers its subtree, a device finds the incidents it took part in, the verdict and a false alarm's
cause narrow the list, words are found in the notes and details (any case, wildcards literal), and
the list comes in time order; bad parameters are a 422 problem, never a 500."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from alarms.service import AlarmService
from core.domain import AlarmCategory, DetectorEvent, DetectorEventKind
from tests.conftest import ApiClient, FakeClock, alarm_service, asgi_api

T0 = 1_800_000_000.0


@pytest.fixture
def alarms(store_url: str) -> AlarmService:
    return alarm_service(store_url, T0)


@pytest.fixture
async def api(alarms: AlarmService, tmp_path: Path) -> AsyncIterator[ApiClient]:
    async with asgi_api(alarms, tmp_path) as client:
        yield client


def raise_alarm(alarms: AlarmService, device: str, category: AlarmCategory, at: float) -> None:
    assert isinstance(alarms.clock, FakeClock)
    alarms.clock.now = at
    alarm_type = "smoke.alarm" if category is AlarmCategory.FIRE else "device.fault"
    alarms.apply([DetectorEvent(device, alarm_type, DetectorEventKind.RAISE, category, at, 0.3)])


async def ids(api: ApiClient, path: str, **params: Any) -> list[int]:
    r = await api.get(path, params=params)
    assert r.status_code == 200, r.text
    return [item["id"] for item in r.json()["items"]]


@pytest.fixture
async def history(api: ApiClient, alarms: AlarmService) -> tuple[int, int]:
    """A kitchen's smoke in zone 1, judged a false alarm from cooking (100%_toast in the note), and
    an hour later a detector fault in zone 2, still open."""
    raise_alarm(alarms, "smk-1-1", AlarmCategory.FIRE, T0)
    raise_alarm(alarms, "smk-1-2", AlarmCategory.FIRE, T0 + 5)
    (fire,) = (await api.get("/api/v1/incidents", params={"kind": "fire"})).json()["items"]
    duty = api.as_("wangwu", "operator")
    r = await api.post(
        f"/api/v1/incidents/{fire['id']}/verdict",
        json={"verdict": "false_alarm", "cause": "cooking", "note": "配餐间烤面包冒烟 100%_Toast"},
        headers=duty,
    )
    assert r.status_code == 200, r.text
    raise_alarm(alarms, "smk-2-1", AlarmCategory.FAULT, T0 + 3600)
    (fault,) = (await api.get("/api/v1/incidents", params={"kind": "fault"})).json()["items"]
    return fire["id"], fault["id"]


async def test_a_place_covers_its_subtree_and_a_device_finds_its_incidents(
    api: ApiClient, history: tuple[int, int]
) -> None:
    fire, fault = history
    path = "/api/v1/incidents"
    assert await ids(api, path, place="s1/b1/f1/z1") == [fire]
    assert await ids(api, path, place="s1/b1/f1/z2/r201") == [fault]  # an alarm of it is in the room
    assert sorted(await ids(api, path, place="s1/b1")) == sorted([fire, fault])
    assert await ids(api, path, place="s1/b1/f1/z") == []  # a path, not a prefix of a name
    assert await ids(api, path, device_id="smk-1-2") == [fire]
    assert await ids(api, path, device_id="smk-9-9") == []


async def test_the_verdict_the_cause_and_words_in_the_notes_narrow_the_incidents(
    api: ApiClient, history: tuple[int, int]
) -> None:
    fire, fault = history
    path = "/api/v1/incidents"
    assert await ids(api, path, verification="false_alarm") == [fire]
    assert await ids(api, path, verification="false_alarm", cause="cooking") == [fire]
    assert await ids(api, path, cause="dust") == []
    assert await ids(api, path, verification="pending") == [fault]
    assert await ids(api, path, category="fault") == [fault]
    assert await ids(api, path, q="烤面包") == [fire]
    assert await ids(api, path, q="100%_toast") == [fire]  # any case
    assert await ids(api, path, q="%") == [fire]  # a literal percent sign, not a wildcard
    assert await ids(api, path, q="_t") == [fire]
    assert await ids(api, path, q="火灾") == []


async def test_incidents_and_alarms_come_newest_or_oldest_first_and_page(
    api: ApiClient, history: tuple[int, int]
) -> None:
    fire, fault = history
    assert await ids(api, "/api/v1/incidents", order="newest") == [fault, fire]
    assert await ids(api, "/api/v1/incidents", order="oldest") == [fire, fault]
    r = await api.get("/api/v1/incidents", params={"order": "newest", "limit": 1, "offset": 1})
    assert (r.json()["total"], [i["id"] for i in r.json()["items"]]) == (2, [fire])
    newest = (await api.get("/api/v1/alarms", params={"order": "newest"})).json()["items"]
    assert [a["device_id"] for a in newest] == ["smk-2-1", "smk-1-2", "smk-1-1"]
    oldest = (await api.get("/api/v1/alarms", params={"order": "oldest"})).json()["items"]
    assert [a["device_id"] for a in oldest] == ["smk-1-1", "smk-1-2", "smk-2-1"]


async def test_alarms_are_found_by_incident_false_alarm_time_window_and_place(
    api: ApiClient, history: tuple[int, int]
) -> None:
    fire, _ = history
    by_incident = (await api.get("/api/v1/alarms", params={"incident_id": fire})).json()["items"]
    assert sorted(a["device_id"] for a in by_incident) == ["smk-1-1", "smk-1-2"]
    false = (await api.get("/api/v1/alarms", params={"false_alarm": "true"})).json()["items"]
    assert sorted(a["device_id"] for a in false) == ["smk-1-1", "smk-1-2"]
    window = {"since": T0 + 1800, "until": T0 + 7200}
    assert [a["device_id"] for a in (await api.get("/api/v1/alarms", params=window)).json()["items"]] == [
        "smk-2-1"
    ]
    z2 = (await api.get("/api/v1/alarms", params={"place": "s1/b1/f1/z2"})).json()["items"]
    assert [a["device_id"] for a in z2] == ["smk-2-1"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/incidents", {"order": "sideways"}),
        ("/api/v1/incidents", {"verification": "maybe"}),
        ("/api/v1/incidents", {"cause": "ghosts"}),
        ("/api/v1/incidents", {"q": ""}),
        ("/api/v1/incidents", {"q": "x" * 201}),
        ("/api/v1/incidents", {"place": "p" * 401}),
        ("/api/v1/incidents", {"device_id": ""}),
        ("/api/v1/alarms", {"order": "sideways"}),
        ("/api/v1/alarms", {"incident_id": "0"}),
        ("/api/v1/alarms", {"false_alarm": "perhaps"}),
    ],
)
async def test_a_bad_search_parameter_is_a_422_problem(
    api: ApiClient, path: str, params: dict[str, str]
) -> None:
    r = await api.get(path, params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_the_search_result_downloads_as_a_spreadsheet_in_chinese(
    api: ApiClient, history: tuple[int, int]
) -> None:
    fire, _ = history
    r = await api.get(
        "/api/v1/incidents/history.xlsx", params={"verification": "false_alarm", "order": "newest"}
    )
    assert r.status_code == 200, r.text
    rows = list(load_workbook(io.BytesIO(r.content)).active.iter_rows(values_only=True))
    assert rows[0][:7] == ("事件编号", "首报时间", "结束时间", "类型", "位置", "状态", "核实结果")
    assert len(rows) == 2
    assert rows[1][0] == fire
    assert (rows[1][3], rows[1][4], rows[1][6]) == ("火情", "住院楼 1F 1区 101病房", "误报（油烟）")
    assert "烤面包" in str(rows[1][11])
    everything = await api.get("/api/v1/incidents/history.xlsx", params={"order": "oldest"})
    assert len(list(load_workbook(io.BytesIO(everything.content)).active.iter_rows())) == 3
    assert (await api.get("/api/v1/incidents/history.xlsx", params={"cause": "ghosts"})).status_code == 422
