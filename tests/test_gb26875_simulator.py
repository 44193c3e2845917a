"""The GB/T 26875.3 frame simulator: an installation's status words, a panel's reset, the §6.5
resends of an unanswered or denied upload, and its connection to a centre over real TCP."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from core.registry import Device, Registry
from device_profiles.loader import load_profiles
from firewatch.broker import Mosquitto, free_port
from firewatch.service import Service
from ingest.gb26875.codes import Command
from ingest.gb26875.frame import Frame, GbTime, answer, encode_frame
from ingest.gb26875.framer import Framer
from ingest.gb26875.objects import (
    ComponentState,
    DeviceState,
    GbObject,
    Operation,
    SystemState,
    decode_adu,
)
from simulators.gb26875_link import BadFrame, StationLink
from simulators.gb26875_load import LoadError, LoadPlan, LoadRun, is_loopback
from simulators.gb26875_panel import (
    NORMAL,
    GbState,
    Installation,
    Outbox,
    PanelError,
    fit_description,
    installation_from_counts,
    installations_from_registry,
    point_address,
    time_tag,
)
from simulators.runner import RunnerError, ScenarioRun, scenario_registry
from simulators.scenario import load_scenario, resolve_scenario
from storage.models import AlarmRow, IncidentRow
from tests.test_gb26875_listener import SMOKE_101, SMOKE_102, UD, gb_service, registry
from tests.test_scenarios import check_played, play
from tests.waiting import eventually

TAG = GbTime(0, 0, 12, 5, 12, 2026)
FIRE, FAULT, DISABLED, SUPERVISORY = 1 << 1, 1 << 2, 1 << 3, 1 << 4
START, FEEDBACK, POWER = 1 << 5, 1 << 6, 1 << 8


def with_module_and_call_point() -> Registry:
    reg = registry()
    extra = [
        Device(id="mcp-1", profile="gb-manual-call-point", place="s1/b1/f1/z1/r101", gateway="ud-1",
               tags=[f"gb26875=1/1/23/{point_address(11, 1)}"]),
        Device(id="mod-1", profile="gb-module", place="s1/b1/f1/z1", gateway="ud-1",
               tags=[f"gb26875=1/1/87/{point_address(11, 2)}"]),
    ]  # fmt: skip
    return Registry(reg.sites, [*reg.devices.values(), *extra])


@pytest.fixture
def inst() -> Installation:
    (one,) = installations_from_registry(with_module_and_call_point(), load_profiles())
    return one


# --- the model --------------------------------------------------------------------------------------


def test_the_installation_is_what_the_registry_binds(inst: Installation) -> None:
    assert (inst.address, inst.device_id) == (UD, "ud-1")
    (panel,) = inst.panels.values()
    assert (panel.sys_type, panel.sys_addr, panel.device_id) == (1, 1, "fas-1")
    by_id = {p.device_id: p for p in panel.points.values()}
    assert set(by_id) == {"smk-101", "smk-102", "prs-1", "mcp-1", "mod-1"}
    smoke = by_id["smk-101"]
    assert (smoke.comp_type, smoke.comp_addr, smoke.loop, smoke.number) == (42, SMOKE_101, 10, 2)
    assert smoke.status == NORMAL
    assert by_id["smk-102"].comp_addr == SMOKE_102


def test_each_state_sets_its_bit_and_the_upload_carries_the_whole_word(inst: Installation) -> None:
    type_id, obj = inst.set_state("mcp-1", GbState.FIRE, TAG)
    assert type_id == 2
    assert isinstance(obj, ComponentState)
    assert (obj.comp_type, obj.comp_addr, obj.status, obj.time) == (
        23,
        point_address(11, 1),
        NORMAL | FIRE,
        TAG,
    )
    _, obj = inst.set_state("mcp-1", GbState.FAULT, TAG)
    assert obj.status == NORMAL | FIRE | FAULT  # a word, not a change: the fire is still in it
    for state, bit in [
        (GbState.DISABLED, DISABLED),
        (GbState.SUPERVISORY, SUPERVISORY),
        (GbState.POWER_FAULT, POWER),
    ]:
        _, obj = inst.set_state("smk-102", state, TAG)
        assert obj.status & bit
    _, obj = inst.set_state("smk-102", GbState.DISABLED, TAG, clear=True)
    assert obj.status == NORMAL | SUPERVISORY | POWER
    _, obj = inst.set_state("smk-102", GbState.NORMAL, TAG)
    assert obj.status == NORMAL


def test_linkage_start_and_feedback_are_a_modules_and_refused_on_a_detector(inst: Installation) -> None:
    inst.set_state("mod-1", GbState.START, TAG)
    _, obj = inst.set_state("mod-1", GbState.FEEDBACK, TAG)
    assert obj.status == NORMAL | START | FEEDBACK
    with pytest.raises(PanelError, match=r"smk-101 is a 点型光电感烟火灾探测器.*module"):
        inst.set_state("smk-101", GbState.START, TAG)
    with pytest.raises(PanelError, match="no point or panel 'nobody'"):
        inst.set_state("nobody", GbState.FIRE, TAG)


def test_a_panel_and_the_device_report_their_own_words(inst: Installation) -> None:
    type_id, obj = inst.set_state("fas-1", GbState.POWER_FAULT, TAG)
    assert type_id == 1
    assert obj == SystemState(1, 1, NORMAL | POWER, TAG)
    type_id, obj = inst.set_state("ud-1", GbState.POWER_FAULT, TAG)
    assert type_id == 21
    assert obj == DeviceState(NORMAL | 1 << 3, TAG)
    with pytest.raises(PanelError, match="no supervisory bit"):
        inst.set_state("ud-1", GbState.SUPERVISORY, TAG)


def test_a_reset_clears_fires_and_linkage_but_not_faults_or_disablement(inst: Installation) -> None:
    inst.set_state("smk-101", GbState.FIRE, TAG)
    inst.set_state("smk-102", GbState.DISABLED, TAG)
    inst.set_state("mcp-1", GbState.FIRE, TAG)
    inst.set_state("mcp-1", GbState.FAULT, TAG)
    inst.set_state("mod-1", GbState.START, TAG)
    op = inst.reset("fas-1", TAG, operator=7)
    assert op == Operation(1, 1, 1 << 0, 7, TAG)  # type 4 with 复位 (bit 0)
    words = {p.device_id: p.status for _, p in inst.points()}
    assert words == {
        "smk-101": NORMAL,
        "smk-102": NORMAL | DISABLED,
        "mcp-1": NORMAL | FAULT,
        "mod-1": NORMAL,
        "prs-1": NORMAL,
    }
    with pytest.raises(PanelError, match="only a panel is reset"):
        inst.reset("smk-101", TAG)


def test_an_installation_from_counts_numbers_loops_and_points() -> None:
    inst = installation_from_counts(77, panels=2, loops=3, points_per_loop=4)
    assert len(inst.panels) == 2
    assert sum(1 for _ in inst.points()) == 24
    panel = inst.panels[(1, 2)]
    point = panel.points[(42, point_address(3, 4))]
    assert (point.loop, point.number, point.description) == (3, 4, "2号主机3回路4号")
    with pytest.raises(PanelError, match="one byte"):
        installation_from_counts(1, panels=256)


def test_descriptions_fit_31_bytes_and_time_tags_are_beijing_time_rounded_up() -> None:
    assert len(fit_description("住院楼三层东区护士站走廊感烟探测器一号").encode("gb18030")) <= 31
    # 2026-12-05 04:00:00.2 UTC is 12:00:00.2 in Beijing: stamped 12:00:01, never before the event.
    assert time_tag(1_796_443_200.2) == GbTime(1, 0, 12, 5, 12, 2026)
    assert time_tag(1_796_443_200.0, utc_offset_hours=0) == GbTime(0, 0, 4, 5, 12, 2026)


# --- §6.5: resends -------------------------------------------------------------------------------------


def test_an_unanswered_upload_is_sent_again_every_10_s_three_times_then_given_up() -> None:
    box = Outbox()
    box.sent(Command.SEND, b"\x02\x01", serial=5, now=100.0)
    assert box.due(109.9) == ([], [])
    for n, now in enumerate((110.0, 120.0, 130.0), start=2):
        resend, failed = box.due(now)
        assert [(p.serial, p.attempts) for p in resend] == [(5, n)]
        assert failed == []
    resend, failed = box.due(140.0)
    assert resend == []
    ((_, settled),) = failed
    assert (settled.confirmed, settled.attempts, settled.latency_s) == (False, 4, 40.0)
    assert box.pending == {}


def test_a_confirm_settles_an_upload_a_deny_sends_it_again_at_once() -> None:
    box = Outbox()
    box.sent(Command.SEND, b"", serial=1, now=0.0)
    outcome = box.answered(1, Command.DENY, now=0.5)
    assert outcome is not None
    assert outcome[1] is None
    assert outcome[0].attempts == 2
    outcome = box.answered(1, Command.CONFIRM, now=0.75)
    assert outcome is not None
    assert outcome[1] is not None
    done = outcome[1]
    assert (done.confirmed, done.attempts, done.denials, done.latency_s) == (True, 2, 1, 0.75)
    assert box.answered(1, Command.CONFIRM, now=1.0) is None  # a late repeat of the answer
    box.sent(Command.SEND, b"", serial=2, now=0.0)
    for _ in range(3):
        assert box.answered(2, Command.DENY, now=1.0) is not None
    outcome = box.answered(2, Command.DENY, now=2.0)  # the fourth deny: no resends left
    assert outcome is not None
    assert outcome[1] is not None
    assert not outcome[1].confirmed


def test_after_a_reconnect_uploads_in_flight_take_the_new_connections_serials_in_order() -> None:
    box = Outbox()
    box.sent(Command.SEND, b"a", serial=7, now=1.0)
    box.sent(Command.SEND, b"b", serial=8, now=2.0)
    serials = iter(range(10))
    items = box.renumber(lambda: next(serials))
    assert [(p.adu, p.serial) for p in items] == [(b"a", 0), (b"b", 1)]
    assert set(box.pending) == {0, 1}


# --- over TCP, against a centre of a few lines ------------------------------------------------------


class Centre:
    """A loopback TCP server that records every frame and answers as told: "confirm", "deny
    first" (the first copy of each serial denied), or "silent"."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.frames: list[Frame] = []
        self.rejects = 0
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writer = writer
        framer = Framer()
        seen: set[bytes] = set()
        while data := await reader.read(4096):
            for item in framer.feed(data):
                if not isinstance(item, Frame):
                    self.rejects += 1
                    continue
                self.frames.append(item)
                if self.mode == "silent" or item.command != Command.SEND:
                    continue
                deny = self.mode == "deny first" and item.serial_bytes not in seen
                seen.add(item.serial_bytes)
                writer.write(answer(item, Command.DENY if deny else Command.CONFIRM, TAG))
        writer.close()


async def link_to(centre: Centre, timeout_s: float = 10.0) -> StationLink:
    port = await centre.start()
    inst = installation_from_counts(UD, loops=1, points_per_loop=2)
    link = StationLink(inst, "127.0.0.1", port, timeout_s=timeout_s)
    await link.connect()
    return link


@pytest.fixture
async def cleanup() -> AsyncIterator[list[StationLink]]:
    links: list[StationLink] = []
    yield links
    for link in links:
        await link.close()


async def test_a_device_resends_an_unconfirmed_upload_three_times_with_its_serial(
    cleanup: list[StationLink],
) -> None:
    centre = Centre("silent")
    link = await link_to(centre, timeout_s=0.2)
    cleanup.append(link)
    settled = await asyncio.wait_for(link.heartbeat(), 10)
    assert not settled.confirmed
    assert settled.attempts == 4
    assert [f.serial for f in centre.frames] == [0, 0, 0, 0]
    assert (link.stats.resent, link.stats.gave_up) == (3, 1)


async def test_a_bad_checksum_is_denied_and_the_device_sends_it_again_intact(
    cleanup: list[StationLink],
) -> None:
    centre = Centre("confirm")
    link = await link_to(centre, timeout_s=0.2)
    cleanup.append(link)
    future = link.send_bad(BadFrame.BAD_CHECKSUM)
    link.send_bad(BadFrame.GARBAGE)
    assert future is not None
    settled = await asyncio.wait_for(future, 10)
    # The centre of this test does not deny broken frames, it drops them: the resend is timed out.
    assert settled.confirmed
    assert centre.rejects >= 2  # the spoilt frame and the garbage
    (state,) = [decode_adu(f.adu).objects[0] for f in centre.frames]
    assert isinstance(state, DeviceState)


async def test_a_denied_upload_is_sent_again_and_a_reconnect_restarts_serials(
    cleanup: list[StationLink],
) -> None:
    centre = Centre("deny first")
    link = await link_to(centre)
    cleanup.append(link)
    first = await asyncio.wait_for(link.heartbeat(), 10)
    await asyncio.wait_for(link.heartbeat(), 10)
    assert (first.confirmed, first.attempts, first.denials) == (True, 2, 1)
    await link.reconnect()
    await asyncio.wait_for(link.heartbeat(), 10)
    assert centre.connections == 2
    assert [f.serial for f in centre.frames] == [0, 0, 1, 1, 0, 0]  # each denied once, then again at 0


# --- a scenario, end to end ---------------------------------------------------------------------------


@dataclass
class Seen:
    """The service's store and listener, looked at after the scenario's run."""

    incidents: set[str] = field(default_factory=set)
    fires: dict[str, str] = field(default_factory=dict)  # device -> state of its fire alarm
    disabled: list[str] = field(default_factory=list)
    rejects: dict[str, int] = field(default_factory=dict)
    accepted: int = 0


@pytest.mark.integration
@pytest.mark.xdist_group("accelerated-scenarios")
async def test_the_gb_scenario_raises_a_fire_incident_a_disabled_alarm_and_a_reset_ends_the_fires(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    spec = load_scenario(resolve_scenario("gb-panel-fire"))
    seen = Seen()

    def look(service: Service) -> None:
        with service.sessions() as s:
            seen.incidents = {i.kind for i in s.scalars(select(IncidentRow))}
            alarms = list(s.scalars(select(AlarmRow)))
        seen.fires = {a.device_id: a.state for a in alarms if a.alarm_type == "device.alarm"}
        seen.disabled = [a.device_id for a in alarms if a.alarm_type == "device.disabled"]
        assert service.gb26875 is not None
        seen.rejects = dict(service.gb26875.stats.rejects)
        seen.accepted = service.gb26875.stats.accepted

    report = await play(spec, mosquitto, tmp_path, then=look)
    check_played(report)  # as every shipped scenario (tests/test_scenarios.py), then more
    assert "fire" in seen.incidents  # the call point's fire opened a fire incident
    assert seen.disabled == ["f2-r202-heat"]
    # The panel's reset (复位) ended both fires: neither alarm is active any more.
    assert set(seen.fires) == {"f1-hall-mcp", "f2-r201-smk"}
    assert not any(state.startswith("active") for state in seen.fires.values())
    # Garbage and the spoilt frame were rejected; the device reconnected once.
    assert seen.rejects["bad_checksum"] == 1
    assert seen.rejects["bad_start"] >= 1
    assert seen.accepted == 2
    gb = report.gb26875
    assert gb is not None
    assert (gb["denied"], gb["gave_up"]) == (1, 0)  # the spoilt frame, denied, sent again, confirmed
    assert gb["confirmed"] == gb["uploads"]


# --- load mode ----------------------------------------------------------------------------------------


def test_a_load_is_bounded_and_aimed_only_at_this_host() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("192.0.2.7")
    with pytest.raises(LoadError, match="only a loopback address"):
        LoadRun(LoadPlan(devices=10, host="192.0.2.7"))
    with pytest.raises(LoadError, match="--devices 20001"):
        LoadRun(LoadPlan(devices=20_001))
    with pytest.raises(LoadError, match="--rate"):
        LoadRun(LoadPlan(devices=1, rate=1e6))
    with pytest.raises(LoadError, match="--duration"):
        LoadRun(LoadPlan(devices=1, duration_s=86_400))


def test_simulate_gb26875_refuses_a_remote_listener_and_explains_itself() -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "firewatch.cli", "simulate", "gb26875", "--host", "192.0.2.7"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert "only a loopback address" in refused.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "firewatch.cli", "simulate", "gb26875", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert helped.returncode == 0
    assert "用户信息传输装置" in helped.stdout
    assert "§6.5" in helped.stdout


@pytest.mark.integration
async def test_a_load_of_devices_gets_every_heartbeat_and_upload_confirmed_by_the_listener(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with gb_service(mosquitto, tmp_path) as service:
        assert service.gb26875 is not None
        plan = LoadPlan(devices=5, port=service.gb26875.port, duration_s=1.0, rate=20.0, heartbeat_s=1.0)
        report = await LoadRun(plan).run()
        stats = service.gb26875.stats
    assert (report.connected, report.connect_failures) == (5, 0)
    assert report.heartbeats >= 5
    assert report.uploads > report.heartbeats
    assert report.confirmed == report.uploads
    assert (report.denied, report.gave_up, report.unanswered) == (0, 0, 0)
    assert report.latency_ms["n"] == report.confirmed
    # Unbound addresses: confirmed, and counted as frames from unknown devices.
    assert set(stats.unknown_devices) == set(range(100_000, 100_005))


async def test_the_device_answers_the_centres_reads_and_confirms_its_control_commands(
    cleanup: list[StationLink],
) -> None:
    centre = Centre("confirm")
    link = await link_to(centre)
    cleanup.append(link)
    inst = link.installation
    await asyncio.wait_for(link.heartbeat(), 10)
    assert centre.writer is not None
    panel = inst.panels[(1, 1)]
    point = next(iter(panel.points.values()))
    point.status = NORMAL | FAULT
    requests = [
        (Command.CONTROL, bytes([90, 1]) + TAG.encode()),  # clock sync
        (Command.REQUEST, bytes([81, 1, 0])),  # the device's state
        (Command.REQUEST, bytes([61, 1, 1, 1])),  # panel 1/1's state
        (Command.REQUEST, bytes([62, 1, 1, 1]) + point.comp_addr.to_bytes(4, "little")),
        (Command.REQUEST, bytes([64, 1, 1, 1, 10]) + TAG.encode()),  # operation records: not kept
    ]
    for serial, (command, adu) in enumerate(requests, start=100):
        centre.writer.write(
            encode_frame(serial=serial, command=command, source=0, destination=UD, adu=adu, time=TAG)
        )

    def answers() -> list[Frame]:
        return [f for f in centre.frames if f.serial >= 100]

    await eventually(lambda: len(answers()) == 5 or None, timeout=5, what="five answers")
    by_serial = {f.serial: f for f in answers()}
    assert by_serial[100].command == Command.CONFIRM
    assert [by_serial[n].command for n in (101, 102, 103)] == [Command.RESPONSE] * 3
    assert decode_adu(by_serial[101].adu).objects == (DeviceState(NORMAL, by_serial[101].time),)
    assert decode_adu(by_serial[102].adu).objects == (SystemState(1, 1, NORMAL, by_serial[102].time),)
    (state,) = decode_adu(by_serial[103].adu).objects
    assert isinstance(state, ComponentState)
    assert (state.comp_addr, state.status) == (point.comp_addr, NORMAL | FAULT)
    assert by_serial[104].command == Command.DENY


async def test_a_gb_scenario_without_a_reachable_listener_is_an_error_that_says_what_to_do() -> None:
    spec = load_scenario(resolve_scenario("gb-panel-fire"))
    reg = scenario_registry(spec)
    async with httpx.AsyncClient(base_url="http://127.0.0.1:9") as api:
        unset = ScenarioRun(spec, reg, load_profiles(), api=api, broker=("127.0.0.1", 1883))
        with pytest.raises(RunnerError, match=r"--gb26875 host:port.*gb26875.enabled"):
            await unset._connect_gb()
        closed = ScenarioRun(
            spec,
            reg,
            load_profiles(),
            api=api,
            broker=("127.0.0.1", 1883),
            gb26875=("127.0.0.1", free_port()),
        )
        with pytest.raises(RunnerError, match=r"cannot reach the GB/T 26875\.3 listener"):
            await closed._connect_gb()


@pytest.mark.integration
async def test_a_point_still_disabled_after_a_panel_reset_keeps_its_disabled_alarm(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with gb_service(mosquitto, tmp_path) as service:
        assert service.gb26875 is not None
        (inst,) = installations_from_registry(registry(), load_profiles())
        link = StationLink(inst, "127.0.0.1", service.gb26875.port)
        await link.connect()
        try:
            disabled = await link.upload(*_one(inst.set_state("smk-102", GbState.DISABLED, TAG)))
            reset = await link.upload(4, [inst.reset("fas-1", TAG)])
        finally:
            await link.close()
        assert disabled.confirmed
        assert reset.confirmed
        with service.sessions() as s:
            states = list(
                s.scalars(
                    select(AlarmRow.state).where(
                        AlarmRow.device_id == "smk-102", AlarmRow.alarm_type == "device.disabled"
                    )
                )
            )
    assert inst.find("smk-102").status & DISABLED  # still disabled at the panel
    assert states == ["active_unacknowledged"]


def _one(report: tuple[int, object]) -> tuple[int, list[GbObject]]:
    type_id, obj = report
    assert isinstance(obj, ComponentState | SystemState | DeviceState)
    return type_id, [obj]
