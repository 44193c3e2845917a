"""Email pushes through the outbox, against a real SMTP server on loopback (aiosmtpd).

The route is an Apprise `mailto://` URL for a plain relay: no TLS (`mode=insecure`), no login, a
custom port, an explicit sender and recipient. The test reads what the server received as MIME: the
subject is an RFC 2047 encoded word, the body quoted-printable UTF-8, so both are decoded before
they are compared with what the outbox rendered.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import time
from collections.abc import Callable, Iterator
from email.header import decode_header, make_header
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select

from alarms.service import AlarmService
from alarms.tickets import TicketOpener
from core.domain import AlarmCategory, DetectorEvent, DetectorEventKind
from core.settings import PushRoute, TicketPolicy
from firewatch.dispatch import AppriseChannel, Channel, Dispatcher
from ingest.index import DeviceIndex
from storage.db import open_store
from storage.models import DeliveryRow, OutboxRow
from tests.conftest import PROFILES, small_registry

T0 = 1_800_000_000.0
SENDER = "firewatch@hospital.example"
DUTY = "duty@hospital.example"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mailbox:
    """aiosmtpd handler: keeps every message it accepts; can be told to refuse with a 4xx for a while."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], EmailMessage]] = []
        self.raw: list[bytes] = []  # exactly the bytes of each DATA
        self.refuse = False
        self.refused = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse:
            self.refused += 1
            return "451 4.3.0 mailbox busy, try again later"
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append((str(envelope.mail_from), list(envelope.rcpt_tos), message))
        self.raw.append(raw)
        return "250 OK"


class SmtpServer:
    """A real SMTP server on 127.0.0.1 that can be stopped and started again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mailbox = Mailbox()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    yield server
    server.stop()


def mail_route(port: int) -> PushRoute:
    # A plain relay: mailto:// is unencrypted by default; mode=insecure says so explicitly (no
    # STARTTLS attempted), and without user:password@ Apprise does not log in.
    return PushRoute(
        name="duty-mail",
        url=f"mailto://127.0.0.1:{port}?mode=insecure&from={SENDER}&to={DUTY}",
        categories=[AlarmCategory.FIRE],
        per_alarm=True,  # each alarm's own email: these tests are about delivery by mail
        incident_actions=[],
    )


def fire(device: str) -> DetectorEvent:
    return DetectorEvent(
        device,
        "smoke.alarm",
        DetectorEventKind.RAISE,
        AlarmCategory.FIRE,
        T0,
        0.31,
        "smoke",
        "smoke >= 0.15 dB/m (clears below 0.1)",  # as the threshold detector writes it
        "GB 4715",
    )


def make(db: Path, routes: list[PushRoute]) -> tuple[AlarmService, Dispatcher]:
    _, sessions = open_store(f"sqlite:///{db}")
    index = DeviceIndex.build(small_registry(), PROFILES)
    alarms = AlarmService(sessions, index, TicketOpener(index, TicketPolicy()), time.time, routes)
    # Apprise spaces emails 5.5 s apart by default; a test need not wait for that.
    channels: dict[str, Channel] = {
        r.name: AppriseChannel(r, timeout_s=2.0, min_interval_s=0.0) for r in routes
    }
    return alarms, Dispatcher(sessions, channels, poll_s=0.05, backoff_s=0.05, backoff_cap_s=0.2)


async def until(check: Callable[[], Any], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, message.get_content_type()
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n").rstrip("\n")


def device_of(message: EmailMessage) -> str:
    return text_of(message).split("设备: ")[1].split("\n")[0]


def owed(alarms: AlarmService) -> list[OutboxRow]:
    with alarms.sessions() as s:
        return list(s.scalars(select(OutboxRow).order_by(OutboxRow.id)))


def deliveries(alarms: AlarmService) -> list[DeliveryRow]:
    with alarms.sessions() as s:
        return list(s.scalars(select(DeliveryRow).order_by(DeliveryRow.id)))


async def test_a_fire_alarm_arrives_as_an_email_with_the_chinese_title_and_body(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    smtp.start()
    alarms, dispatcher = make(tmp_path / "s.sqlite", [mail_route(smtp.port)])
    alarms.apply([fire("smk-1-1")])
    (row,) = owed(alarms)

    assert await dispatcher.deliver_due() == 1
    assert dispatcher.pending() == 0

    ((mail_from, rcpt_tos, message),) = smtp.mailbox.received
    assert mail_from == SENDER
    assert rcpt_tos == [DUTY]
    raw_subject = message.get("Subject", failobj="")
    assert raw_subject == row.payload["title"]  # decoded from its encoded word
    assert raw_subject.startswith("【火警】")
    assert "住院楼" in raw_subject
    # The body is the outbox's rendering, line for line (not collapsed into one HTML paragraph).
    assert text_of(message) == row.payload["body"]
    assert "设备: smk-1-1" in text_of(message).splitlines()
    # The detail in words, its "≥" kept as text (the mail is plain text, not markup).
    assert "说明: 烟雾 ≥ 0.15 dB/m（低于 0.1 dB/m 恢复）" in text_of(message).splitlines()
    (log,) = deliveries(alarms)
    assert log.ok
    assert log.outbox_id == row.id


async def test_the_subject_travels_as_an_rfc2047_encoded_word(tmp_path: Path, smtp: SmtpServer) -> None:
    """What is on the wire is ASCII: the Chinese subject is =?utf-8?...?= and decodes back exactly."""
    smtp.start()
    alarms, dispatcher = make(tmp_path / "s.sqlite", [mail_route(smtp.port)])
    alarms.apply([fire("smk-1-1")])
    (row,) = owed(alarms)
    assert await dispatcher.deliver_due() == 1
    (wire,) = smtp.mailbox.raw
    head = wire.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    unfolded = head.replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
    (subject,) = [h[len(b"Subject: ") :] for h in unfolded.split(b"\r\n") if h.startswith(b"Subject: ")]
    assert subject.lower().startswith(b"=?utf-8?")
    decoded = str(make_header(decode_header(subject.decode("ascii"))))
    assert decoded == row.payload["title"]


async def test_pushes_owed_while_the_smtp_server_is_down_arrive_when_it_is_back(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    smtp.start()
    alarms, dispatcher = make(tmp_path / "s.sqlite", [mail_route(smtp.port)])
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        alarms.apply([fire("smk-1-1")])
        dispatcher.wake()
        await until(lambda: dispatcher.pending() == 0)  # the server is up: delivered at once
        await asyncio.to_thread(smtp.stop)

        alarms.apply([fire("smk-1-2"), fire("smk-2-1")])
        dispatcher.wake()
        await until(lambda: dispatcher.failed_attempts >= 3)  # connection refused, retried
        assert dispatcher.pending() == 2
        assert len(smtp.mailbox.received) == 1

        await asyncio.to_thread(smtp.start)
        await until(lambda: dispatcher.pending() == 0)
    finally:
        stop.set()
        await task

    devices = [device_of(m) for _, _, m in smtp.mailbox.received]
    assert devices == ["smk-1-1", "smk-1-2", "smk-2-1"]  # each once, in order
    rows = owed(alarms)
    assert all(r.delivered_ts is not None for r in rows)
    log = deliveries(alarms)
    assert sum(d.ok for d in log) == 3
    failures = [d for d in log if not d.ok]
    assert len(failures) >= 3
    assert all(d.detail for d in failures)  # every failed attempt says why ...
    assert all("mailto://" not in d.detail for d in failures)  # ... without the route's URL
    # The push that waited was attempted more than once and its last attempt succeeded.
    waited = next(r for r in rows if r.payload["transition"]["after"]["device_id"] == "smk-1-2")
    attempts = [d for d in log if d.outbox_id == waited.id]
    assert len(attempts) == waited.attempts >= 2
    assert [d.ok for d in attempts][-1] is True
    assert not any(d.ok for d in attempts[:-1])


async def test_a_server_that_answers_try_again_later_is_retried(tmp_path: Path, smtp: SmtpServer) -> None:
    """A 4xx reply to DATA (greylisting, a full queue) is a failed attempt, not a lost push."""
    smtp.mailbox.refuse = True
    smtp.start()
    alarms, dispatcher = make(tmp_path / "s.sqlite", [mail_route(smtp.port)])
    alarms.apply([fire("smk-1-1")])
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        await until(lambda: smtp.mailbox.refused >= 2 and dispatcher.failed_attempts >= 2)
        assert dispatcher.pending() == 1
        smtp.mailbox.refuse = False
        await until(lambda: dispatcher.pending() == 0)
    finally:
        stop.set()
        await task
    ((_, _, message),) = smtp.mailbox.received
    assert device_of(message) == "smk-1-1"
    log = deliveries(alarms)
    assert [d.ok for d in log][-1] is True
    assert sum(not d.ok for d in log) >= 2
