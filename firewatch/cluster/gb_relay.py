"""Asking a GB/T 26875.3 transmission device through any worker of a cluster (docs/gb26875.md,
"Clustered: a device on one worker, a site on another"; docs/scale.md).

A device keeps its TCP connection to whichever worker it reached, and only that worker can send it
a query, a clock or a duty check (查岗). Every worker answers those through its own API, though: a
question for a device connected elsewhere goes over the cluster's NATS connection, as a request
on the device's own subject `fw.gb26875.ask.<address>`, to the worker that holds the device.

Who holds a device is kept by NATS itself, not in a table: a worker subscribes to a device's
subject while a connection of its listener has heard that device, and unsubscribes once no
connection of it is left. So the request reaches exactly the worker(s) the device is connected to;
none at all is NATS's "no responders", known at once (the device is connected nowhere: 409, as on
one node). A device that reconnects to another worker moves its subject with it. A worker that
dies takes its subscriptions with it when NATS notices its connection gone (at once for a closed
socket; for a host that vanished, once the server's pings go unanswered: meanwhile a request
waits for its timeout, 504). A half-open old connection on one worker and the new one on another both hold the
subject for a while: both send the question, the live one answers, and the first answer wins.

The holder sends the question on its connection and replies with the device's answer frame (or
the duty check's record), or with why there is none: not connected (the connection closed in
between), no answer within 10 s (GB/T 26875.3 §6.5), a request it refused (not one of ours), or
a failure of its own.
The asker waits 2 s longer than the device may take, for the hop and a busy worker.

The control room's lists of the devices and of the duty checks are the cluster's, not one worker's:
a worker answering them asks the others on `fw.gb26875.survey` which devices they hold (address,
peer, connected and inspected times) and which duty checks they sent, and merges the answers with
its own. It waits for as many answers as the last heartbeat saw live workers, 1 s at most; a worker
that does not answer in time leaves its devices shown as not connected, and the API says so.
A worker whose answer is larger than the engine's message limit sends it in parts.

Wire format (JSON): a request `{"op": "ask", "command": 1|4, "adu": hex}` or `{"op": "duty",
"device": id, "minutes": 1..255}`; a reply `{"frame": hex}`, `{"duty": {...}}` or
`{"error": "not_connected"|"timeout"|"refused"|"failed", "detail": ...}`. Only the workers' NATS
user may publish on `fw.gb26875.>` (device accounts publish on `fw.v1.>` only), or a device could
send commands to another.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from api.context import HeldConnection, RelayError, Survey
from ingest.gb26875.codes import Command
from ingest.gb26875.frame import MAX_ADU, Frame, FrameError, decode_frame
from ingest.gb26875.listener import ANSWER_TIMEOUT_S, DutyCheckRecord, Gb26875Listener

logger = logging.getLogger(__name__)

SUBJECT_PREFIX = "fw.gb26875.ask"
SURVEY_SUBJECT = "fw.gb26875.survey"
REQUEST_TIMEOUT_S = ANSWER_TIMEOUT_S + 2.0  # the device's 10 s, the hop and a busy holder
SURVEY_TIMEOUT_S = 1.0  # the other workers' answers to a survey: what is not in by then is missing
RETRY_S = 1.0  # a subscription NATS refused is tried again this soon


def subject_of(address: int) -> str:
    return f"{SUBJECT_PREFIX}.{address}"


@dataclass(frozen=True)
class _Ask:
    command: Command
    adu: bytes


@dataclass(frozen=True)
class _Duty:
    device_id: str
    minutes: int


def parse_request(data: bytes) -> _Ask | _Duty:
    """A request from another worker, checked: ValueError says what is wrong with it."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ValueError("not JSON") from None
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    op = body.get("op")
    if op == "ask":
        command, adu = body.get("command"), body.get("adu")
        if command not in (Command.REQUEST, Command.CONTROL) or isinstance(command, bool):
            raise ValueError(f"command {command!r} is not a request (4) or control command (1)")
        if not isinstance(adu, str) or len(adu) > 2 * MAX_ADU:
            raise ValueError("adu is not a data unit in hex")
        return _Ask(Command(command), bytes.fromhex(adu))
    if op == "duty":
        device, minutes = body.get("device"), body.get("minutes")
        if not isinstance(device, str) or not 0 < len(device) <= 64:
            raise ValueError("device is not a device id")
        if not isinstance(minutes, int) or isinstance(minutes, bool) or not 1 <= minutes <= 255:
            raise ValueError("minutes is not 1-255")
        return _Duty(device, minutes)
    raise ValueError(f"op {op!r} is neither ask nor duty")


def duty_record(d: Any) -> DutyCheckRecord:
    """A duty check's record as the holder replied it, checked (RelayError: it is not one)."""
    number, optional = (int, float), (int, float, type(None))
    shape: dict[str, type | tuple[type, ...]] = {
        "address": int,
        "device_id": str,
        "sent_at": number,
        "timeout_minutes": int,
        "confirmed": bool,
        "answered_at": optional,
        "operator": (int, type(None)),
    }
    if not isinstance(d, dict) or d.keys() != shape.keys():
        raise RelayError("the duty check relayed is not a record")
    for key, kinds in shape.items():
        if not isinstance(d[key], kinds) or (kinds is not bool and isinstance(d[key], bool)):
            raise RelayError(f"the duty check relayed has a bad {key}: {d[key]!r}")
    return DutyCheckRecord(**d)


def survey_parts(token: str, held: list[list[Any]], duty: list[dict[str, Any]], limit: int) -> list[bytes]:
    """A worker's answer to a survey in as few messages as fit in `limit` bytes each: the devices
    split between them, the duty checks (a bounded list) in the first."""

    def encoded(part: int, parts: int, devices: list[list[Any]], checks: list[dict[str, Any]]) -> bytes:
        body = {"worker": token, "part": part, "parts": parts, "devices": devices, "duty_checks": checks}
        return orjson.dumps(body)

    whole = encoded(0, 1, held, duty)
    if len(whole) <= limit:
        return [whole]
    per = max(1, len(held) * (limit // 2) // len(whole))  # half the limit a part: room for the rest
    chunks = [held[i : i + per] for i in range(0, len(held), per)] or [[]]
    return [encoded(i, len(chunks), chunk, duty if i == 0 else []) for i, chunk in enumerate(chunks)]


def parse_survey_part(body: bytes) -> tuple[str, int, int, list[HeldConnection], list[DutyCheckRecord]]:
    """(worker, part, parts, connections, duty checks) of another worker's answer, checked
    (RelayError: it is not one)."""
    try:
        d = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RelayError("the survey answer is not JSON") from None
    if not isinstance(d, dict):
        raise RelayError("the survey answer is not a JSON object")
    worker, part, parts = d.get("worker"), d.get("part"), d.get("parts")
    devices, checks = d.get("devices"), d.get("duty_checks")
    if not isinstance(worker, str) or not isinstance(part, int) or not isinstance(parts, int):
        raise RelayError("the survey answer has no worker or part")
    if not 0 <= part < parts or not isinstance(devices, list) or not isinstance(checks, list):
        raise RelayError("the survey answer is not a part of one")
    return worker, part, parts, [_held(row) for row in devices], [duty_record(c) for c in checks]


def _held(row: Any) -> HeldConnection:
    """[address, peer, connected_at, inspected_at] of a survey answer, checked."""
    number = (int, float)
    if (
        not isinstance(row, list)
        or len(row) != 4
        or not isinstance(row[0], int)
        or not isinstance(row[1], str)
        or not isinstance(row[2], number)
        or not (row[3] is None or isinstance(row[3], number))
        or any(isinstance(x, bool) for x in row)
    ):
        raise RelayError(f"the survey answer has a bad device: {row!r}")
    address, peer, connected_at, inspected_at = row
    return HeldConnection(
        address, peer, float(connected_at), None if inspected_at is None else float(inspected_at)
    )


class DeviceRelay:
    """This worker's side of asking transmission devices across the cluster: its own devices'
    subjects held while they are connected here and the questions on them served (`start`), and
    `ask` / `duty_check` for the API, through this worker's connection when the device is here,
    else through the worker holding it. All on the event loop that runs the listener."""

    def __init__(
        self, listener: Gb26875Listener, nc: Callable[[], Client | None], peers: Callable[[], int] = lambda: 0
    ) -> None:
        self.listener = listener
        self._nc = nc  # the engine connection, once made (firewatch/cluster/source.py)
        self._peers = peers  # how many other workers were live at the last heartbeat
        self._token = uuid.uuid4().hex  # this relay, in surveys: its own is not answered
        self._subs: dict[int, Subscription] = {}  # device address -> its subject's subscription
        self._survey_sub: Subscription | None = None
        self._changed = asyncio.Event()
        self._follower: asyncio.Task[None] | None = None
        self._serving: set[asyncio.Task[None]] = set()
        self.served = 0  # questions of other workers sent to a device here
        self.refused = 0  # requests on our subjects that were not ones a worker sends
        self.relayed = 0  # questions of this worker's API sent to another worker

    # --- holding this worker's devices' subjects ---------------------------------------------------

    async def start(self) -> None:
        """Follow the listener's connections (once the engine connection is made)."""
        self.listener.on_held = self._changed.set
        self._follower = asyncio.create_task(self._follow(), name="gb26875-relay")

    async def stop(self) -> None:
        self.listener.on_held = None
        tasks = [t for t in (self._follower, *self._serving) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._follower = None
        for sub in [*self._subs.values(), *([self._survey_sub] if self._survey_sub else [])]:
            with contextlib.suppress(Exception):  # NATS may be gone: nothing to unsubscribe from
                await sub.unsubscribe()
        self._subs.clear()
        self._survey_sub = None

    def subscribed(self) -> set[int]:
        """The devices whose subjects this worker holds now."""
        return set(self._subs)

    async def _follow(self) -> None:
        while True:
            self._changed.clear()
            try:
                await self._sync()
            except Exception as exc:  # NATS closed or refusing: the subjects are made again soon
                logger.warning("GB/T 26875.3 relay: cannot subscribe to this worker's devices (%s)", exc)
                await asyncio.sleep(RETRY_S)
                continue
            await self._changed.wait()

    async def _sync(self) -> None:
        """Subscribed to the subjects of exactly the devices heard on this worker's connections.
        NATS keeps the subscriptions over a reconnection (to another engine node)."""
        nc = self._nc()
        if nc is None:
            raise ConnectionError("not connected to the engine yet")
        if self._survey_sub is None:
            self._survey_sub = await nc.subscribe(SURVEY_SUBJECT, cb=self._on_survey)
        held = self.listener.held()
        for address in held - self._subs.keys():
            self._subs[address] = await nc.subscribe(subject_of(address), cb=self._on_request)
        for address in self._subs.keys() - held:
            await self._subs.pop(address).unsubscribe()

    async def _on_request(self, msg: Msg) -> None:
        # Served in a task of its own: a device's answer takes up to 10 s, and the subscription's
        # next question must not wait behind it.
        task = asyncio.create_task(self._serve(msg), name="gb26875-relay-serve")
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    async def _serve(self, msg: Msg) -> None:
        try:
            reply = await self._reply(msg)
        except Exception as exc:  # a bug, not the asker's fault: said so rather than left to time out
            logger.exception("GB/T 26875.3 relay: a question could not be served")
            reply = {"error": "failed", "detail": f"{type(exc).__name__}: {exc}"}
        if not msg.reply:
            return
        try:
            await msg.respond(orjson.dumps(reply))
        except Exception as exc:  # the asker times out (504) and may ask again
            logger.warning("GB/T 26875.3 relay: a reply could not be sent (%s)", exc)

    async def _reply(self, msg: Msg) -> dict[str, Any]:
        try:
            address = int(msg.subject.removeprefix(f"{SUBJECT_PREFIX}."))
            request = parse_request(msg.data)
        except ValueError as exc:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                logger.warning("GB/T 26875.3 relay: %d requests refused so far (%s)", self.refused, exc)
            return {"error": "refused", "detail": str(exc)}
        self.served += 1
        try:
            if isinstance(request, _Ask):
                frame = await self.listener.ask(address, request.command, request.adu)
                return {"frame": frame.raw.hex()}
            record = await self.listener.duty_check(address, request.device_id, request.minutes)
            return {"duty": dataclasses.asdict(record)}
        except LookupError:  # the connection closed since the question was sent here
            return {"error": "not_connected"}
        except TimeoutError:
            return {"error": "timeout"}

    async def _on_survey(self, msg: Msg) -> None:
        """Another worker asks which devices this one holds, and which duty checks it sent."""
        if not msg.reply or msg.data == self._token.encode():
            return  # no one to answer, or our own survey
        held = []
        for address in sorted(self.listener.held()):
            if (conn := self.listener.connection_of(address)) is not None:
                held.append([address, conn.peer, conn.connected_at, conn.inspected_at])
        duty = [dataclasses.asdict(r) for r in self.listener.duty_checks]
        nc = self._nc()
        limit = nc.max_payload if nc is not None and nc.max_payload else 1 << 20
        try:
            for part in survey_parts(self._token, held, duty, limit):
                await msg.respond(part)
        except Exception as exc:  # the asker shows these devices as not connected, and says why
            logger.warning("GB/T 26875.3 relay: a survey could not be answered (%s)", exc)

    async def survey(self) -> Survey:
        """What the other workers hold: their devices' connections and their duty checks. Waits for
        as many answers as there were other live workers at the last heartbeat, SURVEY_TIMEOUT_S at
        most. ConnectionError: the engine cannot be reached."""
        nc = self._nc()
        if nc is None or not nc.is_connected:
            raise ConnectionError("the other workers cannot be reached: the engine is not connected")
        expected = self._peers()
        parts: dict[str, dict[int, tuple[list[HeldConnection], list[DutyCheckRecord]]]] = {}
        wanted: dict[str, int] = {}
        complete = asyncio.Event()

        async def on_answer(msg: Msg) -> None:
            try:
                worker, part, count, held, checks = parse_survey_part(msg.data)
            except RelayError as exc:
                logger.warning("GB/T 26875.3 relay: a survey answer refused (%s)", exc)
                return
            parts.setdefault(worker, {})[part] = (held, checks)
            wanted[worker] = count
            if sum(len(parts[w]) == wanted[w] for w in parts) >= expected:
                complete.set()

        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, cb=on_answer)
        try:
            await nc.publish(SURVEY_SUBJECT, self._token.encode(), reply=inbox)
            if expected > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(complete.wait(), SURVEY_TIMEOUT_S)
        except NatsError as exc:
            raise ConnectionError(f"the other workers cannot be reached ({exc})") from None
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        connections: dict[int, HeldConnection] = {}
        duty_checks: list[DutyCheckRecord] = []
        answered = 0
        for worker, got in parts.items():
            answered += len(got) == wanted[worker]
            for held, checks in got.values():
                connections.update((c.address, c) for c in held)
                duty_checks.extend(checks)
        return Survey(connections, duty_checks, unanswered=max(0, expected - answered))

    # --- asking, for the API -------------------------------------------------------------------------

    async def ask(self, address: int, command: Command, adu: bytes) -> Frame:
        """As `Gb26875Listener.ask`, wherever the device is connected. LookupError: connected to no
        worker; TimeoutError: no answer in time; ConnectionError: the engine cannot be reached;
        RelayError: the holder's reply was not an answer."""
        if self.listener.connection_of(address) is not None:
            return await self.listener.ask(address, command, adu)
        reply = await self._request(address, {"op": "ask", "command": int(command), "adu": adu.hex()})
        try:
            return decode_frame(bytes.fromhex(reply["frame"]))
        except (KeyError, TypeError, ValueError, FrameError) as exc:
            raise RelayError(f"the answer relayed is not a frame ({exc})") from None

    async def duty_check(self, address: int, device_id: str, timeout_minutes: int) -> DutyCheckRecord:
        """As `Gb26875Listener.duty_check`, wherever the device is connected: the check is kept
        (and its answer matched) by the worker holding the device, where the answer arrives."""
        if self.listener.connection_of(address) is not None:
            return await self.listener.duty_check(address, device_id, timeout_minutes)
        reply = await self._request(address, {"op": "duty", "device": device_id, "minutes": timeout_minutes})
        return duty_record(reply.get("duty"))

    async def _request(self, address: int, body: dict[str, Any]) -> dict[str, Any]:
        nc = self._nc()
        if nc is None or not nc.is_connected:
            raise ConnectionError("the other workers cannot be reached: the engine is not connected")
        self.relayed += 1
        try:
            msg = await nc.request(subject_of(address), orjson.dumps(body), timeout=REQUEST_TIMEOUT_S)
        except NoRespondersError:
            raise LookupError(f"transmission device {address} is connected to no worker") from None
        except NatsTimeout:
            raise TimeoutError(
                f"the worker it is connected to did not answer within {REQUEST_TIMEOUT_S:.0f} s"
            ) from None
        except NatsError as exc:
            raise ConnectionError(f"the other workers cannot be reached ({exc})") from None
        try:
            reply = orjson.loads(msg.data)
        except orjson.JSONDecodeError:
            raise RelayError("the reply relayed is not JSON") from None
        if not isinstance(reply, dict):
            raise RelayError("the reply relayed is not a JSON object")
        error = reply.get("error")
        if error == "not_connected":
            raise LookupError(f"transmission device {address} is connected to no worker")
        if error == "timeout":
            raise TimeoutError()
        if error is not None:
            detail = reply.get("detail")
            raise RelayError(f"the worker it is connected to could not ask it ({error}: {detail})")
        return reply
